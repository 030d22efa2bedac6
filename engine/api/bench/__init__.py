"""`tryon bench`: the speed of the real pipeline, end to end (see `benchmark.py`)."""

from engine.api.bench.benchmark import bench_and_compare, run_bench
from engine.api.bench.clock import StageClock
from engine.api.bench.request import STAGES, BenchRequest
from engine.api.bench.summary import BenchResult
from engine.modes import COMPARABLE

__all__ = ["COMPARABLE", "STAGES", "BenchRequest", "BenchResult", "StageClock", "bench_and_compare", "run_bench"]
