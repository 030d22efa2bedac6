"""One benchmark run: synthetic inputs, the model, and a timed dress or stream video."""

from __future__ import annotations

import time
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
from engine.api.stream import ChunkWritten, Switch, SwitchingStream
from engine.checkpoint import build_random
from engine.checkpoint.presets import Preset, get_preset
from engine.media import VideoWriter, crop_center
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
    user: Image.Image
    garments: list[tuple[str, Image.Image]]
    switch_to: list[tuple[str, Image.Image]]
    motion: np.ndarray | None


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


def _writer(folder: Path, run: int, plan: RunPlan) -> VideoWriter:
    return VideoWriter(folder / f"run{run}.mp4", plan.fps, plan.size)


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
    """What `tryon swap` runs: a `SwitchingStream` writing chunk by chunk, one garment switch mid-stream."""
    pipeline = model.pipeline
    device = pipeline._execution_device
    start = clock.now()
    stream = TryOnStream(
        pipeline,
        reference=inputs.user,
        garments=inputs.garments,
        prompt=PROMPT,
        generator=torch.Generator(device=device).manual_seed(seed),
        motion=inputs.motion,
        config=plan.config,
        tiny_decoder=model.tiny_decoder,
    )
    clock.wrap(stream.decoder, "decode", "vae_decode")  # the VAE's causal decoder, or the tiny one
    if stream.motion is not None:  # and encodes the motion video chunk by chunk with its causal encoder
        clock.wrap(stream.motion.encoder, "encode", "vae_encode")
    setup = clock.now() - start
    outfit = [(GarmentSpec(Path(f"garment{i}"), None if role == "unknown" else role), image)
              for i, (role, image) in enumerate(inputs.garments)]
    switches = [] if plan.switch_frame is None else [
        Switch([(GarmentSpec(Path("switch"), role), image) for role, image in inputs.switch_to],
               at=plan.switch_frame / plan.fps)]
    switching = SwitchingStream(stream, outfit, switches, None, plan.generate_size, plan.fps, tell=lambda message: None)
    chunks: list[ChunkTiming] = []
    switch: SwitchTiming | None = None
    before = dict(clock.totals)
    made = 0
    first_frame = 0.0

    def record(chunk: ChunkWritten) -> None:
        nonlocal before, made, switch, first_frame
        if not chunks:
            first_frame = chunk.written - start
        if chunk.switches:
            switch = SwitchTiming(made, chunk.switched - chunk.started, chunk.written - chunk.started)
        stages = {stage: clock.totals.get(stage, 0.0) - before.get(stage, 0.0) for stage in STAGES}
        chunks.append(ChunkTiming(len(chunks), chunk.frames, chunk.written - chunk.started, chunk.context_tokens,
                                  bool(chunk.switches), stages))
        before = dict(clock.totals)
        made += chunk.frames

    with _writer(folder, run, plan) as writer:
        clock.wrap(writer, "write", "writing")
        switching.write(writer, plan.num_frames, no_progress, lambda new: crop_center(new, plan.size),
                        on_chunk=record, clock=clock.now)
        closing = time.perf_counter()
    clock.add("writing", time.perf_counter() - closing)
    total = clock.now() - start
    (folder / f"run{run}.mp4").unlink(missing_ok=True)
    return RunTiming(total, first_frame, made, setup, chunks, switch)
