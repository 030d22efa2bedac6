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
from engine.errors import InputError
from engine.model.distributed import Processes
from engine.model.transformer_condnet import CondNetTransformer
from engine.train.config import RESHAPING, Stage, TrainConfig
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


def in_recipe_form(transformer: CondNetTransformer, form: dict[str, object]) -> CondNetTransformer:
    """`transformer` itself, or a copy in `form` (config keys `motion_conditioning`, `motion_pool`,
    `num_layers`; None: keep). The copy keeps every weight the two share; another motion form's own
    weights (the attention form's `motion_role`) start at zero, and new blocks as `grown_blocks` says."""
    wanted = {key: value for key, value in form.items() if value is not None}
    if all(transformer.config[key] == value for key, value in wanted.items()):
        return transformer
    layers = transformer.config.num_layers
    if wanted.get("num_layers", layers) < layers:
        raise InputError(f"num_layers {wanted['num_layers']} is fewer than the base's {layers} blocks; "
                         "a recipe can grow the transformer, not shrink it")
    config = {key: value for key, value in transformer.config.items() if not key.startswith("_")}
    converted = CondNetTransformer(**{**config, **wanted})
    shared = converted.state_dict().keys()
    weights = grown_blocks(transformer.state_dict(), layers, converted.config.num_layers)
    converted.load_state_dict({k: v for k, v in weights.items() if k in shared}, strict=False)
    converted = converted.to(transformer.device)
    return converted if transformer.dtype == torch.float32 else converted.to(transformer.dtype)


# A block's outputs join the residual stream only through these.
BLOCK_OUTPUTS = ("attn1.to_out.0.", "attn2.to_out.0.", "ffn.net.2.")


def grown_blocks(weights: dict[str, torch.Tensor], layers: int, grown: int) -> dict[str, torch.Tensor]:
    """`weights` with `grown` − `layers` new blocks spread evenly among the old ones. Each new block
    is a copy of the block before it, and the block and its copies share its output: their output
    projections are divided among them. So the grown model starts out close to its base (each
    copy sees the input its predecessor changed a little), and every new block learns at once."""
    if grown == layers:
        return weights
    copies = [(old + 1) * (grown - layers) // layers - old * (grown - layers) // layers for old in range(layers)]
    result = {name: value for name, value in weights.items() if not name.startswith("blocks.")}
    index = 0
    for old, count in enumerate(copies):
        prefix = f"blocks.{old}."
        block = {name.removeprefix(prefix): value for name, value in weights.items() if name.startswith(prefix)}
        for _ in range(count + 1):
            result.update({f"blocks.{index}.{local}": value / (count + 1) if local.startswith(BLOCK_OUTPUTS)
                           else value.clone() for local, value in block.items()})
            index += 1
    return result


class TeacherTrainer(Trainer):
    """The state of one teacher run (`source` is the base checkpoint): models, optimizer, step, stage."""

    def trainable_groups(self) -> list[list[tuple[str, torch.nn.Parameter]]]:
        if not self.resume:  # a resumed run's checkpoint is in the recipe's form already
            form = {key: getattr(self.config, key) for key in RESHAPING}
            self.pipeline.register_modules(transformer=in_recipe_form(self.pipeline.transformer, form))
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
