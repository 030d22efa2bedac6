"""The route's generating stages: one call of one diffusers pipeline each.

Each function takes inputs already fitted to the output (engine.media), calls its pipeline
once with them, and returns what that call returns as uint8 pixels, so a stage gives exactly
what the diffusers pipeline gives when called directly with the same weights, inputs and
seed. Progress is reported per denoising step through the pipeline's step callback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from PIL import Image

StepReport = Callable[[int, int], None]

GARMENT_WORDS = {"top": "top", "bottom": "bottom (trousers or skirt)", "dress": "dress", "unknown": "garment"}


def garments_in_pictures(roles: list[str], first: int) -> str:
    """'the top in picture 2 and the bottom (trousers or skirt) in picture 3': garments from picture `first` on."""
    pieces = [f"the {GARMENT_WORDS.get(role, 'garment')} in picture {index}" for index, role in enumerate(roles, first)]
    return pieces[0] if len(pieces) == 1 else ", ".join(pieces[:-1]) + " and " + pieces[-1]


def edit_prompt(roles: list[str]) -> str:
    """The instruction for Qwen-Image-Edit: picture 1 is the person, pictures 2.. the garments."""
    wearing = garments_in_pictures(roles, 2)
    return (f"The person in picture 1 wears {wearing}. Keep the person's face, hair, body shape, pose and the "
            "background of picture 1 unchanged; only the clothes change, with the garments' exact colours, "
            "patterns, logos and cut.")


def _step_callback(report: StepReport | None, total: int):
    if report is None:
        return None

    def on_step(pipeline, step: int, timestep, tensors: dict) -> dict:
        report(step + 1, total)
        return tensors

    return on_step


@contextmanager
def vae_image_area(area: int | None) -> Iterator[None]:
    """Encode the edit stage's reference images at `area` pixels instead of diffusers' 1024x1024 (tiny models)."""
    if area is None:
        yield
        return
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus as module

    saved = module.VAE_IMAGE_SIZE
    module.VAE_IMAGE_SIZE = area
    try:
        yield
    finally:
        module.VAE_IMAGE_SIZE = saved


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Pipeline output in [0, 1] floats → uint8, as diffusers' own numpy-to-PIL conversion rounds."""
    return (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)


def dress_photo(
    pipeline,
    user: Image.Image,
    garments: list[tuple[str, Image.Image]],
    size: tuple[int, int],
    steps: int,
    true_cfg: float,
    negative_prompt: str,
    generator: torch.Generator,
    report: StepReport | None = None,
    image_area: int | None = None,
    references: tuple[Image.Image, ...] = (),
    prompt: str | None = None,
) -> Image.Image:
    """QwenImageEditPlusPipeline: the user photo and the garment photos in, the dressed photo (at `size`) out.

    `references` go between the photo and the garments (a live switch: the person's photo
    beside the frame being re-dressed), with the `prompt` that says so."""
    width, height = size
    with vae_image_area(image_area):
        result = pipeline(
            image=[user, *references] + [image for _, image in garments],
            prompt=prompt or edit_prompt([role for role, _ in garments]),
            negative_prompt=negative_prompt,
            true_cfg_scale=true_cfg,
            height=height,
            width=width,
            num_inference_steps=steps,
            generator=generator,
            output_type="np",
            callback_on_step_end=_step_callback(report, steps),
        )
    return Image.fromarray(to_uint8(result.images[0]))


def video_frame_count(num_frames: int, temporal: int = 4) -> int:
    """The smallest 4k+1 frame count that covers `num_frames` (what Wan's VAE decodes)."""
    return ((max(num_frames, 1) - 1 + temporal - 1) // temporal) * temporal + 1


def animate_photo(
    pipeline,
    image: Image.Image,
    prompt: str,
    negative_prompt: str,
    size: tuple[int, int],
    num_frames: int,
    steps: int,
    guidance: float,
    generator: torch.Generator,
    report: StepReport | None = None,
) -> np.ndarray:
    """WanImageToVideoPipeline (TI2V): the photo is the first frame; returns exactly `num_frames` uint8 frames."""
    width, height = size
    result = pipeline(
        image=image,
        prompt=prompt,
        negative_prompt=negative_prompt,
        height=height,
        width=width,
        num_frames=video_frame_count(num_frames, pipeline.vae_scale_factor_temporal),
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=generator,
        output_type="np",
        callback_on_step_end=_step_callback(report, steps),
    )
    return to_uint8(result.frames[0][:num_frames])


def follow_motion(
    pipeline,
    image: Image.Image,
    pose_video: list[Image.Image],
    face_video: list[Image.Image],
    prompt: str,
    negative_prompt: str,
    size: tuple[int, int],
    window: int,
    overlap: int,
    steps: int,
    guidance: float,
    generator: torch.Generator,
    report: StepReport | None = None,
) -> np.ndarray:
    """WanAnimatePipeline ("animate" mode): one frame out per pose frame.

    Videos longer than one `window` are made window by window by the pipeline itself, each
    window starting from the last `overlap` frames of the one before.
    """
    width, height = size
    windows = animate_windows(len(pose_video), window, overlap)
    result = pipeline(
        image=image,
        pose_video=pose_video,
        face_video=face_video,
        prompt=prompt,
        negative_prompt=negative_prompt,
        height=height,
        width=width,
        segment_frame_length=window,
        prev_segment_conditioning_frames=overlap,
        num_inference_steps=steps,
        guidance_scale=guidance,
        mode="animate",
        generator=generator,
        output_type="np",
        callback_on_step_end=_window_callback(report, steps, windows),
    )
    return to_uint8(result.frames[0])


def animate_windows(num_frames: int, window: int, overlap: int) -> int:
    """How many windows WanAnimatePipeline runs for `num_frames` pose frames."""
    step = window - overlap
    return max(1, -(-(num_frames - overlap) // step))


def _window_callback(report: StepReport | None, steps: int, windows: int):
    if report is None:
        return None
    done = [0]

    def on_step(pipeline, step: int, timestep, tensors: dict) -> dict:
        done[0] += 1
        report(min(done[0], steps * windows), steps * windows)
        return tensors

    return on_step
