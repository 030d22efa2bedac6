"""Speed of the real pipeline, end to end: what `tryon bench` measures.

A benchmark builds or loads a model once, then makes videos from synthetic inputs (seeded
noise images of the output size: speed does not depend on what the pictures show) with the
engine's own code, and times it from the outside:

- `dress` runs `TryOnPipeline.__call__` (what `tryon dress` runs) and writes the frames to an
  MP4 with the project's `VideoWriter`.
- `stream` runs a `StreamingGenerator` chunk by chunk (what `tryon swap` runs), writes each
  chunk as it is made, and applies one garment switch mid-stream (`StreamingGenerator.switch`).

Stages are timed by wrapping, for the duration of the benchmark only, the model calls on
the loaded instances: the text encoder's `forward`, the VAE's `encode` and `decode` (and the
streaming generator's causal decoder), the transformer's `forward` and `condition_pass`, and
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

import math
import os
import platform
import resource
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from engine.api import check_options
from engine.checkpoint.presets import PRESETS, TINY_VOCABULARY, Preset, get_preset
from engine.errors import InputError, RuntimeFailure
from engine.media import VideoWriter
from engine.media.geometry import SizeDecision, choose_output_size, crop_center
from engine.model.condnet import MAX_GARMENTS
from engine.pipelines.shapes import frame_count
from engine.pipelines.streaming import StreamConfig, StreamingGenerator
from engine.pipelines.teacher import TryOnInputs, TryOnPipeline
from engine.runtime import Acceleration, Runtime, apply_runtime, resolve_runtime

Notice = Callable[[str], None]

MODES = ("dress", "stream")
STAGES = ("text_encoding", "vae_encode", "transformer", "vae_decode", "writing")
MODEL_STAGES = ("text_encoding", "vae_encode", "transformer", "vae_decode")
PROMPT = "a woman wearing a striped top dances and turns slowly"
GARMENT_ROLES = ("top", "bottom", "unknown", "unknown")


@dataclass
class BenchRequest:
    """What to benchmark. None means: the model preset's default (stream steps: StreamConfig's)."""

    preset: str | None = None
    model: str | None = None  # a checkpoint folder or Hub id, instead of a preset
    revision: str | None = None
    random_weights: bool = False
    mode: str = "dress"
    size: tuple[int, int] | None = None
    seconds: float | None = None
    fps: float | None = None
    steps: int | None = None  # dress: denoising steps; stream: steps per chunk
    guidance: float | None = None  # dress only
    garments: int = 1
    motion: bool = True
    chunk_frames: int = StreamConfig.chunk_frames  # stream: latent frames per chunk
    window: int = StreamConfig.window  # stream: history chunks kept
    switch_at: float | None = None  # stream: seconds; None: half the video
    device: str = "auto"
    dtype: str = "auto"
    attention: str = "auto"
    acceleration: Acceleration = field(default_factory=Acceleration)
    warmup: int | None = None  # untimed runs first; None: 1 on CUDA, 0 on the CPU
    repeat: int = 1
    seed: int = 0
    vae_tiling: bool = False
    compare: tuple[str, ...] = ()  # modes (COMPARABLE) to run one at a time after the baseline, in this process


# `--compare` names -> the change each makes to the request's modes.
COMPARABLE: dict[str, dict[str, Any]] = {
    "fuse-qkv": {"fuse_qkv": True},
    "fp8": {"fp8": True},
    "compile": {"compile": True},
    "offload-model": {"offload": "model"},
    "offload-group": {"offload": "group"},
}


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
    acceleration: dict[str, Any]  # the speed and memory modes (engine.runtime.Acceleration)
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- timing -----------------------------------------------------------------------------------


class StageClock:
    """Wall-clock timers around model calls; synchronized on CUDA.

    `wrap(owner, name, stage)` replaces `owner.name` (a method, on that instance only) by a
    timed call until `restore()`. Calls made while another timed call runs are not timed
    again, so stages are disjoint.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._depth = 0
        self._wrapped: list[tuple[Any, str, bool, Any]] = []

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def now(self) -> float:
        """The wall clock, after the device has finished the work queued so far."""
        self.sync()
        return time.perf_counter()

    def reset(self) -> None:
        self.totals = defaultdict(float)
        self.calls = defaultdict(int)

    @contextmanager
    def span(self, stage: str) -> Iterator[None]:
        if self._depth:
            yield
            return
        start = self.now()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            self.totals[stage] += self.now() - start
            self.calls[stage] += 1

    def add(self, stage: str, seconds: float) -> None:
        self.totals[stage] += seconds

    def wrap(self, owner: Any, name: str, stage: str) -> None:
        original = getattr(owner, name)
        had_own = name in vars(owner)
        previous = vars(owner).get(name)

        def timed(*args, **kwargs):
            with self.span(stage):
                return original(*args, **kwargs)

        setattr(owner, name, timed)
        self._wrapped.append((owner, name, had_own, previous))

    def restore(self) -> None:
        while self._wrapped:
            owner, name, had_own, previous = self._wrapped.pop()
            if had_own:
                setattr(owner, name, previous)
            else:
                delattr(owner, name)


def instrument(clock: StageClock, pipeline: TryOnPipeline) -> None:
    """Time the pipeline's model calls (see the module docstring)."""
    clock.wrap(pipeline.text_encoder, "forward", "text_encoding")
    clock.wrap(pipeline.vae, "encode", "vae_encode")
    clock.wrap(pipeline.vae, "decode", "vae_decode")
    clock.wrap(pipeline.transformer, "forward", "transformer")
    clock.wrap(pipeline.transformer, "condition_pass", "transformer")


# -- memory -----------------------------------------------------------------------------------


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """(MiB, kind): CUDA's peak allocated since the last reset, or the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return peak * scale / 2**20, "cpu_peak_rss"


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return f"cpu ({_cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# -- the model --------------------------------------------------------------------------------


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_random_on(preset: Preset, device: torch.device, dtype: torch.dtype, seed: int = 0) -> TryOnPipeline:
    """The preset's components at random, made on `device` in `dtype` (the VAE in float32).

    The same classes and configurations as `engine.checkpoint.build_random`, without the
    float32 CPU copy. A preset without an offline vocabulary gets the tiny preset's word
    tokenizer as a placeholder; its text encoder keeps the preset's own vocabulary size.
    """
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler
    from transformers import UMT5Config, UMT5EncoderModel

    from engine.checkpoint.store import build_tokenizer
    from engine.model.condnet import CondNetTransformer

    text_config = dict(preset.text_encoder)
    if preset.tokenizer_vocabulary:
        tokenizer = build_tokenizer(preset)
        text_config["vocab_size"] = len(tokenizer)
    else:
        tokenizer = build_tokenizer(replace(preset, tokenizer_vocabulary=TINY_VOCABULARY))
        text_config.setdefault("vocab_size", len(tokenizer))
    torch.manual_seed(seed)
    with torch.device(device):
        with default_dtype(dtype):
            transformer = CondNetTransformer(**preset.transformer)
            text_encoder = UMT5EncoderModel(UMT5Config(**text_config))
        vae = AutoencoderKLWan(**preset.vae)
    _keep_in_float32(transformer, dtype, when=(torch.float16, torch.bfloat16))  # as diffusers' loader does
    _keep_in_float32(text_encoder, dtype, when=(torch.float16,))  # as transformers' loader does
    pipeline = TryOnPipeline(transformer=transformer.eval(), vae=vae.eval(), text_encoder=text_encoder.eval(),
                             tokenizer=tokenizer, scheduler=FlowMatchEulerDiscreteScheduler(**preset.scheduler))
    pipeline.max_text_tokens = preset.max_text_tokens
    return pipeline


def _keep_in_float32(model: torch.nn.Module, dtype: torch.dtype, when: tuple[torch.dtype, ...]) -> None:
    """Parameters of the model's `_keep_in_fp32_modules` back in float32, as loading in `dtype` leaves them."""
    keep = getattr(model, "_keep_in_fp32_modules", None) or ()
    if dtype not in when:
        return
    for name, param in model.named_parameters():
        if any(module in name.split(".") for module in keep):
            param.data = param.data.float()


@dataclass
class _Model:
    pipeline: TryOnPipeline
    preset: Preset
    name: str


def _load(request: BenchRequest, runtime: Runtime, tell: Notice) -> _Model:
    if request.random_weights:
        preset = get_preset(request.preset)
        try:
            pipeline = build_random_on(preset, runtime.load_device, runtime.dtype, request.seed)
        except torch.OutOfMemoryError:
            raise RuntimeFailure(f"out of memory on {runtime.device} building '{preset.name}' "
                                 "(use --dtype bf16, or a smaller preset)") from None
        apply_runtime(pipeline, runtime)
        return _Model(pipeline, preset, f"{preset.name} (random weights)")
    from engine.api import default_model, get_model

    source = request.model or request.preset or default_model()
    loaded = get_model(source, request.revision, runtime, tell)
    return _Model(loaded.pipeline, loaded.preset, source)


def _weights_mb(pipeline: TryOnPipeline) -> float:
    modules = (pipeline.transformer, pipeline.vae, pipeline.text_encoder)
    total = sum(p.numel() * p.element_size() for m in modules for p in m.parameters())
    return total / 2**20


# -- checks -----------------------------------------------------------------------------------


def _check(request: BenchRequest) -> None:
    """Everything that needs no model; InputError with one line otherwise."""
    if request.mode not in MODES:
        raise InputError(f"--mode must be dress or stream, not '{request.mode}'")
    if request.model is not None and request.preset is not None:
        raise InputError("give --preset or --model, not both")
    if request.random_weights:
        if request.model is not None:
            raise InputError("--random-weights builds a preset at random: give --preset, not --model")
        if request.preset is None:
            raise InputError("--random-weights needs --preset (one of: " + ", ".join(PRESETS) + ")")
    if request.preset is not None:
        get_preset(request.preset)
    if request.guidance is not None and request.mode == "stream":
        raise InputError("stream mode takes no --guidance: the streaming student runs without it")
    check_options(request.seconds, request.fps, request.steps, request.guidance)
    if not 1 <= request.garments <= MAX_GARMENTS:
        raise InputError(f"--garments must be 1 to {MAX_GARMENTS}, not {request.garments}")
    if request.chunk_frames < 1:
        raise InputError(f"--chunk-frames must be at least 1, not {request.chunk_frames}")
    if request.window < 1:
        raise InputError(f"--window must be at least 1, not {request.window}")
    if request.switch_at is not None:
        if request.mode != "stream":
            raise InputError("--switch-at is for stream mode")
        if not math.isfinite(request.switch_at) or request.switch_at <= 0:
            raise InputError(f"--switch-at must be a positive number of seconds, not {request.switch_at:g}")
    if request.warmup is not None and request.warmup < 0:
        raise InputError(f"--warmup must be 0 or more, not {request.warmup}")
    if request.repeat < 1:
        raise InputError(f"--repeat must be at least 1, not {request.repeat}")


def size_multiple(preset: Preset) -> int:
    return preset.vae.get("scale_factor_spatial", 16) * preset.transformer["patch_size"][1]


def _size(request: BenchRequest, preset: Preset, multiple: int) -> SizeDecision:
    """The output size (the request, else the preset's landscape default) and the size the
    model generates at, as tryon dress and swap choose them."""
    landscape = (max(preset.default_size), min(preset.default_size))
    return choose_output_size(landscape, request.size, default=preset.default_size, multiple=multiple)


# -- inputs -----------------------------------------------------------------------------------


def _noise_image(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    width, height = size
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@dataclass
class _Inputs:
    user: Image.Image
    garments: list[tuple[str, Image.Image]]
    switch_to: list[tuple[str, Image.Image]]
    motion: np.ndarray | None


def _inputs(request: BenchRequest, size: tuple[int, int], num_frames: int) -> _Inputs:
    rng = np.random.default_rng(request.seed)
    user = _noise_image(rng, size)
    garments = [(GARMENT_ROLES[i], _noise_image(rng, size)) for i in range(request.garments)]
    switch_to = [("dress", _noise_image(rng, size))]
    motion = None
    if request.motion:
        width, height = size
        motion = rng.integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)
    return _Inputs(user, garments, switch_to, motion)


# -- one run ----------------------------------------------------------------------------------


@dataclass
class _Plan:
    size: tuple[int, int]  # the output's
    generate_size: tuple[int, int]  # the model's, which covers it (the output is its centre)
    fps: float
    num_frames: int
    steps: int
    guidance: float | None
    config: StreamConfig | None
    switch_frame: int | None


def make_plan(request: BenchRequest, preset: Preset, multiple: int) -> _Plan:
    """Size, frames, steps and the switch frame: the request, else the preset's defaults."""
    size = _size(request, preset, multiple)
    fps = float(preset.default_fps if request.fps is None else request.fps)
    seconds = preset.default_seconds if request.seconds is None else request.seconds
    num_frames = frame_count(seconds, fps)
    if request.mode == "dress":
        steps = preset.default_steps if request.steps is None else request.steps
        guidance = preset.default_guidance if request.guidance is None else request.guidance
        return _Plan(size.size, size.generate_size, fps, num_frames, steps, guidance, None, None)
    steps = StreamConfig.steps if request.steps is None else request.steps
    config = StreamConfig(chunk_frames=request.chunk_frames, steps=steps, window=request.window)
    switch_at = seconds / 2 if request.switch_at is None else request.switch_at
    if switch_at >= seconds:
        raise InputError(f"--switch-at {switch_at:g} is at or after the end of the {seconds:g} s video")
    switch_frame = max(1, math.ceil(switch_at * fps - 1e-6))  # as tryon swap: the first chunk starting then or later
    return _Plan(size.size, size.generate_size, fps, num_frames, steps, None, config, switch_frame)


def _writer(folder: Path, run: int, plan: _Plan) -> VideoWriter:
    return VideoWriter(folder / f"run{run}.mp4", plan.fps, plan.size)


def _run_dress(model: _Model, plan: _Plan, inputs: _Inputs, clock: StageClock, folder: Path, run: int,
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


def _run_stream(model: _Model, plan: _Plan, inputs: _Inputs, clock: StageClock, folder: Path, run: int,
                seed: int) -> dict[str, Any]:
    pipeline = model.pipeline
    device = pipeline._execution_device
    start = clock.now()
    stream = StreamingGenerator(
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


# -- summaries --------------------------------------------------------------------------------


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _steady(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chunks of the full length, other than the first and the one carrying the switch."""
    full = max(c["frames"] for c in chunks[1:]) if len(chunks) > 1 else 0
    return [c for c in chunks[1:] if not c["switch"] and c["frames"] == full]


def _rate(chunks: list[dict[str, Any]]) -> float | None:
    seconds = sum(c["seconds"] for c in chunks)
    return sum(c["frames"] for c in chunks) / seconds if chunks and seconds > 0 else None


def _stream_summary(runs: list[dict[str, Any]], plan: _Plan) -> dict[str, Any]:
    config = plan.config
    count = len(runs[0]["chunks"])
    chunks = []
    for i in range(count):
        times = [run["chunks"][i]["seconds"] for run in runs]
        first = runs[0]["chunks"][i]
        stages = {stage: _mean([run["chunks"][i]["stages"][stage] for run in runs]) for stage in STAGES}
        chunks.append({**first, "seconds": _mean(times), "seconds_min": min(times),
                       "fps": first["frames"] / _mean(times), "stages": stages})
    steady = _steady(chunks)
    quarter = max(1, len(steady) // 4)
    early, late = _rate(steady[:quarter]), _rate(steady[-quarter:])

    def transformer_s(part: list[dict[str, Any]]) -> float | None:
        return _mean([c["stages"]["transformer"] for c in part]) if part else None

    switches = [run["switch"] for run in runs if run["switch"] is not None]
    switch = None
    if switches:
        switch = {"frame": switches[0]["frame"], "ops_s": _mean([s["ops_s"] for s in switches]),
                  "latency_s": _mean([s["latency_s"] for s in switches]),
                  "latency_s_min": min(s["latency_s"] for s in switches)}
    return {
        "chunk_frames": config.chunk_frames,
        "steps_per_chunk": config.steps,
        "window": config.window,
        "setup_s": _mean([run["setup_s"] for run in runs]),
        "first_chunk_s": chunks[0]["seconds"],
        "first_chunk_frames": chunks[0]["frames"],
        "steady_chunk_s": _mean([c["seconds"] for c in steady]) if steady else None,
        "steady_chunk_fps": _rate(steady),
        "steady_chunks": len(steady),
        "early_chunk_fps": early,
        "late_chunk_fps": late,
        "throughput_ratio": late / early if early and late else None,
        "early_chunk_transformer_s": transformer_s(steady[:quarter]),
        "late_chunk_transformer_s": transformer_s(steady[-quarter:]),
        "switch_latency_s": None if switch is None else switch["latency_s"],
        "switch": switch,
        "chunks": chunks,
    }


# -- the benchmark ----------------------------------------------------------------------------


def run_bench(request: BenchRequest, notice: Notice | None = None) -> BenchResult:
    """Build or load the model once, run `warmup` untimed and `repeat` timed videos; see the module docstring."""
    notices: list[str] = []

    def tell(message: str) -> None:
        notices.append(message)
        if notice:
            notice(message)

    _check(request)
    runtime = resolve_runtime(request.device, request.dtype, request.attention, request.acceleration)
    if request.preset is not None:  # bad sizes and switch times fail before the model is built
        preset = get_preset(request.preset)
        make_plan(request, preset, size_multiple(preset))

    load_start = time.perf_counter()
    model = _load(request, runtime, tell)
    if runtime.device.type == "cuda":
        torch.cuda.synchronize(runtime.device)
    load_s = time.perf_counter() - load_start
    pipeline, preset = model.pipeline, model.preset
    plan = make_plan(request, preset, pipeline.size_multiple)
    size, fps, num_frames, steps, guidance = plan.size, plan.fps, plan.num_frames, plan.steps, plan.guidance
    stream = request.mode == "stream"
    warmup = request.warmup if request.warmup is not None else (1 if runtime.device.type == "cuda" else 0)
    inputs = _inputs(request, plan.generate_size, num_frames)
    run_once = _run_stream if stream else _run_dress

    if request.vae_tiling:
        pipeline.vae.enable_tiling()
        if stream:
            tell("--vae-tiling: streaming decodes chunk by chunk with the causal decoder, untiled; "
                 "only VAE encoding is tiled")
    clock = StageClock(runtime.device)
    runs: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix=".tryon-bench-") as folder:
            for i in range(warmup + request.repeat):
                timed = i >= warmup
                if i == warmup:
                    reset_peak_memory(runtime.device)
                label = f"run {i - warmup + 1}/{request.repeat}" if timed else f"warm-up {i + 1}/{warmup}"
                clock.reset()
                instrument(clock, pipeline)
                try:
                    result = run_once(model, plan, inputs, clock, Path(folder), i, request.seed)
                finally:
                    clock.restore()
                if timed:
                    result["stages"] = {stage: clock.totals.get(stage, 0.0) for stage in STAGES}
                    result["calls"] = {stage: clock.calls.get(stage, 0) for stage in STAGES}
                    runs.append(result)
                if notice:
                    notice(f"{label}: {result['frames']} frames in {result['total_s']:.2f} s "
                           f"({result['frames'] / result['total_s']:.2f} fps)")
    except torch.OutOfMemoryError:
        raise RuntimeFailure(f"out of memory on {runtime.device}: lower --size or --seconds, "
                             "use --dtype bf16, or --vae-tiling") from None
    finally:
        if request.vae_tiling:
            pipeline.vae.disable_tiling()
    peak, peak_kind = peak_memory_mb(runtime.device)

    totals = [run["total_s"] for run in runs]
    stages = {stage: _mean([run["stages"][stage] for run in runs]) for stage in STAGES}
    model_time = [sum(run["stages"][s] for s in MODEL_STAGES) for run in runs]
    overhead = _mean([(t - m) / t for t, m in zip(totals, model_time)])
    overhead_nw = _mean([(t - m - run["stages"]["writing"]) / t for t, m, run in zip(totals, model_time, runs)])
    frames = runs[0]["frames"]
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
        threads=torch.get_num_threads(),
        load_s=load_s,
        weights_mb=_weights_mb(pipeline),
        fps=frames / _mean(totals),
        fps_best=frames / min(totals),
        total_s=_mean(totals),
        total_s_min=min(totals),
        first_frame_s=_mean([run["first_frame_s"] for run in runs]),
        first_frame_s_min=min(run["first_frame_s"] for run in runs),
        stages=stages,
        stages_min={stage: min(run["stages"][stage] for run in runs) for stage in STAGES},
        other_s=_mean(totals) - sum(stages.values()),
        calls=runs[0]["calls"],
        overhead=overhead,
        overhead_without_writing=overhead_nw,
        peak_memory_mb=peak,
        peak_memory_kind=peak_kind,
        runs=[{k: v for k, v in run.items() if k != "chunks"} for run in runs],
        stream=_stream_summary(runs, plan) if stream else None,
        notices=notices,
    )


def bench_and_compare(request: BenchRequest, notice: Notice | None = None) -> BenchResult:
    """`run_bench`, then each `request.compare` mode on its own, as ratios against that baseline.

    Every variant loads or builds the model afresh (modes change it) and runs the same plan,
    inputs and seed in the same process, so the ratios compare like with like. Each entry of
    `compare`: the mode, its fps, first frame, peak memory and weights, and `fps_ratio` /
    `first_frame_ratio` / `weights_ratio` against the baseline (above 1: faster / later / larger).
    """
    for name in request.compare:
        if name not in COMPARABLE:
            raise InputError(f"--compare: unknown mode '{name}' (one of: {', '.join(COMPARABLE)})")
    baseline = run_bench(replace(request, compare=()), notice)
    for name in request.compare:
        if notice:
            notice(f"--compare {name}")
        modes = replace(request.acceleration, **COMPARABLE[name])
        variant = run_bench(replace(request, compare=(), acceleration=modes), notice)
        baseline.compare.append({
            "mode": name,
            "acceleration": variant.acceleration,
            "fps": variant.fps,
            "first_frame_s": variant.first_frame_s,
            "peak_memory_mb": variant.peak_memory_mb,
            "weights_mb": variant.weights_mb,
            "fps_ratio": variant.fps / baseline.fps,
            "first_frame_ratio": variant.first_frame_s / baseline.first_frame_s,
            "weights_ratio": variant.weights_mb / baseline.weights_mb,
        })
    return baseline
