"""Streaming (student) generation: block-causal over chunks, with KV-cache rescheduling.

FashionChameleon's student loop. The video is made in chunks of `chunk_frames` latent frames.
Each chunk is denoised in `steps` flow-matching steps while attending to the KV cache
(conditions, sink, history; see engine.model.kv_cache), then the finished chunk runs once more
at t=0 to write its keys and values into the cache, and is decoded with the VAE's causal cache
(engine.model.causal_vae) so its frames can be written at once. Cost per chunk is flat: a
chunk attends to at most the conditions, the sink and `window` history chunks.

Switching garments mid-stream (FashionChameleon §3), each operation on cache regions:

- `refresh_garments`: the new garment latents replace the old ones and the condition K/V are
  recomputed (reference and garments together: they attend to each other).
- `withdraw_history`: clears `history` and `sink`. Both hold the outfit being replaced (the
  sink is the first chunk since the last withdraw, so it always shows the old outfit); the
  chunk after a withdraw becomes the new sink, so the stream goes on like a fresh start from
  the reference, which is the in-context teacher's training setting.
- `disentangle_reference`: the last decoded frame, VAE-encoded again, becomes the reference,
  placed at the RoPE slot of the next chunk's first frame (as the user photo sits at the
  first frame's slot): it carries the pose and motion across the switch.

A switch is applied between chunks, so frames already made never change. The motion video is
encoded chunk by chunk as the stream reaches it (the VAE encoder's causal cache makes that
equal to encoding it whole), and given as `VideoFrames` it is decoded that way too, so the
first frame does not wait for the whole motion video; new noise for each chunk is drawn from
the generator in order, so a switch never changes the random numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from engine.media import VideoFrames
from engine.model.causal_vae import CausalDecoder, CausalEncoder
from engine.model.kv_cache import KVCache
from engine.model.tiny_decoder import TinyStreamDecoder, TinyVideoDecoder
from engine.model.transformer_condnet import Condition
from engine.pipelines.block_causal import BlockCausalRunner
from engine.pipelines.pipeline_tryon import TryOnPipeline, check_finite


SAMPLERS = ("euler", "renoise")


def renoise_sigmas(steps: int, shift: float) -> list[float]:
    """The few-step schedule of FashionChameleon's and Self-Forcing's student: timesteps 1000,
    1000 − 1000/steps, .. (1000/750/500/250 for 4 steps) warped by the flow shift (`warp_timesteps`);
    about 1.0/0.94/0.83/0.63 with shift 5."""
    return warp_timesteps([1000 * (1 - k / steps) for k in range(steps)], shift)


def warp_timesteps(timesteps: list[float], shift: float) -> list[float]:
    """Timesteps (1000 = noise) as noise levels, warped by the flow shift as the training scheduler
    warps them (its `warp_denoising_step`): σ = shift·u / (1 + (shift − 1)·u), u = t/1000."""
    return [shift * u / (1 + (shift - 1) * u) for u in (t / 1000 for t in timesteps)]


def renoise_step(latents: torch.Tensor, flow: torch.Tensor, sigma: float, next_sigma: float | None,
                 noise: torch.Tensor | None) -> torch.Tensor:
    """One step of the renoise sampler: the clean latent x0 = x − σ·v, then noised afresh to the
    next σ, (1 − σ')·x0 + σ'·ε; the last step (next_sigma None) returns x0."""
    clean = latents - sigma * flow
    if next_sigma is None:
        return clean
    return (1 - next_sigma) * clean + next_sigma * noise


@dataclass(frozen=True)
class StreamConfig:
    """Chunking, steps and the switch operations a stream uses (each can be turned off for ablation).

    `sampler`: "euler" (`steps` flow-matching Euler steps of the pipeline's scheduler) or
    "renoise" (FashionChameleon's official sampler: predict the clean latent at each of
    `renoise_sigmas`, re-noise it to the next with fresh noise). A student streams with the
    sampler it was distilled for (its tryon.json).
    """

    chunk_frames: int = 3
    steps: int = 4
    window: int = 6  # history chunks kept besides the sink (0: the sink alone)
    sampler: str = "euler"
    refresh: bool = True
    withdraw: bool = True
    disentangle: bool = True

    @property
    def context_latent_frames(self) -> int:
        """The most latent frames of an earlier video the cache can hold: sink and history."""
        return (1 + self.window) * self.chunk_frames


class TryOnStream:
    """Makes a try-on video chunk by chunk; garments can be switched between chunks.

    `reference` is the user photo at the output size; `garments` are (role, image) pairs at
    the output size; `motion`, uint8 (T, H, W, 3) (an array, or `VideoFrames` decoding them as
    asked for), is the motion video for the frames to come.
    `context`, uint8 frames (4k+1 of them, at the output size), is a video to continue: it
    fills the sink and history, primes the VAE decoder, and the first new frame follows it.
    `tiny_decoder`: decode with it (engine.model.tiny_decoder) instead of the VAE's decoder.
    """

    def __init__(
        self,
        pipeline: TryOnPipeline,
        *,
        reference: Image.Image,
        garments: list[tuple[str, Image.Image]],
        prompt: str,
        generator: torch.Generator,
        motion: np.ndarray | VideoFrames | None = None,
        context: np.ndarray | None = None,
        config: StreamConfig = StreamConfig(),
        tiny_decoder: TinyVideoDecoder | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.transformer = pipeline.transformer
        self.config = config
        self.generator = generator
        width, height = reference.size
        self.shape = pipeline.video_shape(width, height, 1)
        # diffusers' `_execution_device` looks through every module for offload hooks: once per stream.
        self.device = pipeline._execution_device
        self.decoder = CausalDecoder(pipeline.vae) if tiny_decoder is None else TinyStreamDecoder(tiny_decoder)
        self.runner = BlockCausalRunner(self.transformer, self.transformer, text=pipeline.encode_prompt(prompt),
                                        latent_size=(self.shape.latent_height, self.shape.latent_width),
                                        chunk_frames=config.chunk_frames, window=config.window, device=self.device)
        self.position = 0  # RoPE slot of the next latent frame
        self.frames_made = 0  # frames returned by next_chunk so far
        self.last_frame: np.ndarray | None = None

        context_latents = None if context is None else pipeline.encode_frames(context)
        self.reference = Condition("user", pipeline.encode_image(reference))
        self.garments = self._encode_garments(garments)
        self.user_slot = 0 if context_latents is None else context_latents.shape[2]
        self._write_conditions()
        if context_latents is not None:
            self._prefill(context_latents)
            self.last_frame = context[-1]
        self.motion = None if motion is None else MotionLatents(pipeline, motion, self.device)
        self.motion_start = self.position

    @property
    def cache(self) -> KVCache:
        return self.runner.cache

    # -- generation ---------------------------------------------------------------------------

    @torch.no_grad()
    def next_chunk(self, max_frames: int | None = None) -> np.ndarray:
        """Generate, cache and decode the next chunk: at most `max_frames` uint8 frames (T, H, W, 3).

        A chunk is `chunk_frames` latent frames, or fewer when fewer decode to `max_frames`.
        """
        latent_frames = self.config.chunk_frames
        if max_frames is not None:
            latent_frames = min(latent_frames, self._latent_frames_for(max_frames))
        motion = self._motion(latent_frames)
        latents = self._denoise(self._noise(latent_frames), motion)
        self.runner.write_chunk(latents, self.position, motion)
        frames = self._decode(latents)[:max_frames]
        self.position += latent_frames
        self.frames_made += len(frames)
        self.last_frame = frames[-1]
        return frames

    def _latent_frames_for(self, frames: int) -> int:
        # The video's first latent frame decodes to one frame, every later one to four.
        if self.position == 0:
            return 1 + math.ceil((frames - 1) / self.shape.temporal_factor)
        return math.ceil(frames / self.shape.temporal_factor)

    def _noise(self, latent_frames: int) -> torch.Tensor:
        size = (1, self.pipeline.vae.config.z_dim, latent_frames, self.shape.latent_height, self.shape.latent_width)
        noise = torch.randn(size, generator=self.generator, device=self.generator.device, dtype=torch.float32)
        return noise.to(self.device, self.transformer.dtype)

    def _motion(self, latent_frames: int) -> torch.Tensor | None:
        if self.motion is None:
            return None
        start = self.position - self.motion_start
        return self.motion.latents(start, start + latent_frames)

    def _denoise(self, latents: torch.Tensor, motion: torch.Tensor | None) -> torch.Tensor:
        if self.config.sampler == "renoise":
            return self._denoise_renoise(latents, motion)
        scheduler = self.pipeline.scheduler
        for t in self.pipeline.start_schedule(self.config.steps, self.device):
            flow = self.runner.predict(latents, t.expand(1, latents.shape[2]), self.position, motion)
            latents = scheduler.step(flow, t, latents, return_dict=False)[0]
        return latents

    def _denoise_renoise(self, latents: torch.Tensor, motion: torch.Tensor | None) -> torch.Tensor:
        sigmas = self.sigmas()
        for index, sigma in enumerate(sigmas):
            timestep = torch.full((1, latents.shape[2]), 1000.0 * sigma, device=latents.device)
            flow = self.runner.predict(latents, timestep, self.position, motion)
            following = sigmas[index + 1] if index + 1 < len(sigmas) else None
            noise = None if following is None else self._noise(latents.shape[2])
            latents = renoise_step(latents, flow, sigma, following, noise)
        return latents

    def sigmas(self) -> list[float]:
        """The renoise sampler's noise levels, one per step (a released student may bring its own)."""
        return renoise_sigmas(self.config.steps, float(self.pipeline.scheduler.config.shift))

    def _decode(self, latents: torch.Tensor) -> np.ndarray:
        check_finite(latents)
        if isinstance(self.decoder, CausalDecoder):  # the VAE decodes raw latents, the tiny decoder normalised ones
            mean, std = self.pipeline._latent_stats(latents)
            latents = (latents * std + mean).to(self.pipeline.vae.dtype)
        pixels = self.decoder.decode(latents)
        pixels = ((pixels[0] + 1) * 127.5).round().to(torch.uint8)
        return pixels.permute(1, 2, 3, 0).cpu().numpy()

    @torch.no_grad()
    def _prefill(self, latents: torch.Tensor) -> None:
        """Cache a clean video chunk by chunk as if generated, and run it through the decoder."""
        for start in range(0, latents.shape[2], self.config.chunk_frames):
            chunk = latents[:, :, start : start + self.config.chunk_frames]
            self.runner.write_chunk(chunk, self.position, None)
            self.position += chunk.shape[2]
        self._decode(latents)

    # -- conditions and switches --------------------------------------------------------------

    def _encode_garments(self, garments: list[tuple[str, Image.Image]]) -> list[Condition]:
        return [Condition(role, self.pipeline.encode_image(image)) for role, image in garments]

    @torch.no_grad()
    def _write_conditions(self) -> None:
        self.runner.write_conditions([self.reference, *self.garments], self.user_slot)

    def refresh_garments(self, garments: list[tuple[str, Image.Image]]) -> None:
        """Garment-KV refresh: the condition region is recomputed with these garments."""
        self._take_garments(garments)
        self._write_conditions()

    def withdraw_history(self) -> None:
        """Historical-KV withdraw: clear history and sink; the next chunk becomes the new sink."""
        self.cache.clear("history")
        self.cache.clear("sink")

    def disentangle_reference(self, frame: np.ndarray) -> None:
        """Reference-KV disentangle: `frame` (uint8 H, W, 3), VAE-encoded, is the new reference.

        It takes the RoPE slot of the next chunk's first frame.
        """
        self._take_reference(frame)
        self._write_conditions()

    def _take_garments(self, garments: list[tuple[str, Image.Image]]) -> None:
        self.garments = self._encode_garments(garments)

    def _take_reference(self, frame: np.ndarray) -> None:
        self.reference = Condition("user", self.pipeline.encode_frames(frame[None]))
        self.user_slot = self.position

    def switch(self, garments: list[tuple[str, Image.Image]]) -> None:
        """Wear `garments` from the next chunk on, by the operations the config enables.

        The condition region is recomputed once, after the reference and garments are updated.
        """
        disentangle = self.config.disentangle and self.last_frame is not None
        if disentangle:
            self._take_reference(self.last_frame)
        if self.config.refresh:
            self._take_garments(garments)
        if disentangle or self.config.refresh:
            self._write_conditions()
        if self.config.withdraw:
            self.withdraw_history()


class MotionLatents:
    """A motion video's latents, encoded chunk by chunk as the stream reaches them.

    Latent frame 0 covers video frame 0 and latent frame j > 0 frames 4j-3 .. 4j; past the
    video's end its last frame repeats (as `encode_frames` pads). Ranges are asked for in
    order; latents before the last range asked for are let go.
    """

    def __init__(self, pipeline: TryOnPipeline, frames: np.ndarray | VideoFrames,
                 device: torch.device | None = None) -> None:
        self.pipeline = pipeline
        self.frames = frames
        self.device = device  # where the VAE runs; None: the pipeline's execution device
        self.encoder = CausalEncoder(pipeline.vae)
        self.temporal = pipeline.vae.config.scale_factor_temporal
        self.kept: torch.Tensor | None = None  # latent frames [kept_from, encoded)
        self.kept_from = 0
        self.encoded = 0

    def latents(self, start: int, stop: int) -> torch.Tensor:
        """Normalised latents of latent frames [start, stop)."""
        if start < self.kept_from:
            raise ValueError(f"latent frame {start} was let go (kept from {self.kept_from})")
        if stop > self.encoded:
            new = self._encode(self.encoded, stop)
            self.kept = new if self.kept is None else torch.cat([self.kept, new], dim=2)
            self.encoded = stop
        self.kept = self.kept[:, :, start - self.kept_from :]
        self.kept_from = start
        return self.kept[:, :, : stop - start]

    def _encode(self, start: int, stop: int) -> torch.Tensor:
        first = 0 if start == 0 else 1 + self.temporal * (start - 1)
        index = np.minimum(np.arange(first, 1 + self.temporal * (stop - 1)), len(self.frames) - 1)
        pixels = self.pipeline.to_pixels(self.frames[index], self.device)
        return self.pipeline.normalize(self.encoder.encode(pixels))
