"""Fine-tune a checkpoint's VAE (AutoencoderKLWan) as an autoencoder on synthetic clips.

The demo model's VAE starts random, and the transformer can never look better than the
VAE reconstructs, so the VAE is trained first. Rules:
- Step i reconstructs `batch_size` samples (seeds cycled in order): their target clips, and
  their first garments' product shots (garments go through the same VAE as the video).
  Batching is nearly free on a CPU, where the VAE's per-frame bookkeeping dominates small sizes.
- Loss: L1 between reconstruction and input (pixels in [-1, 1]) + `kl_weight` · KL to N(0, 1)
  (per element), with the latent sampled from the posterior. The KL term sets how noisy the
  posterior stays, and so how many bits each latent carries: too strong, and it caps the PSNR.
- AdamW with cosine decay to a tenth of `lr`, gradients clipped to norm 1.0; the rest of the
  checkpoint is kept as it is. `mixed_precision` as the other trainings (bf16 autocast, fp32 weights).
- With `checkpoint_every`, `output/` holds the whole checkpoint and its `training_state/` every
  that many steps; `resume` continues from there. Step i draws the same clips and noise
  whether or not the run was resumed before it.
- After training, the latent statistics in the VAE config (latents_mean, latents_std) are
  measured again on the training clips, so the transformer keeps seeing unit-scale latents.
- `decoder_only` trains the decoder side alone (post_quant_conv and decoder): the encoder, and so
  the latents and their statistics that a transformer was trained on, stay exactly as they were,
  and every model trained on this VAE decodes through the better decoder as it is.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLWan

from engine.checkpoint import check_checkpoint_target, save_checkpoint
from engine.errors import InputError
from engine.limits import check_frames_fit_in_memory, check_int, check_number
from engine.pipelines.pipeline_tryon import frames_to_pixels
from engine.progress import Progress
from engine.synth import make_sample
from engine.train.curves import log_to_tensorboard, write_curves
from engine.train.config import check_mixed_precision
from engine.train.loop import Log, check_minutes, check_output, load_quietly, resolve_bf16, stopped_notice
from engine.train.state import (
    METRICS_FILE,
    STATE_DIR,
    TrainingState,
    check_same_weights,
    keep_metrics_until,
    publish_checkpoint,
    read_training_state,
)

MAX_GRAD_NORM = 1.0
STATS_CLIPS = 16  # training clips the latent statistics are measured on
FPS = 8.0
MAX_TRAIN_STEPS = 10**7
MAX_BATCH_SIZE = 1024
MAX_CLIP_FRAMES = 257
MAX_EXAMPLES = 100_003  # the synthetic world's samples per seed


@dataclass(frozen=True)
class VaeTraining:
    """One fine-tuning run: `steps` optimizer steps, each on `batch_size` synthetic clips of
    `num_frames` frames at `size` (W, H) and as many stills, cycling through the first `examples`
    synthetic samples; AdamW at `lr`; the checkpoint and its training state saved every
    `checkpoint_every` steps (0: only at the end)."""

    steps: int = 1500
    size: tuple[int, int] = (96, 160)
    num_frames: int = 9
    lr: float = 1e-3
    examples: int = 1000
    batch_size: int = 4
    checkpoint_every: int = 0
    mixed_precision: str = "auto"  # bf16 autocast: engine.train.loop.resolve_bf16
    kl_weight: float = 1e-4
    decoder_only: bool = False

    @property
    def seeds(self) -> range:
        return range(self.examples)

    def check(self) -> None:
        """The ranges, before any model is loaded."""
        check_int(self.steps, "steps", 1, MAX_TRAIN_STEPS)
        check_int(self.batch_size, "batch_size", 1, MAX_BATCH_SIZE)
        check_int(self.num_frames, "frames", 1, MAX_CLIP_FRAMES)
        check_int(self.examples, "examples", 1, MAX_EXAMPLES)
        check_number(self.lr, "lr", 1e-12, 1.0)
        check_int(self.checkpoint_every, "checkpoint_every", 0, MAX_TRAIN_STEPS)
        check_mixed_precision(self.mixed_precision)
        check_number(self.kl_weight, "kl_weight", 0.0, 1.0)
        check_frames_fit_in_memory(2 * self.batch_size * self.num_frames, self.size[0], self.size[1], "train vae")

    def check_for(self, vae: AutoencoderKLWan) -> None:
        """What the VAE's compression asks of the size and the frame count."""
        factor = vae.config.scale_factor_spatial
        if self.size[0] % factor or self.size[1] % factor:
            raise InputError(f"size {self.size[0]}x{self.size[1]} must be a multiple of {factor} (the VAE's compression)")
        if (self.num_frames - 1) % vae.config.scale_factor_temporal:
            raise InputError(f"num_frames must be 4k+1 (1, 5, 9, ...), not {self.num_frames}")


@torch.no_grad()
def reconstruction_error(vae: AutoencoderKLWan, frames: np.ndarray) -> float:
    """Mean absolute error, in [0, 2] pixel units, of encoding (posterior mode) then decoding."""
    pixels = frames_to_pixels(frames, vae.device)
    decoded = vae.decode(vae.encode(pixels).latent_dist.mode()).sample
    return (decoded - pixels).abs().mean().item()


def train_vae(base: str, output: Path, settings: VaeTraining, progress: Progress | None = None,
              resume: bool = False, minutes: float | None = None, log: Log | None = None) -> Path:
    """Fine-tune the VAE of checkpoint `base` and save the whole checkpoint to `output` (replaced).

    With `resume`, `base` is ignored and the run saved in `output` (by `checkpoint_every`, or
    when `minutes` had passed and the run stopped early) goes on.
    """
    started = time.perf_counter()
    settings.check()
    check_minutes(minutes)
    steps, size, num_frames, lr = settings.steps, settings.size, settings.num_frames, settings.lr
    batch_size, seeds, checkpoint_every = settings.batch_size, settings.seeds, settings.checkpoint_every
    output = Path(output)
    checkpointing = resume or checkpoint_every or minutes is not None  # the run keeps its training state
    if checkpointing:
        check_output(output, resume)
    else:
        check_checkpoint_target(output)  # before the minutes of training, not after
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loaded = load_quietly(output if resume else base, device)
    pipeline = loaded.pipeline
    vae = pipeline.vae
    settings.check_for(vae)
    bf16, precision_notice = resolve_bf16(settings.mixed_precision, device)
    if precision_notice and log:
        log(precision_notice)

    trained = trainable_part(vae, settings.decoder_only)
    names = [name for name, parameter in vae.named_parameters() if parameter.requires_grad]
    kind = "vae-decoder" if settings.decoder_only else "vae"
    optimizer = torch.optim.AdamW(trained.parameters(), lr=lr)
    done, seconds_before = 0, 0.0
    if resume:
        state, optimizer_state, _ = read_training_state(output / STATE_DIR)
        check_same_weights(state, kind, names, output / STATE_DIR, "this run would",
                           ": --decoder-only must be as the run began")
        optimizer.load_state_dict(optimizer_state)
        done, seconds_before = state.step, state.seconds
        keep_metrics_until(output, done)
    losses: list[float] = []

    def publish(step: int) -> None:
        seconds = seconds_before + time.perf_counter() - started
        info = with_vae_record(loaded.info, settings, seconds)
        publish_checkpoint(pipeline, output, info, TrainingState(step, seconds, kind, names), optimizer, {})

    for step in range(done, steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(lr, step, steps)
        samples = [make_sample(seeds[(step * batch_size + i) % len(seeds)], size=size, num_frames=num_frames, fps=FPS)
                   for i in range(batch_size)]
        clips = torch.cat([frames_to_pixels(sample.target, device) for sample in samples])
        stills = torch.cat([frames_to_pixels(next(iter(sample.garments.values()))[None], device) for sample in samples])
        generator = torch.Generator(device=device).manual_seed(step)
        for pixels in (clips, stills):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = autoencoder_loss(vae, pixels, generator, settings.kl_weight, settings.decoder_only) / 2
            loss.backward()
            losses.append(loss.item())
        torch.nn.utils.clip_grad_norm_(trained.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if progress:
            progress("vae", step + 1, steps)
        out_of_time = minutes is not None and time.perf_counter() - started >= minutes * 60
        if step + 1 < steps and (out_of_time or checkpoint_every and (step + 1) % checkpoint_every == 0):
            publish(step + 1)
            line = {"step": step + 1, "loss": float(np.mean(losses))}
            with open(output / METRICS_FILE, "a") as metrics:
                metrics.write(json.dumps(line) + "\n")
            write_curves(output)
            log_to_tensorboard(output, line)
            losses.clear()
            if out_of_time:
                if log:
                    log(stopped_notice(minutes, step + 1, steps))
                return output
    vae.eval()
    vae.requires_grad_(False)
    if not settings.decoder_only:  # a frozen encoder's latents keep the statistics they had
        set_latent_statistics(vae, [make_sample(seed, size=size, num_frames=num_frames, fps=FPS).target
                                    for seed in seeds[:STATS_CLIPS]])
    if checkpointing:  # like the teacher's runs: the finished run keeps its state
        publish(steps)
        return output
    seconds = time.perf_counter() - started
    return save_checkpoint(pipeline, output, with_vae_record(loaded.info, settings, seconds))


def trainable_part(vae: AutoencoderKLWan, decoder_only: bool) -> torch.nn.Module:
    """Put `vae` in training mode with only the part that trains requiring gradients; that part."""
    vae.train()
    if not decoder_only:
        vae.requires_grad_(True)
        return vae
    vae.requires_grad_(False)
    decoder_side = torch.nn.ModuleList([vae.post_quant_conv, vae.decoder])
    decoder_side.requires_grad_(True)
    return decoder_side


def cosine_lr(lr: float, step: int, steps: int) -> float:
    """The learning rate of `step`: cosine decay from `lr` to a tenth of it over `steps`."""
    floor = lr / 10
    return floor + (lr - floor) * (1 + math.cos(math.pi * step / steps)) / 2


def with_vae_record(info, settings: VaeTraining, seconds: float):
    """`info` with this VAE run recorded in its training summary."""
    info.training = {**info.training, "vae": {
        "steps": settings.steps, "batch_size": settings.batch_size, "size": list(settings.size),
        "num_frames": settings.num_frames, "lr": settings.lr, "kl_weight": settings.kl_weight,
        "decoder_only": settings.decoder_only,
        "seeds": [0, settings.examples],
        "seconds": round(seconds, 3),
    }}
    return info


def autoencoder_loss(vae: AutoencoderKLWan, pixels: torch.Tensor, generator: torch.Generator,
                     kl_weight: float, decoder_only: bool = False) -> torch.Tensor:
    """L1 of the reconstruction of a posterior sample + `kl_weight` · KL; with `decoder_only`, the
    reconstruction alone (the frozen encoder runs without gradients; its KL could not change)."""
    with torch.set_grad_enabled(torch.is_grad_enabled() and not decoder_only):
        posterior = vae.encode(pixels).latent_dist
        latents = posterior.sample(generator)
    reconstruction = (vae.decode(latents).sample - pixels).abs().mean()
    if decoder_only:
        return reconstruction
    kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).mean()
    return reconstruction + kl_weight * kl


@torch.no_grad()
def set_latent_statistics(vae: AutoencoderKLWan, clips: list[np.ndarray]) -> None:
    """Write the per-channel mean and std of the clips' latents into the VAE config."""
    latents = torch.cat([vae.encode(frames_to_pixels(clip, vae.device)).latent_dist.mode() for clip in clips], dim=2)
    channels = latents.transpose(0, 1).flatten(1)
    vae.register_to_config(latents_mean=channels.mean(1).tolist(), latents_std=channels.std(1).clamp_min(1e-4).tolist())
