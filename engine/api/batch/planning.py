"""Planning a batch: each job's file inside OUTDIR, and which rows a shard takes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

from engine.api.batch.manifest import BadRow, Job
from engine.errors import InputError

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
    if device != "auto" or not local_rank.isdigit():
        return device
    import torch  # only under torchrun: planning a batch needs no torch

    if not torch.cuda.is_available():
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

