"""What a user asks for: garment specs `PATH[:CATEGORY][@SECONDS]` and their parser, and the
render request (no torch here: a batch knows its finished jobs before the model's libraries load)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import InputError
from engine.model.roles import GARMENT_CATEGORIES
from engine.modes import RunOptions


@dataclass(frozen=True)
class GarmentSpec:
    """A garment photo, its category (None: the model is told 'unknown') and start time."""

    path: Path
    category: str | None = None
    start: float = 0.0

    @property
    def role(self) -> str:
        return self.category or "unknown"


def _split_suffix(text: str, marker: str) -> tuple[str, str | None]:
    """Split `text` at its last `marker` when what follows looks like a suffix, not a path part."""
    head, sep, tail = text.rpartition(marker)
    if not sep or "/" in tail or "\\" in tail:
        return text, None
    return head, tail


def parse_garment(text: str, allow_time: bool = False) -> GarmentSpec:
    """Parse `PATH`, `PATH:CATEGORY`, and with `allow_time` also `...@SECONDS`.

    CATEGORY is one of top, bottom, dress. A path that itself contains ':' or '@' can be
    written with an explicit category (`my:file.png:top`).
    """
    rest = text.strip()
    start = 0.0
    if allow_time:
        head, when = _split_suffix(rest, "@")
        if when is not None:
            try:
                start = float(when)
            except ValueError:
                raise InputError(f"garment '{text}': '@{when}' is not a time in seconds") from None
            if not math.isfinite(start) or start < 0:
                raise InputError(f"garment '{text}': the switch time must be 0 or more seconds")
            rest = head
    head, category = _split_suffix(rest, ":")
    if category is not None and "." not in category:
        category = category.lower()
        if category not in GARMENT_CATEGORIES:
            known = ", ".join(GARMENT_CATEGORIES)
            raise InputError(f"garment '{text}': unknown category '{category}' (use one of {known})")
        rest = head
    else:
        category = None
    if not rest:
        raise InputError(f"garment '{text}': no file given")
    return GarmentSpec(path=Path(rest), category=category, start=start)


@dataclass
class GenerateRequest:
    """One try-on render. None means: the model preset's default."""

    user: Path
    output: Path
    garments: list[GarmentSpec] = field(default_factory=list)
    motion: Path | None = None
    prompt: str = ""
    size: tuple[int, int] | None = None
    seconds: float | None = None
    fps: float | None = None
    seed: int = 0
    steps: int | None = None
    guidance: float | None = None
    overwrite: bool = False
    run: RunOptions = RunOptions()
    keep_intermediates: Path | None = None  # the public route's: a folder for what its stages hand each other
