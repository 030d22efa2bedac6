"""Fixtures for the media tests: tiny videos whose frames say which frame they are."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from engine.media import write_video

# The shared folder beside the checkout (../shared/real-cases), absent on most machines.
REAL_CASES = Path(__file__).resolve().parents[3].parent / "shared" / "real-cases"

# Frame k of a numbered video is uniformly grey at FIRST_LEVEL + LEVEL_STEP * k, far enough
# apart that H.264 at crf 18 cannot blur one number into the next.
FIRST_LEVEL = 10
LEVEL_STEP = 8
MAX_NUMBERED_FRAMES = 30


def numbered_frames(count: int, size: tuple[int, int] = (64, 64)) -> np.ndarray:
    """`count` (H, W, 3) frames, frame k grey at FIRST_LEVEL + LEVEL_STEP * k."""
    assert count <= MAX_NUMBERED_FRAMES
    width, height = size
    levels = FIRST_LEVEL + LEVEL_STEP * np.arange(count, dtype=np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (count, height, width, 3)).copy()


def frame_numbers(frames: np.ndarray) -> list[int]:
    """Which numbered frame each decoded frame is (from its mean grey level)."""
    means = frames.reshape(len(frames), -1).mean(axis=1)
    return [int(n) for n in np.rint((means - FIRST_LEVEL) / LEVEL_STEP)]


@pytest.fixture(scope="session")
def numbered_video(tmp_path_factory) -> Path:
    """30 numbered 64x64 frames at 25 fps, written once for the session."""
    path = tmp_path_factory.mktemp("videos") / "numbered.mp4"
    write_video(path, numbered_frames(30), fps=25)
    return path


@pytest.fixture
def make_video(tmp_path) -> Callable[..., Path]:
    """Write a numbered video into tmp_path: make_video(name, count, fps=24, size=(64, 64))."""

    def make(name: str = "clip.mp4", count: int = 6, fps: float = 24, size=(64, 64)) -> Path:
        path = tmp_path / name
        write_video(path, numbered_frames(count, size), fps=fps)
        return path

    return make


@pytest.fixture
def real_case_dir() -> Path:
    if not REAL_CASES.is_dir():
        pytest.skip(f"{REAL_CASES} is not present")
    return REAL_CASES


@pytest.fixture
def make_frames() -> Callable[..., np.ndarray]:
    """numbered_frames, for tests (test modules cannot import conftest in importlib mode)."""
    return numbered_frames


@pytest.fixture
def read_numbers() -> Callable[[np.ndarray], list[int]]:
    """frame_numbers, for tests."""
    return frame_numbers
