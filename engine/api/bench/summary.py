"""A benchmark's result: means and minima over the runs, and the per-chunk view of a stream."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from engine.api.bench.request import STAGES, RunPlan
from engine.api.bench.runs import ChunkTiming, RunTiming


@dataclass
class BenchResult:
    """Everything measured; `to_dict()` is the `--json` object."""

    mode: str
    model: str
    preset: str
    random_weights: bool
    device: str
    dtype: str
    attention: str
    acceleration: dict[str, Any]  # the speed and memory modes (engine.pipelines.runtime.Acceleration)
    size: list[int]
    video_fps: float
    frames: int
    steps: int
    guidance: float | None
    garments: int
    motion: bool
    warmup: int
    repeat: int
    vae_tiling: bool
    sync: str  # stage: timed per stage, synchronised around each; end: end to end, nothing synchronised
    threads: int
    load_s: float
    weights_mb: float
    fps: float  # frames / mean total
    fps_best: float  # frames / fastest total
    total_s: float
    total_s_min: float
    first_frame_s: float
    first_frame_s_min: float
    stages: dict[str, float]  # mean seconds per stage
    stages_min: dict[str, float]
    other_s: float  # mean total minus the stages
    calls: dict[str, int]  # timed calls per run
    overhead: float  # (total − model calls) / total, mean over runs
    overhead_without_writing: float  # (total − model calls − writing) / total
    peak_memory_mb: float
    peak_memory_kind: str  # cuda_max_allocated | cpu_peak_rss
    runs: list[dict[str, Any]] = field(default_factory=list)
    stream: dict[str, Any] | None = None
    compare: list[dict[str, Any]] = field(default_factory=list)  # see bench_and_compare
    notices: list[str] = field(default_factory=list)
    decoder: str = "full"  # stream: which decoder ran (engine.api.decoder)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _steady(chunks: list[ChunkTiming]) -> list[ChunkTiming]:
    """Chunks of the full length, other than the first and the one carrying the switch."""
    full = max(c.frames for c in chunks[1:]) if len(chunks) > 1 else 0
    return [c for c in chunks[1:] if not c.switch and c.frames == full]


def _rate(chunks: list[ChunkTiming]) -> float | None:
    seconds = sum(c.seconds for c in chunks)
    return sum(c.frames for c in chunks) / seconds if chunks and seconds > 0 else None


def _mean_chunk(runs: list[RunTiming], index: int) -> ChunkTiming:
    """Chunk `index` of every run: its mean seconds and stage seconds."""
    first = runs[0].chunks[index]
    return replace(first, seconds=mean([run.chunks[index].seconds for run in runs]),
                   stages={stage: mean([run.chunks[index].stages[stage] for run in runs]) for stage in STAGES})


def stream_summary(runs: list[RunTiming], plan: RunPlan) -> dict[str, Any]:
    config = plan.config
    chunks = [_mean_chunk(runs, i) for i in range(len(runs[0].chunks))]
    fastest = [min(run.chunks[i].seconds for run in runs) for i in range(len(chunks))]
    steady = _steady(chunks)
    quarter = max(1, len(steady) // 4)
    early, late = _rate(steady[:quarter]), _rate(steady[-quarter:])

    def transformer_s(part: list[ChunkTiming]) -> float | None:
        return mean([c.stages["transformer"] for c in part]) if part else None

    switches = [run.switch for run in runs if run.switch is not None]
    switch = None
    if switches:
        switch = {"frame": switches[0].frame, "ops_s": mean([s.ops_s for s in switches]),
                  "latency_s": mean([s.latency_s for s in switches]),
                  "latency_s_min": min(s.latency_s for s in switches)}
    return {
        "chunk_frames": config.chunk_frames,
        "steps_per_chunk": config.steps,
        "window": config.window,
        "setup_s": mean([run.setup_s for run in runs]),
        "first_chunk_s": chunks[0].seconds,
        "first_chunk_frames": chunks[0].frames,
        "steady_chunk_s": mean([c.seconds for c in steady]) if steady else None,
        "steady_chunk_fps": _rate(steady),
        "steady_chunks": len(steady),
        "early_chunk_fps": early,
        "late_chunk_fps": late,
        "throughput_ratio": late / early if early and late else None,
        "early_chunk_transformer_s": transformer_s(steady[:quarter]),
        "late_chunk_transformer_s": transformer_s(steady[-quarter:]),
        "switch_latency_s": None if switch is None else switch["latency_s"],
        "switch": switch,
        "chunks": [{**asdict(chunk), "seconds_min": seconds_min, "fps": chunk.frames / chunk.seconds}
                   for chunk, seconds_min in zip(chunks, fastest)],
    }
