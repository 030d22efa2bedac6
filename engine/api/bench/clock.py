"""Timers around the model calls, peak memory, and the device a benchmark ran on."""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from engine.pipelines.pipeline_tryon import TryOnPipeline


class StageClock:
    """Wall-clock timers around model calls; synchronized on CUDA.

    `wrap(owner, name, stage)` replaces `owner.name` (a method, on that instance only) by a
    timed call until `restore()`. Calls made while another timed call runs are not timed
    again, so stages are disjoint. With `per_stage` False (end to end) nothing is wrapped and
    `stamp` reads the clock without waiting for the device, so work overlaps as it does for
    the user.
    """

    def __init__(self, device: torch.device, per_stage: bool = True) -> None:
        self.device = device
        self.per_stage = per_stage
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._depth = 0
        self._wrapped: list[tuple[Any, str, bool, Any]] = []

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def now(self) -> float:
        """The wall clock, after the device has finished the work queued so far."""
        self.sync()
        return time.perf_counter()

    def stamp(self) -> float:
        """`now()` when timing stages; end to end, the wall clock as it is (no wait for the device)."""
        return self.now() if self.per_stage else time.perf_counter()

    def reset(self) -> None:
        self.totals = defaultdict(float)
        self.calls = defaultdict(int)

    @contextmanager
    def span(self, stage: str) -> Iterator[None]:
        if self._depth:
            yield
            return
        start = self.now()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            self.totals[stage] += self.now() - start
            self.calls[stage] += 1

    def add(self, stage: str, seconds: float) -> None:
        if self.per_stage:
            self.totals[stage] += seconds

    def wrap(self, owner: Any, name: str, stage: str) -> None:
        if not self.per_stage:
            return
        original = getattr(owner, name)
        had_own = name in vars(owner)
        previous = vars(owner).get(name)

        def timed(*args, **kwargs):
            with self.span(stage):
                return original(*args, **kwargs)

        setattr(owner, name, timed)
        self._wrapped.append((owner, name, had_own, previous))

    def restore(self) -> None:
        while self._wrapped:
            owner, name, had_own, previous = self._wrapped.pop()
            if had_own:
                setattr(owner, name, previous)
            else:
                delattr(owner, name)


def instrument(clock: StageClock, pipeline: TryOnPipeline) -> None:
    """Time the pipeline's model calls (see the module docstring)."""
    clock.wrap(pipeline.text_encoder, "forward", "text_encoding")
    clock.wrap(pipeline.vae, "encode", "vae_encode")
    clock.wrap(pipeline.vae, "decode", "vae_decode")
    clock.wrap(pipeline.transformer, "forward", "transformer")


# -- memory -----------------------------------------------------------------------------------


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """(MiB, kind): CUDA's peak allocated since the last reset, or the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return peak * scale / 2**20, "cpu_peak_rss"


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return f"cpu ({_cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
