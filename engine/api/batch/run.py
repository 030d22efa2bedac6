"""The run loop: check, skip the done, render the rest on an executor, keep the report."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from engine.api.batch.checks import ReadyJob, check_jobs
from engine.api.batch.manifest import BadRow
from engine.api.batch.planning import PlannedJob, Shard
from engine.api.batch.report import (
    BatchSummary,
    Completion,
    JobOutcome,
    Status,
    append_to_report,
    rewrite_report,
    completion_records,
    read_report_lines,
)
from engine.api.generate import GenerateRequest, GenerateResult, dance, dress, plan_output
from engine.api.loading import default_model, get_model
from engine.api.options import resolve_run
from engine.checkpoint import LoadedModel
from engine.errors import DiskFull, InputError, TryonError
from engine.media import load_image, probe_video
from engine.media.atomic import deferred_interrupt, disk_is_full, remove_stale_temps
from engine.modes import RunOptions
from engine.progress import Notice, Progress

class BatchListener:
    """What run_batch tells its caller as it goes; every method does nothing by default."""

    def batch_started(self, total: int) -> None: ...

    def rows_checked(self, bad: list[BadRow]) -> None: ...

    def job_started(self, entry: ReadyJob | BadRow) -> None: ...

    def stage(self, stage: str, done: int, total: int) -> None: ...

    def notice(self, message: str) -> None: ...

    def job_finished(self, outcome: JobOutcome) -> None: ...


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


class JobExecutor(Protocol):
    """Where a batch's jobs run: here (`LocalExecutor`) or on a cluster (`engine.api.batch_ray`).

    The driver (`run_batch`) reads and checks the manifest, reports bad rows and alone writes
    the report; an executor only runs the checked jobs that need rendering, each with
    `run_job`, and yields their outcomes (completion record and disk-full flag included) as
    they end (in any order).
    """

    def start(self, defaults: GenerateRequest, listener: BatchListener) -> None:
        """Get ready to run jobs (load the model); InputError when it cannot be loaded."""

    def run(self, jobs: Sequence[ReadyJob], defaults: GenerateRequest, listener: BatchListener) -> Iterator[JobOutcome]:
        """Run every job once (retries included), yielding each outcome as the job ends."""

    def close(self) -> None:
        """Let go of whatever start() took, also after an error or Ctrl-C."""


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


def run_batch(
    planned: Sequence[PlannedJob | BadRow],
    outdir: Path,
    defaults: GenerateRequest,
    shard: Shard | None = None,
    listener: BatchListener | None = None,
    executor: JobExecutor | None = None,
    verify: bool = False,
) -> BatchSummary:
    """Check every row, report the bad ones, run the good ones on `executor` (here, one by one,
    by default), keeping the report; return the summary.

    First, stale temp files of killed runs are removed from OUTDIR and every row is checked
    (`check_jobs`); the bad rows go to `listener.rows_checked` at once and are the report's
    first lines (`attempts` 0: never handed to a worker). Jobs whose completion record holds
    are skipped here; the others go to the executor. Bad rows and jobs that fail (a bad
    value, out of memory, a full disk for that file, any error of that job) are reported as
    failed and the batch goes on; a disk that is still full after a job failed on it stops
    the batch (`summary.stopped`). The model is loaded (`executor.start`) once, after the
    checks, and only when a job needs rendering; one that cannot be loaded is the whole
    batch's problem and raises InputError.

    The report (`shard.report_name` in OUTDIR) is kept across runs: each outcome is appended
    as the job ends, so it survives a kill, and when the run ends (done, stopped, Ctrl-C) the
    report is rewritten atomically with one line per row, the latest. The summary's outcomes
    are in row order. Ctrl-C stops the batch: the summary says `interrupted`.
    """
    listener = listener or BatchListener()
    executor = executor or LocalExecutor()
    shard = shard or Shard(1, 1)
    outdir = Path(outdir)
    summary = BatchSummary(total=len(planned), report=outdir / shard.report_name)
    started = time.perf_counter()
    listener.batch_started(len(planned))
    if outdir.exists() and not outdir.is_dir():
        raise InputError("the output folder is a file", outdir)
    previous = read_report_lines(summary.report)
    try:
        remove_stale_temps(outdir, recursive=True)
        checked = check_jobs(planned, defaults, completion_records(outdir), verify)
        bad = [entry for entry in checked if isinstance(entry, BadRow)]
        listener.rows_checked(bad)
        done = [entry for entry in checked if isinstance(entry, ReadyJob) and entry.finished is not None]
        jobs = [entry for entry in checked if isinstance(entry, ReadyJob) and entry.finished is None]
        if jobs:
            listener.stage("loading model", 0, 1)
            executor.start(defaults, listener)  # before any output: a model that cannot load stops the batch here
            listener.stage("loading model", 1, 1)
        _prepare_outdir(outdir)
        with append_to_report(summary.report) as report:
            # The bad rows are the report's first lines; the listener hears of them (and of the
            # jobs finished earlier) in row order among the rendered jobs.
            unheard: list[tuple[ReadyJob | BadRow, JobOutcome]] = []

            def write(outcome: JobOutcome) -> None:
                summary.outcomes.append(outcome)
                report.write(json.dumps(outcome.to_dict()) + "\n")
                report.flush()

            def hear(before: int | None = None) -> None:
                while unheard and (before is None or unheard[0][0].row < before):
                    entry, outcome = unheard.pop(0)
                    listener.job_started(entry)
                    listener.job_finished(outcome)

            for entry in bad:
                outcome = JobOutcome(entry.row, "failed", entry.output, entry.reason, attempts=0)
                write(outcome)
                unheard.append((entry, outcome))
            for entry in done:
                outcome = JobOutcome(entry.row, "skipped", entry.job.output, "complete output already there", 0.0,
                                     entry.finished, attempts=0)
                write(outcome)
                unheard.append((entry, outcome))
            unheard.sort(key=lambda pair: pair[0].row)
            try:
                for outcome in executor.run(jobs, defaults, listener) if jobs else ():  # started only for jobs
                    hear(before=outcome.row)
                    write(outcome)
                    listener.job_finished(outcome)
                    if outcome.disk_full and disk_is_full(outdir):
                        summary.stopped = f"{outdir}: disk full (row {outcome.row} could not be written); stopped"
                        break
            finally:
                hear()
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        executor.close()
        summary.outcomes.sort(key=lambda outcome: outcome.row)
        with deferred_interrupt():
            rewrite_report(summary.report, planned, previous, summary.outcomes)
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


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


def _prepare_outdir(outdir: Path) -> None:
    if outdir.exists() and not outdir.is_dir():
        raise InputError("the output folder is a file", outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create the output folder ({error.strerror})", outdir) from None

