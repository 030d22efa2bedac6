"""`tryon batch`: render every job of a manifest; the rules live in engine.api.batch."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from statistics import mean
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from engine.modes import RunOptions
from tryon_cli import options
from tryon_cli.console import print_json, stderr

if TYPE_CHECKING:
    from engine.api.batch import BadRow, BatchSummary, JobOutcome, ReadyJob

ShardOption = Annotated[
    Optional[str],
    typer.Option(help="K/N: run only rows i (0-based) with i % N == K-1. Default under torchrun: RANK+1/WORLD_SIZE."),
]
Verify = Annotated[bool, typer.Option(
    "--verify", help="Decode every existing output to check it is complete, instead of trusting the report's "
    "completion record (the file's size and modification time).")]
OutDir = Annotated[
    Path, typer.Option("--output", "-o", help="Folder for the videos and the report (created if missing).")
]


class BatchDisplay:  # a engine.api.batch.BatchListener (not subclassed: the engine loads when the command runs)
    """One progress bar for the batch (stderr): the current row and stage, per-job times, an ETA.

    The ETA is the mean time of the jobs rendered so far times the jobs left; rich's own
    estimate would be thrown off by skipped jobs, which take no time.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.display = Progress(
            TextColumn("{task.description:<28}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}", markup=False),
            console=stderr,
            disable=not enabled,
        )
        self.task = self.display.add_task("batch", total=None, eta="")
        self.row: int | None = None
        self.render_times: list[float] = []
        self.seen_notices: set[str] = set()
        self.bad_rows: set[int] = set()

    def __enter__(self) -> BatchDisplay:
        self.display.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.display.__exit__(*exc)

    def finish(self) -> None:
        self.display.update(self.task, description="batch done", eta="")

    def batch_started(self, total: int) -> None:
        self.display.update(self.task, total=total)

    def rows_checked(self, bad: list[BadRow]) -> None:
        """All bad rows at once, before anything renders (even with --quiet: they are errors)."""
        self.bad_rows = {row.row for row in bad}
        if bad:
            self.display.console.print(_rows_table(f"{len(bad)} bad rows, not rendered",
                                                   [(row.row, row.output, row.reason) for row in bad]))

    def job_started(self, entry: ReadyJob | BadRow) -> None:
        self.row = entry.row
        self.display.update(self.task, description=f"row {entry.row}")

    def stage(self, stage: str, done: int, total: int) -> None:
        where = f"row {self.row} " if self.row is not None else ""
        self.display.update(self.task, description=f"{where}{stage} {done}/{total}")

    def notice(self, message: str) -> None:
        if message not in self.seen_notices:  # e.g. the same size rounding for every job
            self.seen_notices.add(message)
            self.display.console.print(message, markup=False, soft_wrap=True)

    def job_finished(self, outcome: JobOutcome) -> None:
        if outcome.status == "ok":
            self.render_times.append(outcome.seconds)
        self.display.advance(self.task)
        task = self.display.tasks[self.task]
        left = (task.total or 0) - task.completed
        if self.render_times and left:
            self.display.update(self.task, eta=f"eta {mean(self.render_times) * left:.0f} s")
        else:
            self.display.update(self.task, eta="")
        if self.enabled:
            self.display.console.print(_job_line(outcome), markup=False, soft_wrap=True)


def _job_line(outcome: JobOutcome) -> str:
    line = f"row {outcome.row}: {outcome.status} in {outcome.seconds:.1f} s"
    if outcome.output:
        line += f" → {outcome.output}"
    return f"{line} ({outcome.reason})" if outcome.status == "failed" else line


def _rows_table(title: str, rows: list[tuple[int, str | None, str | None]]) -> Table:
    table = Table("row", "output", "reason", title=title, title_justify="left")
    for row, output, reason in rows:
        table.add_row(str(row), output or "—", reason or "")
    return table


def show_summary(summary: BatchSummary, listed: set[int] = frozenset()) -> None:
    """The failed rows not `listed` already (as bad rows) in a table, then the totals, on stderr."""
    failures = [outcome for outcome in summary.failures if outcome.row not in listed]
    if failures:
        stderr.print(_rows_table("failed jobs", [(o.row, o.output, o.reason) for o in failures]))
    counts = summary.to_dict()
    stderr.print(
        f"{counts['jobs']} jobs: {counts['succeeded']} rendered, {counts['skipped']} already complete, "
        f"{counts['failed']} failed, in {summary.seconds:.1f} s; report: {summary.report}",
        markup=False, soft_wrap=True,
    )


def _executor(ray: str | None, workers: int | None, shard: str | None, outdir: Path):
    """The Ray executor for --ray (None: the local loop); its options checked first."""
    from engine.errors import InputError

    if ray is None:
        if workers is not None:
            raise InputError("--workers needs --ray (the local batch runs one job at a time)")
        return None
    if shard is not None:
        raise InputError("--shard and --ray do not go together: Ray hands the jobs out itself")
    from engine.api.batch_ray import RayExecutor  # Ray is optional: imported only for --ray

    return RayExecutor(ray, outdir, workers)


@options.run_options()
def batch(
    manifest: Annotated[Path, typer.Argument(help="CSV or JSONL: user,garments,motion,prompt,seconds,seed,output.")],
    outdir: OutDir,
    motion: options.Motion = None,
    prompt: options.Prompt = "",
    size: options.Size = None,
    seconds: options.Seconds = None,
    fps: options.Fps = None,
    seed: options.Seed = 0,
    steps: options.Steps = None,
    guidance: options.Guidance = None,
    shard: ShardOption = None,
    ray: options.RayAddress = None,
    workers: options.Workers = None,
    verify: Verify = False,
    json_output: options.Json = False,
    quiet: options.Quiet = False,
    run: RunOptions = RunOptions(),
) -> None:
    """Render every row of a manifest into OUTDIR; re-running skips the jobs already complete.

    One job a row: user,garments,motion,prompt,seconds,seed,output; empty cells take the options here.

    garments: `shirt.png:top;pants.png:bottom` in CSV, a list of strings in JSONL. Relative paths: from the manifest.

    output: an .mp4 name inside OUTDIR (default job_<row>_<user>.mp4). A row without garments is a `dance` job.

    Every row is checked before anything renders; bad rows are listed at once and not run.

    Report: OUTDIR/report.jsonl (report.KofN.jsonl for a shard). Exit 1 when any job failed.

    Example: tryon batch jobs.csv -o renders/ --model ./ck --size 256x448 --seconds 2

    On a Ray cluster: tryon batch jobs.csv -o /shared/renders --ray auto
    """
    from engine.api import batch as api_batch
    from engine.errors import RuntimeFailure
    from engine.media import parse_size

    executor = _executor(ray, workers, shard, outdir)
    defaults = api_batch.job_defaults(
        size=parse_size(size) if size else None, seconds=seconds, fps=fps, seed=seed, steps=steps,
        guidance=guidance, motion=motion, prompt=prompt,
        run=replace(run, device=api_batch.rank_device(run.device, os.environ)),
    )
    chosen = api_batch.choose_shard(shard, {} if ray else os.environ)  # Ray: one driver, the whole batch
    planned = api_batch.plan(api_batch.read_manifest(manifest), outdir, chosen)
    with BatchDisplay(enabled=not quiet) as display:  # on stderr: --json owns stdout alone
        summary = api_batch.run_batch(planned, outdir, defaults, chosen, display, executor, verify=verify)
        if not summary.interrupted:
            display.finish()
    if summary.interrupted:
        stderr.print(f"interrupted: {len(summary.outcomes)} of {summary.total} jobs finished "
                     f"(report: {summary.report}); run again to go on", markup=False, soft_wrap=True)
        sys.exit(130)  # that line says it all: no second "interrupted" line
    if summary.stopped:
        raise RuntimeFailure(f"{summary.stopped} after {len(summary.outcomes)} of {summary.total} jobs "
                             f"(report: {summary.report}); free some space and run again to go on")
    show_summary(summary, display.bad_rows)
    if json_output:
        print_json(summary.to_dict())
    if not summary.ok:
        raise typer.Exit(1)
