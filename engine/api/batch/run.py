"""The run loop: check every row, skip the done, render the rest on an executor, keep the report.

Nothing here loads torch: a re-run whose jobs are all complete ends before the model's
libraries load. The local executor (`engine.api.batch.jobs`) is imported when a job renders.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from engine.api.batch.checks import BatchListener, ReadyJob, check_jobs
from engine.api.batch.manifest import BadRow
from engine.api.batch.planning import PlannedJob, Shard
from engine.api.batch.report import (
    BatchSummary,
    JobOutcome,
    append_to_report,
    completion_records,
    read_report_lines,
    rendered_earlier,
    rewrite_report,
)
from engine.api.specs import GenerateRequest
from engine.errors import InputError
from engine.media.atomic import deferred_interrupt, disk_is_full, remove_stale_temps


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
    are skipped here (their report line stays the one of their render, with its seconds and
    attempts); the others go to the executor. Bad rows and jobs that fail (a bad
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
            if executor is None:
                from engine.api.batch.jobs import LocalExecutor  # torch and the model's libraries load here

                executor = LocalExecutor()
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
                if rendered_earlier(previous, entry.job.output, entry.finished):
                    summary.outcomes.append(outcome)  # its report line stays the render's: seconds, attempts
                else:
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
        if executor is not None:
            executor.close()
        summary.outcomes.sort(key=lambda outcome: outcome.row)
        news = [outcome for outcome in summary.outcomes
                if not (outcome.status == "skipped" and rendered_earlier(previous, outcome.output, outcome.record))]
        with deferred_interrupt():
            rewrite_report(summary.report, planned, previous, news)
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _prepare_outdir(outdir: Path) -> None:
    if outdir.exists() and not outdir.is_dir():
        raise InputError("the output folder is a file", outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create the output folder ({error.strerror})", outdir) from None
