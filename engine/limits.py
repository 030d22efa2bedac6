"""The range of every number a user can give, checked before any work starts.

The same checks serve the CLI's options, batch rows and the API, so a value is refused in
one line wherever it comes from. The ranges are in each option's --help and in docs/commands.md.
"""

from __future__ import annotations

import math
import os

from engine.errors import InputError

SEED_MAX = 2**32 - 1  # seeds are 0 to 4294967295 everywhere
MAX_STEPS = 1000
MAX_THREADS = 1024  # --threads
MIN_PHOTO_SIDE = 16  # pixels, of a person or garment photo
MAX_PROMPT_CHARS = 10_000  # the text encoder reads at most a few hundred tokens of it
MAX_GUIDANCE = 100.0
BYTES_PER_PIXEL_FRAME = 48  # a decoded or rendered frame held as uint8 and float32 copies at once


def check_int(value: int, option: str, low: int, high: int) -> int:
    """`value` must be an integer in [low, high]; `option` is the request field it came from."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"must be an integer from {low} to {high}, not {value}", option=option)
    return value


def check_number(value: float, option: str, low: float, high: float) -> float:
    """`value` must be a finite number in [low, high] (inf and nan are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise InputError(f"must be a number from {low:g} to {high:g}, not {value}", option=option)
    return float(value)


def check_seed(seed: int, option: str = "seed") -> int:
    return check_int(seed, option, 0, SEED_MAX)


def check_frames_fit_in_memory(frames: int, width: int, height: int, what: str) -> None:
    """Refuse, before the work, a video that could not be held in this machine's free memory."""
    needed = frames * width * height * BYTES_PER_PIXEL_FRAME
    available = available_memory()
    if available is not None and needed > available:
        raise InputError(f"{what}: {frames} frames of {width}x{height} need about {needed / 2**30:.1f} GiB of "
                         f"memory; {available / 2**30:.1f} GiB is free (lower the size, frames or seconds)")


def available_memory() -> int | None:
    """Bytes of memory free for a new allocation (None where the OS does not say)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
