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
- After training, the latent statistics in the VAE config (latents_mean, latents_std) are
  measured again on the training clips, so the transformer keeps seeing unit-scale latents.
"""

from __future__ import annotations

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
from engine.train.loop import load_quietly

KL_WEIGHT = 1e-4
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
    synthetic samples; AdamW at `lr`."""

    steps: int = 1500
    size: tuple[int, int] = (96, 160)
    num_frames: int = 9
    lr: float = 1e-3
    examples: int = 1000
    batch_size: int = 4

    def check(self) -> None:
        """The ranges, before any model is loaded."""
        check_int(self.steps, "steps", 1, MAX_TRAIN_STEPS)
        check_int(self.batch_size, "batch_size", 1, MAX_BATCH_SIZE)
        check_int(self.num_frames, "frames", 1, MAX_CLIP_FRAMES)
        check_int(self.examples, "examples", 1, MAX_EXAMPLES)
        check_number(self.lr, "lr", 1e-12, 1.0)
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


def train_vae(base: str, output: Path, settings: VaeTraining, progress: Progress | None = None) -> Path:
    """Fine-tune the VAE of checkpoint `base` and save the whole checkpoint to `output` (replaced)."""
    started = time.perf_counter()
    settings.check()
    check_checkpoint_target(Path(output))  # before the minutes of training, not after
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loaded = load_quietly(base, device)
    pipeline = loaded.pipeline
    vae = pipeline.vae
    settings.check_for(vae)
    steps, size, num_frames, lr = settings.steps, settings.size, settings.num_frames, settings.lr
    batch_size, seeds = settings.batch_size, range(settings.examples)

    vae.train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=lr / 10)
    generator = torch.Generator(device=device).manual_seed(0)
    for step in range(steps):
        samples = [make_sample(seeds[(step * batch_size + i) % len(seeds)], size=size, num_frames=num_frames, fps=FPS)
                   for i in range(batch_size)]
        clips = torch.cat([frames_to_pixels(sample.target, device) for sample in samples])
        stills = torch.cat([frames_to_pixels(next(iter(sample.garments.values()))[None], device) for sample in samples])
        for pixels in (clips, stills):
            (autoencoder_loss(vae, pixels, generator) / 2).backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if progress:
            progress("vae", step + 1, steps)
    vae.eval()
    vae.requires_grad_(False)
    set_latent_statistics(vae, [make_sample(seed, size=size, num_frames=num_frames, fps=FPS).target
                                for seed in seeds[:STATS_CLIPS]])

    info = loaded.info
    info.training = {**info.training, "vae": {
        "steps": steps, "batch_size": batch_size, "size": list(size), "num_frames": num_frames, "lr": lr,
        "seeds": [seeds.start, seeds.stop], "seconds": round(time.perf_counter() - started, 3),
    }}
    return save_checkpoint(pipeline, Path(output), info)


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
