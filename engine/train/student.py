"""Streaming distillation: the teacher becomes a block-causal, few-step student (FashionChameleon §2).

The student starts as a copy of the teacher's weights and learns in two phases, each a list
of stages of the config (engine.train.student_config); the shared loop (engine.train.loop)
gives both the data stream, stages, checkpoints, metrics, resume and DDP.

1. Teacher forcing. Flow matching (engine.train.flow: one σ per example) under the
   block-causal in-context mask: the sequence is [conditions | chunk_1 | … | chunk_n];
   conditions attend among themselves; chunk i's noisy tokens attend to the conditions, the
   CLEAN ground-truth latents of the chunks before it (sink + `window` history chunks) and
   themselves. It runs on the streaming engine's own code path, the KV cache
   (engine.train.causal). With `block_noise` each chunk has its own noise level. Metric: `loss`.
2. DMD with self-rollout, one step:
   a. the student rolls each example out chunk by chunk from noise with its own few-step
      sampler, as TryOnStream does, recording gradients only in the denoising step
      each chunk ends on: the last, or with `random_exit` a step drawn per rollout, the same
      for all its chunks (Self-Forcing);
   b. on every `critic_ratio`-th DMD step the student learns: the clip x is re-noised to
      x_t (σ from [dmd_min_t, dmd_max_t], shifted), s_real = the frozen teacher with CFG,
      s_fake = the critic, and the DMD gradient g = (x0_fake − x0_real)/mean|x − x0_real|,
      reweighted per latent frame by A_i·f, A = softmax(−R/τ) of the frame-quality scores of
      the decoded clip (GR-DMD; `reweight` false: plain DMD) is back-propagated through x
      (engine.train.distill);
   c. every step the critic (a copy of the teacher, trained with every weight the config
      makes trainable) learns flow matching on the step's rollouts, detached, each at a
      fresh σ and noise.
   Metrics: `critic_loss`; on student steps also `dmd_loss` (the surrogate, 0.5·mean g²),
   and with reweighting `reward` (mean R) and `weight_max` (max_i A_i·f; 1 = uniform).

With `ema` the student's trainable weights are averaged after each of its updates (from step
`ema_start`); checkpoints hold the average, `training_state/` the live weights (`live.<name>`).

The student and the critic are two parameter groups of one optimizer (the stage's lr, and
`critic_lr`); the teacher never learns. Checkpoints are kind "student" (load_model reads
them; TryOnStream samples them) with the training summary; `training_state/` also
holds the critic's trainable weights (as `critic.<name>` tensors, once DMD has begun).
Every random draw of a DMD step comes from the example's own seeded stream.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from engine.checkpoint import PRESETS, CheckpointInfo, LoadedModel
from engine.errors import InputError
from engine.model.distributed import Processes
from engine.model.transformer_condnet import CondNetTransformer
from engine.train import fsdp
from engine.train.causal import ChunkedClip, chunk_spans, rollout, teacher_forcing_flow
from engine.train.config import Stage
from engine.train.distill import (
    chunk_scores,
    dmd_gradient,
    dmd_loss,
    frame_weights,
    latent_frame_scores,
    predicted_x0,
    reweight,
)
from engine.train.flow import (
    Draw,
    Encoded,
    FlowBatch,
    flow_example,
    flow_loss,
    shift_sigma,
)
from engine.train.loop import (
    DISTILL_STREAM,
    Log,
    Metrics,
    Progress,
    Trainer,
    load_quietly,
    mean_of,
    predict_flow,
    synced,
    train,
)
from engine.train.scorer import FrameScorer, make_scorer
from engine.train.student_config import StudentConfig

CRITIC = "critic."  # prefix of the critic's tensors in the optimizer and the training state
LIVE = "live."  # prefix of the student's live weights in the training state, when the checkpoint holds its EMA


def train_student(
    teacher: str,
    data: Path | str,
    output: Path,
    config: StudentConfig,
    resume: bool = False,
    progress: Progress | None = None,
    log: Log | None = None,
    scorer: FrameScorer | None = None,
    minutes: float | None = None,
) -> Path:
    """Distill the teacher checkpoint `teacher` (folder or Hub id) into a streaming student in `output/`.

    `data` is a folder of sample folders, or "synthetic". With `resume` the run in `output/`
    is continued (the teacher is still needed for DMD). `scorer` replaces the config's frame
    scorer (GR-DMD's R). `progress(stage, steps done, total)` and `log(message)` are called
    on the main process only; `minutes` ends the run early, checkpointed for `resume`, once
    that much time has passed. Returns `output`.
    """
    def make(processes: Processes) -> StudentTrainer:
        return StudentTrainer(data, teacher, Path(output), config, resume, processes, scorer)

    return train(make, data, output, resume, progress, log, minutes=minutes)


@dataclass(frozen=True)
class DistillDraw:
    """The random choices of one example in a DMD step, drawn in this order from its stream."""

    rollout_seed: int  # the rollout's noise
    dmd_sigma: float  # the re-noising of the clip for s_real and s_fake
    dmd_seed: int
    critic_sigma: float  # the critic's flow-matching example on the clip
    critic_seed: int
    exit_step: int | None = None  # the rollout's random exit (config.random_exit), else None: the last step


def distill_draw(rng: np.random.Generator, config: StudentConfig, shift: float) -> DistillDraw:
    """σ for DMD: u uniform in [dmd_min_t, dmd_max_t], shifted; σ for the critic: as in flow matching."""
    rollout_seed, dmd_seed, critic_seed = (int(seed) for seed in rng.integers(2**63, size=3))
    u_dmd, u_critic = rng.random(2)
    dmd_u = config.dmd_min_t + (config.dmd_max_t - config.dmd_min_t) * float(u_dmd)
    exit_step = int(rng.integers(config.steps_per_chunk)) if config.random_exit else None
    return DistillDraw(rollout_seed, shift_sigma(dmd_u, shift), dmd_seed, shift_sigma(float(u_critic), shift),
                       critic_seed, exit_step)


def block_sigmas(rng: np.random.Generator, frames: int, chunk_frames: int, shift: float) -> tuple[float, ...]:
    """One σ per latent frame: each chunk's own, drawn as flow matching draws one (u uniform, shifted)."""
    spans = chunk_spans(frames, chunk_frames)
    drawn = [shift_sigma(float(u), shift) for u in rng.random(len(spans))]
    return tuple(sigma for span, sigma in zip(spans, drawn) for _ in range(span.stop - span.start))


@dataclass
class Sample:
    """One example's generated clip (detached) and what it was conditioned on."""

    encoded: Encoded
    choice: Draw
    choices: DistillDraw
    clip: torch.Tensor


class StudentTrainer(Trainer):
    """One distillation run (`source` is the teacher checkpoint): student and critic (trained), teacher
    (frozen), optimizer, step, stage."""

    config: StudentConfig

    def __init__(self, data: Path | str, teacher: str, output: Path, config: StudentConfig, resume: bool,
                 processes: Processes, scorer: FrameScorer | None = None) -> None:
        self.teacher: CondNetTransformer | None = None  # frozen; DMD only
        self.critic: CondNetTransformer | None = None  # DMD only
        self.ema: list[torch.Tensor] | None = None  # the average of the student's trainable weights, once kept
        self.live: list[torch.Tensor] = []  # while a checkpoint holding the EMA is written: the live weights
        super().__init__(data, teacher, output, config, resume, processes)
        self.critic_model = None if self.critic is None else self.distributed(self.critic)
        self.scheduler = copy.deepcopy(self.pipeline.scheduler)  # rollouts must not move the pipeline's
        preset_guidance = PRESETS[self.preset].default_guidance
        self.guidance = preset_guidance if config.guidance is None else config.guidance
        self.negative_text = self.encoder.prompt(config.negative_prompt)  # the guidance's unconditional text
        self.scorer = scorer
        if scorer is None and config.has_dmd and config.reweight:
            self.scorer = make_scorer(config.scorer, config.aesthetic_weights, self.notices.append)

    # -- models ---------------------------------------------------------------------------------

    def check_loaded(self, loaded: LoadedModel) -> None:
        if not self.resume:
            check_teacher(loaded, self.source)
        if self.config.gradient_checkpointing:
            check_recomputable(self.config, loaded.pipeline.vae.config.scale_factor_temporal)

    def trainable_groups(self) -> list[list[tuple[str, torch.nn.Parameter]]]:
        """The student's trainable weights; with DMD stages, also the critic's (made before any LoRA)."""
        if self.config.has_dmd:
            self.teacher = self.frozen_teacher()
            self.critic = copy.deepcopy(self.teacher)
        groups = [self.prepare_transformer(self.pipeline.transformer, seed=self.config.seed)]
        if self.critic is not None:
            critic = self.prepare_transformer(self.critic, seed=self.config.seed + 1)
            groups.append([(CRITIC + name, param) for name, param in critic])
        return groups

    def shard(self, groups: list[list[tuple[str, torch.nn.Parameter]]]) -> list[list[tuple[str, torch.nn.Parameter]]]:
        """FSDP2 over the student, the critic and the frozen teacher; the same groups, of sharded parameters.

        Without activation checkpointing the student is kept gathered through each step (engine.train.fsdp);
        with it, every block is run again, gathered again, in the backward pass."""
        student = fsdp.shard_transformer(self.pipeline.transformer, self.processes, self.bf16,
                                         keep_gathered=not self.config.gradient_checkpointing)
        sharded = dict(student.named_parameters())
        if self.critic is not None:
            fsdp.shard_transformer(self.teacher, self.processes, self.bf16)
            critic = fsdp.shard_transformer(self.critic, self.processes, self.bf16)
            sharded.update({CRITIC + name: param for name, param in critic.named_parameters()})
        return [[(name, sharded[name]) for name, _ in group] for group in groups]

    @property
    def student_params(self) -> list[torch.nn.Parameter]:
        return self.optimizer.param_groups[0]["params"]

    @property
    def critic_params(self) -> list[torch.nn.Parameter]:
        return self.optimizer.param_groups[1]["params"]

    def frozen_teacher(self) -> CondNetTransformer:
        """A copy of the loaded teacher (a new run), or the teacher checkpoint read again (resume)."""
        if self.resume:
            loaded = load_quietly(self.source, self.device)
            check_teacher(loaded, self.source)
            teacher = loaded.pipeline.transformer
        else:
            teacher = copy.deepcopy(self.pipeline.transformer)
        return teacher.requires_grad_(False).eval()

    def set_learning_rate(self, stage: Stage) -> None:
        super().set_learning_rate(stage)
        if self.critic is not None and self.config.critic_lr is not None:
            self.optimizer.param_groups[1]["lr"] = self.config.critic_lr

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Besides LoRA adapters, the critic's trainable weights once it has learned (DMD has begun), and
        with an EMA the student's live weights (the checkpoint holds the average)."""
        tensors = super().state_tensors()
        if self.critic is not None and self.step > self.config.dmd_start:
            names = [name for name in self.names if name.startswith(CRITIC)]
            tensors.update({name: fsdp.whole(param) for name, param in zip(names, self.critic_params)})
        if self.ema is not None:
            tensors.update({LIVE + name: fsdp.whole(value) for name, value in zip(self.names, self.live)})
        return tensors

    def restore_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """The checkpoint loaded holds the EMA when there is one: it is taken as the average, then the live
        weights are put back."""
        critic = {name.removeprefix(CRITIC): value for name, value in tensors.items() if name.startswith(CRITIC)}
        live = {name.removeprefix(LIVE): value for name, value in tensors.items() if name.startswith(LIVE)}
        super().restore_tensors({name: value for name, value in tensors.items()
                                 if not name.startswith((CRITIC, LIVE))})
        with torch.no_grad():
            if critic:
                params = dict(self.critic.named_parameters())
                for name, value in critic.items():
                    fsdp.copy_whole(params[name], value)
            if live:
                self.ema = [param.detach().clone() for param in self.student_params]
                for name, param in zip(self.names, self.student_params):
                    fsdp.copy_whole(param, live[name])

    # -- the generator's EMA --------------------------------------------------------------------

    def student_update(self) -> None:
        """Step the student's weights, then fold them into the EMA (from `ema_start` on)."""
        self.learn(self.pipeline.transformer, self.student_params)
        decay = self.config.ema
        if decay is None or self.step < self.config.ema_start:
            return
        with torch.no_grad():
            if self.ema is None:
                self.ema = [param.detach().clone() for param in self.student_params]
            else:
                for average, param in zip(self.ema, self.student_params):  # (no foreach ops on FSDP's shards)
                    average.lerp_(param.detach(), 1.0 - decay)

    def save(self, seconds: float) -> None:
        """The checkpoint's student is the EMA (when kept); the live weights go to the training state."""
        if self.ema is None:
            return super().save(seconds)
        params = self.student_params
        with torch.no_grad():
            self.live = [param.detach().clone() for param in params]
            for param, average in zip(params, self.ema):
                param.copy_(average)
        try:
            super().save(seconds)
        finally:
            with torch.no_grad():
                for param, live in zip(params, self.live):
                    param.copy_(live)
            self.live = []

    # -- one step -------------------------------------------------------------------------------

    def optimizer_step(self, stage: Stage) -> Metrics:
        if self.config.phases[self.stage_index] == "teacher_forcing":
            return self.teacher_forcing_step(stage)
        return self.dmd_step(stage)

    def positions(self, stage: Stage) -> Iterator[tuple[int, bool]]:
        """(stream position, is the step's last example on this process) of each example of the step."""
        count = stage.batch_size * self.config.grad_accum
        for number in range(count):
            micro, slot = divmod(number, stage.batch_size)
            yield self.stream_position(stage, micro, slot), number == count - 1

    def chunked(self, batch: FlowBatch) -> ChunkedClip:
        """The student's chunked passes for one example's conditioning."""
        return ChunkedClip(self.model, self.pipeline.transformer, text=batch.text, conditions=batch.conditions,
                           motion=batch.motion, latent_size=tuple(batch.noisy.shape[-2:]),
                           chunk_frames=self.config.chunk_frames, window=self.config.window)

    def teacher_forcing_step(self, stage: Stage) -> Metrics:
        """Phase 1: flow matching of every chunk given the clean ground truth before it; mean loss."""
        per_process = stage.batch_size * self.config.grad_accum
        loss_sum = 0.0
        for position, last in self.positions(stage):
            encoded = self.encoded_example(position)
            choice = self.draw_for(position, encoded)
            if self.config.block_noise:
                frames = encoded.target.shape[2]
                choice = replace(choice, frame_sigmas=block_sigmas(self.rng(position, DISTILL_STREAM), frames,
                                                                   self.config.chunk_frames, self.shift))
            batch = flow_example(encoded, choice, self.empty_prompt)
            with synced(self.model, last):
                with self.autocast():
                    flow = teacher_forcing_flow(self.chunked(batch), batch.noisy, batch.timestep, encoded.target)
                loss = flow_loss(flow, batch).sum()
                (self.with_all_used(loss, self.model) / per_process).backward()
            loss_sum += loss.item()
        self.student_update()
        return {"loss": loss_sum / per_process}

    def dmd_step(self, stage: Stage) -> Metrics:
        """Phase 2: rollouts; on every `critic_ratio`-th step a (GR-)DMD student update; a critic update."""
        learns = (self.step - self.config.dmd_start) % self.config.critic_ratio == 0
        per_process = stage.batch_size * self.config.grad_accum
        samples, student_metrics = [], []
        for position, last in self.positions(stage):
            encoded = self.encoded_example(position)
            choice = self.draw_for(position, encoded)
            choices = distill_draw(self.rng(position, DISTILL_STREAM), self.config, self.shift)
            batch = flow_example(encoded, choice, self.empty_prompt)
            with synced(self.model, last):
                with torch.set_grad_enabled(learns), self.autocast():
                    clip = rollout(self.chunked(batch), self.noise(encoded.target, choices.rollout_seed),
                                   self.scheduler, self.config.steps_per_chunk, grad=learns,
                                   sampler=self.config.sampler, exit_step=choices.exit_step,
                                   renoise_generator=torch.Generator().manual_seed(choices.rollout_seed + 1))
                if learns:
                    student_metrics.append(self.distribution_matching(clip, encoded, choice, choices, per_process))
            samples.append(Sample(encoded, choice, choices, clip.detach()))
        if learns:
            self.student_update()
        return {"critic_loss": self.critic_step(samples, per_process), **mean_of(student_metrics)}

    def noise(self, like: torch.Tensor, seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(like.shape, generator=generator, dtype=torch.float32).to(like.device, like.dtype)

    def renoised(self, clip: torch.Tensor, encoded: Encoded, choice: Draw, sigma: float, seed: int) -> FlowBatch:
        """The clip as a flow-matching example at σ, conditioned as its rollout was (flow.flow_example)."""
        return flow_example(replace(encoded, target=clip), replace(choice, sigma=sigma, noise_seed=seed),
                            self.empty_prompt)

    def distribution_matching(self, clip: torch.Tensor, encoded: Encoded, choice: Draw, choices: DistillDraw,
                              per_process: int) -> Metrics:
        """Back-propagate the (reweighted) DMD gradient of one rollout into the student (engine.train.distill)."""
        noisy = self.renoised(clip.detach(), encoded, choice, choices.dmd_sigma, choices.dmd_seed)
        with torch.no_grad(), self.autocast():
            x0_real = predicted_x0(self.teacher, noisy, self.guidance, self.negative_text.to(self.device),
                                   self.config.guidance_keeps_garments)
            x0_fake = predicted_x0(self.critic, noisy)
        grad = dmd_gradient(clip.detach(), x0_real.float(), x0_fake.float())
        metrics = {}
        if self.config.reweight:
            scores = self.frame_scores(clip)
            weights = frame_weights(scores, self.config.tau)
            grad = reweight(grad, weights)
            metrics = {"reward": scores.mean().item(), "weight_max": (weights.max() * len(weights)).item()}
        loss = dmd_loss(clip, grad)
        (self.with_all_used(loss, self.model) / per_process).backward()
        return {"dmd_loss": loss.item(), **metrics}

    def frame_scores(self, clip: torch.Tensor) -> torch.Tensor:
        """R per latent frame: the scorer on the decoded clip, averaged over each latent frame's video
        frames, then over each chunk (FashionChameleon's gr_dmd_ic.py)."""
        frames = self.pipeline.decode(clip.detach())
        temporal = self.pipeline.vae.config.scale_factor_temporal
        per_frame = latent_frame_scores(self.scorer(frames).float().cpu(), clip.shape[2], temporal)
        return chunk_scores(per_frame, self.config.chunk_frames)

    def critic_step(self, samples: list[Sample], per_process: int) -> float:
        """Flow matching of the critic on this step's rollouts (the generator's current samples); mean loss."""
        loss_sum = 0.0
        for number, sample in enumerate(samples):
            batch = self.renoised(sample.clip, sample.encoded, sample.choice, sample.choices.critic_sigma,
                                  sample.choices.critic_seed)
            with synced(self.critic_model, number == len(samples) - 1):
                with self.autocast():
                    predicted = predict_flow(self.critic_model, batch)
                loss = flow_loss(predicted, batch).sum()
                (self.with_all_used(loss, self.critic_model) / per_process).backward()
            loss_sum += loss.item()
        self.learn(self.critic_model, self.critic_params)
        return loss_sum / per_process

    # -- output ---------------------------------------------------------------------------------

    def stage_fields(self, stage: Stage) -> dict:
        return {"phase": self.config.phases[self.stage_index]}

    def checkpoint_info(self, seconds: float) -> CheckpointInfo:
        config = self.config
        return CheckpointInfo(kind="student", preset=self.preset, condnet_trained=True, training={
            **self.summary(seconds),
            "teacher": self.source,
            "phases": [{"name": stage.name, "phase": phase, "steps": stage.steps}
                       for stage, phase in zip(config.stages, config.phases)],
            "metrics": self.last_metrics,
            "chunk_frames": config.chunk_frames,
            "steps_per_chunk": config.steps_per_chunk,
            "window": filled_window(config, self.pipeline.vae.config.scale_factor_temporal),
            "sampler": config.sampler,
            "guidance": self.guidance,
            "reweight": config.reweight,
            "tau": config.tau,
            "scorer": None if self.scorer is None else self.scorer.name,
        })


def clip_chunks(stage: Stage, chunk_frames: int, temporal_factor: int) -> int:
    """Chunks in one training clip of `stage`."""
    return len(chunk_spans((stage.num_frames - 1) // temporal_factor + 1, chunk_frames))


def filled_window(config: StudentConfig, temporal_factor: int) -> int:
    """The history chunks training filled, so the window the student streams with: a clip of n chunks
    puts its first in the sink and never caches its last, so at most n − 2 (and `window`); 0 when
    its clips are two chunks: the student then streams with the sink alone, as it was trained."""
    longest = max(clip_chunks(stage, config.chunk_frames, temporal_factor) for stage in config.stages)
    return max(0, min(config.window, longest - 2))


def check_recomputable(config: StudentConfig, temporal_factor: int) -> None:
    """With activation checkpointing every chunk of a clip but the last must stay cached (sink + window)
    until the backward pass recomputes the chunks that attended to it."""
    for stage in config.stages:
        chunks = clip_chunks(stage, config.chunk_frames, temporal_factor)
        if chunks - 1 > 1 + config.window:
            raise InputError(f"stage '{stage.name}': gradient_checkpointing needs every chunk but the last of a "
                             f"clip in the KV cache; its {chunks} chunks need a window of at least {chunks - 2}, "
                             f"not {config.window}")


def check_teacher(loaded: LoadedModel, source: str) -> None:
    """Distillation starts from a (bidirectional) teacher checkpoint."""
    if loaded.info.kind != "teacher":
        raise InputError(f"--teacher must be a teacher checkpoint, not a {loaded.info.kind}", source)
