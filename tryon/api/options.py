"""The options every command shares: which model runs, and where and how."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from tryon.errors import RuntimeFailure
from tryon.pipelines.runtime import Acceleration, Runtime, resolve_runtime


@dataclass(frozen=True)
class RunOptions:
    """Which model (None: the default one), on which device, in which dtype, with which attention
    backend and speed and memory modes. Nested in every request."""

    model: str | None = None  # a checkpoint folder, a Hub repo id or a preset name
    revision: str | None = None  # a Hub branch, tag or commit
    device: str = "auto"
    dtype: str = "auto"
    attention: str = "auto"
    acceleration: Acceleration = field(default_factory=Acceleration)

    def runtime(self) -> Runtime:
        """The device, dtype and backend these options resolve to here; InputError if they cannot."""
        return resolve_runtime(self.device, self.dtype, self.attention, self.acceleration)


@contextmanager
def out_of_memory_is_a_failure(device: torch.device, remedy: str) -> Iterator[None]:
    """Turn running out of memory on `device` into a RuntimeFailure that says what to lower."""
    try:
        yield
    except torch.OutOfMemoryError:
        raise RuntimeFailure(f"out of memory on {device}: {remedy}") from None
