"""Stage 1 of curation, coarse to fine: the checks on frames, each returning a reason when a clip fails.

Cheap checks first (decodable, duration, resolution, scene cuts), then the models (one
person, motion band, quality). Frames are uint8 (T, H, W, 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from engine.curate.config import CurateConfig
from engine.curate.models import PersonDetector
from engine.metrics.frames import motion_magnitude

HISTOGRAM_BINS = 32


@dataclass(frozen=True)
class Segment:
    """Frames [start, end) of a video: one clip between scene cuts."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


def shrink(frames: np.ndarray, longer_side: int) -> np.ndarray:
    """Frames scaled down so their longer side is at most `longer_side` (never up)."""
    height, width = frames.shape[1:3]
    scale = longer_side / max(height, width)
    if scale >= 1:
        return frames
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.stack([np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR)) for frame in frames])


def histogram_distances(frames: np.ndarray) -> np.ndarray:
    """Distance between each pair of consecutive frames' colour histograms: half the L1 distance of
    the normalised per-channel histograms, 0 (same colours) to 1 (no colour in common); (T-1,)."""
    histograms = np.stack([
        np.concatenate([np.histogram(frame[..., c], bins=HISTOGRAM_BINS, range=(0, 256))[0] for c in range(3)])
        for frame in frames
    ]).astype(np.float64)
    histograms /= histograms.sum(axis=1, keepdims=True) / 3.0
    return np.abs(np.diff(histograms, axis=0)).sum(axis=1) / 6.0


def scene_segments(frames: np.ndarray, threshold: float) -> list[Segment]:
    """Split at every frame whose histogram distance to the previous one exceeds `threshold`."""
    cuts = [index + 1 for index, distance in enumerate(histogram_distances(frames)) if distance > threshold]
    bounds = [0, *cuts, len(frames)]
    return [Segment(start, end) for start, end in zip(bounds, bounds[1:]) if end > start]


def check_resolution(width: int, height: int, config: CurateConfig) -> str | None:
    if min(width, height) < config.min_short_side:
        return f"resolution {width}x{height}: shorter side under {config.min_short_side}"
    return None


def check_duration(frames: int, fps: float, config: CurateConfig, what: str = "video") -> str | None:
    seconds = frames / fps
    if seconds < config.min_seconds:
        return f"{what} lasts {seconds:.2f} s, under {config.min_seconds:g} s"
    return None


def check_one_person(detector: PersonDetector, frames: np.ndarray, config: CurateConfig) -> tuple[str | None, list[int]]:
    """(reason or None, persons found in each looked-at frame): exactly one in every one of them."""
    picks = np.linspace(0, len(frames) - 1, min(config.detect_frames, len(frames))).round().astype(int)
    scores = detector.person_scores([frames[i] for i in picks])
    counts = [sum(score >= config.person_threshold for score in frame) for frame in scores]
    for index, count in zip(picks, counts):
        if count != 1:
            return f"{count} persons detected in frame {int(index)} (exactly one needed)", counts
    return None, counts


def check_motion(frames: np.ndarray, config: CurateConfig) -> tuple[str | None, float]:
    low, high = config.motion_band
    motion = motion_magnitude(frames)
    if motion < low:
        return f"motion {motion:.4f} under the band's {low:g} (too still)", motion
    if motion > high:
        return f"motion {motion:.4f} over the band's {high:g} (too fast or shaky)", motion
    return None, motion


def quality_threshold(config: CurateConfig, scorer) -> float:
    """The config's `min_quality`, else the scorer's own threshold (both on the scorer's 1-10 scale)."""
    return scorer.keep_from if config.min_quality is None else config.min_quality


def check_quality(scorer, frames: np.ndarray, config: CurateConfig) -> tuple[str | None, float]:
    """The GR-DMD frame scorer's mean over (at most 16, evenly spaced) frames."""
    picks = np.linspace(0, len(frames) - 1, min(16, len(frames))).round().astype(int)
    quality = float(scorer(frames[picks]).mean())
    threshold = quality_threshold(config, scorer)
    if quality < threshold:
        return f"quality {quality:.3f} ({scorer.name}) under {threshold:g}", quality
    return None, quality
