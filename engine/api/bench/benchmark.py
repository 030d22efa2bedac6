"""Speed of the real pipeline, end to end: what `tryon bench` measures.

A benchmark builds or loads a model once, then makes videos from synthetic inputs (seeded
noise images of the output size: speed does not depend on what the pictures show) with the
engine's own code, and times it from the outside:

- `dress` runs `TryOnPipeline.__call__` (what `tryon dress` runs) and writes the frames to an
  MP4 with the project's `VideoWriter`.
- `stream` runs a `TryOnStream` chunk by chunk (what `tryon swap` runs), writes each
  chunk as it is made, and applies one garment switch mid-stream (`TryOnStream.switch`).

Stages are timed by wrapping, for the duration of the benchmark only, the model calls on
the loaded instances: the text encoder's `forward`, the VAE's `encode` and `decode` (and the
streaming generator's causal decoder), the transformer's `forward` (the condition pass too), and
the writer's `write` and close. Only the outermost timed call counts, so stages never
overlap and their sum is at most the run's wall time; the rest (`other_s`) is the engine's
own work: scheduler steps, noise, cache bookkeeping, tensor conversions.

Honest timing: on CUDA every timer reads the clock after `torch.cuda.synchronize`, and peak
memory is `torch.cuda.max_memory_allocated` over the timed runs (reset after load and
warm-up). On the CPU the peak is the process's peak resident set size (`ru_maxrss`), which
includes building the model and cannot be reset; `peak_memory_kind` says which was measured.

Numbers: `fps` is generated video frames per wall second of a whole run (encode, denoise,
decode, write); `first_frame_s` is from the start of a run until the first frame was handed
to the video writer (dress: after the whole video is decoded; stream: after the first
chunk). `overhead` is (total − time inside the text encoder, VAE and transformer calls) /
total. In stream mode, per-chunk times show whether throughput holds as the video grows
(the history window slides: a chunk attends to at most the conditions, the sink and
`window` chunks): `early_chunk_fps` and `late_chunk_fps` are the frame rates of the first
and last quarter of the steady chunks (all but the first chunk, the chunk after the switch
and a short last chunk), with the tokens each chunk attended to and its stage times in
`chunks`, and the transformer's seconds per chunk early and late beside them.

`--random-weights` builds the preset's components at random directly on the target device
in the target dtype (the VAE in float32, as when loading), so the 5 B production preset
needs no download and no float32 copy in CPU memory. A preset without an offline tokenizer
(the production one) gets the tiny preset's word tokenizer as a placeholder, with the
preset's own text encoder (its full vocabulary and 512 tokens): token ids do not change
speed.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch

from engine.api.bench.clock import (
    StageClock,
    describe_device,
    instrument,
    peak_memory_mb,
    reset_peak_memory,
)
from engine.api.bench.request import (
    MODEL_STAGES,
    STAGES,
    BenchRequest,
    RunPlan,
    check_request,
    make_plan,
)
from engine.api.bench.runs import (
    BenchInputs,
    BenchModel,
    RunTiming,
    load_bench_model,
    make_inputs,
    run_dress,
    run_stream,
    weights_mb,
)
from engine.api.bench.summary import BenchResult, mean, stream_summary
from engine.api.options import out_of_memory_is_a_failure, resolve_run
from engine.checkpoint.presets import get_preset
from engine.errors import InputError
from engine.modes import COMPARABLE, RunOptions
from engine.pipelines.runtime import Runtime
from engine.progress import Notice, Notices


def run_bench(request: BenchRequest, notice: Notice | None = None) -> BenchResult:
    """Build or load the model once, run `warmup` untimed and `repeat` timed videos; see the module docstring."""
    check_request(request)
    runtime = resolve_run(request.run)
    if request.preset is not None:  # bad sizes and switch times fail before the model is built
        preset = get_preset(request.preset)
        make_plan(request, preset, preset.size_multiple)

    load_start = time.perf_counter()
    model = load_bench_model(request, runtime, Notices(notice))
    if runtime.device.type == "cuda":
        torch.cuda.synchronize(runtime.device)
    return bench_model(request, model, runtime, time.perf_counter() - load_start, notice)


def bench_model(request: BenchRequest, model: BenchModel, runtime: Runtime, load_s: float,
                notice: Notice | None = None) -> BenchResult:
    """`run_bench` on a model built or loaded already (a script that changes one model step by step
    benches it after each step); `runtime` says how it runs, `load_s` how long it took to get."""
    tell = Notices(notice)
    check_request(request)
    pipeline, preset = model.pipeline, model.preset
    plan = make_plan(request, preset, pipeline.size_multiple)
    size, fps, num_frames, steps, guidance = plan.size, plan.fps, plan.num_frames, plan.steps, plan.guidance
    stream = request.mode == "stream"
    warmup = request.warmup if request.warmup is not None else (1 if runtime.device.type == "cuda" else 0)
    inputs = make_inputs(request, plan.generate_size, num_frames)
    run_once = run_stream if stream else run_dress

    if request.vae_tiling:
        pipeline.vae.enable_tiling()
        if stream:
            tell("--vae-tiling: streaming decodes chunk by chunk with the causal decoder, untiled; "
                 "only VAE encoding is tiled")
    remedy = "lower --size or --seconds, use --dtype bf16, or --vae-tiling"
    with out_of_memory_is_a_failure(runtime.device, remedy):
        try:
            runs = _timed_runs(model, plan, inputs, run_once, warmup, request, runtime.device, notice)
        finally:
            if request.vae_tiling:
                pipeline.vae.disable_tiling()
    peak, peak_kind = peak_memory_mb(runtime.device)

    totals = [run.total_s for run in runs]
    stages = {stage: mean([run.stages[stage] for run in runs]) for stage in STAGES}
    model_time = [sum(run.stages[s] for s in MODEL_STAGES) for run in runs]
    overhead = mean([(t - m) / t for t, m in zip(totals, model_time)])
    overhead_nw = mean([(t - m - run.stages["writing"]) / t for t, m, run in zip(totals, model_time, runs)])
    frames = runs[0].frames
    return BenchResult(
        mode=request.mode,
        model=model.name,
        preset=preset.name,
        random_weights=request.random_weights,
        device=describe_device(runtime.device),
        dtype=runtime.dtype_name,
        attention=runtime.attention,
        acceleration=asdict(runtime.acceleration),
        size=list(size),
        video_fps=fps,
        frames=frames,
        steps=steps,
        guidance=guidance,
        garments=request.garments,
        motion=request.motion,
        warmup=warmup,
        repeat=request.repeat,
        vae_tiling=request.vae_tiling,
        sync=request.sync,
        threads=torch.get_num_threads(),
        load_s=load_s,
        weights_mb=weights_mb(pipeline),
        fps=frames / mean(totals),
        fps_best=frames / min(totals),
        total_s=mean(totals),
        total_s_min=min(totals),
        first_frame_s=mean([run.first_frame_s for run in runs]),
        first_frame_s_min=min(run.first_frame_s for run in runs),
        stages=stages,
        stages_min={stage: min(run.stages[stage] for run in runs) for stage in STAGES},
        other_s=mean(totals) - sum(stages.values()),
        calls=runs[0].calls,
        overhead=overhead,
        overhead_without_writing=overhead_nw,
        peak_memory_mb=peak,
        peak_memory_kind=peak_kind,
        runs=[run.to_dict() for run in runs],
        stream=stream_summary(runs, plan) if stream else None,
        notices=list(tell),
        decoder=model.decoder if stream else "full",
    )


def _timed_runs(model: BenchModel, plan: RunPlan, inputs: BenchInputs, run_once: Callable[..., RunTiming],
                warmup: int, request: BenchRequest, device: torch.device, notice: Notice | None) -> list[RunTiming]:
    """`warmup` untimed runs, then `request.repeat` timed ones with their stage times."""
    clock = StageClock(device, per_stage=request.sync == "stage")
    runs: list[RunTiming] = []
    with tempfile.TemporaryDirectory(prefix=".tryon-bench-") as folder:
        for i in range(warmup + request.repeat):
            timed = i >= warmup
            if i == warmup:
                reset_peak_memory(device)
            clock.reset()
            instrument(clock, model.pipeline)
            try:
                result = run_once(model, plan, inputs, clock, Path(folder), i, request.seed)
            finally:
                clock.restore()
            if timed:
                result.stages = {stage: clock.totals.get(stage, 0.0) for stage in STAGES}
                result.calls = {stage: clock.calls.get(stage, 0) for stage in STAGES}
                runs.append(result)
            if notice:
                label = f"run {i - warmup + 1}/{request.repeat}" if timed else f"warm-up {i + 1}/{warmup}"
                notice(f"{label}: {result.frames} frames in {result.total_s:.2f} s "
                       f"({result.frames / result.total_s:.2f} fps)")
    return runs


def compared_run(run: RunOptions, name: str) -> RunOptions:
    """`run` with the change the `--compare` mode `name` makes (COMPARABLE): to its modes or its attention."""
    changes = dict(COMPARABLE[name])
    attention = changes.pop("attention", run.attention)
    return replace(run, attention=attention, acceleration=replace(run.acceleration, **changes))


def bench_and_compare(request: BenchRequest, notice: Notice | None = None) -> BenchResult:
    """`run_bench`, then each `request.compare` mode on its own, as ratios against that baseline.

    Every variant loads or builds the model afresh (modes change it) and runs the same plan,
    inputs and seed in the same process, so the ratios compare like with like. Each entry of
    `compare`: the mode, its fps, first frame, peak memory and weights, and `fps_ratio` /
    `first_frame_ratio` / `weights_ratio` / `vae_decode_ratio` against the baseline (above 1: faster /
    later / larger / slower to decode; None with `--sync end`, which times no stage), its decoder and
    its decode stage's seconds.
    """
    for name in request.compare:
        if name not in COMPARABLE:
            raise InputError(f"--compare: unknown mode '{name}' (one of: {', '.join(COMPARABLE)})")
    baseline = run_bench(replace(request, compare=()), notice)
    for name in request.compare:
        if notice:
            notice(f"--compare {name}")
        variant = run_bench(replace(request, compare=(), run=compared_run(request.run, name)), notice)
        baseline.compare.append({
            "mode": name,
            "acceleration": variant.acceleration,
            "fps": variant.fps,
            "decoder": variant.decoder,
            "vae_decode_s": variant.stages["vae_decode"],
            "vae_decode_ratio": (variant.stages["vae_decode"] / baseline.stages["vae_decode"]
                                 if baseline.stages["vae_decode"] else None),  # None: timed end to end
            "first_frame_s": variant.first_frame_s,
            "peak_memory_mb": variant.peak_memory_mb,
            "weights_mb": variant.weights_mb,
            "fps_ratio": variant.fps / baseline.fps,
            "first_frame_ratio": variant.first_frame_s / baseline.first_frame_s,
            "weights_ratio": variant.weights_mb / baseline.weights_mb,
        })
    return baseline
