"""Named colours for garments, hair and backgrounds, and how to draw distinct ones."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

RGB = tuple[int, int, int]

# Garment colours: the names are what captions say, so keep them plain and distinguishable.
GARMENT_COLOURS: dict[str, RGB] = {
    "red": (205, 35, 45),
    "maroon": (115, 25, 40),
    "orange": (240, 130, 35),
    "yellow": (245, 205, 45),
    "green": (45, 150, 65),
    "olive": (115, 125, 45),
    "teal": (25, 140, 140),
    "light blue": (125, 180, 230),
    "blue": (35, 85, 205),
    "navy": (25, 35, 95),
    "purple": (125, 55, 165),
    "pink": (240, 135, 185),
    "white": (246, 246, 246),
    "grey": (135, 135, 140),
    "black": (32, 32, 36),
    "brown": (120, 75, 40),
    "beige": (215, 195, 158),
}

HAIR_COLOURS: dict[str, RGB] = {
    "black": (28, 24, 22),
    "dark brown": (62, 40, 26),
    "brown": (112, 72, 40),
    "blonde": (222, 186, 108),
    "red": (160, 64, 30),
    "grey": (160, 160, 160),
}

# Muted backdrop colours, so that garments usually stand out against them.
BACKGROUND_COLOURS: dict[str, RGB] = {
    "light grey": (206, 206, 206),
    "cream": (236, 228, 208),
    "pale blue": (198, 214, 232),
    "pale green": (204, 226, 204),
    "pale pink": (236, 214, 214),
    "sand": (214, 196, 168),
    "slate": (140, 152, 164),
    "dark grey": (88, 88, 94),
    "lilac": (206, 196, 226),
}

SHOE_COLOURS: dict[str, RGB] = {
    "black": (30, 30, 30),
    "brown": (96, 60, 34),
    "white": (236, 236, 236),
    "red": (170, 30, 40),
    "navy": (30, 40, 90),
}

# Skin tones from light to dark; a person's tone interpolates between neighbours.
SKIN_ANCHORS = np.array(
    [(255, 224, 196), (236, 194, 158), (200, 144, 104), (146, 90, 58), (94, 58, 40)], np.float32
)


def skin_colour(tone: float) -> RGB:
    """The skin colour at `tone` in [0, 1] (0 lightest)."""
    pos = min(max(float(tone), 0.0), 1.0) * (len(SKIN_ANCHORS) - 1)
    i = min(int(pos), len(SKIN_ANCHORS) - 2)
    rgb = SKIN_ANCHORS[i] + (pos - i) * (SKIN_ANCHORS[i + 1] - SKIN_ANCHORS[i])
    return tuple(int(round(c)) for c in rgb)  # type: ignore[return-value]


def pick(
    rng: np.random.Generator,
    table: dict[str, RGB],
    avoid: tuple[RGB, ...] = (),
    min_distance: float = 0.0,
) -> str:
    """A random name from `table` whose colour is at least `min_distance` from each of `avoid`.

    Falls back to the name farthest from `avoid` when no colour is far enough.
    """
    names = list(table)
    if not avoid:
        return names[index(rng, len(names))]
    rgb = _as_array(tuple(table.values()))
    gaps = (((rgb[:, None, :] - np.asarray(avoid, np.float32)[None]) ** 2).sum(-1)).min(axis=1)
    far = np.flatnonzero(gaps >= min_distance**2)
    if far.size:
        return names[int(far[index(rng, far.size)])]
    return names[int(gaps.argmax())]


@lru_cache(maxsize=16)
def _as_array(rgbs: tuple[RGB, ...]) -> np.ndarray:
    return np.array(rgbs, np.float32)


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A uniform draw in [lo, hi) (rng.uniform costs several times more per call)."""
    return lo + (hi - lo) * rng.random()


def index(rng: np.random.Generator, n: int) -> int:
    """A uniform draw from range(n)."""
    return min(int(rng.random() * n), n - 1)


def choice(rng: np.random.Generator, weights: tuple[float, ...] | list[float]) -> int:
    """An index drawn with probability proportional to `weights` (cheaper than rng.choice)."""
    r = rng.random() * sum(weights)
    for i, w in enumerate(weights):
        r -= w
        if r < 0:
            return i
    return len(weights) - 1
