"""Curation thresholds: a JSON file read into `CurateConfig` (every key optional; unknown keys refused).

Example (`curate.json`)::

    {"min_seconds": 2.0, "min_short_side": 480, "motion_band": [0.005, 0.15], "min_quality": 5.0}
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from engine.errors import InputError
from engine.jsonfiles import read_config
from engine.train.config import _is_number, _reject_unknown, _require_choice, _require_int, _require_positive
from engine.train.scorer import RAW_HIGH, RAW_LOW
from engine.train.student_config import SCORERS


@dataclass(frozen=True)
class CurateConfig:
    """What each stage of `tryon data curate` keeps; see each field's comment."""

    # stage 1: coarse-to-fine filtering
    min_seconds: float = 2.0  # a clip (after scene cuts) shorter than this is dropped
    min_short_side: int = 480  # pixels: the video's shorter side must reach this
    max_side: int = 1280  # clips are written with their longer side at most this (aspect kept)
    analysis_side: int = 256  # frames are judged (cuts, motion, quality) at this longer side
    scene_cut: float = 0.4  # histogram distance (0..1) between consecutive frames that splits a clip
    detect_frames: int = 3  # frames (evenly spaced) the person detector looks at
    person_threshold: float = 0.5  # detector score from which a box counts as a person
    motion_band: tuple[float, float] = (0.005, 0.15)  # mean |frame difference| / 255 must lie inside
    # the GR-DMD frame scorer's mean score (1 to 10, its scale) must reach this; None: the scorer's own
    # default, kept beside it (engine.train.scorer: `keep_from`)
    min_quality: float | None = None
    scorer: str = "auto"  # auto | sharpness_colour | aesthetic (engine.train.scorer)
    aesthetic_weights: str | None = None  # folder with clip/ and head.safetensors
    # stage 2: captions
    caption_tokens: int = 60  # the most tokens of each caption
    # stage 3: garment extraction
    category_threshold: float = 0.5  # P(yes) from which the VLM says a category is worn
    min_validation: float = 0.5  # P(yes) from which the VLM accepts an extracted garment
    # all stages
    seed: int = 0  # the edit model's seed, and the choice of the reference's garment

    def __post_init__(self) -> None:
        for key in ("min_short_side", "max_side", "analysis_side", "detect_frames", "caption_tokens"):
            _require_int(getattr(self, key), key, minimum=1)
        _require_int(self.seed, "seed", minimum=0)
        _require_positive(self.min_seconds, "min_seconds", allow_zero=True)
        if self.min_quality is not None and (not _is_number(self.min_quality)
                                             or not RAW_LOW <= self.min_quality <= RAW_HIGH):
            raise InputError(f"min_quality is on the scorers' scale, {RAW_LOW:g} to {RAW_HIGH:g}, not "
                             f"{self.min_quality!r} (or null: the scorer's own threshold)")
        for key in ("scene_cut", "person_threshold", "category_threshold", "min_validation"):
            value = getattr(self, key)
            if not _is_number(value) or not 0.0 <= value <= 1.0:
                raise InputError(f"{key} must be a number between 0 and 1, not {value!r}")
        band = self.motion_band
        if len(band) != 2 or not all(_is_number(v) for v in band) or not 0 <= band[0] <= band[1]:
            raise InputError(f"motion_band must be [low, high] with 0 <= low <= high, not {list(band)!r}")
        _require_choice(self.scorer, "scorer", SCORERS)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "motion_band": list(self.motion_band)}

    @classmethod
    def from_dict(cls, data: Any) -> "CurateConfig":
        if not isinstance(data, dict):
            raise InputError("the curation config must be a JSON object")
        _reject_unknown(data, {f.name for f in fields(cls)}, "curation config")
        if "motion_band" in data:
            band = data["motion_band"]
            if not isinstance(band, list):
                raise InputError(f"motion_band must be [low, high], not {band!r}")
            data = {**data, "motion_band": tuple(band)}
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> "CurateConfig":
        """Read a JSON config file; every problem is an InputError naming the file."""
        return read_config(path, cls.from_dict)
