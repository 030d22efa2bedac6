"""Reading and writing still images.

`load_image` is the one way a user photo or a garment photo enters the engine: whatever the
file holds (any PIL mode, EXIF rotation, transparency, 16-bit or float samples), it returns
an 8-bit RGB image that looks the way an image viewer shows the file. Every problem with
the file becomes an `InputError` whose one-line message names the file.
"""

from __future__ import annotations

import os
import re
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import DISK_FULL, DiskFull, InputError
from engine.media.atomic import create_temp_beside, deferred_interrupt, disk_is_full, release_temp

# Larger images are refused before their pixels are decoded (a 9000x9000 photo is already
# 81 M pixels; nothing we make needs more). Below PIL's own warning threshold on purpose.
MAX_IMAGE_PIXELS = 80_000_000

WHITE = (255, 255, 255)


def load_image(path: str | Path) -> Image.Image:
    """Read an image file as 8-bit RGB, upright (EXIF orientation applied).

    Transparent pixels are composited on white; 16-bit and float samples are scaled to
    8 bits by their range (see `to_rgb`). Raises InputError for a missing, empty,
    non-image, truncated or too large file.
    """
    path = require_file(path)
    with warnings.catch_warnings():
        # Our own limit, checked below with a clearer message, is lower than PIL's.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                _check_pixel_count(image.size, path)
                image.load()
                upright = ImageOps.exif_transpose(image)
        except UnidentifiedImageError as err:
            raise InputError(f"not an image ({_describe_content(path)})", path) from err
        except Image.DecompressionBombError as err:
            raise InputError(_too_large_from_pil(err), path) from err
        except InputError:
            raise
        except Exception as err:  # PIL's decoders raise OSError, SyntaxError, ValueError...
            detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InputError(f"truncated or corrupt image ({detail})", path) from err
    try:
        return to_rgb(upright)
    except ValueError as err:
        raise InputError(str(err), path) from err


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB.

    - transparency (RGBA, LA, PA, P or L/RGB with a transparent colour): composited on white;
    - 16-bit integer modes (I;16, I;16B, ...): 0..65535 maps to 0..255;
    - 32-bit integer mode I: treated as 16-bit when its values lie in 0..65535, otherwise
      its own min..max maps to 0..255;
    - float mode F: 0..1 maps to 0..255 when the values lie in 0..1, otherwise min..max;
    - everything else (1, L, P, CMYK, YCbCr, ...): PIL's conversion.

    Raises ValueError for a mode PIL cannot convert to RGB.
    """
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        return Image.fromarray(_scale_to_uint8(np.asarray(image), image.mode)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, WHITE + (255,))
        return Image.alpha_composite(white, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as err:
        raise ValueError(f"unsupported colour mode {image.mode}") from err


def save_image(path: str | Path, image: Image.Image) -> None:
    """Write `image` atomically: a hidden temp file in the same folder, then a rename.

    The format follows the file extension (.png, .jpg, ...). A reader never sees a
    half-written file, and a failure leaves no temp file behind.
    """
    path = Path(path)
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None:
        raise InputError(f"unknown image format '{path.suffix}' (use .png or .jpg)", path)
    temp = create_temp_beside(path, ".tmp" + path.suffix)
    try:
        image.save(temp, format=image_format)
        with deferred_interrupt():
            os.replace(temp, path)
            release_temp(temp, delete=False)
    except BaseException as err:
        release_temp(temp, delete=True)
        if isinstance(err, OSError) and (err.errno in DISK_FULL or disk_is_full(path.parent)):
            raise DiskFull(path, "writing the image") from err
        raise


# ---- shared file helpers (also used by engine.media.video_reader) ----


def require_file(path: str | Path) -> Path:
    """Return `path` as a Path if it is an existing, regular, non-empty file, else raise InputError.

    A FIFO or a device (`/dev/zero`) is refused by name: reading one would block or never end.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except OSError as err:
        raise InputError(f"cannot read the file ({err.strerror})", path) from err
    except ValueError:  # "embedded null byte"
        raise InputError(f"a file name may not hold a NUL byte: {str(path)!r}") from None
    if stat.S_ISDIR(mode):
        raise InputError("is a folder, not a file", path)
    if not stat.S_ISREG(mode):
        raise InputError("not a regular file (a pipe, socket or device)", path)
    if path.stat().st_size == 0:
        raise InputError("file is empty", path)
    return path


# ---- private helpers ----


def _check_pixel_count(size: tuple[int, int], path: Path) -> None:
    width, height = size
    if width * height > MAX_IMAGE_PIXELS:
        raise InputError(
            f"image is too large ({width}×{height}; the limit is {MAX_IMAGE_PIXELS:,} pixels)",
            path,
        )


def _too_large_from_pil(err: Exception) -> str:
    # PIL refuses at open time, before we learn the size; its message has the pixel count.
    match = re.search(r"\((\d+) pixels\)", str(err))
    pixels = f"{int(match.group(1)):,} pixels" if match else "too many pixels"
    return f"image is too large ({pixels}; the limit is {MAX_IMAGE_PIXELS:,} pixels)"


def _describe_content(path: Path) -> str:
    """A short guess at what a file that PIL cannot identify holds, for the message."""
    with open(path, "rb") as file:
        head = file.read(512)
    if b"ftyp" in head[:16]:
        return "it looks like a video"
    try:
        head.decode("utf-8")
        return "it looks like text"
    except UnicodeDecodeError:
        return "unknown format"


def _scale_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    values = np.nan_to_num(values.astype(np.float64))
    if mode.startswith("I;16"):
        low, high = 0.0, 65535.0
    elif mode == "I" and values.min() >= 0 and values.max() <= 65535:
        low, high = 0.0, 65535.0
    elif mode == "F" and values.min() >= 0 and values.max() <= 1:
        low, high = 0.0, 1.0
    else:
        low, high = float(values.min()), float(values.max())
    scaled = (values - low) / max(high - low, 1e-12) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
