"""Flow-matching training of the CondNet teacher (Dress&Dance; FashionChameleon's in-context teacher).

One optimizer step: `grad_accum` micro-batches of `batch_size` examples on each process;
examples that share a condition layout run in one forward pass; the loss is the mean over
all examples of all processes (see `flow.py` for what one example's loss is). Gradients are
clipped to norm 1.0; AdamW. The VAE and the text encoder are frozen.

Rules:
- Stages run in order, each for its `steps` optimizer steps at its own size, length,
  frame rate, batch size and learning rate.
- The examples of a stage come in epochs, each a fresh seeded shuffle; process r of R takes
  every R-th batch of the stream, so processes never share an example within an epoch.
- Every `checkpoint_every` steps, and at the end, `output/` is replaced by a checkpoint
  (kind teacher, condnet_trained true) that `load_model` reads, plus `training_state/` and
  `metrics.jsonl`. `resume` continues from it at the step it saved; with the same config it
  ends where an uninterrupted run ends.
- Under torchrun the transformer is wrapped in DDP and only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from engine.checkpoint import CheckpointInfo, load_model
from engine.errors import InputError
from engine.pipelines.teacher import TryOnPipeline
from engine.train.config import Stage, TrainConfig
from engine.train.data import TrainingExample, open_dataset
from engine.train.distributed import Processes, start_processes
from engine.train.flow import Encoder, FlowBatch, draw, flow_example, flow_loss, group_by_layout
from engine.train.state import (
    METRICS_FILE,
    STATE_DIR,
    TrainingState,
    keep_metrics_until,
    publish_checkpoint,
    read_training_state,
)
from engine.train.trainable import lora_weights, plain_transformer, prepare_trainable, restore_lora

Progress = Callable[[str, int, int], None]
Log = Callable[[str], None]

MAX_GRAD_NORM = 1.0


def train_teacher(
    data: Path | str,
    base: str,
    output: Path,
    config: TrainConfig,
    resume: bool = False,
    progress: Progress | None = None,
    log: Log | None = None,
) -> Path:
    """Train the teacher on `data` (a folder of sample folders, or "synthetic") from `base`.

    `base` is a tryon checkpoint (folder or Hub id); with `resume` the run in `output/` is
    continued instead and `base` only goes into the training summary. `progress(stage,
    steps done, total steps)` and `log(message)` are called on the main process only.
    Returns `output`.
    """
    output = Path(output)
    check_output(output, resume)
    if data != "synthetic" and not Path(data).is_dir():
        raise InputError("the training data must be a folder of sample folders, or 'synthetic'", data)
    processes = start_processes()
    try:
        trainer = TeacherTrainer(data, base, output, config, resume, processes)
        trainer.run(progress if processes.is_main else None, log if processes.is_main else None)
    finally:
        processes.close()
    return output


def check_output(output: Path, resume: bool) -> None:
    """With `resume`, `output/` must hold a training state; without, it must be new or empty.

    A run killed before its first checkpoint leaves only metrics.jsonl, which may be replaced.
    """
    if resume:
        if not (output / STATE_DIR / "state.json").is_file():
            raise InputError(f"nothing to resume: no {STATE_DIR}/ here (start without resume)", output)
        return
    if output.exists() and not output.is_dir():
        raise InputError("the output must be a folder", output)
    if output.is_dir() and any(entry.name != METRICS_FILE for entry in output.iterdir()):
        raise InputError("already holds files: resume the run in it, or choose a new folder", output)


@functools.lru_cache(maxsize=4)
def epoch_order(seed: int, stage_index: int, epoch: int, count: int) -> np.ndarray:
    """The shuffled dataset indices of one epoch of one stage."""
    return np.random.default_rng([seed, stage_index, 1, epoch]).permutation(count)


class TeacherTrainer:
    """The state of one teacher run: models, optimizer, step counter, and the current stage."""

    def __init__(self, data: Path | str, base: str, output: Path, config: TrainConfig, resume: bool,
                 processes: Processes) -> None:
        self.data, self.base, self.output, self.config = data, base, output, config
        self.processes = processes
        self.device = processes.device
        self.notices: list[str] = []  # told through `log` when the run starts
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an untrained CondNet is what we are here to train
            loaded = load_model(str(output if resume else base), device=self.device)
        self.pipeline: TryOnPipeline = loaded.pipeline
        self.preset = loaded.info.preset
        check_sizes(config, self.pipeline.size_multiple)
        self.shift = config.timestep_shift or float(self.pipeline.scheduler.config.shift)
        self.bf16 = self.uses_bf16()

        trainable = self.prepare_models()
        self.names = [name for name, _ in trainable]
        self.params = [param for _, param in trainable]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.stages[0].lr, weight_decay=config.weight_decay)
        self.step, self.seconds_before = 0, 0.0
        if resume:
            self.restore()
        self.model = self.pipeline.transformer
        if processes.distributed:
            device_ids = [self.device] if self.device.type == "cuda" else None
            # Some parameters sit out some steps (no motion video: motion_embedding).
            self.model = DistributedDataParallel(self.model, device_ids=device_ids, find_unused_parameters=True)

        self.encoder = Encoder(self.pipeline, cache=config.cache_latents)
        self.stage_index = -1  # entered by the first step
        self.dataset: Sequence[TrainingExample] = ()
        self.last_loss: float | None = None  # the last logged loss

    # -- setup ----------------------------------------------------------------------------------

    def uses_bf16(self) -> bool:
        """bf16 autocast for "auto" and "bf16" on CUDA; on the CPU always fp32."""
        wanted = self.config.mixed_precision
        on_cuda = self.device.type == "cuda"
        if wanted == "bf16" and not on_cuda:
            self.notices.append("mixed_precision bf16 runs on CUDA only: training in fp32 on the CPU")
        return wanted in ("auto", "bf16") and on_cuda

    def prepare_models(self) -> list[tuple[str, torch.nn.Parameter]]:
        """Freeze the VAE and the text encoder; return the transformer's trainable parameters."""
        for module in (self.pipeline.vae, self.pipeline.text_encoder):
            module.requires_grad_(False)
            module.eval()
        transformer = self.pipeline.transformer
        transformer.train()
        if self.config.gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
        torch.manual_seed(self.config.seed)  # LoRA's A matrices
        return prepare_trainable(transformer, self.config.trainable, self.config.lora_rank)

    def restore(self) -> None:
        """Continue the run saved in `output/`: adapters, optimizer state, step counter."""
        state, optimizer_state, adapters = read_training_state(self.output / STATE_DIR)
        if state.trainable != self.config.trainable or state.parameter_names != self.names:
            raise InputError(
                f"the saved run trained other weights ('{state.trainable}', {len(state.parameter_names)} tensors) "
                f"than this config does ('{self.config.trainable}', {len(self.names)} tensors)",
                self.output / STATE_DIR,
            )
        if adapters:
            restore_lora(self.pipeline.transformer, adapters)
        self.optimizer.load_state_dict(optimizer_state)
        self.step, self.seconds_before = state.step, state.seconds
        self.notices.append(f"resuming at step {state.step} of {self.config.total_steps}")

    # -- the loop -------------------------------------------------------------------------------

    def run(self, progress: Progress | None, log: Log | None) -> None:
        if log:
            for notice in self.notices:
                log(notice)
        total = self.config.total_steps
        if self.processes.is_main:
            keep_metrics_until(self.output, self.step)
        started = time.perf_counter()
        window_start, window_losses, window_examples = started, [], 0
        while self.step < total:
            stage = self.enter_stage(self.step)
            window_losses.append(self.optimizer_step(stage))
            window_examples += self.examples_per_step(stage)
            self.step += 1
            if progress:
                progress(stage.name, self.step, total)
            if self.step % self.config.log_every == 0 or self.step == total:
                now = time.perf_counter()
                self.last_loss = self.processes.mean(float(np.mean(window_losses)))
                self.write_metrics(stage, window_examples / (now - window_start), self.seconds_before + now - started)
                window_start, window_losses, window_examples = now, [], 0
            if self.step % self.config.checkpoint_every == 0 or self.step == total:
                self.save(self.seconds_before + time.perf_counter() - started)
                if log:
                    log(f"step {self.step}: checkpoint written to {self.output}")
        self.processes.barrier()

    def enter_stage(self, step: int) -> Stage:
        """The stage of `step`; on entering it, its data and learning rate."""
        index, stage = self.config.stage_at(step)
        if index != self.stage_index:
            self.stage_index = index
            self.dataset = open_dataset(self.data, stage, self.config)
            self.encoder.forget_examples()
            for group in self.optimizer.param_groups:
                group["lr"] = stage.lr
        return stage

    def examples_per_step(self, stage: Stage) -> int:
        """Examples in one optimizer step, over all processes."""
        return stage.batch_size * self.config.grad_accum * self.processes.world_size

    def optimizer_step(self, stage: Stage) -> float:
        """One optimizer step; returns this process's mean loss over its examples."""
        per_process = stage.batch_size * self.config.grad_accum
        loss_sum = 0.0
        for micro in range(self.config.grad_accum):
            groups = group_by_layout([self.example(stage, micro, slot) for slot in range(stage.batch_size)])
            for number, batch in enumerate(groups):
                last = micro == self.config.grad_accum - 1 and number == len(groups) - 1
                losses = self.backward(batch, scale=1.0 / per_process, sync=last)
                loss_sum += losses.sum().item()
        torch.nn.utils.clip_grad_norm_(self.params, MAX_GRAD_NORM)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_sum / per_process

    def example(self, stage: Stage, micro: int, slot: int) -> FlowBatch:
        """The example in `slot` of micro-batch `micro` of the current step, noised."""
        position = self.stream_position(stage, micro, slot)
        count = len(self.dataset)
        index = int(epoch_order(self.config.seed, self.stage_index, position // count, count)[position % count])
        encoded = self.encoder.example(self.dataset, index).to(self.device)
        rng = np.random.default_rng([self.config.seed, self.stage_index, 0, position])
        choice = draw(rng, self.config, self.shift, len(encoded.garments), encoded.target.shape[2])
        return flow_example(encoded, choice, self.encoder.empty_prompt.to(self.device))

    def stream_position(self, stage: Stage, micro: int, slot: int) -> int:
        """Where an example sits in the stage's example stream (the same whatever the world size)."""
        batch = stage.batch_size
        micro_batches = (self.step - self.config.stage_start(self.stage_index)) * self.config.grad_accum + micro
        return (micro_batches * self.processes.world_size + self.processes.rank) * batch + slot

    def backward(self, batch: FlowBatch, scale: float, sync: bool) -> torch.Tensor:
        """Forward and backward one batch; gradients are averaged over processes only when `sync`."""
        no_sync = self.model.no_sync if isinstance(self.model, DistributedDataParallel) else contextlib.nullcontext
        with contextlib.nullcontext() if sync else no_sync():
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                predicted = self.model(
                    batch.noisy, batch.timestep, batch.text,
                    conditions=batch.conditions, motion_latents=batch.motion, return_dict=False,
                )[0]
            losses = flow_loss(predicted, batch)
            (losses.sum() * scale).backward()
        return losses.detach()

    # -- output ---------------------------------------------------------------------------------

    def write_metrics(self, stage: Stage, examples_per_s: float, seconds: float) -> None:
        if not self.processes.is_main:
            return
        line = {
            "step": self.step,
            "stage": stage.name,
            "loss": round(self.last_loss, 6),
            "lr": self.optimizer.param_groups[0]["lr"],
            "examples_per_s": round(examples_per_s, 3),
            "seconds": round(seconds, 3),
        }
        self.output.mkdir(parents=True, exist_ok=True)
        with open(self.output / METRICS_FILE, "a", encoding="utf-8") as file:
            file.write(json.dumps(line) + "\n")

    def save(self, seconds: float) -> None:
        if not self.processes.is_main:
            return
        transformer = self.pipeline.transformer
        pipe = self.pipeline
        to_save = TryOnPipeline(transformer=plain_transformer(transformer), vae=pipe.vae,
                                text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, scheduler=pipe.scheduler)
        to_save.max_text_tokens = pipe.max_text_tokens
        info = CheckpointInfo(kind="teacher", preset=self.preset, condnet_trained=True, training={
            "steps": self.step,
            "stages": [stage.name for stage in self.config.stages],
            "loss": self.last_loss,
            "data": str(self.data),
            "base": self.base,
            "seconds": round(seconds, 3),
            "world_size": self.processes.world_size,
            "config": self.config.to_dict(),
        })
        state = TrainingState(step=self.step, seconds=seconds, trainable=self.config.trainable,
                              parameter_names=self.names)
        publish_checkpoint(to_save, self.output, info, state, self.optimizer, lora_weights(transformer))


def check_sizes(config: TrainConfig, multiple: int) -> None:
    """Every stage size must be a multiple of the model's (VAE compression × patch size)."""
    for stage in config.stages:
        width, height = stage.size
        if width % multiple or height % multiple:
            raise InputError(f"stage '{stage.name}': size {width}x{height} is not a multiple of {multiple}, "
                             "as this model needs (VAE compression × patch size)")
