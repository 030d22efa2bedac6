"""What a benchmark runs: the request, its checks, and the plan it implies for a model."""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.api.inputs import check_options
from engine.checkpoint.presets import PRESETS, Preset, get_preset
from engine.errors import InputError
from engine.limits import check_int
from engine.media.geometry import SizeDecision, choose_output_size
from engine.model.roles import MAX_GARMENTS
from engine.modes import RunOptions
from engine.pipelines.pipeline_tryon_streaming import StreamConfig
from engine.pipelines.shapes import frame_count

MODES = ("dress", "stream")
SYNC_MODES = ("stage", "end")  # timed per stage (synchronised around each), or end to end (overlapping)
DEFAULT_CHUNK_FRAMES, DEFAULT_WINDOW = StreamConfig.chunk_frames, StreamConfig.window
MAX_CHUNK_FRAMES = 16
MAX_WINDOW = 64
MAX_RUNS = 100  # --warmup and --repeat
STAGES = ("text_encoding", "vae_encode", "transformer", "vae_decode", "writing")
MODEL_STAGES = ("text_encoding", "vae_encode", "transformer", "vae_decode")
PROMPT = "a woman wearing a striped top dances and turns slowly"
GARMENT_ROLES = ("top", "bottom", "unknown", "unknown")


@dataclass
class BenchRequest:
    """What to benchmark. None means: the model preset's default (stream steps: StreamConfig's)."""

    preset: str | None = None
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
    warmup: int | None = None  # untimed runs first; None: 1 on CUDA, 0 on the CPU
    repeat: int = 1
    seed: int = 0
    vae_tiling: bool = False
    sync: str = "stage"  # SYNC_MODES
    compare: tuple[str, ...] = ()  # modes (COMPARABLE) to run one at a time after the baseline, in this process
    run: RunOptions = RunOptions()  # its model: a checkpoint folder or Hub id, instead of a preset


def check_request(request: BenchRequest) -> None:
    """Everything that needs no model; InputError with one line otherwise."""
    if request.mode not in MODES:
        raise InputError(f"must be dress or stream, not '{request.mode}'", option="mode")
    if request.sync not in SYNC_MODES:
        raise InputError(f"must be stage or end, not '{request.sync}'", option="sync")
    if request.run.model is not None and request.preset is not None:
        raise InputError("give --preset or --model, not both")
    if request.random_weights:
        if request.run.model is not None:
            raise InputError("--random-weights builds a preset at random: give --preset, not --model")
        if request.preset is None:
            raise InputError("--random-weights needs --preset (one of: " + ", ".join(PRESETS) + ")")
    if request.preset is not None:
        get_preset(request.preset)
    if request.guidance is not None and request.mode == "stream":
        raise InputError("stream mode takes no --guidance: the streaming student runs without it")
    check_options(request.seconds, request.fps, request.steps, request.guidance, request.seed)
    if not 1 <= request.garments <= MAX_GARMENTS:
        raise InputError(f"must be 1 to {MAX_GARMENTS}, not {request.garments}", option="garments")
    check_int(request.chunk_frames, "chunk_frames", 1, MAX_CHUNK_FRAMES)
    check_int(request.window, "window", 0, MAX_WINDOW)
    if request.mode != "stream" and (request.window, request.chunk_frames) != (DEFAULT_WINDOW, DEFAULT_CHUNK_FRAMES):
        raise InputError("and --chunk-frames are for stream mode", option="window")
    if request.switch_at is not None:
        if request.mode != "stream":
            raise InputError("is for stream mode", option="switch_at")
        if not math.isfinite(request.switch_at) or request.switch_at <= 0:
            raise InputError(f"must be a positive number of seconds, not {request.switch_at:g}", option="switch_at")
    if request.warmup is not None:
        check_int(request.warmup, "warmup", 0, MAX_RUNS)
    check_int(request.repeat, "repeat", 1, MAX_RUNS)


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
        raise InputError(f"{switch_at:g} is at or after the end of the {seconds:g} s video", option="switch_at")
    switch_frame = max(1, math.ceil(switch_at * fps - 1e-6))  # as tryon swap: the first chunk starting then or later
    return RunPlan(size.size, size.generate_size, fps, num_frames, steps, None, config, switch_frame)
