"""Checking every planned row before anything renders, as the CLI checks a `dress`; and the
listener that hears of each checked row as the batch goes."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from engine.api.batch.manifest import BadRow, Job
from engine.api.batch.planning import PlannedJob
from engine.api.batch.report import Completion, JobOutcome, file_stamp, job_fingerprint
from engine.api.inputs import check_garments, check_motion, check_options, load_photo
from engine.api.specs import GenerateRequest
from engine.errors import InputError

def job_defaults(**settings) -> GenerateRequest:
    """The command-line options as a request template: every job's settings where its row leaves a
    cell empty. Its `user` and `output` are placeholders: each job has its own."""
    return GenerateRequest(user=Path(), output=Path(), **settings)


@dataclass(frozen=True)
class ReadyJob:
    """A planned job whose values and input files passed every check (or that is already done).

    `finished`: the completion record showing its output is done, when one does.
    """

    planned: PlannedJob
    request: GenerateRequest
    fingerprint: str
    finished: Completion | None = None

    @property
    def row(self) -> int:
        return self.planned.row

    @property
    def job(self) -> Job:
        return self.planned.job

    @property
    def target(self) -> Path:
        return self.planned.target


class _FileChecks:
    """The generate commands' checks of input files, each file checked once however many rows name it."""

    def __init__(self) -> None:
        self.done: dict[tuple, InputError | None] = {}

    def image(self, path: Path) -> None:
        self._check(path, load_photo)

    def video(self, path: Path | None) -> None:
        if path is not None:
            self._check(path, check_motion)

    def _check(self, path: Path, check) -> None:
        try:
            stat = path.stat()
            key = (check, str(path), stat.st_size, stat.st_mtime_ns)
        except OSError:
            key = (check, str(path))
        if key not in self.done:
            try:
                check(path)
                self.done[key] = None
            except InputError as error:
                self.done[key] = error
        if self.done[key] is not None:
            raise self.done[key]


def check_jobs(
    planned: Sequence[PlannedJob | BadRow],
    defaults: GenerateRequest,
    records: Mapping[str, Sequence[Completion]] | None = None,
    verify: bool = False,
) -> list[ReadyJob | BadRow]:
    """Check every planned row before anything renders: a ReadyJob, or a BadRow saying why not.

    A job whose completion record holds (see `Completion`) is ready and finished: nothing of
    it is checked or decoded, unless `verify`. Every other job is checked as the CLI checks a
    `dress`, by the same functions (engine.api.inputs: garments, seed, seconds, fps, steps,
    guidance; photos decode as images, the motion as a video of 2+ frames); its output was
    checked by `plan`.
    """
    records = records or {}
    files = _FileChecks()
    stamps = functools.lru_cache(maxsize=None)(file_stamp)
    return [_check_entry(entry, defaults, records, verify, files, stamps) for entry in planned]


def _check_entry(entry, defaults, records, verify, files, stamps) -> ReadyJob | BadRow:
    if isinstance(entry, BadRow):
        return entry
    request = job_request(entry, defaults)
    try:
        fingerprint = job_fingerprint(request, stamps)
    except OSError as error:
        return BadRow(entry.row, f"{error.filename}: {error.strerror}", entry.job.output)
    if not verify:
        done = next((r for r in records.get(entry.job.output, ()) if r.holds_for(entry.target, fingerprint)), None)
        if done is not None:
            return ReadyJob(entry, request, fingerprint, done)
    try:
        check_garments(request.garments)
        check_options(request.seconds, request.fps, request.steps, request.guidance, request.seed)
        for path in [request.user, *(spec.path for spec in request.garments)]:
            files.image(path)
        files.video(request.motion)
    except InputError as error:
        return BadRow(entry.row, str(error), entry.job.output)
    return ReadyJob(entry, request, fingerprint)


# -- running ----------------------------------------------------------------------------------


def job_request(planned: PlannedJob, defaults: GenerateRequest) -> GenerateRequest:
    """The job's GenerateRequest: its own cells, the defaults for the empty ones.

    overwrite=True: an output that exists here was found incomplete, and is replaced.
    """
    job = planned.job
    return replace(
        defaults,
        user=job.user,
        output=planned.target,
        garments=list(job.garments),
        motion=job.motion or defaults.motion,
        prompt=defaults.prompt if job.prompt is None else job.prompt,
        seconds=defaults.seconds if job.seconds is None else job.seconds,
        seed=defaults.seed if job.seed is None else job.seed,
        overwrite=True,
    )


class BatchListener:
    """What run_batch tells its caller as it goes; every method does nothing by default."""

    def batch_started(self, total: int) -> None: ...

    def rows_checked(self, bad: list[BadRow]) -> None: ...

    def job_started(self, entry: ReadyJob | BadRow) -> None: ...

    def stage(self, stage: str, done: int, total: int) -> None: ...

    def notice(self, message: str) -> None: ...

    def job_finished(self, outcome: JobOutcome) -> None: ...
