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

The package, by concern: `manifest` (reading rows), `planning` (output paths and shards),
`report` (outcomes, completion records, the report file), `checks` (every row's values and
files before rendering), `run` (the run loop), `jobs` (one job on the model; the local executor). Each name loads its module
when first used, so reading a manifest and its report needs no torch: a re-run whose jobs are
all done answers before the model's libraries load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submodules=["checks", "jobs", "manifest", "planning", "report", "run"],
                                                   submod_attrs={
    "checks": ["BatchListener", "ReadyJob", "check_jobs", "job_defaults", "job_request"],
    "manifest": ["FIELDS", "MANIFEST_SUFFIXES", "BadRow", "Job", "default_output_name", "read_manifest"],
    "planning": ["PlannedJob", "Shard", "choose_shard", "parse_shard", "plan", "rank_device", "resolve_output"],
    "jobs": ["LocalExecutor", "expected_video", "is_complete", "load_batch_model", "render", "run_job"],
    "report": ["BatchSummary", "Completion", "JobOutcome", "Status", "completion_records", "file_stamp",
               "job_fingerprint", "read_report_lines"],
    "run": ["JobExecutor", "run_batch"],
})

if TYPE_CHECKING:
    from engine.api.batch.checks import BatchListener, ReadyJob, check_jobs, job_defaults, job_request
    from engine.api.batch.manifest import FIELDS, MANIFEST_SUFFIXES, BadRow, Job, default_output_name, read_manifest
    from engine.api.batch.planning import (
        PlannedJob,
        Shard,
        choose_shard,
        parse_shard,
        plan,
        rank_device,
        resolve_output,
    )
    from engine.api.batch.report import (
        BatchSummary,
        Completion,
        JobOutcome,
        Status,
        completion_records,
        file_stamp,
        job_fingerprint,
        read_report_lines,
    )
    from engine.api.batch.jobs import (
        LocalExecutor,
        expected_video,
        is_complete,
        load_batch_model,
        render,
        run_job,
    )
    from engine.api.batch.run import JobExecutor, run_batch
