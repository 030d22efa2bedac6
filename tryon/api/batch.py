"""Batch rendering: a manifest of try-on jobs → one video per job, resumable and shardable.

The manifest is CSV or JSONL (told apart by the extension, `.csv` or `.jsonl`), one job a
row, with the columns (CSV header) or keys (JSONL objects) `user, garments, motion,
prompt, seconds, seed, output`; only `user` is required.

- `garments`: in CSV `;`-separated `PATH[:CATEGORY]`; in JSONL a list of such strings.
- Relative input paths are relative to the manifest's folder.
- An empty cell (or a missing or null key) takes the command-line option (`job_defaults`).
- `output` is a relative `.mp4` path inside OUTDIR; empty: `job_<row>_<user stem>.mp4`.
- Rows are numbered from 1, header not counted; blank lines are skipped and not counted.

A row that is wrong (bad cell, missing file, unknown category, too many garments, an output
that leads outside OUTDIR or repeats an earlier row's) becomes a `BadRow`: it is reported
and the rest of the batch still runs. Only a manifest that cannot be read at all raises
InputError.

Re-running is safe: a job whose output already exists and is complete (it decodes, with
the frame count and size this job would produce) is skipped and its file left untouched;
anything else is rendered again. `tryon.api` writes every video atomically, so an
interrupted batch loses no finished job.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath
from typing import Any, Literal, Protocol

import torch

from tryon.api.generate import GenerateRequest, dress, plan_output
from tryon.api.inputs import check_garments
from tryon.api.loading import default_model, get_model
from tryon.api.options import resolve_run
from tryon.api.specs import GarmentSpec, parse_garment
from tryon.checkpoint import LoadedModel
from tryon.errors import InputError, TryonError
from tryon.media import load_image, probe_video
from tryon.media.image import require_file
from tryon.modes import RunOptions
from tryon.progress import Notice

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
    attempts: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "status": self.status, "output": self.output, "reason": self.reason,
                "seconds": self.seconds, "attempts": self.attempts}


@dataclass
class BatchSummary:
    """The batch's result. `succeeded` counts rendered jobs; `skipped` ones were already complete."""

    total: int
    report: Path
    outcomes: list[JobOutcome] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    def count(self, status: Status) -> int:
        return sum(outcome.status == status for outcome in self.outcomes)

    @property
    def failures(self) -> list[JobOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status == "failed"]

    @property
    def ok(self) -> bool:
        """Every job done: rendered now or complete from an earlier run."""
        return not self.interrupted and not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {"jobs": self.total, "succeeded": self.count("ok"), "skipped": self.count("skipped"),
                "failed": self.count("failed"), "seconds": self.seconds, "report": str(self.report)}


class BatchListener:
    """What run_batch tells its caller as it goes; every method does nothing by default."""

    def batch_started(self, total: int) -> None: ...

    def job_started(self, entry: PlannedJob | BadRow) -> None: ...

    def stage(self, stage: str, done: int, total: int) -> None: ...

    def notice(self, message: str) -> None: ...

    def job_finished(self, outcome: JobOutcome) -> None: ...


# -- reading the manifest ---------------------------------------------------------------------


def read_manifest(path: Path) -> list[Job | BadRow]:
    """Every data row of the manifest, in order, as a Job or a BadRow.

    Raises InputError (one line naming the file) when the manifest cannot be read at all:
    missing, not `.csv`/`.jsonl`, not UTF-8, a CSV without a `user` column or with an
    unknown column, a JSONL line that is not a JSON object, or no rows.
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


def _jsonl_records(stream, path: Path) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"line {number} is not valid JSON ({error.msg})", path) from None
        except RecursionError:  # json's parser recurses once per nesting level
            raise InputError(f"line {number} is not valid JSON (nested too deeply)", path) from None
        if not isinstance(record, dict):
            raise InputError(f"line {number} is not a JSON object", path)
        yield record


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


class JobExecutor(Protocol):
    """Where a batch's jobs run: here (`LocalExecutor`) or on a cluster (`tryon.api.batch_ray`).

    The driver (`run_batch`) reads and checks the manifest, reports bad rows and writes the
    report; an executor only runs the good jobs, each with `run_job`, and yields their
    outcomes as they end (in any order).
    """

    def start(self, defaults: GenerateRequest, listener: BatchListener) -> None:
        """Get ready to run jobs (load the model); InputError when it cannot be loaded."""

    def run(self, jobs: Sequence[PlannedJob], defaults: GenerateRequest, listener: BatchListener) -> Iterator[JobOutcome]:
        """Run every job once (retries included), yielding each outcome as the job ends."""

    def close(self) -> None:
        """Let go of whatever start() took, also after an error or Ctrl-C."""


class LocalExecutor:
    """The jobs one after another in this process, with the model loaded once."""

    def __init__(self) -> None:
        self.model: LoadedModel | None = None

    def start(self, defaults: GenerateRequest, listener: BatchListener) -> None:
        self.model = load_batch_model(defaults.run, listener.notice)

    def run(self, jobs: Sequence[PlannedJob], defaults: GenerateRequest, listener: BatchListener) -> Iterator[JobOutcome]:
        assert self.model is not None, "start() loads the model before the first job"
        for job in jobs:
            listener.job_started(job)
            yield run_job(job, self.model, defaults, listener)

    def close(self) -> None:
        self.model = None


def run_batch(
    planned: Sequence[PlannedJob | BadRow],
    outdir: Path,
    defaults: GenerateRequest,
    shard: Shard | None = None,
    listener: BatchListener | None = None,
    executor: JobExecutor | None = None,
) -> BatchSummary:
    """Report the bad rows, run the jobs on `executor` (here, one by one, by default) and
    write the report; return the summary.

    Bad rows and jobs that fail (any engine error) are reported as failed and the batch goes
    on. The model is loaded once, before the first job; a model that cannot be loaded is the
    whole batch's problem and raises InputError. The report (`shard.report_name` in OUTDIR)
    gets one JSON line per row as it finishes (the bad rows first), so it is complete up to
    the last finished job even after a crash. Ctrl-C stops the batch: the summary says
    `interrupted`.
    """
    listener = listener or BatchListener()
    executor = executor or LocalExecutor()
    shard = shard or Shard(1, 1)
    summary = BatchSummary(total=len(planned), report=Path(outdir) / shard.report_name)
    jobs = [entry for entry in planned if isinstance(entry, PlannedJob)]
    started = time.perf_counter()
    listener.batch_started(len(planned))
    try:
        if jobs:
            listener.stage("loading model", 0, 1)
            executor.start(defaults, listener)
            listener.stage("loading model", 1, 1)
        _prepare_outdir(Path(outdir))
        with summary.report.open("w", encoding="utf-8") as report:

            def record(outcome: JobOutcome) -> None:
                summary.outcomes.append(outcome)
                report.write(json.dumps(outcome.to_dict()) + "\n")
                report.flush()
                listener.job_finished(outcome)

            for entry in planned:
                if isinstance(entry, BadRow):
                    listener.job_started(entry)
                    record(JobOutcome(entry.row, "failed", entry.output, entry.reason, attempts=0))
            for outcome in executor.run(jobs, defaults, listener):
                record(outcome)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        executor.close()
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _prepare_outdir(outdir: Path) -> None:
    if outdir.exists() and not outdir.is_dir():
        raise InputError("the output folder is a file", outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create the output folder ({error.strerror})", outdir) from None


def run_job(entry: PlannedJob, model: LoadedModel, defaults: GenerateRequest, listener: BatchListener) -> JobOutcome:
    """One job: skipped when its output is already complete, else rendered; any engine error
    is this job's failure."""
    started = time.perf_counter()

    def outcome(status: Status, reason: str | None = None) -> JobOutcome:
        return JobOutcome(entry.row, status, entry.job.output, reason, round(time.perf_counter() - started, 3))

    request = job_request(entry, defaults)
    try:
        if request.output.exists() and is_complete(request.output, *expected_video(request, model)):
            return outcome("skipped", "complete output already there")
        request.output.parent.mkdir(parents=True, exist_ok=True)  # inside OUTDIR: plan() checked
        dress(request, progress=listener.stage, notice=listener.notice)
    except TryonError as error:
        return outcome("failed", str(error))
    except OSError as error:  # e.g. a file where the output's subfolder should be
        return outcome("failed", f"{request.output.parent}: {error.strerror or error}")
    return outcome("ok")
