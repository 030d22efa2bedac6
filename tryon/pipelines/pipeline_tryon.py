"""Bidirectional (teacher) try-on generation: flow matching with CondNet conditioning."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from diffusers import (
    AutoencoderKLWan,
    DiffusionPipeline,
    FlowMatchEulerDiscreteScheduler,
)
from PIL import Image

from tryon.model.roles import MAX_GARMENTS
from tryon.model.transformer_condnet import Condition, CondNetTransformer
from tryon.pipelines.shapes import VideoShape
from tryon.progress import Progress


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


def frames_to_pixels(frames: np.ndarray, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 frames (T, H, W, 3) → a VAE's input (1, 3, T, H, W) in [-1, 1]."""
    pixels = torch.from_numpy(np.array(frames, dtype=np.uint8)).to(device, dtype)
    return pixels.permute(3, 0, 1, 2).unsqueeze(0) / 127.5 - 1.0


@dataclass
class TryOnInputs:
    """What one generation is conditioned on, already fitted to the output size."""

    user: Image.Image
    garments: list[tuple[str, Image.Image]] = field(default_factory=list)  # (role, image)
    motion: np.ndarray | None = None  # (T, H, W, 3) uint8, T == shape.num_frames
    prompt: str = ""
    anchor_first_frame: bool = False  # the first frame IS the user photo (dance: own clothes)


class TryOnPipeline(DiffusionPipeline):
    """User photo + garments + motion video and/or prompt → try-on video frames."""

    model_cpu_offload_seq = "text_encoder->transformer->vae"

    def __init__(
        self,
        transformer: CondNetTransformer,
        vae: AutoencoderKLWan,
        text_encoder,
        tokenizer,
        scheduler: FlowMatchEulerDiscreteScheduler,
    ) -> None:
        super().__init__()
        self.register_modules(
            transformer=transformer, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler
        )
        self.max_text_tokens = 512

    # -- shapes -------------------------------------------------------------------------------

    def video_shape(self, width: int, height: int, num_frames: int) -> VideoShape:
        return VideoShape(
            width=width,
            height=height,
            num_frames=num_frames,
            temporal_factor=self.vae.config.scale_factor_temporal,
            spatial_factor=self.vae.config.scale_factor_spatial,
        )

    @property
    def size_multiple(self) -> int:
        """Output sides must be multiples of this: VAE compression × transformer patch."""
        return self.vae.config.scale_factor_spatial * self.transformer.config.patch_size[1]

    # -- encoders -----------------------------------------------------------------------------

    @torch.no_grad()
    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """UMT5 embeddings (1, max_text_tokens, dim), zero past the prompt's real length (as Wan)."""
        tokens = self.tokenizer(
            [prompt],
            padding="max_length",
            max_length=self.max_text_tokens,
            truncation=True,
            add_special_tokens=True,
            return_tensors="pt",
        )
        ids = tokens.input_ids.to(self._execution_device)
        mask = tokens.attention_mask.to(self._execution_device)
        embeddings = self.text_encoder(ids, attention_mask=mask).last_hidden_state
        embeddings = embeddings * mask[..., None].to(embeddings.dtype)
        return embeddings.to(self.transformer.dtype)

    def _latent_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, self.vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(self.vae.config.latents_mean, device=like.device, dtype=like.dtype).view(shape)
        std = torch.tensor(self.vae.config.latents_std, device=like.device, dtype=like.dtype).view(shape)
        return mean, std

    @torch.no_grad()
    def encode_frames(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 frames (T, H, W, 3) → normalised latents (1, C, F, h, w). T is padded to 4k+1."""
        remainder = (len(frames) - 1) % self.vae.config.scale_factor_temporal
        if remainder:
            pad = self.vae.config.scale_factor_temporal - remainder
            frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
        return self.normalize(self.vae.encode(self.to_pixels(frames)).latent_dist.mode())

    def to_pixels(self, frames: np.ndarray, device: torch.device | None = None) -> torch.Tensor:
        """uint8 frames (T, H, W, 3) → this pipeline's VAE input (see `frames_to_pixels`), on `device`
        (default: the execution device)."""
        return frames_to_pixels(frames, device or self._execution_device, self.vae.dtype)

    def normalize(self, latents: torch.Tensor) -> torch.Tensor:
        """Raw VAE latents → the unit-scale latents the transformer works on."""
        mean, std = self._latent_stats(latents)
        return ((latents - mean) / std).to(self.transformer.dtype)

    def encode_image(self, image: Image.Image) -> torch.Tensor:
        """An RGB image → one normalised latent frame (1, C, 1, h, w)."""
        return self.encode_frames(np.asarray(image.convert("RGB"))[None])

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Normalised latents (1, C, F, h, w) → uint8 frames (4F-3, H, W, 3)."""
        latents = latents.to(self.vae.dtype)
        mean, std = self._latent_stats(latents)
        pixels = self.vae.decode(latents * std + mean).sample
        pixels = ((pixels[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return pixels.permute(1, 2, 3, 0).cpu().numpy()

    def encode_conditions(self, inputs: TryOnInputs) -> list[Condition]:
        if len(inputs.garments) > MAX_GARMENTS:
            raise ValueError(f"at most {MAX_GARMENTS} garments, got {len(inputs.garments)}")
        conditions = [Condition("user", self.encode_image(inputs.user))]
        conditions += [Condition(role, self.encode_image(image)) for role, image in inputs.garments]
        return conditions

    # -- sampling -----------------------------------------------------------------------------

    def start_schedule(self, steps: int, device: torch.device | None = None) -> torch.Tensor:
        """The scheduler's timesteps for `steps` steps on `device` (default: the execution device),
        starting at the first.

        Setting the begin index spares `scheduler.step` its lookup of where `t` is in the
        schedule (a `nonzero().item()`, which waits for the GPU at every denoising loop).
        """
        self.scheduler.set_timesteps(steps, device=device or self._execution_device)
        self.scheduler.set_begin_index(0)
        return self.scheduler.timesteps

    def prepare_latents(self, shape: VideoShape, generator: torch.Generator) -> torch.Tensor:
        size = (1, self.vae.config.z_dim, shape.latent_frames, shape.latent_height, shape.latent_width)
        noise = torch.randn(size, generator=generator, device=generator.device, dtype=torch.float32)
        return noise.to(self._execution_device, self.transformer.dtype)

    def predict_flow(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        text: torch.Tensor,
        conditions: list[Condition],
        motion: torch.Tensor | None,
    ) -> torch.Tensor:
        return self.transformer(
            latents, timestep, text, conditions=conditions, motion_latents=motion, return_dict=False
        )[0]

    @torch.no_grad()
    def __call__(
        self,
        inputs: TryOnInputs,
        shape: VideoShape,
        *,
        steps: int,
        guidance: float,
        generator: torch.Generator,
        progress: Progress = _no_progress,
    ) -> np.ndarray:
        """Generate `shape.num_frames` uint8 frames (T, H, W, 3)."""
        # 1. Conditions: text, user + garments, motion.
        progress("encoding", 0, 1)
        text = self.encode_prompt(inputs.prompt)
        conditions = self.encode_conditions(inputs)
        motion = None if inputs.motion is None else self.encode_frames(inputs.motion)
        use_guidance = guidance > 1.0
        if use_guidance:
            # Unconditional branch: no prompt, no garments; the person and the motion stay.
            uncond_text = self.encode_prompt("")
            uncond_conditions = conditions[:1]
        progress("encoding", 1, 1)

        # 2. Noise, and the anchored first frame.
        latents = self.prepare_latents(shape, generator)
        anchor = conditions[0].latent if inputs.anchor_first_frame else None
        frame_is_clean = torch.zeros(shape.latent_frames, dtype=torch.bool, device=self._execution_device)
        if anchor is not None:
            frame_is_clean[0] = True

        # 3. Denoise.
        timesteps = self.start_schedule(steps)
        for i, t in enumerate(timesteps):
            if anchor is not None:
                latents[:, :, :1] = anchor
            per_frame_t = torch.where(frame_is_clean, torch.zeros_like(t), t.expand(shape.latent_frames))[None]
            flow = self.predict_flow(latents, per_frame_t, text, conditions, motion)
            if use_guidance:
                uncond = self.predict_flow(latents, per_frame_t, uncond_text, uncond_conditions, motion)
                flow = uncond + guidance * (flow - uncond)
            latents = self.scheduler.step(flow, t, latents, return_dict=False)[0]
            progress("denoising", i + 1, len(timesteps))
        if anchor is not None:
            latents[:, :, :1] = anchor

        # 4. Decode and keep exactly the frames asked for.
        progress("decoding", 0, 1)
        frames = self.decode(latents)[: shape.num_frames]
        progress("decoding", 1, 1)
        return frames
