"""One benchmark run: synthetic inputs, the model, and a timed dress or stream video."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from engine.api.bench.clock import StageClock
from engine.api.decoder import choose_decoder
from engine.api.bench.request import GARMENT_ROLES, PROMPT, STAGES, BenchRequest, RunPlan
from engine.api.loading import default_model, get_model
from engine.api.options import out_of_memory_is_a_failure
from engine.api.specs import GarmentSpec
from engine.api.stream import WRITE_QUEUE, ChunkWritten, Switch, SwitchingStream
from engine.checkpoint import build_random
from engine.checkpoint.presets import Preset, get_preset
from engine.media import VideoFrames, VideoInfo, VideoWriter, crop_center, probe_video, write_video
from engine.model.tiny_decoder import TinyVideoDecoder
from engine.pipelines.pipeline_tryon import TryOnPipeline, to_uint8
from engine.pipelines.pipeline_tryon_streaming import TryOnStream
from engine.pipelines.runtime import Runtime, apply_runtime
from engine.progress import Notice, no_progress


@dataclass
class ChunkTiming:
    """One streamed chunk: its frames, wall seconds, the cache tokens it attended to, its stage seconds."""

    index: int
    frames: int
    seconds: float
    context_tokens: int
    switch: bool  # the garment switch was applied just before it
    stages: dict[str, float]


@dataclass
class SwitchTiming:
    """The garment switch: the frame it applied from, the seconds of its cache operations, and
    from its start until the first frame wearing it was written."""

    frame: int
    ops_s: float
    latency_s: float


@dataclass
class RunTiming:
    """One timed video. `stages` and `calls` are filled in by the benchmark's clock."""

    total_s: float
    first_frame_s: float
    frames: int
    setup_s: float | None = None  # stream: building the stream (text, conditions, cache)
    chunks: list[ChunkTiming] = field(default_factory=list)  # stream
    switch: SwitchTiming | None = None  # stream
    stages: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The run as `--json` shows it: without its chunks (summarised apart), and without what dress runs lack."""
        data = asdict(self)
        del data["chunks"]
        if self.setup_s is None:
            del data["setup_s"], data["switch"]
        return data


def _noise_image(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    width, height = size
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@dataclass
class BenchInputs:
    """Synthetic inputs. `motion`: the frames at the size the model makes (dress); stream mode
    reads them from `motion_file` as `tryon swap` does (`motion_video`)."""

    user: Image.Image
    garments: list[tuple[str, Image.Image]]
    switch_to: list[tuple[str, Image.Image]]
    motion: np.ndarray | None
    motion_file: Path | None = None
    motion_info: VideoInfo | None = None


def make_inputs(request: BenchRequest, size: tuple[int, int], num_frames: int) -> BenchInputs:
    rng = np.random.default_rng(request.seed)
    user = _noise_image(rng, size)
    garments = [(GARMENT_ROLES[i], _noise_image(rng, size)) for i in range(request.garments)]
    switch_to = [("dress", _noise_image(rng, size))]
    motion = None
    if request.motion:
        width, height = size
        motion = rng.integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)
    return BenchInputs(user, garments, switch_to, motion)


def write_motion_file(inputs: BenchInputs, folder: Path, plan: RunPlan) -> None:
    """The motion video as a user's file: an MP4 a quarter larger than the model's size (so it is
    decoded and resized as `tryon swap` does), smooth enough for H.264, probed once as swap
    probes it before loading the model."""
    if inputs.motion is None or inputs.motion_file is not None:
        return
    width, height = plan.generate_size
    source = (round(width * 1.25 / 2) * 2, round(height * 1.25 / 2) * 2)
    cells = np.random.default_rng(len(inputs.motion)).integers(
        0, 256, (len(inputs.motion), source[1] // 32 + 1, source[0] // 32 + 1, 3), dtype=np.uint8)
    frames = cells.repeat(32, axis=1).repeat(32, axis=2)[:, : source[1], : source[0]]
    path = folder / "motion.mp4"
    write_video(path, frames, plan.fps)
    inputs.motion_file, inputs.motion_info = path, probe_video(path)


def motion_video(inputs: BenchInputs, plan: RunPlan) -> VideoFrames | None:
    """The motion video's frames as `tryon swap` reads them: decoded from the file and fitted as the stream asks."""
    if inputs.motion_file is None:
        return None
    return VideoFrames(inputs.motion_file, fps=plan.fps, num_frames=plan.num_frames, size=plan.generate_size,
                       fit="cover", info=inputs.motion_info)


@dataclass
class BenchModel:
    pipeline: TryOnPipeline
    preset: Preset
    name: str
    tiny_decoder: TinyVideoDecoder | None = None  # stream: decode with it instead of the VAE
    decoder: str = "full"  # which decoder streams (engine.api.decoder)


def load_bench_model(request: BenchRequest, runtime: Runtime, tell: Notice) -> BenchModel:
    if request.random_weights:
        preset = get_preset(request.preset)
        with out_of_memory_is_a_failure(runtime.device, f"building '{preset.name}'; use --dtype bf16, or a smaller preset"):
            pipeline = build_random(preset, request.seed, runtime.load_device, runtime.dtype, draw_on=runtime.device)
        apply_runtime(pipeline, runtime)
        tiny, decoder = _random_tiny_decoder(pipeline, runtime)
        return BenchModel(pipeline, preset, f"{preset.name} (random weights)", tiny, decoder)
    source = request.run.model or request.preset or default_model()
    loaded = get_model(source, request.run.revision, runtime, tell)
    return BenchModel(loaded.pipeline, loaded.preset, source,
                      *choose_decoder(loaded, runtime, loaded.pipeline.vae.config))


def _random_tiny_decoder(pipeline: TryOnPipeline, runtime: Runtime) -> tuple[TinyVideoDecoder | None, str]:
    """With random weights, `--decoder tiny` is a random tiny decoder of the published layout for this
    VAE's latents (speed only); other choices as for a checkpoint without one."""
    if runtime.acceleration.decoder != "tiny":
        return choose_decoder(None, runtime, pipeline.vae.config)
    tiny = TinyVideoDecoder.for_vae(pipeline.vae.config).eval()
    return torch.nn.Module.to(tiny, device=runtime.device, dtype=runtime.dtype), "tiny (random weights)"


def weights_mb(pipeline: TryOnPipeline) -> float:
    modules = (pipeline.transformer, pipeline.vae, pipeline.text_encoder)
    total = sum(p.numel() * p.element_size() for m in modules for p in m.parameters())
    return total / 2**20


def _writer(folder: Path, run: int, plan: RunPlan, queue: int = 0,
            on_written: Callable[[], None] | None = None) -> VideoWriter:
    return VideoWriter(folder / f"run{run}.mp4", plan.fps, plan.size, queue=queue, on_written=on_written)


def run_dress(model: BenchModel, plan: RunPlan, inputs: BenchInputs, clock: StageClock, folder: Path, run: int,
               seed: int) -> RunTiming:
    """What `tryon dress` runs: the whole video, then written to an MP4."""
    pipeline = model.pipeline
    device = pipeline._execution_device
    start = clock.now()
    width, height = plan.generate_size  # the inputs' size; the output is its centre
    frames = pipeline(inputs.user, garments=inputs.garments, motion=inputs.motion, prompt=PROMPT,
                      height=height, width=width, num_frames=plan.num_frames, num_inference_steps=plan.steps,
                      guidance_scale=plan.guidance, generator=torch.Generator(device=device).manual_seed(seed)).frames
    frames = crop_center(to_uint8(frames[0]), plan.size)
    with _writer(folder, run, plan) as writer:
        clock.wrap(writer, "write", "writing")
        writer.write(frames[:1])
        first_frame = time.perf_counter() - start  # the frames are on the host: nothing is queued
        writer.write(frames[1:])
        closing = time.perf_counter()
    clock.add("writing", time.perf_counter() - closing)
    total = clock.now() - start
    (folder / f"run{run}.mp4").unlink(missing_ok=True)
    return RunTiming(total, first_frame, len(frames))


def run_stream(model: BenchModel, plan: RunPlan, inputs: BenchInputs, clock: StageClock, folder: Path, run: int,
               seed: int) -> RunTiming:
    """What `tryon swap` runs: a `SwitchingStream` writing chunk by chunk, one garment switch mid-stream,
    the motion video decoded and resized from a file as the stream reaches it.

    Per stage, the writer writes on this thread (its time is a stage of its own); end to end, on
    its own thread as for the user, and a chunk counts as written when the writer thread has
    handed its frames to the encoder."""
    pipeline = model.pipeline
    device = pipeline._execution_device
    write_motion_file(inputs, folder, plan)
    written: list[float] = []  # when each chunk's frames reached the encoder
    with ExitStack() as resources:
        start = clock.now()
        motion = motion_video(inputs, plan)
        if motion is not None:
            resources.enter_context(motion)
        stream = TryOnStream(
            pipeline,
            reference=inputs.user,
            garments=inputs.garments,
            prompt=PROMPT,
            generator=torch.Generator(device=device).manual_seed(seed),
            motion=motion,
            config=plan.config,
            tiny_decoder=model.tiny_decoder,
        )
        resources.callback(stream.close)
        clock.wrap(stream.decoder, "decode", "vae_decode")  # the VAE's causal decoder, or the tiny one
        if stream.motion is not None:  # and encodes the motion video chunk by chunk with its causal encoder
            clock.wrap(stream.motion.encoder, "encode", "vae_encode")
        setup = clock.stamp() - start
        outfit = [(GarmentSpec(Path(f"garment{i}"), None if role == "unknown" else role), image)
                  for i, (role, image) in enumerate(inputs.garments)]
        switches = [] if plan.switch_frame is None else [
            Switch([(GarmentSpec(Path("switch"), role), image) for role, image in inputs.switch_to],
                   at=plan.switch_frame / plan.fps)]
        switching = SwitchingStream(stream, outfit, switches, None, plan.generate_size, plan.fps,
                                    tell=lambda message: None)
        handed: list[ChunkWritten] = []
        before = dict(clock.totals)
        stages: list[dict[str, float]] = []

        def record(chunk: ChunkWritten) -> None:
            nonlocal before
            handed.append(chunk)
            stages.append({stage: clock.totals.get(stage, 0.0) - before.get(stage, 0.0) for stage in STAGES})
            before = dict(clock.totals)

        queue = 0 if clock.per_stage else WRITE_QUEUE
        with _writer(folder, run, plan, queue, on_written=lambda: written.append(time.perf_counter())) as writer:
            clock.wrap(writer, "write", "writing")
            switching.write(writer, plan.num_frames, no_progress, lambda new: crop_center(new, plan.size),
                            on_chunk=record, clock=clock.stamp)
            closing = time.perf_counter()
    clock.add("writing", time.perf_counter() - closing)
    total = clock.now() - start
    (folder / f"run{run}.mp4").unlink(missing_ok=True)
    if clock.per_stage:  # each chunk was written when it was handed over
        written = [chunk.written for chunk in handed]
    return _stream_timing(handed, written, stages, start, total, setup)


def _stream_timing(handed: list[ChunkWritten], written: list[float], stages: list[dict[str, float]], start: float,
                   total: float, setup: float) -> RunTiming:
    """A stream's chunks timed by when each was written: from the chunk before it (the first: from its start)."""
    chunks: list[ChunkTiming] = []
    switch: SwitchTiming | None = None
    made = 0
    for index, (chunk, done) in enumerate(zip(handed, written)):
        began = chunk.started if index == 0 else max(chunk.started, written[index - 1])
        if chunk.switches:
            switch = SwitchTiming(made, chunk.switched - chunk.started, done - chunk.started)
        chunks.append(ChunkTiming(index, chunk.frames, done - began, chunk.context_tokens, bool(chunk.switches),
                                  stages[index]))
        made += chunk.frames
    return RunTiming(total, written[0] - start, made, setup, chunks, switch)
