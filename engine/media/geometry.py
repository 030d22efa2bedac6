"""The one place that maps the user's sizes to output sizes, and fits pictures to them.

How the output size is chosen:

- Without `--size`, the output takes the default's long and short side (1152 and 720)
  and the user photo's orientation: a portrait photo gives 720x1152, a landscape or
  square photo gives 1152x720.
- With `--size WxH`, the request is used as given (width first); both sides must be
  even (H.264 yuv420p).
- The output is exactly that size. The model generates at the smallest size it accepts
  that covers it (each side rounded up to its multiple, 32 for the production model: 1152x720
  is generated at 1152x736) and the frames are centre-cropped to the output size.

How pictures are fitted to a size:

- "cover" (the user photo, motion video frames): scale until the size is filled, then
  crop the overflow equally on both sides.
- "contain" (garment product shots): scale until the whole picture fits, then pad
  equally on both sides with the background colour (white).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

from engine.errors import InputError

MAX_SIDE = 8192
MIN_SIDE = 16  # a smaller video shows nobody

_SIZE_PATTERN = re.compile(r"\s*([0-9]+)\s*[x×]\s*([0-9]+)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class SizeDecision:
    """The output size (width, height) and the size the model generates at to cover it."""

    width: int
    height: int
    generate_width: int
    generate_height: int

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)

    @property
    def generate_size(self) -> tuple[int, int]:
        return (self.generate_width, self.generate_height)

    def crop(self, frames: np.ndarray) -> np.ndarray:
        """Frames made at the generation size, centre-cropped to the output size."""
        return crop_center(frames, self.size)


def parse_size(text: str) -> tuple[int, int]:
    """Parse "WxH" (or "W×H") into (width, height). Sides must be 16..8192."""
    match = _SIZE_PATTERN.fullmatch(text)
    if match is None:
        raise InputError(f"invalid size '{text}': expected WIDTHxHEIGHT, e.g. 1152x720")
    width, height = int(match.group(1)), int(match.group(2))
    if width < MIN_SIDE or height < MIN_SIDE:
        raise InputError(f"invalid size '{text}': width and height must be at least {MIN_SIDE}")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise InputError(f"invalid size '{text}': a side may be at most {MAX_SIDE} pixels")
    return (width, height)


def round_to_multiple(value: int, multiple: int) -> int:
    """The multiple of `multiple` nearest to `value`; exact halves go down; at least `multiple`.

    720 with 32 gives 704 (720 is 22.5 x 32), 730 gives 736.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be at least 1, got {multiple}")
    quotient, remainder = divmod(value, multiple)
    if 2 * remainder > multiple:
        quotient += 1
    return max(quotient, 1) * multiple


def covering_multiple(value: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is at least `value` (720 with 32 gives 736)."""
    if multiple < 1:
        raise ValueError(f"multiple must be at least 1, got {multiple}")
    return max(-(-value // multiple), 1) * multiple


def choose_output_size(
    user_size: tuple[int, int],
    requested: tuple[int, int] | None,
    default: tuple[int, int] = (1152, 720),
    multiple: int = 32,
) -> SizeDecision:
    """Decide the output (width, height) and the generation size; the rule is in this module's
    docstring. `user_size` is the user photo's (width, height); `requested` is --size or None.
    """
    if requested is not None:
        width, height = requested
        if width % 2 or height % 2:
            raise InputError(f"invalid size '{width}x{height}': H.264 video needs even width and height")
    else:
        long_side, short_side = max(default), min(default)
        user_width, user_height = user_size
        portrait = user_height > user_width
        width, height = (short_side, long_side) if portrait else (long_side, short_side)
    return SizeDecision(width, height, covering_multiple(width, multiple), covering_multiple(height, multiple))


def crop_center(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The centre (width, height) of (..., H, W, C) frames at least that large; the extra rows
    and columns go equally from both sides (one more from the end when odd)."""
    width, height = size
    full_height, full_width = frames.shape[-3:-1]
    if full_width < width or full_height < height:
        raise ValueError(f"cannot crop {full_width}x{full_height} frames to {width}x{height}")
    top, left = (full_height - height) // 2, (full_width - width) // 2
    return frames[..., top : top + height, left : left + width, :]


def pad_edges(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., H, W, C) frames grown to (width, height) by repeating their edge pixels, placed so
    that `crop_center` to their own size gives them back exactly."""
    width, height = size
    full_height, full_width = frames.shape[-3:-1]
    rows, columns = height - full_height, width - full_width
    if rows < 0 or columns < 0:
        raise ValueError(f"cannot pad {full_width}x{full_height} frames to {width}x{height}")
    padding = [(0, 0)] * (frames.ndim - 3) + [(rows // 2, rows - rows // 2), (columns // 2, columns - columns // 2), (0, 0)]
    return np.pad(frames, padding, mode="edge")


def fit_image(
    image: Image.Image,
    size: tuple[int, int],
    mode: Literal["cover", "contain"],
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """Return an RGB image of exactly `size` (width, height), fitted by `mode` (see above)."""
    size = _check_fit_args(size, mode)
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size == size:
        return image.copy()
    if mode == "cover":
        return ImageOps.fit(image, size, method=Image.Resampling.LANCZOS)
    return ImageOps.pad(image, size, method=Image.Resampling.LANCZOS, color=background)


def fit_frames(
    frames: np.ndarray,
    size: tuple[int, int],
    mode: Literal["cover", "contain"] = "cover",
) -> np.ndarray:
    """Fit every frame of a (T, H, W, 3) uint8 array to `size` (width, height).

    Frames that already have the size are returned as they are (not copied).
    """
    width, height = _check_fit_args(size, mode)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    if frames.shape[1:3] == (height, width):
        return frames
    fitted = np.empty((len(frames), height, width, 3), dtype=np.uint8)
    for index, frame in enumerate(frames):
        fitted[index] = np.asarray(fit_image(Image.fromarray(frame), size, mode))
    return fitted


def _check_fit_args(size: tuple[int, int], mode: str) -> tuple[int, int]:
    width, height = int(size[0]), int(size[1])
    if width < 1 or height < 1:
        raise ValueError(f"size must be positive, got {size}")
    if mode not in ("cover", "contain"):
        raise ValueError(f"mode must be 'cover' or 'contain', got {mode!r}")
    return (width, height)
