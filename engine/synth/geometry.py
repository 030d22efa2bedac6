"""2D helpers on per-frame vectors (arrays shaped (..., T, 2)) and capsule polygons."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

_FLIP = np.array([1.0, -1.0])
_DOWN = np.array([0.0, 1.0])


def across_of(down: np.ndarray) -> np.ndarray:
    """The unit vector 90 degrees from `down` that points to the image right when upright."""
    return down[..., ::-1] * _FLIP


def unit(d: np.ndarray) -> np.ndarray:
    """`d` normalised along the last axis; straight down where it has no length."""
    n = np.sqrt((d * d).sum(axis=-1, keepdims=True))
    return np.where(n > 1e-6, d / np.maximum(n, 1e-6), _DOWN)


def arc_points(r_px: float) -> int:
    """Vertices on a half circle of radius `r_px` pixels: few when small (drawing cost)."""
    return min(max(int(r_px * 0.45) + 2, 3), 9)


@lru_cache(maxsize=None)
def circle_uv(n: int) -> np.ndarray:
    """(n, 2) unit circle starting at the top (u, v) = (0, -1), clockwise on screen."""
    th = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    return np.stack([np.sin(th), -np.cos(th)], axis=1)


@lru_cache(maxsize=None)
def _template(n0: int, n1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per vertex: (cos, sin) in the (axis, across) basis, the weight of b, and of r1.

    An end with n = 0 is flat; otherwise it is a half circle of n vertices.
    """
    ends = []
    for n, start, at_b in ((n0, math.pi / 2, 0.0), (n1, -math.pi / 2, 1.0)):
        th = np.linspace(start, start + math.pi, n) if n else np.array([start, start + math.pi])
        cs = np.stack([np.cos(th), np.sin(th)], axis=1)
        if not n:
            cs[:, 0] = 0.0
        ends.append((cs, np.full(len(th), at_b)))
    cs = np.concatenate([e[0] for e in ends])
    wb = np.concatenate([e[1] for e in ends])
    return cs, wb[:, None], wb


def capsules(
    a: np.ndarray, b: np.ndarray, r0: np.ndarray, r1: np.ndarray, n0: int, n1: int
) -> tuple[np.ndarray, np.ndarray]:
    """Polygons of C tapered capsules at once, all with the same end vertex counts.

    a, b: (C, T, 2) end centres; r0, r1: (C,) radii. Returns vertices (C, T, K, 2) and
    the unit axes (C, T, 2).
    """
    d = unit(b - a)
    p = across_of(d)
    cs, wb, wr = _template(n0, n1)
    r = r0[:, None] + (r1 - r0)[:, None] * wr[None, :]  # (C, K)
    along = (cs[None, :, 0] * r)[:, None, :, None]  # (C, 1, K, 1)
    side = (cs[None, :, 1] * r)[:, None, :, None]
    centre = a[:, :, None, :] + wb[None, None] * (b - a)[:, :, None, :]
    return centre + along * d[:, :, None, :] + side * p[:, :, None, :], d
