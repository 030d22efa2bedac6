"""Copies between the host and the device that never make the host wait for the device.

On CUDA a blocking copy, a `.item()` or a `bool(tensor)` stops the host until every kernel
queued before it has run, so the next chunk's kernels are queued late and the GPU idles.
Here frames go up as uint8 from pinned memory without blocking (converted to floats on the
device), and come back into pinned memory without blocking, with an event the reader waits
for — the writer thread, not the thread that feeds the GPU. On the CPU both are plain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from engine.errors import RuntimeFailure

NON_FINITE = ("the model produced non-finite values (NaN or inf), so no video was written: "
              "its weights may be broken, or try --dtype fp32")


def host_frames(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 frames as a tensor ready to go to `device` without blocking: pinned for CUDA."""
    tensor = torch.from_numpy(np.array(frames, dtype=np.uint8))  # a copy: the frames may be read-only
    return tensor.pin_memory() if device.type == "cuda" else tensor


def upload(tensor: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A host tensor on `device` in `dtype`: copied as it is (uint8: a quarter of float32's bytes),
    converted there."""
    return tensor.to(device, non_blocking=True).to(dtype)


class HostFrames:
    """uint8 frames (T, H, W, 3) of a chunk, on their way to the host.

    Made from device frames and a device flag saying whether the latents they came from were
    finite; `numpy()` (or `np.asarray`) waits for the copy and raises RuntimeFailure for
    non-finite latents (a black video would look like a result). `then(step)` applies `step`
    (e.g. a crop) to the frames when they arrive.
    """

    def __init__(self, frames: torch.Tensor, finite: torch.Tensor,
                 steps: tuple[Callable[[np.ndarray], np.ndarray], ...] = ()) -> None:
        self._ready = None
        if frames.device.type == "cuda":
            host = torch.empty(frames.shape, dtype=frames.dtype, pin_memory=True)
            flag = torch.empty((), dtype=torch.bool, pin_memory=True)
            host.copy_(frames, non_blocking=True)
            flag.copy_(finite, non_blocking=True)
            self._ready = torch.cuda.Event()
            self._ready.record()
            frames, finite = host, flag
        self._frames, self._finite, self._steps = frames, finite, steps
        self._arrived: np.ndarray | None = None

    def __len__(self) -> int:
        return self._frames.shape[0]

    def then(self, step: Callable[[np.ndarray], np.ndarray]) -> HostFrames:
        later = HostFrames.__new__(HostFrames)
        later.__dict__.update(self.__dict__, _steps=(*self._steps, step), _arrived=None)
        return later

    def numpy(self) -> np.ndarray:
        if self._arrived is None:
            if self._ready is not None:
                self._ready.synchronize()
            if not bool(self._finite):
                raise RuntimeFailure(NON_FINITE)
            frames = self._frames.numpy()
            for step in self._steps:
                frames = step(frames)
            self._arrived = frames
        return self._arrived

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        frames = self.numpy()
        return frames if dtype is None else frames.astype(dtype)
