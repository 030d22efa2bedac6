"""`tryon data curate --ray`: curation's items on a Ray cluster, with the batch's worker pool.

Each worker loads the curation models once and runs items (engine.curate.pipeline: a video
through stages 1 to 3, then a clip through stage 4) as the driver hands them out; a worker
that dies is replaced and its item retried (at most twice). The workers write the samples,
their state and the log lines into OUT themselves, so OUT must be storage every node sees.
An item that still fails is reported in the summary (`failed`) and retried by the next run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.api.ray_pool import ClusterPool
from engine.curate.pipeline import CurationWorker, Item, ItemResult, MapItems


@contextmanager
def ray_items(address: str, out: Path, make_worker: Callable[[], CurationWorker], workers: int | None,
              use_gpus: bool) -> Iterator[MapItems]:
    """A `map_items` for engine.curate.curate that runs the items on the Ray cluster at `address`."""
    cluster: ClusterPool[Item, ItemResult] = ClusterPool(address, out, workers)
    try:
        pool = cluster.start(make_worker, use_gpus)

        def map_items(items: list[Item]) -> Iterator[ItemResult]:
            for finished in pool.run(items):
                yield finished.result if finished.result is not None else ItemResult(finished.job,
                                                                                     error=finished.error)

        yield map_items
    finally:
        cluster.close()
