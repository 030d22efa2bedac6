"""Resolving a request's run options, and what running out of memory becomes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from engine.errors import RuntimeFailure
from engine.limits import MAX_THREADS, check_int
from engine.modes import RunOptions
from engine.pipelines.runtime import Runtime, resolve_runtime


def resolve_run(run: RunOptions) -> Runtime:
    """The device, dtype and backend `run` asks for, as they resolve here; InputError if they cannot.

    `run.threads` sets torch's intra-op CPU threads for this process, from here on.
    """
    runtime = resolve_runtime(run.device, run.dtype, run.attention, run.acceleration)
    if run.threads is not None:
        check_int(run.threads, "threads", 1, MAX_THREADS)
        torch.set_num_threads(run.threads)
    return runtime


@contextmanager
def out_of_memory_is_a_failure(device: torch.device, remedy: str) -> Iterator[None]:
    """Turn running out of memory on `device` into a RuntimeFailure that says what to lower."""
    try:
        yield
    except torch.OutOfMemoryError:
        raise RuntimeFailure(f"out of memory on {device}: {remedy}") from None
