"""Bidirectional (teacher) try-on generation: flow matching with CondNet conditioning.

`TryOnPipeline` is a diffusers `DiffusionPipeline`: called with the person's photo, the
garments, a motion video and/or a prompt, and diffusers' sampling arguments
(`num_inference_steps`, `guidance_scale`, `height`, `width`, `num_frames`, `latents`,
`output_type`, `return_dict`, `callback_on_step_end`), it returns a `TryOnPipelineOutput`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import (
    AutoencoderKLWan,
    DiffusionPipeline,
    FlowMatchEulerDiscreteScheduler,
)
from diffusers.utils import BaseOutput
from PIL import Image

from engine.errors import RuntimeFailure
from engine.model.roles import MAX_GARMENTS
from engine.model.transformer_condnet import Condition, CondNetTransformer, without_garments
from engine.pipelines.shapes import VideoShape
from engine.pipelines.transfer import NON_FINITE, host_frames, upload
from engine.progress import Progress, no_progress


def check_finite(latents: torch.Tensor) -> None:
    """Refuse to decode NaN or inf: it would be written as a black video that looks like a result."""
    if not torch.isfinite(latents).all():
        raise RuntimeFailure(NON_FINITE)


def frames_to_pixels(frames: np.ndarray | torch.Tensor, device: torch.device,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 frames (T, H, W, 3), an array or a host tensor (`transfer.host_frames`) → a VAE's input
    (1, 3, T, H, W) in [-1, 1]; uploaded as uint8 without blocking, converted on the device."""
    host = frames if isinstance(frames, torch.Tensor) else host_frames(frames, device)
    pixels = upload(host, device, dtype)
    return pixels.permute(3, 0, 1, 2).unsqueeze(0) / 127.5 - 1.0


@dataclass
class TryOnPipelineOutput(BaseOutput):
    """`frames`: uint8 (T, H, W, 3) for output_type "np"; the normalised latents (1, C, F, h, w) for "latent"."""

    frames: np.ndarray | torch.Tensor


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
        max_text_tokens: int = 512,
    ) -> None:
        super().__init__()
        self.register_modules(
            transformer=transformer, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler
        )
        self.register_to_config(max_text_tokens=max_text_tokens)

    @property
    def max_text_tokens(self) -> int:
        """Prompts are padded or cut to this many tokens."""
        return self.config.max_text_tokens

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
        """The VAE's latent mean and std (1, C, 1, 1, 1) on `like`'s device and dtype; copied there once
        (a copy from a list blocks the host until the device is idle)."""
        key = (like.device, like.dtype)
        cache = self.__dict__.setdefault("_latent_stats_on", {})
        if key not in cache:
            shape = (1, self.vae.config.z_dim, 1, 1, 1)
            cache[key] = tuple(torch.tensor(values, device=like.device, dtype=like.dtype).view(shape)
                               for values in (self.vae.config.latents_mean, self.vae.config.latents_std))
        return cache[key]

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
        check_finite(latents)
        latents = latents.to(self.vae.post_quant_conv.weight.dtype)  # the decoder's (bf16 under --vae-bf16)
        mean, std = self._latent_stats(latents)
        pixels = self.vae.decode(latents * std + mean).sample.float()
        pixels = ((pixels[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return pixels.permute(1, 2, 3, 0).cpu().numpy()

    def encode_conditions(self, image: Image.Image, garments: list[tuple[str, Image.Image]]) -> list[Condition]:
        """The person's photo, then each (role, garment image), as CondNet conditions."""
        conditions = [Condition("user", self.encode_image(image))]
        conditions += [Condition(role, self.encode_image(garment)) for role, garment in garments]
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

    def prepare_latents(self, shape: VideoShape, generator: torch.Generator | None) -> torch.Tensor:
        size = (1, self.vae.config.z_dim, shape.latent_frames, shape.latent_height, shape.latent_width)
        device = generator.device if generator is not None else torch.device("cpu")
        noise = torch.randn(size, generator=generator, device=device, dtype=torch.float32)
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

    def check_inputs(self, image: Image.Image, garments: list[tuple[str, Image.Image]], motion: np.ndarray | None,
                     height: int, width: int, num_frames: int, output_type: str) -> None:
        if len(garments) > MAX_GARMENTS:
            raise ValueError(f"`garments`: at most {MAX_GARMENTS}, got {len(garments)}")
        if image.size != (width, height):
            raise ValueError(f"`image` is {image.size[0]}x{image.size[1]}; fit it to `width` x `height` ({width}x{height})")
        if motion is not None and motion.shape[:3] != (num_frames, height, width):
            raise ValueError(f"`motion` has shape {motion.shape[:3]}; expected (num_frames, height, width) = "
                             f"{(num_frames, height, width)}")
        if output_type not in ("np", "latent"):
            raise ValueError(f"`output_type` must be 'np' or 'latent', not '{output_type}'")

    @torch.no_grad()
    def __call__(
        self,
        image: Image.Image,
        garments: list[tuple[str, Image.Image]] | None = None,
        motion: np.ndarray | None = None,
        prompt: str = "",
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_inference_steps: int = 40,
        guidance_scale: float = 5.0,
        anchor_first_frame: bool = False,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable[..., dict] | None = None,
        callback_on_step_end_tensor_inputs: tuple[str, ...] = ("latents",),
        progress: Progress = no_progress,
    ) -> TryOnPipelineOutput | tuple:
        """Generate a try-on video.

        Args:
            image: the person's photo, already fitted to `width` x `height`.
            garments: (role, image) pairs, roles from engine.model.roles, fitted to the output size.
            motion: uint8 (num_frames, height, width, 3): the motion video to follow.
            prompt: text describing the motion and the scene.
            height, width: the output size (default: the photo's).
            num_frames: frames to make (default: the motion video's, else 1 + the VAE's temporal factor x 4).
            num_inference_steps: denoising steps.
            guidance_scale: classifier-free guidance; 1 or less turns it off (the unconditional
                branch drops the prompt and the garments, and keeps the person and the motion).
            anchor_first_frame: the first frame IS the photo (dance: the person in their own clothes).
            generator: the noise's random numbers (on its device).
            latents: the starting noise (1, C, F, h, w), instead of drawing it from `generator`.
            output_type: "np" (uint8 frames) or "latent".
            return_dict: a `TryOnPipelineOutput` (True) or a tuple `(frames,)`.
            callback_on_step_end: called as `callback(pipeline, step, t, tensors)` after each
                step with the tensors named in `callback_on_step_end_tensor_inputs` ("latents",
                "flow"); a "latents" it returns replaces the latents.
            progress: the engine's progress callback, by stage (encoding, denoising, decoding).
        """
        garments = list(garments or [])
        width = image.size[0] if width is None else width
        height = image.size[1] if height is None else height
        if num_frames is None:
            num_frames = len(motion) if motion is not None else 1 + 4 * self.vae.config.scale_factor_temporal
        self.check_inputs(image, garments, motion, height, width, num_frames, output_type)
        shape = self.video_shape(width, height, num_frames)

        # 1. Conditions: text, user + garments, motion.
        progress("encoding", 0, 1)
        text = self.encode_prompt(prompt)
        conditions = self.encode_conditions(image, garments)
        motion_latents = None if motion is None else self.encode_frames(motion)
        use_guidance = guidance_scale > 1.0
        if use_guidance:
            # Unconditional branch: no prompt, no garments; the person and the motion stay.
            uncond_text = self.encode_prompt("")
            uncond_conditions = without_garments(conditions)
        progress("encoding", 1, 1)

        # 2. Noise, and the anchored first frame.
        latents = self.prepare_latents(shape, generator) if latents is None else latents.to(
            self._execution_device, self.transformer.dtype)
        anchor = conditions[0].latent if anchor_first_frame else None
        frame_is_clean = torch.zeros(shape.latent_frames, dtype=torch.bool, device=self._execution_device)
        if anchor is not None:
            frame_is_clean[0] = True

        # 3. Denoise.
        timesteps = self.start_schedule(num_inference_steps)
        for i, t in enumerate(timesteps):
            if anchor is not None:
                latents[:, :, :1] = anchor
            per_frame_t = torch.where(frame_is_clean, torch.zeros_like(t), t.expand(shape.latent_frames))[None]
            flow = self.predict_flow(latents, per_frame_t, text, conditions, motion_latents)
            if use_guidance:
                uncond = self.predict_flow(latents, per_frame_t, uncond_text, uncond_conditions, motion_latents)
                flow = uncond + guidance_scale * (flow - uncond)
            latents = self.scheduler.step(flow, t, latents, return_dict=False)[0]
            if callback_on_step_end is not None:
                named = {"latents": latents, "flow": flow}
                tensors = {name: named[name] for name in callback_on_step_end_tensor_inputs}
                latents = callback_on_step_end(self, i, t, tensors).get("latents", latents)
            progress("denoising", i + 1, len(timesteps))
        if anchor is not None:
            latents[:, :, :1] = anchor

        # 4. Decode and keep exactly the frames asked for.
        if output_type == "latent":
            frames = latents
        else:
            progress("decoding", 0, 1)
            frames = self.decode(latents)[: shape.num_frames]
            progress("decoding", 1, 1)
        return TryOnPipelineOutput(frames=frames) if return_dict else (frames,)
