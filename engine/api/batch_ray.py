"""`tryon batch --ray`: the batch's jobs on a Ray cluster.

The driver (`engine.api.batch.run_batch`) stays what it is for the local batch: it reads and
checks the manifest, reports bad rows and writes the one report as jobs end. This executor
only runs the good jobs: one long-lived worker per GPU of the cluster (per CPU when it has
no GPU), each loading the model once, jobs handed out as workers free up, a job whose worker
dies retried on another at most twice (`attempts` in the report). Each job is `run_job`, as
in the local batch, so a job whose output is already complete is skipped, not redone, and
its outcome (a plain dataclass) carries the completion record and the disk-full flag back to
the driver, which alone writes the report and decides whether a full disk stops the batch.

Every node reads the inputs and writes the outputs at the same paths, so OUT (and the
manifest's files) must be on storage every node sees; on a cluster of several nodes an OUT
on a file system local to this machine is refused.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from engine.api.batch import BatchListener, JobOutcome, ReadyJob, load_batch_model, run_job
from engine.api.generate import GenerateRequest
from engine.api.ray_pool import ClusterPool, WorkerPool


class _Notices(BatchListener):
    """A worker's listener: keeps the job's notices for the driver; stages stay on the worker."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def notice(self, message: str) -> None:
        self.messages.append(message)


@dataclass(frozen=True)
class Rendered:
    outcome: JobOutcome
    notices: tuple[str, ...]


class RenderWorker:
    """Lives in a Ray actor: the model loaded once, then one job per call."""

    def __init__(self, defaults: GenerateRequest) -> None:
        self.defaults = defaults
        self.model = load_batch_model(defaults.run)

    def __call__(self, job: ReadyJob) -> Rendered:
        listener = _Notices()
        outcome = run_job(job, self.model, listener)
        return Rendered(outcome, tuple(listener.messages))


class RayExecutor:
    """Runs a batch's jobs on the Ray cluster at `address` (`auto`, `local` or an address).

    `workers` caps the number of workers (default: one per GPU, or per CPU without GPUs).
    """

    def __init__(self, address: str, outdir: Path, workers: int | None = None, max_retries: int = 2) -> None:
        self.cluster: ClusterPool[ReadyJob, Rendered] = ClusterPool(address, outdir, workers, max_retries)
        self.pool: WorkerPool[ReadyJob, Rendered] | None = None

    def start(self, defaults: GenerateRequest, listener: BatchListener) -> None:
        self.pool = self.cluster.start(partial(RenderWorker, defaults), use_gpus=defaults.run.device != "cpu")

    def run(self, jobs: Sequence[ReadyJob], defaults: GenerateRequest, listener: BatchListener) -> Iterator[JobOutcome]:
        assert self.pool is not None, "start() comes first"
        for finished in self.pool.run(jobs, on_start=listener.job_started):
            if finished.result is None:
                yield JobOutcome(finished.job.row, "failed", finished.job.job.output, finished.error,
                                 attempts=finished.attempts)
                continue
            for message in finished.result.notices:
                listener.notice(message)
            yield replace(finished.result.outcome, attempts=finished.attempts)

    def busy_workers(self) -> dict[int, int]:
        """The row each busy worker renders now, by the worker's process id."""
        return {pid: job.row for pid, job in self.pool.busy().items()} if self.pool else {}

    def close(self) -> None:
        self.cluster.close()
        self.pool = None
