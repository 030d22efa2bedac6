"""Batch rendering: a manifest of try-on jobs → one video per job, resumable and shardable.

The manifest is CSV or JSONL (told apart by the extension, `.csv` or `.jsonl`), one job a
row, with the columns (CSV header) or keys (JSONL objects) `user, garments, motion,
prompt, seconds, seed, output`; only `user` is required.

- `garments`: in CSV `;`-separated `PATH[:CATEGORY]`; in JSONL a list of such strings.
- Relative input paths are relative to the manifest's folder.
- An empty cell (or a missing or null key) takes the command-line option (`job_defaults`).
- `output` is a relative `.mp4` path inside OUTDIR; empty: `job_<row>_<user stem>.mp4`.
- Rows are numbered from 1, header not counted; blank lines are skipped and not counted.

- An empty `garments` cell makes the row a `dance` job: the person in their own clothes.

A row that is wrong (bad cell, missing file, unknown category, too many garments, an output
that leads outside OUTDIR or repeats an earlier row's) becomes a `BadRow`; before anything
renders, every other row is checked as the CLI checks a `dress` (its values, and its files
decode as photos and a video), so all bad rows are known at once. Bad rows are reported and
the rest of the batch still runs; so is a job that fails. Only a manifest that cannot be
read at all raises InputError.

Re-running is safe: a job whose output is complete is skipped and its file left untouched;
anything else is rendered again. "Complete" is known from the completion record in the
report (the job's fingerprint and the file's size and mtime: one `stat`, no decoding), or,
without one or with `verify`, by decoding the file (frame count and size). `engine.api`
writes every video atomically and the next run removes what a killed one left, so an
interrupted batch loses no finished job.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePath
from typing import Any, Literal, Protocol

import torch

from engine.api.generate import GenerateRequest, GenerateResult, dance, dress, plan_output
from engine.api.inputs import check_garments, check_motion, check_options
from engine.api.loading import default_model, get_model
from engine.api.options import resolve_run
from engine.api.specs import GarmentSpec, parse_garment
from engine.checkpoint import LoadedModel
from engine.errors import DiskFull, InputError, TryonError
from engine.media import load_image, probe_video
from engine.media.atomic import create_temp_beside, deferred_interrupt, disk_is_full, release_temp, remove_stale_temps
from engine.media.image import require_file
from engine.modes import RunOptions
from engine.progress import Notice, Progress

FIELDS = ("user", "garments", "motion", "prompt", "seconds", "seed", "output")
MANIFEST_SUFFIXES = (".csv", ".jsonl")

Status = Literal["ok", "skipped", "failed"]


# -- what a batch is made of ------------------------------------------------------------------


def job_defaults(**settings) -> GenerateRequest:
    """The command-line options as a request template: every job's settings where its row leaves a
    cell empty. Its `user` and `output` are placeholders: each job has its own."""
    return GenerateRequest(user=Path(), output=Path(), **settings)


@dataclass(frozen=True)
class Job:
    """A manifest row that passed validation. None: the command-line default."""

    row: int
    user: Path
    output: str  # relative to OUTDIR, as the manifest says (or the default name)
    garments: tuple[GarmentSpec, ...] = ()
    motion: Path | None = None
    prompt: str | None = None
    seconds: float | None = None
    seed: int | None = None


@dataclass(frozen=True)
class BadRow:
    """A manifest row that cannot run, and why. `output` is its output name when it has one."""

    row: int
    reason: str
    output: str | None = None


@dataclass(frozen=True)
class PlannedJob:
    """A job and the file it writes: inside OUTDIR, symlinks resolved."""

    job: Job
    target: Path

    @property
    def row(self) -> int:
        return self.job.row


@dataclass(frozen=True)
class Shard:
    """Shard K of N: the rows at 0-based positions i with i % N == K - 1."""

    index: int
    count: int

    def takes(self, position: int) -> bool:
        return position % self.count == self.index - 1

    @property
    def report_name(self) -> str:
        """`report.jsonl` for a whole batch, `report.<K>of<N>.jsonl` for a shard of it."""
        return "report.jsonl" if self.count == 1 else f"report.{self.index}of{self.count}.jsonl"


@dataclass(frozen=True)
class JobOutcome:
    """One line of the report: how a row went, how long it took, and how many times it was
    handed to a worker (0 for a bad row; more than 1 when a worker died under it)."""

    row: int
    status: Status
    output: str | None
    reason: str | None = None
    seconds: float = 0.0
    record: Completion | None = None  # for a done job: what a re-run checks instead of decoding it
    disk_full: bool = False  # failed on a full disk: the driver stops the batch if it stays full
    attempts: int = 1

    def to_dict(self) -> dict[str, Any]:
        line = {"row": self.row, "status": self.status, "output": self.output, "reason": self.reason,
                "seconds": self.seconds, "attempts": self.attempts}
        if self.record is not None:
            line["record"] = asdict(self.record)
        return line


@dataclass
class BatchSummary:
    """The batch's result. `succeeded` counts rendered jobs; `skipped` ones were already complete."""

    total: int
    report: Path
    outcomes: list[JobOutcome] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    stopped: str | None = None  # why the batch stopped before its end (a disk that stays full)

    def count(self, status: Status) -> int:
        return sum(outcome.status == status for outcome in self.outcomes)

    @property
    def failures(self) -> list[JobOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status == "failed"]

    @property
    def ok(self) -> bool:
        """Every job done: rendered now or complete from an earlier run."""
        return not self.interrupted and not self.stopped and not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {"jobs": self.total, "succeeded": self.count("ok"), "skipped": self.count("skipped"),
                "failed": self.count("failed"), "seconds": self.seconds, "report": str(self.report)}


class BatchListener:
    """What run_batch tells its caller as it goes; every method does nothing by default."""

    def batch_started(self, total: int) -> None: ...

    def rows_checked(self, bad: list[BadRow]) -> None: ...

    def job_started(self, entry: ReadyJob | BadRow) -> None: ...

    def stage(self, stage: str, done: int, total: int) -> None: ...

    def notice(self, message: str) -> None: ...

    def job_finished(self, outcome: JobOutcome) -> None: ...


# -- reading the manifest ---------------------------------------------------------------------


def read_manifest(path: Path) -> list[Job | BadRow]:
    """Every data row of the manifest, in order, as a Job or a BadRow.

    Raises InputError (one line naming the file) when the manifest cannot be read at all:
    missing, not `.csv`/`.jsonl`, not UTF-8, a CSV without a `user` column or with an
    unknown column, or no rows. A CSV row with too many cells, or a JSONL line that is not a
    JSON object, is a bad row.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MANIFEST_SUFFIXES:
        raise InputError("a manifest must be a .csv or .jsonl file", path)
    require_file(path)
    try:
        with path.open(encoding="utf-8-sig", newline="") as stream:
            records = list(_csv_records(stream, path) if suffix == ".csv" else _jsonl_records(stream, path))
    except UnicodeDecodeError:
        raise InputError("the manifest is not UTF-8 text", path) from None
    except OSError as error:
        raise InputError(f"cannot read the manifest ({error.strerror})", path) from None
    if not records:
        raise InputError("the manifest has no jobs", path)
    return [_parse_row(row, record, path.parent) for row, record in enumerate(records, start=1)]


def _csv_records(stream, path: Path) -> Iterator[dict[str, Any] | InputError]:
    """The data rows as {column: cell}; a row with too many cells as the error to report."""
    reader = csv.reader(stream)
    try:
        header = next((cells for cells in reader if any(cell.strip() for cell in cells)), None)
        columns = _csv_columns(header, path)
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) > len(columns):
                yield InputError(f"{len(cells)} cells, but the header names {len(columns)} columns")
                continue
            yield {column: cell.strip() for column, cell in zip(columns, cells)}
    except csv.Error as error:
        raise InputError(f"not valid CSV (line {reader.line_num}: {error})", path) from None


def _csv_columns(header: list[str] | None, path: Path) -> list[str]:
    columns = [cell.strip().lower() for cell in header or []]
    if "user" not in columns:
        raise InputError(f"no 'user' column (the first line must name the columns: {','.join(FIELDS)})", path)
    unknown = [column for column in columns if column not in FIELDS]
    if unknown:
        raise InputError(f"unknown column '{unknown[0]}' (the columns are {','.join(FIELDS)})", path)
    if len(set(columns)) != len(columns):
        raise InputError("a column is named twice in the header", path)
    return columns


def _jsonl_records(stream, path: Path) -> Iterator[dict[str, Any] | InputError]:
    """Each line's JSON object; a line that is not one as the error to report for its row."""
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            yield InputError(f"line {number} is not valid JSON ({error.msg})")
            continue
        except RecursionError:  # json's parser recurses once per nesting level
            yield InputError(f"line {number} is not valid JSON (nested too deeply)")
            continue
        yield record if isinstance(record, dict) else InputError(f"line {number} is not a JSON object")


def default_output_name(row: int, user: str) -> str:
    """`job_<row>_<user stem>.mp4`: unique per row, and telling whose video it is."""
    stem = PurePath(user).stem if user else ""
    return f"job_{row}_{stem}.mp4" if stem else f"job_{row}.mp4"


def _parse_row(row: int, record: dict[str, Any] | InputError, base: Path) -> Job | BadRow:
    if isinstance(record, InputError):
        return BadRow(row, str(record))
    output = _output_name(row, record)
    try:
        return _job(row, record, base, output)
    except InputError as error:
        return BadRow(row, str(error), output)


def _output_name(row: int, record: dict[str, Any]) -> str | None:
    """The row's output name, or None when its `output` cell is not text."""
    output, user = record.get("output"), record.get("user")
    if output is not None and not isinstance(output, str):
        return None
    if output and output.strip():
        return output.strip()
    return default_output_name(row, user.strip() if isinstance(user, str) else "")


def _job(row: int, record: dict[str, Any], base: Path, output: str | None) -> Job:
    unknown = sorted(key for key in record if key not in FIELDS)
    if unknown:
        raise InputError(f"unknown key '{unknown[0]}' (the keys are {', '.join(FIELDS)})")
    user = _text(record, "user")
    if user is None:
        raise InputError("no user photo (the 'user' cell is empty)")
    if output is None:
        raise InputError(f"'output' must be text, not {json.dumps(record.get('output'))}")
    garments = tuple(_garment(text, base) for text in _garment_texts(record.get("garments")))
    check_garments(list(garments))
    motion = _text(record, "motion")
    return Job(
        row=row,
        user=require_file(base / user),
        output=output,
        garments=garments,
        motion=None if motion is None else require_file(base / motion),
        prompt=_text(record, "prompt"),
        seconds=_seconds(record.get("seconds")),
        seed=_seed(record.get("seed")),
    )


def _text(record: dict[str, Any], key: str) -> str | None:
    """A text cell, stripped; None when empty or absent."""
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"'{key}' must be text, not {json.dumps(value)}")
    return value.strip() or None


def _garment_texts(value: Any) -> list[str]:
    """CSV gives `a.png:top;b.png`; JSONL a list of strings (a `;`-joined string is taken too)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(";") if part.strip()]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [item.strip() for item in value if item.strip()]
    raise InputError("'garments' must be a list of strings like \"shirt.png:top\"")


def _garment(text: str, base: Path) -> GarmentSpec:
    spec = parse_garment(text)
    return GarmentSpec(path=require_file(base / spec.path), category=spec.category)


def _seconds(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InputError(f"seconds must be a number, not {json.dumps(value)}")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise InputError(f"seconds must be a number, not '{value}'") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise InputError(f"seconds must be a positive number, not '{value}'")
    return seconds


def _seed(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise InputError(f"seed must be a whole number, not '{value}'") from None


# -- planning: outputs and shards -------------------------------------------------------------


def parse_shard(text: str) -> Shard:
    """`K/N` with 1 ≤ K ≤ N, else InputError."""
    index, slash, count = text.strip().partition("/")
    try:
        shard = Shard(int(index), int(count)) if slash else None
    except ValueError:
        shard = None
    if shard is None or not 1 <= shard.index <= shard.count:
        raise InputError(f"--shard must be K/N with 1 ≤ K ≤ N (like 2/4), not '{text}'")
    return shard


def choose_shard(text: str | None, environ: Mapping[str, str]) -> Shard:
    """--shard when given; else, under torchrun (RANK and WORLD_SIZE set), shard RANK+1 of WORLD_SIZE."""
    if text is not None:
        return parse_shard(text)
    if "RANK" in environ and "WORLD_SIZE" in environ:
        try:
            return parse_shard(f"{int(environ['RANK']) + 1}/{int(environ['WORLD_SIZE'])}")
        except (ValueError, InputError):
            raise InputError(
                f"RANK={environ['RANK']} and WORLD_SIZE={environ['WORLD_SIZE']} are not a valid shard"
            ) from None
    return Shard(1, 1)


def rank_device(device: str, environ: Mapping[str, str]) -> str:
    """Under torchrun, `auto` means this process's own GPU (LOCAL_RANK), not every rank on GPU 0."""
    local_rank = environ.get("LOCAL_RANK", "")
    if device != "auto" or not local_rank.isdigit() or not torch.cuda.is_available():
        return device
    return f"cuda:{local_rank}"


def resolve_output(root: Path, name: str) -> Path:
    """The file `name` inside the folder `root` (already resolved), symlinks resolved.

    Refused (InputError): names that are absolute, contain `..`, do not end in `.mp4`, or
    lead outside `root` through a symbolic link.
    """
    relative = PurePath(name)
    if relative.anchor or ".." in relative.parts:
        raise InputError(f"output '{name}' must be a relative path inside the output folder, without '..'")
    if relative.suffix.lower() != ".mp4":
        raise InputError(f"output '{name}' must end in .mp4")
    target = (root / relative).resolve()
    if target == root or not target.is_relative_to(root):
        raise InputError(f"output '{name}' leads outside the output folder (through a symbolic link)")
    return target


def plan(entries: Sequence[Job | BadRow], outdir: Path, shard: Shard | None = None) -> list[PlannedJob | BadRow]:
    """Give each job its file in OUTDIR, then keep the rows of `shard` (all without one).

    Outputs are checked over the whole manifest before sharding, so every shard agrees:
    a row whose output leads outside OUTDIR is a BadRow, and so is a row naming the same
    file as an earlier row (bad rows claim their output too, so fixing one later cannot
    make it take over another row's video). Names differing only in case count as the same,
    as they are on macOS and Windows.
    """
    root = Path(outdir).resolve()
    claimed: dict[str, int] = {}
    planned = [_claim(entry, root, claimed) for entry in entries]
    shard = shard or Shard(1, 1)
    return [entry for position, entry in enumerate(planned) if shard.takes(position)]


def _claim(entry: Job | BadRow, root: Path, claimed: dict[str, int]) -> PlannedJob | BadRow:
    if entry.output is None:
        return entry
    try:
        target = resolve_output(root, entry.output)
    except InputError as error:
        return entry if isinstance(entry, BadRow) else BadRow(entry.row, str(error), entry.output)
    first = claimed.setdefault(str(target).casefold(), entry.row)
    if isinstance(entry, BadRow):
        return entry
    if first != entry.row:
        return BadRow(entry.row, f"output '{entry.output}' is already the output of row {first}", entry.output)
    return PlannedJob(entry, target)


# -- completion records -----------------------------------------------------------------------


@dataclass(frozen=True)
class Completion:
    """What a finished job left: its fingerprint, and its output's size and modification time.

    Kept in the report, it lets a re-run find finished jobs with one `stat` each, instead
    of decoding every video: the output is taken as complete when the job is the same (same
    fingerprint) and the file has not changed since it was written (same size and mtime).
    """

    job: str
    bytes: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path, fingerprint: str) -> Completion:
        stat = path.stat()
        return cls(fingerprint, stat.st_size, stat.st_mtime_ns)

    @classmethod
    def from_dict(cls, data: Any) -> Completion | None:
        try:
            return cls(str(data["job"]), int(data["bytes"]), int(data["mtime_ns"]))
        except (TypeError, KeyError, ValueError):
            return None

    def holds_for(self, path: Path, fingerprint: str) -> bool:
        if fingerprint != self.job:
            return False
        try:
            stat = path.stat()
        except OSError:
            return False
        return (stat.st_size, stat.st_mtime_ns) == (self.bytes, self.mtime_ns)


def file_stamp(path: Path) -> list:
    """[path, size, mtime]: what tells that a file is still the one it was."""
    stat = path.stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]


def job_fingerprint(request: GenerateRequest, stamp_of: Callable[[Path], list] = file_stamp) -> str:
    """A digest of what decides a job's video: its input files (path, size, mtime), text and settings.

    Speed and memory modes (device, dtype, attention, acceleration) are left out: they do not
    change what the video shows. Raises OSError when an input file has gone. `stamp_of` may
    be a cached `file_stamp`, for files that many jobs share.
    """

    def stamp(path: Path | None) -> list | None:
        return None if path is None else stamp_of(path)

    content = {
        "user": stamp(request.user),
        "garments": [[stamp(spec.path), spec.category] for spec in request.garments],
        "motion": stamp(request.motion),
        "prompt": request.prompt,
        "model": request.run.model, "revision": request.run.revision, "size": request.size, "seconds": request.seconds,
        "fps": request.fps, "seed": request.seed, "steps": request.steps, "guidance": request.guidance,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:20]


def read_report_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a report, skipping lines that are not (a kill can cut the last one)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    lines = []
    for line in text.splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict):
            lines.append(data)
    return lines


def completion_records(outdir: Path) -> dict[str, list[Completion]]:
    """Every completion record in OUTDIR's reports (`report*.jsonl`, every shard's), by output name."""
    records: dict[str, list[Completion]] = {}
    for report in sorted(Path(outdir).glob("report*.jsonl")):
        for line in read_report_lines(report):
            record = Completion.from_dict(line.get("record"))
            if record is not None and isinstance(line.get("output"), str):
                records.setdefault(line["output"], []).append(record)
    return records


# -- checking every row before rendering ------------------------------------------------------


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
        self._check(path, load_image)

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
        with _append_to(summary.report) as report:
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
            _rewrite_report(summary.report, planned, previous, summary.outcomes)
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


@contextmanager
def _append_to(report: Path) -> Iterator[Any]:
    """The report, opened to append on a line of its own (a kill may have cut the last line)."""
    with report.open("a+", encoding="utf-8") as stream:
        if stream.tell() > 0:
            stream.seek(stream.tell() - 1)
            last = stream.read(1)
            stream.seek(0, os.SEEK_END)
            if last != "\n":
                stream.write("\n")
        yield stream


def _report_key(line: Mapping[str, Any]) -> str:
    output = line.get("output")
    return f"output:{output}" if isinstance(output, str) else f"row:{line.get('row')}"


def _rewrite_report(
    report: Path, planned: Sequence[PlannedJob | BadRow], previous: list[dict[str, Any]], outcomes: list[JobOutcome]
) -> None:
    """One line per planned row, in row order: this run's outcome, else the latest earlier line.

    Written to a temp file and renamed; when that fails (a full disk), the appended report stays.
    """
    latest = {_report_key(line): line for line in previous}
    latest.update({_report_key(line): line for line in (outcome.to_dict() for outcome in outcomes)})
    keys = [_report_key({"output": entry.output if isinstance(entry, BadRow) else entry.job.output,
                         "row": entry.row}) for entry in planned]
    lines = [json.dumps(latest[key]) + "\n" for key in keys if key in latest]
    if not report.parent.is_dir():
        return
    try:
        temp = create_temp_beside(report, ".tmp")
    except TryonError:
        return
    try:
        temp.write_text("".join(lines), encoding="utf-8")
        os.replace(temp, report)
        release_temp(temp, delete=False)
    except OSError:
        release_temp(temp, delete=True)
