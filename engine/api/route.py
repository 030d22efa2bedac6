"""One generation request on the public route: inputs fitted to the generation size, then the stages; and
what the stages hand each other, kept on request (`--keep-intermediates DIR`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.checkpoint.public.route import LoadedRoute, RenderRecord, RouteInputs
from engine.errors import InputError, RuntimeFailure
from engine.media import fit_image, read_video, save_image, write_video

# What --keep-intermediates writes, when the render made it: the edit stage's photo, the pose stage's videos.
DRESSED_PHOTO, POSE_VIDEO, FACE_VIDEO = "dressed.png", "pose.mp4", "faces.mp4"


def render_request(
    model: LoadedRoute,
    request,
    user: Image.Image,
    garments: list[tuple[str, Image.Image]],
    plan,
    anchor_first_frame: bool,
    report,
) -> np.ndarray:
    """`request` (a engine.api.generate.GenerateRequest) planned as `plan` (a engine.api.generate.OutputPlan): the
    frames at the plan's generation size (every stage's multiple covers the output; the caller crops its centre)."""
    target = plan.generate_size
    motion = None
    if request.motion is not None:
        motion = read_video(request.motion, fps=plan.fps, num_frames=plan.num_frames, size=target, fit="cover",
                            min_frames=2)
    inputs = RouteInputs(
        user=fit_image(user, target, "cover"),
        garments=[(role, fit_image(image, target, "contain")) for role, image in garments],
        prompt=request.prompt,
        motion=motion,
        size=target,
        num_frames=plan.num_frames,
        steps=request.steps,
        guidance=request.guidance,
        seed=request.seed,
    )
    try:
        return model.pipeline.render(inputs, anchor_first_frame, report)
    except torch.OutOfMemoryError:
        raise RuntimeFailure(
            f"out of memory on {model.pipeline.runtime.device}: lower --size or --seconds, or use --offload model "
            "(or group), --fp8"
        ) from None


def check_intermediates_folder(folder: Path | None, overwrite: bool) -> None:
    """`--keep-intermediates DIR`: a folder (made if missing, its parent must exist) without our files in it
    unless --overwrite."""
    if folder is None:
        return
    if folder.exists() and not folder.is_dir():
        raise InputError("--keep-intermediates needs a folder; this is a file", folder)
    existing = folder if folder.is_dir() else folder.parent
    if not existing.is_dir():
        raise InputError("--keep-intermediates: the folder above it does not exist", folder)
    if not os.access(existing, os.W_OK):
        raise InputError("--keep-intermediates: the folder is not writable", existing)
    for name in (DRESSED_PHOTO, POSE_VIDEO, FACE_VIDEO):
        if (folder / name).exists() and not overwrite:
            raise InputError("already exists (use --overwrite to replace it)", folder / name)


def keep_intermediates(folder: Path, record: RenderRecord, fps: float) -> list[Path]:
    """Write what the last render's stages handed on, at the size they made it: the dressed photo, the
    pose video and the face crops (as a video at the output fps). Returns the files written."""
    folder.mkdir(exist_ok=True)
    written = []
    if record.dressed is not None:
        save_image(folder / DRESSED_PHOTO, record.dressed)
        written.append(folder / DRESSED_PHOTO)
    if record.driving is not None:
        for name, frames in ((POSE_VIDEO, record.driving.pose), (FACE_VIDEO, record.driving.face)):
            write_video(folder / name, np.stack([np.asarray(frame) for frame in frames]), fps)
            written.append(folder / name)
    return written
