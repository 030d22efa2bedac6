"""What a benchmark runs: the request, its checks, and the plan it implies for a model."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tryon.api.inputs import check_options
from tryon.checkpoint.presets import PRESETS, Preset, get_preset
from tryon.errors import InputError
from tryon.media.geometry import SizeDecision, choose_output_size
from tryon.model.roles import MAX_GARMENTS
from tryon.pipelines.pipeline_tryon_streaming import StreamConfig
from tryon.modes import COMPARABLE, Acceleration  # noqa: F401 - COMPARABLE's home is tryon.modes
from tryon.pipelines.shapes import frame_count

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


def check_request(request: BenchRequest) -> None:
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


@dataclass
class RunPlan:
    """What each run of a benchmark makes: size, frames, steps and (stream) the chunking and switch."""

    size: tuple[int, int]  # the output's
    generate_size: tuple[int, int]  # the model's, which covers it (the output is its centre)
    fps: float
    num_frames: int
    steps: int
    guidance: float | None
    config: StreamConfig | None
    switch_frame: int | None


def make_plan(request: BenchRequest, preset: Preset, multiple: int) -> RunPlan:
    """Size, frames, steps and the switch frame: the request, else the preset's defaults."""
    size = _size(request, preset, multiple)
    fps = float(preset.default_fps if request.fps is None else request.fps)
    seconds = preset.default_seconds if request.seconds is None else request.seconds
    num_frames = frame_count(seconds, fps)
    if request.mode == "dress":
        steps = preset.default_steps if request.steps is None else request.steps
        guidance = preset.default_guidance if request.guidance is None else request.guidance
        return RunPlan(size.size, size.generate_size, fps, num_frames, steps, guidance, None, None)
    steps = StreamConfig.steps if request.steps is None else request.steps
    config = StreamConfig(chunk_frames=request.chunk_frames, steps=steps, window=request.window)
    switch_at = seconds / 2 if request.switch_at is None else request.switch_at
    if switch_at >= seconds:
        raise InputError(f"--switch-at {switch_at:g} is at or after the end of the {seconds:g} s video")
    switch_frame = max(1, math.ceil(switch_at * fps - 1e-6))  # as tryon swap: the first chunk starting then or later
    return RunPlan(size.size, size.generate_size, fps, num_frames, steps, None, config, switch_frame)
