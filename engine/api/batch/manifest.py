"""Reading a batch manifest: CSV or JSONL rows into Jobs, and BadRows saying why a row cannot run."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from engine.api.inputs import check_garments, check_prompt
from engine.api.specs import GarmentSpec, parse_garment
from engine.errors import InputError
from engine.media.image import require_file

FIELDS = ("user", "garments", "motion", "prompt", "seconds", "seed", "output")
MANIFEST_SUFFIXES = (".csv", ".jsonl")
MAX_CELL_CHARS = 1 << 26  # what the CSV reader takes in one cell; what a cell may hold is checked per row


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
    csv.field_size_limit(max(csv.field_size_limit(), MAX_CELL_CHARS))  # a long cell fails its row, not the file
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
        prompt=check_prompt(_text(record, "prompt")),
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
    _no_nul(value, key)
    return value.strip() or None


def _no_nul(value: str, key: str) -> None:
    if "\x00" in value:
        raise InputError(f"the '{key}' cell holds a NUL byte")


def _garment_texts(value: Any) -> list[str]:
    """CSV gives `a.png:top;b.png`; JSONL a list of strings (a `;`-joined string is taken too)."""
    if value is None:
        return []
    if isinstance(value, str):
        _no_nul(value, "garments")
        return [part.strip() for part in value.split(";") if part.strip()]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        _no_nul("".join(value), "garments")
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
