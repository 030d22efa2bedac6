"""Bidirectional (teacher) try-on generation: flow matching with CondNet conditioning.

`TryOnPipeline` is a diffusers `DiffusionPipeline`, called as diffusers' Wan pipelines are
(`pipeline_wan_i2v.py`): the person's photo, the garments, a motion video and/or a prompt, and
diffusers' arguments (`negative_prompt`, `prompt_embeds`, `negative_prompt_embeds`,
`num_videos_per_prompt`, `num_inference_steps`, `guidance_scale`, `height`, `width`,
`num_frames`, `generator`, `latents`, `output_type` "np" | "pil" | "pt" | "latent",
`return_dict`, `attention_kwargs`, `callback_on_step_end` with
`callback_on_step_end_tensor_inputs` from `_callback_tensor_inputs`); it returns a
`TryOnPipelineOutput`, shows `self.progress_bar`, can be stopped by setting `interrupt`, and
frees offloaded models at the end (`maybe_free_model_hooks`).

A checkpoint folder loads with `TryOnPipeline.from_pretrained(path)` and, once this module is
imported, with `diffusers.DiffusionPipeline.from_pretrained(path)`: its `model_index.json`
names `TryOnPipeline` and the transformer's module and class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import diffusers
import numpy as np
import torch
from diffusers import (
    AutoencoderKLWan,
    DiffusionPipeline,
    FlowMatchEulerDiscreteScheduler,
)
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils import BaseOutput
from diffusers.video_processor import VideoProcessor
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


def to_uint8(video: np.ndarray) -> np.ndarray:
    """Frames as output_type "np" gives them (floats in [0, 1]) → uint8, rounded as diffusers rounds
    them for "pil" (`numpy_to_pil`)."""
    return (video * 255).round().astype(np.uint8)


def frames_to_pixels(frames: np.ndarray | torch.Tensor, device: torch.device,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 frames (T, H, W, 3), an array or a host tensor (`transfer.host_frames`) → a VAE's input
    (1, 3, T, H, W) in [-1, 1]; uploaded as uint8 without blocking, converted on the device."""
    host = frames if isinstance(frames, torch.Tensor) else host_frames(frames, device)
    pixels = upload(host, device, dtype)
    return pixels.permute(3, 0, 1, 2).unsqueeze(0) / 127.5 - 1.0


@dataclass
class TryOnPipelineOutput(BaseOutput):
    """`frames`, one video per `num_videos_per_prompt`: floats in [0, 1] (B, T, H, W, 3) for output_type
    "np", (B, T, 3, H, W) for "pt", B lists of T PIL images for "pil"; the normalised latents
    (B, C, F, h, w) for "latent"."""

    frames: np.ndarray | torch.Tensor | list[list[Image.Image]]


class TryOnPipeline(DiffusionPipeline):
    """User photo + garments + motion video and/or prompt → try-on video frames."""

    model_cpu_offload_seq = "text_encoder->transformer->vae"
    _callback_tensor_inputs = ["latents", "flow", "prompt_embeds", "negative_prompt_embeds"]

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
        self.video_processor = VideoProcessor(vae_scale_factor=vae.config.scale_factor_spatial if vae else 8)
        self._interrupt = False
        self._attention_kwargs: dict[str, Any] | None = None

    @property
    def max_text_tokens(self) -> int:
        """Prompts are padded or cut to this many tokens."""
        return self.config.max_text_tokens

    @property
    def interrupt(self) -> bool:
        """Set to True (from a step callback or another thread) to skip the remaining denoising steps."""
        return self._interrupt

    @interrupt.setter
    def interrupt(self, value: bool) -> None:
        self._interrupt = value

    @property
    def attention_kwargs(self) -> dict[str, Any] | None:
        """The current call's `attention_kwargs` (`{"scale": s}` scales LoRA layers, as in diffusers)."""
        return self._attention_kwargs

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
    def decode_pixels(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, C, F, h, w) → the VAE's pixels (B, 3, 4F-3, H, W), in [-1, 1] give or take."""
        check_finite(latents)
        latents = latents.to(self.vae.post_quant_conv.weight.dtype)  # the decoder's (bf16 under --vae-bf16)
        mean, std = self._latent_stats(latents)
        return self.vae.decode(latents * std + mean).sample

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Normalised latents (1, C, F, h, w) → uint8 frames (4F-3, H, W, 3)."""
        return to_uint8(self.video_processor.postprocess_video(self.decode_pixels(latents), output_type="np")[0])

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

    def prepare_latents(self, shape: VideoShape, generator: torch.Generator | None, batch: int = 1,
                        latents: torch.Tensor | None = None) -> torch.Tensor:
        """The starting noise (batch, C, F, h, w): `latents` copied (never written in place), else drawn
        from `generator` on its device."""
        size = (batch, self.vae.config.z_dim, shape.latent_frames, shape.latent_height, shape.latent_width)
        if latents is not None:
            if tuple(latents.shape) != size:
                raise ValueError(f"`latents` has shape {tuple(latents.shape)}; expected {size}")
            return latents.to(self._execution_device, self.transformer.dtype, copy=True)
        device = generator.device if generator is not None else torch.device("cpu")
        noise = torch.randn(size, generator=generator, device=device, dtype=torch.float32)
        return noise.to(self._execution_device, self.transformer.dtype)

    def prompt_embeddings(self, prompt: str | None, negative_prompt: str | None, guided: bool, batch: int,
                          prompt_embeds: torch.Tensor | None = None,
                          negative_prompt_embeds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The text embeddings of both branches, `batch` rows each (the negative one only when `guided`).

        Given embeddings are used as they are (one row is repeated to `batch`); the negative
        prompt defaults to the empty prompt, the branch the teacher was trained to drop to.
        """
        if prompt_embeds is None:
            prompt_embeds = self.encode_prompt(prompt or "")
        if guided and negative_prompt_embeds is None:
            negative_prompt_embeds = self.encode_prompt(negative_prompt or "")
        return _rows(prompt_embeds, batch), (_rows(negative_prompt_embeds, batch) if guided else None)

    def predict_flow(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        text: torch.Tensor,
        conditions: list[Condition],
        motion: torch.Tensor | None,
    ) -> torch.Tensor:
        return self.transformer(latents, timestep, text, conditions=conditions, motion_latents=motion,
                                attention_kwargs=self.attention_kwargs, return_dict=False)[0]

    def check_inputs(self, image: Image.Image, garments: list[tuple[str, Image.Image]], motion: np.ndarray | None,
                     height: int, width: int, num_frames: int, output_type: str, prompt: str | None = None,
                     negative_prompt: str | None = None, prompt_embeds: torch.Tensor | None = None,
                     negative_prompt_embeds: torch.Tensor | None = None, num_videos_per_prompt: int = 1,
                     callback_on_step_end_tensor_inputs: list[str] | tuple[str, ...] = ()) -> None:
        if len(garments) > MAX_GARMENTS:
            raise ValueError(f"`garments`: at most {MAX_GARMENTS}, got {len(garments)}")
        if image.size != (width, height):
            raise ValueError(f"`image` is {image.size[0]}x{image.size[1]}; fit it to `width` x `height` ({width}x{height})")
        if motion is not None and motion.shape[:3] != (num_frames, height, width):
            raise ValueError(f"`motion` has shape {motion.shape[:3]}; expected (num_frames, height, width) = "
                             f"{(num_frames, height, width)}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {', '.join(OUTPUT_TYPES)}, not '{output_type}'")
        if prompt and prompt_embeds is not None:
            raise ValueError("give `prompt` or `prompt_embeds`, not both")
        if negative_prompt and negative_prompt_embeds is not None:
            raise ValueError("give `negative_prompt` or `negative_prompt_embeds`, not both")
        if num_videos_per_prompt < 1:
            raise ValueError(f"`num_videos_per_prompt` must be 1 or more, not {num_videos_per_prompt}")
        unknown = [name for name in callback_on_step_end_tensor_inputs if name not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(f"`callback_on_step_end_tensor_inputs` has to be in {self._callback_tensor_inputs}, "
                             f"but found {unknown}")

    @torch.no_grad()
    def __call__(
        self,
        image: Image.Image,
        garments: list[tuple[str, Image.Image]] | None = None,
        motion: np.ndarray | None = None,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_inference_steps: int = 40,
        guidance_scale: float = 5.0,
        num_videos_per_prompt: int = 1,
        anchor_first_frame: bool = False,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable[..., dict] | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] | tuple[str, ...] = ("latents",),
        progress: Progress = no_progress,
    ) -> TryOnPipelineOutput | tuple:
        """Generate try-on videos.

        Args:
            image: the person's photo, already fitted to `width` x `height`.
            garments: (role, image) pairs, roles from engine.model.roles, fitted to the output size.
            motion: uint8 (num_frames, height, width, 3): the motion video to follow.
            prompt: text describing the motion and the scene.
            negative_prompt: the unconditional branch's text (default: the empty prompt).
            height, width: the output size (default: the photo's).
            num_frames: frames to make (default: the motion video's, else 1 + the VAE's temporal factor x 4).
            num_inference_steps: denoising steps.
            guidance_scale: classifier-free guidance; 1 or less turns it off (the unconditional
                branch drops the prompt and the garments, and keeps the person and the motion).
            num_videos_per_prompt: videos made at once, each from its own noise.
            anchor_first_frame: the first frame IS the photo (dance: the person in their own clothes).
            generator: the noise's random numbers (on its device).
            latents: the starting noise (num_videos_per_prompt, C, F, h, w), instead of drawing it
                from `generator`; it is copied, never written to.
            prompt_embeds, negative_prompt_embeds: text embeddings (1 or num_videos_per_prompt, L,
                dim) instead of `prompt` and `negative_prompt`.
            output_type: "np" (floats in [0, 1], (B, T, H, W, 3)), "pil", "pt" or "latent".
            return_dict: a `TryOnPipelineOutput` (True) or a tuple `(frames,)`.
            attention_kwargs: passed to the transformer; `{"scale": s}` scales its LoRA layers.
            callback_on_step_end: called as `callback(pipeline, step, t, tensors)` after each
                step with the tensors named in `callback_on_step_end_tensor_inputs` (any of
                `_callback_tensor_inputs`); the tensors it returns replace the pipeline's.
            progress: the engine's progress callback, by stage (encoding, denoising, decoding).
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        garments = list(garments or [])
        width = image.size[0] if width is None else width
        height = image.size[1] if height is None else height
        if num_frames is None:
            num_frames = len(motion) if motion is not None else 1 + 4 * self.vae.config.scale_factor_temporal
        self.check_inputs(image, garments, motion, height, width, num_frames, output_type, prompt, negative_prompt,
                          prompt_embeds, negative_prompt_embeds, num_videos_per_prompt,
                          callback_on_step_end_tensor_inputs)
        shape = self.video_shape(width, height, num_frames)
        batch = num_videos_per_prompt
        self._interrupt = False
        self._attention_kwargs = attention_kwargs

        # 1. Conditions: text, user + garments, motion.
        progress("encoding", 0, 1)
        guided = guidance_scale > 1.0
        prompt_embeds, negative_prompt_embeds = self.prompt_embeddings(prompt, negative_prompt, guided, batch,
                                                                       prompt_embeds, negative_prompt_embeds)
        conditions = self.encode_conditions(image, garments)
        # Unconditional branch: no garments; the person and the motion stay.
        uncond_conditions = without_garments(conditions)
        motion_latents = None if motion is None else _rows(self.encode_frames(motion), batch)
        progress("encoding", 1, 1)

        # 2. Noise, and the anchored first frame.
        latents = self.prepare_latents(shape, generator, batch, latents)
        anchor = conditions[0].latent if anchor_first_frame else None
        frame_is_clean = torch.zeros(shape.latent_frames, dtype=torch.bool, device=self._execution_device)
        if anchor is not None:
            frame_is_clean[0] = True

        # 3. Denoise.
        timesteps = self.start_schedule(num_inference_steps)
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                if anchor is not None:
                    latents[:, :, :1] = anchor
                per_frame_t = torch.where(frame_is_clean, torch.zeros_like(t), t.expand(shape.latent_frames))
                per_frame_t = per_frame_t.expand(batch, -1)
                flow = self.predict_flow(latents, per_frame_t, prompt_embeds, conditions, motion_latents)
                if guided:
                    uncond = self.predict_flow(latents, per_frame_t, negative_prompt_embeds, uncond_conditions,
                                               motion_latents)
                    flow = uncond + guidance_scale * (flow - uncond)
                latents = self.scheduler.step(flow, t, latents, return_dict=False)[0]
                if callback_on_step_end is not None:
                    named = {"latents": latents, "flow": flow, "prompt_embeds": prompt_embeds,
                             "negative_prompt_embeds": negative_prompt_embeds}
                    returned = callback_on_step_end(self, i, t, {k: named[k] for k in callback_on_step_end_tensor_inputs})
                    latents = returned.pop("latents", latents)
                    prompt_embeds = returned.pop("prompt_embeds", prompt_embeds)
                    negative_prompt_embeds = returned.pop("negative_prompt_embeds", negative_prompt_embeds)
                progress("denoising", i + 1, len(timesteps))
                progress_bar.update()
        if anchor is not None:
            latents[:, :, :1] = anchor

        # 4. Decode and keep exactly the frames asked for.
        if output_type == "latent":
            frames = latents
        else:
            progress("decoding", 0, 1)
            pixels = self.decode_pixels(latents)[:, :, : shape.num_frames]
            frames = self.video_processor.postprocess_video(pixels, output_type=output_type)
            progress("decoding", 1, 1)
        self.maybe_free_model_hooks()
        return TryOnPipelineOutput(frames=frames) if return_dict else (frames,)


OUTPUT_TYPES = ("np", "pil", "pt", "latent")


def _rows(tensor: torch.Tensor, batch: int) -> torch.Tensor:
    """A one-row tensor repeated to `batch` rows (one of `batch` rows as it is)."""
    return tensor if tensor.shape[0] == batch else tensor.expand(batch, *tensor.shape[1:])


# diffusers' `DiffusionPipeline.from_pretrained` finds a checkpoint's pipeline class by the name its
# model_index.json gives (`_class_name`) among diffusers' own; with this, "TryOnPipeline" is found there
# once this module is imported. The transformer's entry names its module, which diffusers looks up
# among the imported ones (this module imports it).
diffusers.TryOnPipeline = TryOnPipeline
