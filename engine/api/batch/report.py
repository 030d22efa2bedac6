"""What a batch keeps: each job's outcome, its completion record, and the report (`report*.jsonl`)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from engine.api.batch.manifest import BadRow
from engine.api.batch.planning import PlannedJob
from engine.api.specs import GenerateRequest
from engine.errors import TryonError
from engine.media.atomic import create_temp_beside, release_temp

Status = Literal["ok", "skipped", "failed"]


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


def rendered_earlier(previous: Sequence[Mapping[str, Any]], output: str | None, record: Completion | None) -> bool:
    """Whether the report's earlier lines hold this output's render, done, with this completion record."""
    key = report_key({"output": output})
    line = next((line for line in reversed(previous) if report_key(line) == key), None)
    return (record is not None and line is not None and line.get("status") == "ok"
            and Completion.from_dict(line.get("record")) == record)


def completion_records(outdir: Path) -> dict[str, list[Completion]]:
    """Every completion record in OUTDIR's reports (`report*.jsonl`, every shard's), by output name."""
    records: dict[str, list[Completion]] = {}
    for report in sorted(Path(outdir).glob("report*.jsonl")):
        for line in read_report_lines(report):
            record = Completion.from_dict(line.get("record"))
            if record is not None and isinstance(line.get("output"), str):
                records.setdefault(line["output"], []).append(record)
    return records


@contextmanager
def append_to_report(report: Path) -> Iterator[Any]:
    """The report, opened to append on a line of its own (a kill may have cut the last line)."""
    with report.open("a+", encoding="utf-8") as stream:
        if stream.tell() > 0:
            stream.seek(stream.tell() - 1)
            last = stream.read(1)
            stream.seek(0, os.SEEK_END)
            if last != "\n":
                stream.write("\n")
        yield stream


def report_key(line: Mapping[str, Any]) -> str:
    output = line.get("output")
    return f"output:{output}" if isinstance(output, str) else f"row:{line.get('row')}"


def rewrite_report(
    report: Path, planned: Sequence[PlannedJob | BadRow], previous: list[dict[str, Any]], outcomes: list[JobOutcome]
) -> None:
    """One line per planned row, in row order: this run's outcome, else the latest earlier line.

    Written to a temp file and renamed; when that fails (a full disk), the appended report stays.
    """
    latest = {report_key(line): line for line in previous}
    latest.update({report_key(line): line for line in (outcome.to_dict() for outcome in outcomes)})
    keys = [report_key({"output": entry.output if isinstance(entry, BadRow) else entry.job.output,
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
