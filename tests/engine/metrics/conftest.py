"""Fixtures for the metrics tests: tiny lossless videos and sample folders on disk."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest


def _write_video(path: Path, frames: np.ndarray, fps: int = 8) -> Path:
    """Write uint8 RGB (T, H, W, 3) losslessly (libx264rgb, -qp 0): decoding gives it back exactly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t, h, w, _ = frames.shape
    writer = imageio_ffmpeg.write_frames(
        str(path), (w, h), fps=fps, codec="libx264rgb", pix_fmt_out="rgb24",
        quality=None, output_params=["-qp", "0"], macro_block_size=1,
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame).tobytes())
    writer.close()
    return path


def _write_sample(folder: Path, target: np.ndarray, masks: dict[str, np.ndarray] | None) -> Path:
    """A synthetic-world sample folder: target.mp4, masks.npz (if masks), meta.json."""
    _write_video(folder / "target.mp4", target)
    meta: dict[str, object] = {"fps": 8}
    if masks is not None:
        np.savez_compressed(folder / "masks.npz", **masks)
        meta["masks"] = "masks.npz"
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


@pytest.fixture
def write_video() -> Callable[..., Path]:
    return _write_video


@pytest.fixture
def write_sample() -> Callable[..., Path]:
    return _write_sample


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
