"""One benchmark run: synthetic inputs, the model, and a timed dress or stream video."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from tryon.api.bench.clock import StageClock
from tryon.api.bench.request import GARMENT_ROLES, PROMPT, STAGES, BenchRequest, RunPlan
from tryon.api.loading import default_model, get_model
from tryon.checkpoint import build_random_on
from tryon.checkpoint.presets import Preset, get_preset
from tryon.errors import RuntimeFailure
from tryon.media import VideoWriter, crop_center
from tryon.pipelines.pipeline_tryon import TryOnInputs, TryOnPipeline
from tryon.pipelines.pipeline_tryon_streaming import TryOnStream
from tryon.pipelines.runtime import Runtime, apply_runtime
from tryon.progress import Notice


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


def load_bench_model(request: BenchRequest, runtime: Runtime, tell: Notice) -> BenchModel:
    if request.random_weights:
        preset = get_preset(request.preset)
        try:
            pipeline = build_random_on(preset, runtime.load_device, runtime.dtype, request.seed)
        except torch.OutOfMemoryError:
            raise RuntimeFailure(f"out of memory on {runtime.device} building '{preset.name}' "
                                 "(use --dtype bf16, or a smaller preset)") from None
        apply_runtime(pipeline, runtime)
        return BenchModel(pipeline, preset, f"{preset.name} (random weights)")
    source = request.model or request.preset or default_model()
    loaded = get_model(source, request.revision, runtime, tell)
    return BenchModel(loaded.pipeline, loaded.preset, source)


def weights_mb(pipeline: TryOnPipeline) -> float:
    modules = (pipeline.transformer, pipeline.vae, pipeline.text_encoder)
    total = sum(p.numel() * p.element_size() for m in modules for p in m.parameters())
    return total / 2**20


def _writer(folder: Path, run: int, plan: RunPlan) -> VideoWriter:
    return VideoWriter(folder / f"run{run}.mp4", plan.fps, plan.size)


def run_dress(model: BenchModel, plan: RunPlan, inputs: BenchInputs, clock: StageClock, folder: Path, run: int,
               seed: int) -> dict[str, Any]:
    pipeline = model.pipeline
    shape = pipeline.video_shape(*plan.generate_size, plan.num_frames)
    tryon_inputs = TryOnInputs(user=inputs.user, garments=inputs.garments, motion=inputs.motion, prompt=PROMPT)
    device = pipeline._execution_device
    start = clock.now()
    frames = pipeline(tryon_inputs, shape, steps=plan.steps, guidance=plan.guidance,
                      generator=torch.Generator(device=device).manual_seed(seed))
    frames = crop_center(frames, plan.size)
    with _writer(folder, run, plan) as writer:
        clock.wrap(writer, "write", "writing")
        writer.write(frames[:1])
        first_frame = time.perf_counter() - start  # the frames are on the host: nothing is queued
        writer.write(frames[1:])
        closing = time.perf_counter()
    clock.add("writing", time.perf_counter() - closing)
    total = clock.now() - start
    (folder / f"run{run}.mp4").unlink(missing_ok=True)
    return {"total_s": total, "first_frame_s": first_frame, "frames": len(frames)}


def run_stream(model: BenchModel, plan: RunPlan, inputs: BenchInputs, clock: StageClock, folder: Path, run: int,
                seed: int) -> dict[str, Any]:
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
    )
    clock.wrap(stream.decoder, "decode", "vae_decode")  # streaming decodes with the VAE's causal cache
    if stream.motion is not None:  # and encodes the motion video chunk by chunk with its causal encoder
        clock.wrap(stream.motion.encoder, "encode", "vae_encode")
    setup = clock.now() - start
    chunks: list[dict[str, Any]] = []
    switch: dict[str, Any] | None = None
    first_frame = None
    made = 0
    with _writer(folder, run, plan) as writer:
        clock.wrap(writer, "write", "writing")
        chunk_start = clock.now()
        while made < plan.num_frames:
            switched_at = None
            before = dict(clock.totals)
            if switch is None and plan.switch_frame is not None and made > 0 and made >= plan.switch_frame:
                switched_at = clock.now()
                stream.switch(inputs.switch_to)
                switch = {"frame": made, "ops_s": clock.now() - switched_at}
            context = stream.cache.tokens
            frames = crop_center(stream.next_chunk(plan.num_frames - made), plan.size)
            writer.write(frames)
            done = clock.now()
            if first_frame is None:
                first_frame = done - start
            if switched_at is not None:
                switch["latency_s"] = done - switched_at
            chunks.append({"index": len(chunks), "frames": len(frames), "seconds": done - chunk_start,
                           "context_tokens": context, "switch": switched_at is not None,
                           "stages": {stage: clock.totals.get(stage, 0.0) - before.get(stage, 0.0)
                                      for stage in STAGES}})
            made += len(frames)
            chunk_start = done
        closing = time.perf_counter()
    clock.add("writing", time.perf_counter() - closing)
    total = clock.now() - start
    (folder / f"run{run}.mp4").unlink(missing_ok=True)
    return {"total_s": total, "first_frame_s": first_frame, "frames": made, "setup_s": setup, "chunks": chunks,
            "switch": switch}
