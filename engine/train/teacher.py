"""Flow-matching training of the CondNet teacher (Dress&Dance; FashionChameleon's in-context teacher).

One optimizer step: `grad_accum` micro-batches of `batch_size` examples on each process;
examples that share a condition layout run in one forward pass; the loss is the mean over
all examples of all processes (see `flow.py` for what one example's loss is). Gradients are
clipped to norm 1.0; AdamW. The VAE and the text encoder are frozen.

Stages, the example stream, checkpoints (kind teacher, condnet_trained true), metrics,
resume and DDP follow the rules of the shared loop, engine.train.loop.
"""

from __future__ import annotations

from pathlib import Path

import torch

from engine.checkpoint import CheckpointInfo
from engine.model.distributed import Processes
from engine.model.transformer_condnet import CondNetTransformer
from engine.train.config import Stage, TrainConfig
from engine.train.flow import FlowBatch, flow_example, flow_loss, group_by_layout
from engine.train.loop import (
    Log,
    Metrics,
    Progress,
    Trainer,
    predict_flow,
    synced,
    train,
)


def train_teacher(
    data: Path | str,
    base: str,
    output: Path,
    config: TrainConfig,
    resume: bool = False,
    progress: Progress | None = None,
    log: Log | None = None,
    minutes: float | None = None,
) -> Path:
    """Train the teacher on `data` (a folder of sample folders, or "synthetic") from `base`.

    `base` is a tryon checkpoint (folder or Hub id); with `resume` the run in `output/` is
    continued instead and `base` only goes into the training summary. `progress(stage,
    steps done, total steps)` and `log(message)` are called on the main process only.
    `minutes` ends the run early, checkpointed for `resume`, once that much time has passed.
    Returns `output`.
    """
    def make(processes: Processes) -> TeacherTrainer:
        return TeacherTrainer(data, base, Path(output), config, resume, processes)

    return train(make, data, output, resume, progress, log, minutes=minutes)


def in_motion_form(transformer: CondNetTransformer, form: dict[str, object]) -> CondNetTransformer:
    """`transformer` itself, or a copy taking motion in `form` (config keys; None: keep). The copy keeps
    every weight the two forms share; the new form's own (the attention form's `motion_role`) start at zero."""
    wanted = {key: value for key, value in form.items() if value is not None}
    if all(transformer.config[key] == value for key, value in wanted.items()):
        return transformer
    config = {key: value for key, value in transformer.config.items() if not key.startswith("_")}
    converted = CondNetTransformer(**{**config, **wanted})
    shared = converted.state_dict().keys()
    converted.load_state_dict({k: v for k, v in transformer.state_dict().items() if k in shared}, strict=False)
    converted = converted.to(transformer.device)
    return converted if transformer.dtype == torch.float32 else converted.to(transformer.dtype)


class TeacherTrainer(Trainer):
    """The state of one teacher run (`source` is the base checkpoint): models, optimizer, step, stage."""

    def trainable_groups(self) -> list[list[tuple[str, torch.nn.Parameter]]]:
        if not self.resume:  # a resumed run's checkpoint is in the recipe's form already
            form = {"motion_conditioning": self.config.motion_conditioning, "motion_pool": self.config.motion_pool}
            self.pipeline.register_modules(transformer=in_motion_form(self.pipeline.transformer, form))
        return [self.prepare_transformer(self.pipeline.transformer, seed=self.config.seed)]

    # -- one step -------------------------------------------------------------------------------

    def optimizer_step(self, stage: Stage) -> Metrics:
        """One optimizer step; returns this process's mean loss over its examples."""
        per_process = stage.batch_size * self.config.grad_accum
        loss_sum = 0.0
        for micro in range(self.config.grad_accum):
            groups = group_by_layout([self.example(stage, micro, slot) for slot in range(stage.batch_size)])
            for number, batch in enumerate(groups):
                last = micro == self.config.grad_accum - 1 and number == len(groups) - 1
                losses = self.backward(batch, scale=1.0 / per_process, sync=last)
                loss_sum += losses.sum().item()
        self.learn(self.model, self.params)
        return {"loss": loss_sum / per_process}

    def example(self, stage: Stage, micro: int, slot: int) -> FlowBatch:
        """The example in `slot` of micro-batch `micro` of the current step, noised."""
        position = self.stream_position(stage, micro, slot)
        encoded = self.encoded_example(position)
        return flow_example(encoded, self.draw_for(position, encoded), self.empty_prompt)

    def backward(self, batch: FlowBatch, scale: float, sync: bool) -> torch.Tensor:
        """Forward and backward one batch; gradients are averaged over processes only when `sync`."""
        with synced(self.model, sync):
            with self.autocast():
                predicted = predict_flow(self.model, batch)
            losses = flow_loss(predicted, batch)
            self.with_all_used(losses.sum() * scale, self.model).backward()
        return losses.detach()

    # -- output ---------------------------------------------------------------------------------

    def checkpoint_info(self, seconds: float) -> CheckpointInfo:
        return CheckpointInfo(kind="teacher", preset=self.preset, condnet_trained=True, training={
            **self.summary(seconds), "loss": self.last_metrics.get("loss"), "base": self.source,
        })
