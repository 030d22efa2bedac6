"""The one place that maps what the user asked for (size, fps, seconds) to latent shapes."""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.errors import InputError

MAX_SECONDS = 600.0


def check_seconds(seconds: float) -> float:
    if not math.isfinite(seconds) or seconds <= 0:
        raise InputError(f"must be a positive number, not {seconds:g}", option="seconds")
    if seconds > MAX_SECONDS:
        raise InputError(f"{seconds:g} is too long (at most {MAX_SECONDS:g})", option="seconds")
    return seconds


def check_fps(fps: float) -> float:
    if not math.isfinite(fps) or not 1 <= fps <= 120:
        raise InputError(f"must be between 1 and 120, not {fps:g}", option="fps")
    return fps


def frame_count(seconds: float, fps: float) -> int:
    """Frames in `seconds` of video at `fps`: the count the user gets, exactly."""
    return max(1, round(check_seconds(seconds) * check_fps(fps)))


@dataclass(frozen=True)
class VideoShape:
    """A video of `num_frames` frames of `width`×`height`, and its shape in latent space.

    The Wan VAE compresses 4 frames into one latent frame and decodes 4k+1 frames, so we
    generate the smallest 4k+1 ≥ num_frames and drop the extra frames after decoding.
    """

    width: int
    height: int
    num_frames: int
    temporal_factor: int = 4
    spatial_factor: int = 16

    @property
    def latent_frames(self) -> int:
        return (self.num_frames - 1 + self.temporal_factor - 1) // self.temporal_factor + 1

    @property
    def pixel_frames(self) -> int:
        """Frames the VAE decodes: 4k+1, at least num_frames."""
        return (self.latent_frames - 1) * self.temporal_factor + 1

    @property
    def latent_height(self) -> int:
        return self.height // self.spatial_factor

    @property
    def latent_width(self) -> int:
        return self.width // self.spatial_factor
