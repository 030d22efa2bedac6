"""Shared fixtures for the synthetic-world tests: cached samples and silhouettes."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from engine.synth import Sample, make_sample
from engine.synth.render import background


@lru_cache(maxsize=128)
def _sample(seed: int, size: tuple[int, int] = (64, 112), frames: int = 17, categories=None) -> Sample:
    return make_sample(seed, size, frames, 8.0, categories)


def _silhouette(frames: np.ndarray, appearance: dict) -> np.ndarray:
    height, width = frames.shape[-3:-1]
    back = background(appearance["background"], (width, height))
    return (frames != back).any(axis=-1)


@pytest.fixture
def sample_at():
    """make_sample(seed, size, frames, 8.0, categories), computed once per session: do not mutate."""
    return _sample


@pytest.fixture
def silhouette():
    """(T, H, W) bool of the pixels that differ from a person's backdrop."""
    return _silhouette


@pytest.fixture(scope="session")
def stepping_seeds() -> list[int]:
    """Seeds (default size and length) whose person walks at least 0.2 frame widths."""
    seeds = []
    for seed in range(200):
        motion = _sample(seed).meta["motion"]
        if abs(motion["step_speed"]) * motion["duration"] >= 0.2:
            seeds.append(seed)
            if len(seeds) == 3:
                return seeds
    raise AssertionError("no stepping seeds among the first 200")
