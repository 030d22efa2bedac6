"""Fine-tune a checkpoint's VAE (AutoencoderKLWan) as an autoencoder on synthetic clips.

The demo model's VAE starts random, and the transformer can never look better than the
VAE reconstructs, so the VAE is trained first. Rules:
- Step i reconstructs `batch_size` samples (seeds cycled in order): their target clips, and
  their first garments' product shots (garments go through the same VAE as the video).
  Batching is nearly free on a CPU, where the VAE's per-frame bookkeeping dominates small sizes.
- Loss: L1 between reconstruction and input (pixels in [-1, 1]) + KL_WEIGHT · KL to N(0, 1)
  (per element), with the latent sampled from the posterior.
- AdamW with cosine decay to a tenth of `lr`, gradients clipped to norm 1.0; the rest of the
  checkpoint is kept as it is.
- With `checkpoint_every`, `output/` holds the whole checkpoint and its `training_state/` every
  that many steps; `resume` continues from there. Step i draws the same clips and noise
  whether or not the run was resumed before it.
- After training, the latent statistics in the VAE config (latents_mean, latents_std) are
  measured again on the training clips, so the transformer keeps seeing unit-scale latents.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLWan

from engine.checkpoint import check_checkpoint_target, save_checkpoint
from engine.errors import InputError
from engine.pipelines.pipeline_tryon import frames_to_pixels
from engine.progress import Progress
from engine.synth import make_sample
from engine.train.loop import check_output, load_quietly
from engine.train.state import (
    METRICS_FILE,
    STATE_DIR,
    TrainingState,
    keep_metrics_until,
    publish_checkpoint,
    read_training_state,
)

KL_WEIGHT = 1e-4
MAX_GRAD_NORM = 1.0
STATS_CLIPS = 16  # training clips the latent statistics are measured on
FPS = 8.0



@torch.no_grad()
def reconstruction_error(vae: AutoencoderKLWan, frames: np.ndarray) -> float:
    """Mean absolute error, in [0, 2] pixel units, of encoding (posterior mode) then decoding."""
    pixels = frames_to_pixels(frames, vae.device)
    decoded = vae.decode(vae.encode(pixels).latent_dist.mode()).sample
    return (decoded - pixels).abs().mean().item()


def train_vae(
    base: str,
    output: Path,
    steps: int,
    size: tuple[int, int],
    num_frames: int,
    lr: float,
    seeds: range,
    batch_size: int = 1,
    progress: Progress | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
) -> Path:
    """Fine-tune the VAE of checkpoint `base` and save the whole checkpoint to `output` (replaced).

    `size` (W, H) must be multiples of the VAE's spatial factor and `num_frames` 4k+1. With
    `resume`, `base` is ignored and the run saved in `output` (by `checkpoint_every`) goes on.
    """
    started = time.perf_counter()
    output = Path(output)
    if resume or checkpoint_every:
        check_output(output, resume)
    else:
        check_checkpoint_target(output)  # before the minutes of training, not after
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loaded = load_quietly(output if resume else base, device)
    pipeline = loaded.pipeline
    vae = pipeline.vae
    check_arguments(vae, steps, size, num_frames, lr, seeds, batch_size)

    vae.train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr)
    done, seconds_before = 0, 0.0
    if resume:
        state, optimizer_state, _ = read_training_state(output / STATE_DIR)
        optimizer.load_state_dict(optimizer_state)
        done, seconds_before = state.step, state.seconds
        keep_metrics_until(output, done)
    losses: list[float] = []

    def publish(step: int) -> None:
        seconds = seconds_before + time.perf_counter() - started
        info = with_vae_record(loaded.info, steps, batch_size, size, num_frames, lr, seeds, seconds)
        names = [name for name, _ in vae.named_parameters()]
        publish_checkpoint(pipeline, output, info, TrainingState(step, seconds, "vae", names), optimizer, {})

    for step in range(done, steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(lr, step, steps)
        samples = [make_sample(seeds[(step * batch_size + i) % len(seeds)], size=size, num_frames=num_frames, fps=FPS)
                   for i in range(batch_size)]
        clips = torch.cat([frames_to_pixels(sample.target, device) for sample in samples])
        stills = torch.cat([frames_to_pixels(next(iter(sample.garments.values()))[None], device) for sample in samples])
        generator = torch.Generator(device=device).manual_seed(step)
        for pixels in (clips, stills):
            loss = autoencoder_loss(vae, pixels, generator) / 2
            loss.backward()
            losses.append(loss.item())
        torch.nn.utils.clip_grad_norm_(vae.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if progress:
            progress("vae", step + 1, steps)
        if checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            publish(step + 1)
            with open(output / METRICS_FILE, "a") as log:
                log.write(json.dumps({"step": step + 1, "loss": float(np.mean(losses))}) + "\n")
            losses.clear()
    vae.eval()
    vae.requires_grad_(False)
    set_latent_statistics(vae, [make_sample(seed, size=size, num_frames=num_frames, fps=FPS).target
                                for seed in seeds[:STATS_CLIPS]])
    if resume or checkpoint_every:  # like the teacher's runs: the finished run keeps its state
        publish(steps)
        return output
    seconds = time.perf_counter() - started
    return save_checkpoint(pipeline, output, with_vae_record(loaded.info, steps, batch_size, size, num_frames, lr,
                                                             seeds, seconds))


def cosine_lr(lr: float, step: int, steps: int) -> float:
    """The learning rate of `step`: cosine decay from `lr` to a tenth of it over `steps`."""
    floor = lr / 10
    return floor + (lr - floor) * (1 + math.cos(math.pi * step / steps)) / 2


def with_vae_record(info, steps: int, batch_size: int, size: tuple[int, int], num_frames: int, lr: float,
                    seeds: range, seconds: float):
    """`info` with this VAE run recorded in its training summary."""
    info.training = {**info.training, "vae": {
        "steps": steps, "batch_size": batch_size, "size": list(size), "num_frames": num_frames, "lr": lr,
        "seeds": [seeds.start, seeds.stop], "seconds": round(seconds, 3),
    }}
    return info


def autoencoder_loss(vae: AutoencoderKLWan, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    posterior = vae.encode(pixels).latent_dist
    decoded = vae.decode(posterior.sample(generator)).sample
    kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).mean()
    return (decoded - pixels).abs().mean() + KL_WEIGHT * kl


@torch.no_grad()
def set_latent_statistics(vae: AutoencoderKLWan, clips: list[np.ndarray]) -> None:
    """Write the per-channel mean and std of the clips' latents into the VAE config."""
    latents = torch.cat([vae.encode(frames_to_pixels(clip, vae.device)).latent_dist.mode() for clip in clips], dim=2)
    channels = latents.transpose(0, 1).flatten(1)
    vae.register_to_config(latents_mean=channels.mean(1).tolist(), latents_std=channels.std(1).clamp_min(1e-4).tolist())


def check_arguments(vae: AutoencoderKLWan, steps: int, size: tuple[int, int], num_frames: int, lr: float,
                    seeds: range, batch_size: int) -> None:
    factor = vae.config.scale_factor_spatial
    if steps < 1:
        raise InputError(f"steps must be at least 1, not {steps}")
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, not {batch_size}")
    if size[0] % factor or size[1] % factor:
        raise InputError(f"size {size[0]}x{size[1]} must be a multiple of {factor} (the VAE's compression)")
    if num_frames < 1 or (num_frames - 1) % vae.config.scale_factor_temporal:
        raise InputError(f"num_frames must be 4k+1 (1, 5, 9, ...), not {num_frames}")
    if not lr > 0:
        raise InputError(f"lr must be positive, not {lr}")
    if len(seeds) == 0:
        raise InputError("seeds must not be empty")
