"""Distil a tiny streaming decoder (engine.model.tiny_decoder) from a checkpoint's VAE: `tryon train decoder`.

Rules:
- The run is engine.train.loop's: stages from a TrainConfig (built-in recipe `decoder`),
  progress, metrics.jsonl every `log_every` steps, a checkpoint every `checkpoint_every`
  steps and at the end, `resume`. Only the tiny decoder learns; the checkpoint is not changed.
- Data: "synthetic" (the synthetic world's target clips) or a folder of videos at any depth:
  sample folders from `tryon data synth` or curation, or raw videos (each video one clip at
  the stage's size, length and fps; engine.train.data.VideoFolderDataset).
- Each clip is encoded by the VAE (the posterior's mode, normalised as the transformer's
  latents are) and decoded by the full VAE decoder: the teacher's output, which the tiny
  decoder learns to give from the same latents. With `cache_latents` both are kept per clip
  (latents, and the teacher's frames as uint8) in CPU memory.
- Loss: L1 + MSE between the tiny decoder's (unclamped) pixels and the teacher's, in [-1, 1].
- `output/` is the decoder's own folder (config.json, diffusion_pytorch_model.safetensors)
  plus training_state/, metrics.jsonl and its curves while training: ship it as a checkpoint's
  `tiny_decoder/` (`ship_decoder` copies the two model files).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.checkpoint.store import TINY_DECODER, is_checkpoint_folder
from engine.errors import InputError
from engine.model.distributed import Processes
from engine.model.tiny_decoder import TinyVideoDecoder
from engine.paths import check_replaceable, holds_only
from engine.pipelines.pipeline_tryon import frames_to_pixels
from engine.progress import Progress
from engine.train.config import Stage, TrainConfig
from engine.train.data import open_clips
from engine.train.loop import Log, Metrics, Trainer, train
from engine.train.state import METRICS_FILE, RUN_LOG, STATE_DIR, TrainingState, publish

MODEL_FILES = (TinyVideoDecoder.config_name, "diffusion_pytorch_model.safetensors")


def is_decoder_folder(folder: Path) -> bool:
    """A tiny decoder this tool wrote (or a run's first metrics), holding nothing else."""
    return (((folder / TinyVideoDecoder.config_name).is_file() or (folder / METRICS_FILE).is_file())
            and holds_only(folder, lambda name: name in (*MODEL_FILES, STATE_DIR, *RUN_LOG)))


def check_decoder_target(folder: Path) -> None:
    check_replaceable(folder, is_decoder_folder, "tiny decoder folder")


def train_decoder(vae: str, data: Path | str, output: Path, config: TrainConfig, channels: tuple[int, ...] | None,
                  variant: str = "base", resume: bool = False, progress: Progress | None = None,
                  log: Log | None = None, minutes: float | None = None) -> Path:
    """Distil a tiny decoder for the VAE of checkpoint `vae` into `output/` (see the module docstring)."""
    def make(processes: Processes) -> DecoderTrainer:
        return DecoderTrainer(data, vae, Path(output), config, resume, processes, channels, variant)

    return train(make, data, output, resume, progress, log, check_target=check_decoder_target, minutes=minutes)


class DecoderTrainer(Trainer):
    """The tiny decoder learns the frozen VAE decoder's output from the VAE encoder's latents."""

    def __init__(self, data: Path | str, source: str, output: Path, config: TrainConfig, resume: bool,
                 processes: Processes, channels: tuple[int, ...] | None, variant: str) -> None:
        self.channels, self.variant = channels, variant
        self.teacher_cache: dict[int, tuple[torch.Tensor, np.ndarray]] = {}
        self.cached_clips: tuple | None = None  # the clips' (size, num_frames, fps)
        super().__init__(data, source, output, config, resume, processes)
        self.distributed_decoder = self.distributed(self.decoder)  # under torchrun: DDP averages its gradients

    def starting_checkpoint(self) -> Path | str:
        return self.source  # the saved run holds only the decoder (read in trainable_groups)

    def open_dataset(self, stage: Stage) -> Sequence:
        clips = (stage.size, stage.num_frames, stage.fps)
        if clips != self.cached_clips:  # another stage at the same size keeps the teacher's work
            self.teacher_cache.clear()
            self.cached_clips = clips
        return open_clips(self.data, stage, self.config)

    def trainable_groups(self) -> list[list[tuple[str, torch.nn.Parameter]]]:
        vae_config = self.pipeline.vae.config
        if self.resume:
            self.decoder = TinyVideoDecoder.from_pretrained(self.output).to(self.device)
        else:
            torch.manual_seed(self.config.seed)
            overrides = {"variant": self.variant} | ({"channels": self.channels} if self.channels else {})
            self.decoder = TinyVideoDecoder.for_vae(vae_config, **overrides).to(self.device)
        if self.decoder.config.latent_channels != vae_config.z_dim:
            raise InputError(f"the saved decoder takes {self.decoder.config.latent_channels} latent channels; "
                             f"this VAE makes {vae_config.z_dim}", self.output)
        self.decoder.train()
        return [list(self.decoder.named_parameters())]

    def teacher(self, index: int) -> tuple[torch.Tensor, np.ndarray]:
        """Clip `index`'s normalised latents (1, C, F, h, w) and the full decoder's frames from them."""
        if index in self.teacher_cache:
            return self.teacher_cache[index]
        with self.autocast():  # a bf16 run's VAE passes too: its targets are 8-bit frames anyway
            latents = self.pipeline.encode_frames(self.dataset[index])
            pair = latents.float().cpu(), self.pipeline.decode(latents)
        if self.config.cache_latents:
            self.teacher_cache[index] = pair
        return pair

    def optimizer_step(self, stage: Stage) -> Metrics:
        positions = [self.stream_position(stage, 0, slot) for slot in range(stage.batch_size)]
        pairs = [self.teacher(self.example_index(position)) for position in positions]
        latents = torch.cat([latents for latents, _ in pairs]).to(self.device)
        target = torch.cat([frames_to_pixels(frames, self.device) for _, frames in pairs])
        with self.autocast():
            pixels = self.distributed_decoder(latents).float()
        l1 = (pixels - target).abs().mean()
        mse = F.mse_loss(pixels, target)
        (l1 + mse).backward()
        self.take_step(self.params)
        return {"l1": l1.item(), "mse": mse.item(), "psnr": psnr(pixels.detach().clamp(-1, 1), target)}

    def examples_per_step(self, stage: Stage) -> int:
        return stage.batch_size * self.processes.world_size

    def save(self, seconds: float) -> None:
        if not self.processes.is_main:
            return
        state = TrainingState(step=self.step, seconds=seconds, trainable=self.config.trainable,
                              parameter_names=self.names)
        check_decoder_target(self.output)

        def write(folder: Path) -> None:
            shutil.rmtree(folder, ignore_errors=True)  # a killed save's leftovers
            self.decoder.save_pretrained(folder, safe_serialization=True)

        publish(self.output, write, state, self.optimizer, {})


def psnr(pixels: torch.Tensor, reference: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of pixels in [-1, 1] (peak-to-peak 2)."""
    mse = F.mse_loss(pixels.float(), reference.float()).item()
    return float("inf") if mse == 0 else 10 * np.log10(4.0 / mse)


def check_ship_target(checkpoint: Path) -> None:
    """A checkpoint of ours that may receive a tiny_decoder/ (checked before training, not after)."""
    if not is_checkpoint_folder(checkpoint):
        raise InputError("--ship: not a tryon checkpoint folder", checkpoint)


def ship_decoder(decoder: Path, checkpoint: Path) -> Path:
    """Copy a trained decoder's model files into `checkpoint/tiny_decoder/` (replacing one there)."""
    if not is_decoder_folder(decoder) or not (decoder / MODEL_FILES[1]).is_file():
        raise InputError("not a trained tiny decoder (config.json and its .safetensors)", decoder)
    check_ship_target(checkpoint)
    target = checkpoint / TINY_DECODER
    staging = checkpoint / f".{TINY_DECODER}.next"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for name in MODEL_FILES:
        shutil.copy2(decoder / name, staging / name)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
