"""`tryon bench`: end-to-end speed of the real pipeline (see engine.api.bench)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal, Optional

import typer
from rich.table import Column, Table

from engine.modes import COMPARABLE, Acceleration, RunOptions
from tryon_cli import options
from tryon_cli.console import notice, print_json, stdout

if TYPE_CHECKING:
    from engine.api.bench import BenchResult

# The presets' size multiples (Preset.size_multiple; written out here so that --help loads no
# engine; tests/tryon_cli/test_options.py checks them against the presets).
MULTIPLES = "tiny 32, demo 16, demo-z48 16, demo-4x 16, wan2.2-ti2v-5b 32"
STAGE_NAMES = {
    "text_encoding": "text encoding",
    "vae_encode": "VAE encode",
    "transformer": "transformer",
    "vae_decode": "VAE decode",
    "writing": "writing (MP4)",
}


@options.run_options(model_help="A checkpoint folder or Hub repo id, instead of --preset.", decoder=True)
def bench(
    preset: Annotated[Optional[str], typer.Option(help="Preset to bench: tiny, demo or wan2.2-ti2v-5b.")] = None,
    random_weights: Annotated[
        bool, typer.Option("--random-weights", help="Build --preset at random on the device: no download.")
    ] = False,
    mode: Annotated[Literal["dress", "stream"], typer.Option(
        help="dress: the whole video at once; stream: chunk by chunk.")] = "dress",
    size: Annotated[
        Optional[str], typer.Option(help=f"WIDTHxHEIGHT, multiples of the model's size multiple ({MULTIPLES}). "
                                    "Default: the model's.")
    ] = None,
    seconds: options.Seconds = None,
    fps: options.Fps = None,
    steps: Annotated[
        Optional[int], typer.Option(help="Denoising steps (stream: per chunk). Default: the model's; stream 4.")
    ] = None,
    guidance: options.Guidance = None,
    garments: Annotated[int, typer.Option(help="Garment images to condition on (1 to 4).")] = 1,
    motion: Annotated[bool, typer.Option("--motion/--no-motion", help="Condition on a motion video.")] = True,
    chunk_frames: Annotated[int, typer.Option(help="stream: latent frames per chunk, 1 to 16.")] = 3,
    window: Annotated[int, typer.Option(help="stream: history chunks the cache keeps besides the sink, 0 to 64.")] = 6,
    switch_at: Annotated[
        Optional[float], typer.Option(help="stream: seconds at which to switch garments (default: half way).")
    ] = None,
    warmup: Annotated[
        Optional[int], typer.Option(help="Untimed runs first, 0 to 100 (default: 1 on CUDA, 0 on the CPU).")
    ] = None,
    repeat: Annotated[int, typer.Option(help="Timed runs, 1 to 100; mean and min are reported.")] = 1,
    seed: options.Seed = 0,
    vae_tiling: Annotated[
        bool, typer.Option("--vae-tiling", help="Tile the VAE (less memory at large sizes).")
    ] = False,
    sync: Annotated[
        str, typer.Option(help="stage: time each stage, waiting for the GPU around each; end: end to end as the "
                          "user gets it (the writer on its own thread, nothing waited for), no stage times.")
    ] = "stage",
    compare: Annotated[
        Optional[str], typer.Option(help="Modes to time one at a time against this run, e.g. fuse-qkv,fp8,compile "
                                    f"(of: {', '.join(COMPARABLE)}). Use --warmup 1 with compile.")
    ] = None,
    json_output: options.Json = False,
    chart: options.Chart = None,
    quiet: options.Quiet = False,
    run: RunOptions = RunOptions(),
) -> None:
    """Measure generation speed end to end: FPS, time to first frame, per-stage times, peak memory.

    Inputs are synthetic (noise images; speed does not depend on them). Stage times come from
    timers around the pipeline's own model calls, synchronized on CUDA. Speed targets belong in
    this output, never in tests.

    Example: tryon bench --preset tiny --random-weights --mode stream --size 256x448 --seconds 10 --json
    Chart:   tryon bench --preset tiny --random-weights --compare fuse-qkv,offload-group --chart bench.png
    """
    from engine import api
    from engine.api.bench import BenchRequest
    from engine.api.charts import bench_chart, check_chart_path
    from engine.media import parse_size

    request = BenchRequest(
        preset=preset, random_weights=random_weights, mode=mode,
        size=parse_size(size) if size else None, seconds=seconds, fps=fps, steps=steps, guidance=guidance,
        garments=garments, motion=motion, chunk_frames=chunk_frames, window=window, switch_at=switch_at,
        warmup=warmup, repeat=repeat, seed=seed, vae_tiling=vae_tiling, sync=sync,
        compare=tuple(name.strip() for name in compare.split(",")) if compare else (), run=run,
    )
    check_chart_path(chart)
    result = api.bench_and_compare(request, notice=None if quiet else notice)
    if json_output:
        print_json(result.to_dict())
    else:
        print_tables(result)
    if chart is not None:
        bench_chart(result, chart, STAGE_NAMES)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def _fps(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_tables(result: BenchResult) -> None:
    runs = f"mean of {result.repeat}" if result.repeat > 1 else "1 run"
    title = (f"tryon bench: {result.mode}, {result.model}, {result.size[0]}x{result.size[1]}, "
             f"{result.frames} frames at {result.video_fps:g} fps, {result.steps} steps"
             f"{' per chunk' if result.stream else ''}, {runs} after {result.warmup} warm-up")
    summary = Table("measure", "value", title=title, title_justify="left")
    modes = Acceleration(**result.acceleration).describe()
    summary.add_row("device", f"{result.device}, {result.dtype}, attention {result.attention}"
                    + (f", {modes}" if modes else ""))
    summary.add_row("timing", "per stage (synchronised around each)" if result.sync == "stage"
                    else "end to end (nothing synchronised; the writer on its own thread)")
    if result.stream:
        summary.add_row("decoder", result.decoder)
    best = f" (best {_fps(result.fps_best)})" if result.repeat > 1 else ""
    summary.add_row("FPS (video frames / wall second)", _fps(result.fps) + best)
    summary.add_row("total", _s(result.total_s) + (f" (min {_s(result.total_s_min)})" if result.repeat > 1 else ""))
    summary.add_row("time to first frame", _s(result.first_frame_s))
    kind = "CUDA max allocated" if result.peak_memory_kind == "cuda_max_allocated" else "CPU peak RSS of the process"
    summary.add_row("peak memory", f"{result.peak_memory_mb:,.0f} MiB ({kind})")
    summary.add_row("weights", f"{result.weights_mb:,.0f} MiB, loaded in {_s(result.load_s)}")
    if result.sync == "stage":
        summary.add_row("overhead (outside model calls)",
                        f"{result.overhead:.1%} ({result.overhead_without_writing:.1%} not counting writing)")
    stdout.print(summary)
    if result.sync == "stage":
        print_stages(result)
    print_stream(result)
    print_compare(result)


def print_stages(result: BenchResult) -> None:
    from engine.api.bench import STAGES

    stages = Table("stage", "mean", "min", "share", "calls/run", title="stages (timed around the model calls)",
                   title_justify="left")
    for stage in STAGES:
        share = result.stages[stage] / result.total_s
        stages.add_row(STAGE_NAMES[stage], _s(result.stages[stage]), _s(result.stages_min[stage]), f"{share:.1%}",
                       str(result.calls[stage]))
    stages.add_row("other (engine)", _s(result.other_s), "", f"{result.other_s / result.total_s:.1%}", "")
    stdout.print(stages)


def print_stream(result: BenchResult) -> None:
    stream = result.stream
    if stream:
        table = Table("stream", "value", title=f"stream: chunks of {stream['chunk_frames']} latent frames, "
                      f"window {stream['window']}", title_justify="left")
        table.add_row("setup (encode prompt, images, motion; condition pass)", _s(stream["setup_s"]))
        table.add_row(f"first chunk ({stream['first_chunk_frames']} frames)", _s(stream["first_chunk_s"]))
        table.add_row(f"steady chunk ({stream['steady_chunks']} chunks)",
                      f"{_s(stream['steady_chunk_s'])}, {_fps(stream['steady_chunk_fps'])} fps")
        table.add_row("early / late steady chunks (fps)",
                      f"{_fps(stream['early_chunk_fps'])} / {_fps(stream['late_chunk_fps'])}"
                      + (f" (late/early {stream['throughput_ratio']:.2f})" if stream["throughput_ratio"] else ""))
        table.add_row("early / late steady chunks (transformer s per chunk)",
                      f"{_s(stream['early_chunk_transformer_s'])} / {_s(stream['late_chunk_transformer_s'])}")
        switch = stream["switch"]
        table.add_row("switch latency (switch → first new frame written)",
                      "not applied (no chunk starts after --switch-at)" if switch is None else
                      f"{_s(switch['latency_s'])} at frame {switch['frame']} (switch ops {_s(switch['ops_s'])})")
        stdout.print(table)


def print_compare(result: BenchResult) -> None:
    if result.compare:
        modes = Column("mode", min_width=max(len(entry["mode"]) for entry in result.compare))  # never cut
        table = Table(modes, "FPS", "× FPS", "decode", "first frame", "weights", "peak memory",
                      title="each mode alone against the run above (same process, same inputs)", title_justify="left")
        for entry in result.compare:
            table.add_row(entry["mode"], _fps(entry["fps"]), f"{entry['fps_ratio']:.2f}",
                          "-" if entry["vae_decode_ratio"] is None else
                          f"{_s(entry['vae_decode_s'])} ({entry['vae_decode_ratio']:.2f}×)", _s(entry["first_frame_s"]),
                          f"{entry['weights_mb']:,.0f} MiB ({entry['weights_ratio']:.2f}×)",
                          f"{entry['peak_memory_mb']:,.0f} MiB")
        stdout.print(table)
