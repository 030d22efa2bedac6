"""`tryon bench`: the speed of the real pipeline, end to end (see `benchmark.py`)."""

from tryon.api.bench.benchmark import bench_and_compare, run_bench
from tryon.api.bench.clock import StageClock
from tryon.api.bench.request import STAGES, BenchRequest
from tryon.api.bench.summary import BenchResult
from tryon.modes import COMPARABLE

__all__ = ["COMPARABLE", "STAGES", "BenchRequest", "BenchResult", "StageClock", "bench_and_compare", "run_bench"]
