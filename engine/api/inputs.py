"""Checks of a request's inputs that need no model: each fails with one clear InputError.

Every entry point runs them before it loads a model, so bad input fails in milliseconds.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.api.specs import GarmentSpec
from engine.errors import InputError
from PIL import Image

from engine.limits import MAX_GUIDANCE, MAX_PROMPT_CHARS, MAX_STEPS, MIN_PHOTO_SIDE, check_int, check_number, check_seed
from engine.media import VideoInfo, load_image, probe_video
from engine.media.atomic import create_temp_beside, release_temp
from engine.media.image import require_file
from engine.model.roles import MAX_GARMENTS
from engine.pipelines.shapes import check_fps, check_seconds


def check_output(path: Path, overwrite: bool) -> None:
    if path.suffix.lower() != ".mp4":
        raise InputError("the output must be an .mp4 file", path)
    if path.is_dir():
        raise InputError("the output is a folder; give a file name ending in .mp4", path)
    if path.exists() and not overwrite:
        raise InputError("already exists (use --overwrite to replace it)", path)
    if path.is_symlink() and not overwrite:  # dangling: exists() looks through it
        raise InputError("is a symbolic link to a missing file (use --overwrite to replace it)", path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError("the output folder does not exist", folder)
    if not os.access(folder, os.W_OK):
        raise InputError("the output folder is not writable", folder)
    # the one sure test (root, /proc, a read-only mount, a long name)
    release_temp(create_temp_beside(path, ".tmp.check"), delete=True)


def check_prompt(prompt: str | None) -> str | None:
    """A prompt of at most MAX_PROMPT_CHARS characters (the text encoder reads far fewer tokens)."""
    if prompt is not None and len(prompt) > MAX_PROMPT_CHARS:
        raise InputError(f"is {len(prompt):,} characters long; at most {MAX_PROMPT_CHARS:,}", option="prompt")
    return prompt


def check_options(
    seconds: float | None = None,
    fps: float | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int | None = None,
) -> None:
    """The timing and sampling options a request sets (None: the model's default); ranges in engine.limits."""
    if seconds is not None:
        check_seconds(seconds)
    if fps is not None:
        check_fps(fps)
    if steps is not None:
        check_int(steps, "steps", 1, MAX_STEPS)
    if guidance is not None:
        check_number(guidance, "guidance", 0, MAX_GUIDANCE)
    if seed is not None:
        check_seed(seed)


def check_motion(path: Path | None) -> VideoInfo | None:
    """A motion video, when given, must be readable and have at least two frames. Returns what it is."""
    if path is None:
        return None
    info = probe_video(path)
    if info.frame_count < 2:
        raise InputError("has 1 frame; a motion video needs at least 2", path)
    return info


def check_garments(garments: list[GarmentSpec]) -> None:
    if len(garments) > MAX_GARMENTS:
        raise InputError(f"{len(garments)} garments given; at most {MAX_GARMENTS} at once")
    categories = [g.category for g in garments if g.category]
    if "dress" in categories and ({"top", "bottom"} & set(categories)):
        raise InputError("a dress is one piece: it cannot be worn with a top or a bottom")


def check_input_files(*paths: Path | None) -> None:
    """Each given input file exists and is a regular, non-empty file (None: not given).

    What the commands check before torch loads (milliseconds), so a mistyped path answers at
    once; decoding the files comes later, with the other checks of the request.
    """
    for path in paths:
        if path is not None:
            require_file(path)


def load_photo(path: Path) -> Image.Image:
    """A person or garment photo (`load_image`), refused when too small to show anyone."""
    image = load_image(path)
    if min(image.size) < MIN_PHOTO_SIDE:
        width, height = image.size
        raise InputError(f"the photo is {width}x{height} pixels; a photo needs at least {MIN_PHOTO_SIDE} on each side",
                         path)
    return image
