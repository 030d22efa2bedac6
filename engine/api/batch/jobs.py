"""One job of a batch, on the model: rendering it, or finding its output already complete.

Here (`LocalExecutor`) or on a Ray worker (`engine.api.batch_ray`); this module loads torch
and the model's libraries, which `run_batch` imports only when a job needs rendering.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from engine.api.batch.checks import BatchListener, ReadyJob
from engine.api.batch.report import Completion, JobOutcome, Status
from engine.api.generate import GenerateResult, dance, dress, plan_output
from engine.api.loading import default_model, get_model
from engine.api.options import resolve_run
from engine.api.specs import GenerateRequest
from engine.checkpoint import LoadedModel
from engine.errors import DiskFull, InputError, TryonError
from engine.media import load_image, probe_video
from engine.modes import RunOptions
from engine.progress import Notice, Progress


def expected_video(request: GenerateRequest, model: LoadedModel) -> tuple[int, tuple[int, int]]:
    """The frame count and (width, height) that dress writes for `request` with `model`."""
    plan = plan_output(request, model, load_image(request.user).size)
    return plan.num_frames, (plan.width, plan.height)


def is_complete(path: Path, frames: int, size: tuple[int, int]) -> bool:
    """Whether the video at `path` decodes, with exactly `frames` frames of `size`."""
    try:
        info = probe_video(path)
    except InputError:
        return False
    return info.frame_count == frames and (info.width, info.height) == tuple(size)


def load_batch_model(run: RunOptions, notice: Notice | None = None) -> LoadedModel:
    """The model every job uses, through get_model's cache, so dress() finds it loaded."""
    return get_model(run.model or default_model(), run.revision, resolve_run(run), notice or (lambda message: None))


def render(request: GenerateRequest, progress: Progress | None = None,
           notice: Notice | None = None) -> GenerateResult:
    """A job with garments is a `dress`; a row whose `garments` cell is empty is a `dance`."""
    command = dress if request.garments else dance
    return command(request, progress=progress, notice=notice)


class LocalExecutor:
    """The jobs one after another in this process, with the model loaded once."""

    def __init__(self) -> None:
        self.model: LoadedModel | None = None

    def start(self, defaults: GenerateRequest, listener: BatchListener) -> None:
        self.model = load_batch_model(defaults.run, listener.notice)

    def run(self, jobs: Sequence[ReadyJob], defaults: GenerateRequest, listener: BatchListener) -> Iterator[JobOutcome]:
        assert self.model is not None, "start() loads the model before the first job"
        for job in jobs:
            listener.job_started(job)
            yield run_job(job, self.model, listener)

    def close(self) -> None:
        self.model = None


def run_job(entry: ReadyJob, model: LoadedModel, listener: BatchListener) -> JobOutcome:
    """One checked job, here or on a Ray worker: skipped when its output is already complete,
    else rendered; any error of the job (a bad value, out of memory, a full disk for its file)
    is this job's failure. A done job's outcome carries its completion record; a disk-full
    failure says so (`disk_full`), for the driver to decide whether to stop."""
    started = time.perf_counter()

    def outcome(status: Status, reason: str | None = None, disk_full: bool = False) -> JobOutcome:
        record = Completion.of(entry.target, entry.fingerprint) if status != "failed" else None
        return JobOutcome(entry.row, status, entry.job.output, reason, round(time.perf_counter() - started, 3),
                          record, disk_full)

    if entry.finished is not None:
        return JobOutcome(entry.row, "skipped", entry.job.output, "complete output already there", 0.0,
                          entry.finished)
    try:
        request = entry.request
        if request.output.exists() and is_complete(request.output, *expected_video(request, model)):
            return outcome("skipped", "complete output already there")
        request.output.parent.mkdir(parents=True, exist_ok=True)  # inside OUTDIR: plan() checked
        render(request, progress=listener.stage, notice=listener.notice)
        return outcome("ok")
    except DiskFull as error:
        return outcome("failed", str(error), disk_full=True)
    except InputError as error:
        return outcome("failed", str(error))
    except TryonError as error:
        return outcome("failed", str(error))
    except MemoryError:
        return outcome("failed", "out of memory: lower --size or --seconds")
    except OSError as error:  # e.g. a file where the output's subfolder should be
        return outcome("failed", f"{error.filename or entry.target.parent}: {error.strerror or error}")
    except Exception as error:  # noqa: BLE001 - one job's failure, whatever it is, is that row's
        return outcome("failed", f"internal error: {type(error).__name__}: {error}")
