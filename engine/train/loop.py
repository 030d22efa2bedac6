"""The training loop the teacher and the student share: data stream, stages, optimizer, resume, DDP.

A trainer subclass says what its networks are (`trainable_groups`), what one optimizer step
does (`optimizer_step`, returning its metrics) and what its checkpoint says about itself
(`checkpoint_info`); everything else is here.

Rules:
- Stages run in order, each for its `steps` optimizer steps at its own size, length,
  frame rate, batch size and learning rate.
- The examples of a stage come in epochs, each a fresh seeded shuffle; process r of R takes
  every R-th batch of the stream, so processes never share an example within an epoch.
  Every random choice about an example comes from a generator seeded by (seed, stage,
  stream, position in the stage's example stream): stream 0 draws the flow-matching
  choices, stream 1 the epoch order, stream 2 the student's distillation draws. So a
  resumed run, or one on more processes, draws the same.
- One AdamW optimizer holds every trainable tensor, one parameter group per network; a
  group whose tensors have no gradient in a step is not stepped.
- Every `checkpoint_every` steps, and at the end, `output/` is replaced by a checkpoint that
  `load_model` reads, plus `training_state/` and `metrics.jsonl`. `resume` continues from it
  at the step it saved; with the same config it ends where an uninterrupted run ends.
- metrics.jsonl: every `log_every` steps, one line: step, stage, the mean of each metric the
  steps returned since the last line (over all processes), lr, examples_per_s, seconds;
  drawn anew as curves.png beside it, and added to TensorBoard in tensorboard/ when it is
  installed (engine.train.curves).
- Under torchrun the trained networks are wrapped in DDP, or with `parallel` "fsdp" the
  transformer is sharded by FSDP2 (engine.train.fsdp); only rank 0 writes.
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

from engine.checkpoint import (
    CheckpointInfo,
    LoadedModel,
    check_checkpoint_target,
    load_model,
)
from engine.errors import InputError
from engine.limits import check_number
from engine.model.distributed import Processes, start_processes
from engine.model.transformer_condnet import CondNetTransformer
from engine.paths import protected_reason
from engine.pipelines.pipeline_tryon import TryOnPipeline
from engine.progress import Progress
from engine.train import fsdp
from engine.train.config import Stage, TrainConfig
from engine.train.data import TrainingExample, open_dataset
from engine.train.flow import Draw, Encoded, Encoder, FlowBatch, draw
from engine.train.curves import log_to_tensorboard, write_curves
from engine.train.state import (
    METRICS_FILE,
    RUN_LOG,
    STATE_DIR,
    TrainingState,
    check_same_weights,
    keep_metrics_until,
    publish_checkpoint,
    read_training_state,
)
from engine.train.trainable import (
    lora_weights,
    plain_transformer,
    prepare_trainable,
    restore_lora,
)

Log = Callable[[str], None]
Metrics = dict[str, float]

MAX_MINUTES = 10**6  # a time budget, in minutes (about two years)
FLOW_STREAM, ORDER_STREAM, DISTILL_STREAM = 0, 1, 2  # the seeded random streams (see the rules)


def train(make_trainer: Callable[[Processes], "Trainer"], data: Path | str, output: Path, resume: bool,
          progress: Progress | None, log: Log | None,
          check_target: Callable[[Path], None] = check_checkpoint_target, minutes: float | None = None) -> Path:
    """Check the output and the data, start the processes, run the trainer. Returns `output`.

    `progress(stage, steps done, total steps)` and `log(message)` are called on the main
    process only; `check_target` says whether a resumed `output` may be replaced; `minutes`
    (None: no limit) ends the run early, checkpointed, once that much time has passed.
    """
    check_minutes(minutes)
    output = Path(output)
    check_output(output, resume, check_target)
    if data != "synthetic" and not Path(data).is_dir():
        raise InputError("the training data must be a folder of sample folders, or 'synthetic'", data)
    processes = start_processes()
    try:
        trainer = make_trainer(processes)
        trainer.run(progress if processes.is_main else None, log if processes.is_main else None, minutes)
    finally:
        processes.close()
    return output


def check_minutes(minutes: float | None) -> None:
    """A run's time budget: None (no limit), or a number of minutes from 0 (one step) up."""
    if minutes is not None:
        check_number(minutes, "minutes", 0.0, MAX_MINUTES)


def stopped_notice(minutes: float, step: int, total: int) -> str:
    """What a run that its time budget stopped says."""
    return f"stopped after {minutes:g} minutes at step {step} of {total}: --resume goes on"


def resolve_bf16(mixed_precision: str, device: torch.device) -> tuple[bool, str | None]:
    """Whether a run trains under bf16 autocast, and a notice when "bf16" was asked for in vain.

    "auto": on CUDA only, so CPU runs stay fp32 and comparable everywhere. "bf16": on CUDA, and
    on CPUs with native bf16 arithmetic (AVX512-BF16, AMX), where it is about 1.5x faster.
    "no": never.
    """
    if mixed_precision == "no":
        return False, None
    if device.type == "cuda":
        return True, None
    if mixed_precision == "bf16":
        if device.type == "cpu" and cpu_has_native_bf16():
            return True, None
        return False, f"mixed_precision bf16: this {device.type} has no native bf16, training in fp32"
    return False, None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic natively (oneDNN's own test: AVX512-BF16 or AMX)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def mean_of(metrics: list[Metrics]) -> Metrics:
    """Each key's mean over the dicts that hold it, in order of first appearance."""
    keys = dict.fromkeys(key for entry in metrics for key in entry)
    return {key: float(np.mean([entry[key] for entry in metrics if key in entry])) for key in keys}


def check_output(output: Path, resume: bool, check_target: Callable[[Path], None] = check_checkpoint_target) -> None:
    """With `resume`, `output/` must hold a training state; without, it must be new or empty.

    A run killed before its first checkpoint leaves only its metrics (RUN_LOG), which may be replaced.
    The folder is replaced at every checkpoint, so it must never be `.`, `~` or `/`, and a
    resumed one must hold nothing but the checkpoint.
    """
    reason = protected_reason(output)
    if reason:
        raise InputError(f"{reason}; the output is replaced at every checkpoint: give a new folder", output)
    if resume:
        if not (output / STATE_DIR / "state.json").is_file():
            raise InputError(f"nothing to resume: no {STATE_DIR}/ here (start without resume)", output)
        check_target(output)
        return
    if output.exists() and not output.is_dir():
        raise InputError("the output must be a folder", output)
    if output.is_dir() and any(entry.name not in RUN_LOG for entry in output.iterdir()):
        raise InputError("already holds files: resume the run in it, or choose a new folder", output)


def check_sizes(config: TrainConfig, multiple: int) -> None:
    """Every stage size must be a multiple of the model's (VAE compression × patch size)."""
    for stage in config.stages:
        width, height = stage.size
        if width % multiple or height % multiple:
            raise InputError(f"stage '{stage.name}': size {width}x{height} is not a multiple of {multiple}, "
                             "as this model needs (VAE compression × patch size)")


@functools.lru_cache(maxsize=4)
def epoch_order(seed: int, stage_index: int, epoch: int, count: int) -> np.ndarray:
    """The shuffled dataset indices of one epoch of one stage."""
    return np.random.default_rng([seed, stage_index, ORDER_STREAM, epoch]).permutation(count)


def load_quietly(source: str | Path, device: torch.device | str = "cpu") -> LoadedModel:
    """`load_model` without the untrained-CondNet warning: training is what fixes that."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(str(source), device=device)


def predict_flow(model: torch.nn.Module, batch: FlowBatch) -> torch.Tensor:
    """The model's flow prediction for a batch of noisy examples."""
    return model(batch.noisy, batch.timestep, batch.text, conditions=batch.conditions, motion_latents=batch.motion,
                 return_dict=False)[0]


def synced(model: torch.nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """Around forward and backward: DDP averages gradients over processes only when `sync`."""
    if fsdp.is_sharded(model):
        fsdp.set_gradient_sync(model, sync)
        return contextlib.nullcontext()
    if sync or not isinstance(model, DistributedDataParallel):
        return contextlib.nullcontext()
    return model.no_sync()


def gathered_copy(sharded: CondNetTransformer, weights: dict[str, torch.Tensor]) -> CondNetTransformer:
    """A plain transformer of `sharded`'s config holding the gathered `weights` (built on the meta device:
    no second random initialisation of billions of weights)."""
    with torch.device("meta"):
        copy = type(sharded).from_config(sharded.config)
    copy.load_state_dict(weights, assign=True)
    return copy.eval()


class Trainer:
    """The state of one run: models, optimizer, step counter, and the current stage.

    Subclasses implement `trainable_groups`, `optimizer_step` and `checkpoint_info`.
    """

    def __init__(self, data: Path | str, source: str, output: Path, config: TrainConfig, resume: bool,
                 processes: Processes) -> None:
        self.data, self.source, self.output, self.config = data, source, output, config
        self.resume = resume
        self.processes = processes
        self.device = processes.device
        self.notices: list[str] = []  # told through `log` when the run starts
        loaded = load_quietly(self.starting_checkpoint(), self.device)
        self.check_loaded(loaded)
        self.pipeline: TryOnPipeline = loaded.pipeline
        self.tiny_decoder = loaded.tiny_decoder  # the VAE does not learn here: its tiny decoder stays valid
        self.preset = loaded.info.preset
        check_sizes(config, self.pipeline.size_multiple)
        self.shift = config.timestep_shift or float(self.pipeline.scheduler.config.shift)
        self.bf16 = self.uses_bf16()
        for module in (self.pipeline.vae, self.pipeline.text_encoder):
            module.requires_grad_(False)
            module.eval()

        groups = self.trainable_groups()
        self.fsdp = config.parallel == "fsdp" and processes.distributed
        if self.fsdp:
            groups = self.shard(groups)
        self.names = [name for group in groups for name, _ in group]
        self.params = [param for group in groups for _, param in group]
        self.optimizer = torch.optim.AdamW([{"params": [param for _, param in group]} for group in groups],
                                           lr=config.stages[0].lr, weight_decay=config.weight_decay,
                                           betas=(config.adam_beta1, config.adam_beta2))
        self.step, self.seconds_before = 0, 0.0
        if resume:
            self.restore()
        self.model = self.distributed(self.pipeline.transformer)

        self.encoder = Encoder(self.pipeline, cache=config.cache_latents, autocast=self.autocast)
        self.stage_index = -1  # entered by the first step
        self.dataset: Sequence[TrainingExample] = ()
        self.last_metrics: Metrics = {}  # the last logged metrics

    # -- what a subclass says -------------------------------------------------------------------

    def starting_checkpoint(self) -> Path | str:
        """The checkpoint the run loads: the saved run when resuming, else the source."""
        return self.output if self.resume else self.source

    def open_dataset(self, stage: Stage) -> Sequence:
        """The examples of `stage` (engine.train.data.open_dataset)."""
        return open_dataset(self.data, stage, self.config)

    def check_loaded(self, loaded: LoadedModel) -> None:
        """Refuse a checkpoint this trainer cannot start from (InputError); any by default."""

    def trainable_groups(self) -> list[list[tuple[str, torch.nn.Parameter]]]:
        """(name, parameter) of every trainable tensor, one list per network (optimizer group)."""
        raise NotImplementedError

    def optimizer_step(self, stage: Stage) -> Metrics:
        """One optimizer step at the current `self.step`; returns this process's metrics."""
        raise NotImplementedError

    def checkpoint_info(self, seconds: float) -> CheckpointInfo:
        raise NotImplementedError

    def stage_fields(self, stage: Stage) -> dict:
        """Extra fields of a metrics line about its stage."""
        return {}

    def set_learning_rate(self, stage: Stage) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = stage.lr

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors a resumed run needs beyond the checkpoint and the optimizer: LoRA adapters (whole;
        every process calls this, so a sharded tensor can be gathered)."""
        return lora_weights(self.pipeline.transformer)

    def restore_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if tensors:
            restore_lora(self.pipeline.transformer, tensors)

    # -- setup ----------------------------------------------------------------------------------

    def uses_bf16(self) -> bool:
        bf16, notice = resolve_bf16(self.config.mixed_precision, self.device)
        if notice:
            self.notices.append(notice)
        return bf16

    def prepare_transformer(self, transformer: CondNetTransformer, seed: int) -> list[tuple[str, torch.nn.Parameter]]:
        """Put a transformer in training mode; return its trainable parameters (config.trainable)."""
        transformer.train()
        if self.config.gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
        torch.manual_seed(seed)  # LoRA's A matrices
        return prepare_trainable(transformer, self.config.trainable, self.config.lora_rank)

    def shard(self, groups: list[list[tuple[str, torch.nn.Parameter]]]) -> list[list[tuple[str, torch.nn.Parameter]]]:
        """Shard the transformer with FSDP2; the same (name, parameter) groups, now of sharded parameters."""
        transformer = fsdp.shard_transformer(self.pipeline.transformer, self.processes, self.bf16)
        sharded = dict(transformer.named_parameters())
        return [[(name, sharded[name]) for name, _ in group] for group in groups]

    def distributed(self, module: torch.nn.Module) -> torch.nn.Module:
        """`module` itself (single process, or sharded by FSDP already), or wrapped in DDP under torchrun."""
        if not self.processes.distributed or fsdp.is_sharded(module):
            return module
        device_ids = [self.device] if self.device.type == "cuda" else None
        # Some parameters sit out some steps (no motion video: motion_embedding).
        return DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=True)

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def restore(self) -> None:
        """Continue the run saved in `output/`: state tensors, optimizer state, step counter."""
        state, optimizer_state, tensors = read_training_state(self.output / STATE_DIR)
        check_same_weights(state, self.config.trainable, self.names, self.output / STATE_DIR, "this config does")
        self.restore_tensors(tensors)
        if self.fsdp:
            fsdp.load_optimizer_state(self.pipeline.transformer, self.optimizer, optimizer_state, self.names)
        else:
            self.optimizer.load_state_dict(optimizer_state)
        self.step, self.seconds_before = state.step, state.seconds
        self.notices.append(f"resuming at step {state.step} of {self.config.total_steps}")

    # -- the loop -------------------------------------------------------------------------------

    def run(self, progress: Progress | None, log: Log | None, minutes: float | None = None) -> None:
        """Train to the last step, or until `minutes` have passed: then the steps so far are
        logged and checkpointed, and `resume` goes on from there."""
        if log:
            for notice in self.notices:
                log(notice)
        total = self.config.total_steps
        if self.processes.is_main:
            keep_metrics_until(self.output, self.step)
        started = time.perf_counter()
        window_start, window, window_examples = started, [], 0
        while self.step < total:
            stage = self.enter_stage(self.step)
            window.append(self.optimizer_step(stage))
            window_examples += self.examples_per_step(stage)
            self.step += 1
            if progress:
                progress(stage.name, self.step, total)
            out_of_time = self.step < total and self.out_of_time(started, minutes)
            if self.step % self.config.log_every == 0 or self.step == total or out_of_time:
                now = time.perf_counter()
                self.last_metrics = self.mean_metrics(window)
                self.write_metrics(stage, window_examples / (now - window_start), self.seconds_before + now - started)
                window_start, window, window_examples = now, [], 0
            if self.step % self.config.checkpoint_every == 0 or self.step == total or out_of_time:
                self.save(self.seconds_before + time.perf_counter() - started)
                if log:
                    log(f"step {self.step}: checkpoint written to {self.output}")
            if out_of_time:
                if log:
                    log(stopped_notice(minutes, self.step, total))
                break
        self.processes.barrier()

    def out_of_time(self, started: float, minutes: float | None) -> bool:
        """Whether this run's time budget is spent, on any process (so all stop at the same step)."""
        if minutes is None:
            return False
        return self.processes.mean(float(time.perf_counter() - started >= minutes * 60)) > 0

    def mean_metrics(self, window: list[Metrics]) -> Metrics:
        """Each metric's mean over the steps that returned it, then over processes."""
        return {key: self.processes.mean(value) for key, value in mean_of(window).items()}

    def enter_stage(self, step: int) -> Stage:
        """The stage of `step`; on entering it, its data and learning rate."""
        index, stage = self.config.stage_at(step)
        if index != self.stage_index:
            self.stage_index = index
            self.dataset = self.open_dataset(stage)
            self.encoder.forget_examples()
            self.set_learning_rate(stage)
        return stage

    def examples_per_step(self, stage: Stage) -> int:
        """Examples in one optimizer step, over all processes."""
        return stage.batch_size * self.config.grad_accum * self.processes.world_size

    def with_all_used(self, loss: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
        """Under FSDP, the loss plus a zero that every CondNet weight of `model` feeds (fsdp.used_by_all)."""
        return loss + fsdp.used_by_all(model) if fsdp.is_sharded(model) else loss

    def learn(self, model: torch.nn.Module, params: list[torch.nn.Parameter]) -> None:
        """After a step's backward passes: under FSDP the CondNet gradients no process had go back to None
        (as DDP leaves them); then `take_step(params)`."""
        if fsdp.is_sharded(model):
            fsdp.release(model)  # the module's parameters are its shards again, holding the reduced gradients
            fsdp.drop_unused_gradients(model)
        self.take_step(params)

    def take_step(self, params: list[torch.nn.Parameter]) -> None:
        """Clip the gradients of `params` to the config's max_grad_norm, step the optimizer, clear all gradients."""
        torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    # -- the example stream ---------------------------------------------------------------------

    def stream_position(self, stage: Stage, micro: int, slot: int) -> int:
        """Where an example sits in the stage's example stream (the same whatever the world size)."""
        batch = stage.batch_size
        micro_batches = (self.step - self.config.stage_start(self.stage_index)) * self.config.grad_accum + micro
        return (micro_batches * self.processes.world_size + self.processes.rank) * batch + slot

    def rng(self, position: int, stream: int) -> np.random.Generator:
        """The seeded generator of one random stream of the example at `position`."""
        return np.random.default_rng([self.config.seed, self.stage_index, stream, position])

    def example_index(self, position: int) -> int:
        """The dataset index of the example at `position` of the current stage's stream."""
        count = len(self.dataset)
        return int(epoch_order(self.config.seed, self.stage_index, position // count, count)[position % count])

    def encoded_example(self, position: int) -> Encoded:
        """The example at `position` of the current stage's stream, encoded, on the device."""
        return self.encoder.example(self.dataset, self.example_index(position)).to(self.device)

    def draw_for(self, position: int, encoded: Encoded) -> Draw:
        """The flow-matching choices for the example at `position`."""
        return draw(self.rng(position, FLOW_STREAM), self.config, self.shift, len(encoded.garments),
                    encoded.target.shape[2])

    @property
    def empty_prompt(self) -> torch.Tensor:
        return self.encoder.empty_prompt.to(self.device)

    # -- output ---------------------------------------------------------------------------------

    def write_metrics(self, stage: Stage, examples_per_s: float, seconds: float) -> None:
        if not self.processes.is_main:
            return
        line = {
            "step": self.step,
            "stage": stage.name,
            **self.stage_fields(stage),
            **{key: round(value, 6) for key, value in self.last_metrics.items()},
            "lr": self.optimizer.param_groups[0]["lr"],
            "examples_per_s": round(examples_per_s, 3),
            "seconds": round(seconds, 3),
        }
        self.output.mkdir(parents=True, exist_ok=True)
        with open(self.output / METRICS_FILE, "a", encoding="utf-8") as file:
            file.write(json.dumps(line) + "\n")
        write_curves(self.output)
        log_to_tensorboard(self.output, line)

    def save(self, seconds: float) -> None:
        pipe = self.pipeline
        optimizer: torch.optim.Optimizer | fsdp.FullOptimizerState = self.optimizer
        if self.fsdp:  # every process takes part in gathering the shards
            weights = fsdp.full_state_dict(pipe.transformer)
            optimizer = fsdp.FullOptimizerState(fsdp.full_optimizer_state(pipe.transformer, self.optimizer, self.names))
        tensors = self.state_tensors() if self.fsdp or self.processes.is_main else {}  # FSDP: all gather
        if not self.processes.is_main:
            return
        transformer = gathered_copy(pipe.transformer, weights) if self.fsdp else plain_transformer(pipe.transformer)
        to_save = TryOnPipeline(transformer=transformer, vae=pipe.vae,
                                text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, scheduler=pipe.scheduler,
                                max_text_tokens=pipe.max_text_tokens)
        state = TrainingState(step=self.step, seconds=seconds, trainable=self.config.trainable,
                              parameter_names=self.names)
        publish_checkpoint(to_save, self.output, self.checkpoint_info(seconds), state, optimizer, tensors,
                           self.tiny_decoder)

    def summary(self, seconds: float) -> dict:
        """The training summary both kinds of checkpoint carry."""
        return {
            "steps": self.step,
            "stages": [stage.name for stage in self.config.stages],
            "data": str(self.data),
            "seconds": round(seconds, 3),
            "world_size": self.processes.world_size,
            "config": self.config.to_dict(),
        }

