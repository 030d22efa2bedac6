"""The engine's front door: plain functions that the CLI, batch jobs and scripts call.

Each call checks every input before loading a model, so bad input fails in milliseconds
with one clear line, and writes its output atomically, so a failure leaves nothing behind.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from engine.checkpoint import (
    PRESETS,
    CheckpointInfo,
    CondNetUntrainedWarning,
    LoadedModel,
    build_random,
    get_preset,
    load_model,
    save_checkpoint,
)
from engine.distributed import Processes, enable_context_parallel, start_processes
from engine.errors import InputError, RuntimeFailure
from engine.media import VideoInfo, VideoWriter, choose_output_size, crop_center, fit_image, load_image, probe_video, read_video
from engine.model.condnet import MAX_GARMENTS
from engine.pipelines.shapes import check_fps, check_seconds, frame_count
from engine.pipelines.teacher import TryOnInputs
from engine.runtime import Acceleration, Runtime, apply_runtime, resolve_runtime
from engine.specs import GarmentSpec

Progress = Callable[[str, int, int], None]
Notice = Callable[[str], None]

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEMO_MODEL = WEIGHTS_DIR / "demo"
DEMO_STUDENT = WEIGHTS_DIR / "demo-student"


def default_model(streaming: bool = False) -> str:
    """`$TRYON_MODEL`, else the demo model shipped in weights/: the student for streaming
    (swap, extend), the teacher otherwise. Streaming falls back to the teacher when no
    student is shipped (it runs block-causally, but it was not distilled for it)."""
    chosen = os.environ.get("TRYON_MODEL")
    if chosen:
        return chosen
    for candidate in ([DEMO_STUDENT] if streaming else []) + [DEMO_MODEL]:
        if candidate.is_dir():
            return str(candidate)
    raise InputError("no --model given and no default model in weights/demo (make one: tryon models init tiny ./ck)")


@dataclass
class GenerateRequest:
    """One try-on render. None means: the model preset's default."""

    user: Path
    output: Path
    garments: list[GarmentSpec] = field(default_factory=list)
    motion: Path | None = None
    prompt: str = ""
    model: str | None = None
    revision: str | None = None
    size: tuple[int, int] | None = None
    seconds: float | None = None
    fps: float | None = None
    seed: int = 0
    steps: int | None = None
    guidance: float | None = None
    device: str = "auto"
    dtype: str = "auto"
    attention: str = "auto"
    acceleration: Acceleration = field(default_factory=Acceleration)
    overwrite: bool = False


@dataclass
class GenerateResult:
    output: str
    frames: int
    fps: float
    size: list[int]
    seconds_taken: float
    model: str
    seed: int
    notices: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# -- checks that need no model ----------------------------------------------------------------


def check_output(path: Path, overwrite: bool) -> None:
    if path.suffix.lower() != ".mp4":
        raise InputError("the output must be an .mp4 file", path)
    if path.is_dir():
        raise InputError("the output is a folder; give a file name ending in .mp4", path)
    if path.exists() and not overwrite:
        raise InputError("already exists (use --overwrite to replace it)", path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError("the output folder does not exist", folder)
    if not os.access(folder, os.W_OK):
        raise InputError("the output folder is not writable", folder)


def check_options(
    seconds: float | None = None,
    fps: float | None = None,
    steps: int | None = None,
    guidance: float | None = None,
) -> None:
    """The timing and sampling options a request sets (None: the model's default)."""
    if seconds is not None:
        check_seconds(seconds)
    if fps is not None:
        check_fps(fps)
    if steps is not None and steps < 1:
        raise InputError(f"--steps must be at least 1, not {steps}")
    if guidance is not None and guidance < 0:
        raise InputError(f"--guidance must be 0 or more, not {guidance:g}")


def check_motion(path: Path | None) -> VideoInfo | None:
    """A motion video, when given, must be readable and have at least two frames. Returns what it is."""
    if path is None:
        return None
    info = probe_video(path)
    if info.frame_count < 2:
        raise InputError("has 1 frame; a motion video needs at least 2", path)
    return info


def check_garments(garments: list[GarmentSpec]) -> None:
    if len(garments) > MAX_GARMENTS:
        raise InputError(f"{len(garments)} garments given; at most {MAX_GARMENTS} at once")
    categories = [g.category for g in garments if g.category]
    if "dress" in categories and ({"top", "bottom"} & set(categories)):
        raise InputError("a dress is one piece: it cannot be worn with a top or a bottom")


# -- the model --------------------------------------------------------------------------------

_loaded: dict[tuple, LoadedModel] = {}


def get_model(source: str, revision: str | None, runtime: Runtime, notice: Notice) -> LoadedModel:
    """Load (once per process) the checkpoint on the runtime's device, dtype and backend."""
    key = (source, revision, runtime)
    if key not in _loaded:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CondNetUntrainedWarning)
            model = load_model(source, revision=revision, device=runtime.load_device, dtype=runtime.dtype)
        for warning in caught:
            if issubclass(warning.category, CondNetUntrainedWarning):
                notice(f"warning: {warning.message}")
        apply_runtime(model.pipeline, runtime)
        _loaded.clear()  # one model in memory at a time
        _loaded[key] = model
    return _loaded[key]


# -- generation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputPlan:
    """What a request will produce with a given model: size, fps and exact frame count, and the
    size the model generates at (the smallest it accepts that covers the output)."""

    width: int
    height: int
    fps: float
    num_frames: int
    generate_width: int
    generate_height: int

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)

    @property
    def generate_size(self) -> tuple[int, int]:
        return (self.generate_width, self.generate_height)

    def crop(self, frames: np.ndarray) -> np.ndarray:
        """Frames made at the generation size, centre-cropped to the output size."""
        return crop_center(frames, self.size)


def plan_output(request: GenerateRequest, model: LoadedModel, user_size: tuple[int, int]) -> OutputPlan:
    """The model preset's defaults for what the request leaves open; the size rule of engine.media."""
    preset = model.preset
    fps = preset.default_fps if request.fps is None else request.fps
    seconds = preset.default_seconds if request.seconds is None else request.seconds
    size = choose_output_size(user_size, request.size, default=preset.default_size,
                              multiple=model.pipeline.size_multiple)
    return OutputPlan(size.width, size.height, fps, frame_count(seconds, fps), *size.generate_size)


def _generate(
    request: GenerateRequest,
    anchor_first_frame: bool,
    progress: Progress | None,
    notice: Notice | None,
) -> GenerateResult:
    started = time.perf_counter()
    notices: list[str] = []

    def tell(message: str) -> None:
        notices.append(message)
        if notice:
            notice(message)

    report = progress or (lambda stage, done, total: None)

    # 1. Everything the user gave us, checked before any model is loaded.
    runtime = resolve_runtime(request.device, request.dtype, request.attention, request.acceleration)
    check_output(request.output, request.overwrite)
    check_garments(request.garments)
    user = load_image(request.user)
    garments = [(spec.role, load_image(spec.path)) for spec in request.garments]
    check_motion(request.motion)
    check_options(request.seconds, request.fps, request.steps, request.guidance)

    # 2. The model, and the shapes it implies.
    processes = _context_parallel_processes(runtime)
    if processes.distributed:
        runtime = replace(runtime, device=processes.device)
    source = request.model or default_model()
    model = get_model(source, request.revision, runtime, tell)
    if processes.distributed and getattr(model.pipeline.transformer, "_parallel_config", None) is None:
        enable_context_parallel(model.pipeline.transformer, processes)
    pipeline, preset = model.pipeline, model.preset
    plan = plan_output(request, model, user.size)
    fps = plan.fps
    shape = pipeline.video_shape(plan.generate_width, plan.generate_height, plan.num_frames)

    # 3. Inputs fitted to the generation size (the output is its centre).
    target = plan.generate_size
    motion = None
    if request.motion is not None:
        motion = read_video(request.motion, fps=fps, num_frames=plan.num_frames, size=target, fit="cover", min_frames=2)
    inputs = TryOnInputs(
        user=fit_image(user, target, "cover"),
        garments=[(role, fit_image(image, target, "contain")) for role, image in garments],
        motion=motion,
        prompt=request.prompt,
        anchor_first_frame=anchor_first_frame,
    )

    # 4. Generate and write.
    generator = torch.Generator(device=runtime.device).manual_seed(request.seed)
    try:
        frames = pipeline(
            inputs,
            shape,
            steps=preset.default_steps if request.steps is None else request.steps,
            guidance=preset.default_guidance if request.guidance is None else request.guidance,
            generator=generator,
            progress=report,
        )
    except torch.OutOfMemoryError:
        raise RuntimeFailure(
            f"out of memory on {runtime.device}: lower --size or --seconds, use --dtype bf16, or --device cpu"
        ) from None
    if processes.is_main:
        report("writing", 0, 1)
        write_frames(request.output, plan.crop(frames), fps)
        report("writing", 1, 1)
    return GenerateResult(
        output=str(request.output),
        frames=len(frames),
        fps=fps,
        size=[plan.width, plan.height],
        seconds_taken=round(time.perf_counter() - started, 3),
        model=source,
        seed=request.seed,
        notices=notices,
    )


def _context_parallel_processes(runtime: Runtime) -> Processes:
    """This process's place in a context-parallel render (rank 0 of 1 when it is not asked for)."""
    if not runtime.acceleration.context_parallel:
        return Processes(0, 1, runtime.device, owns_group=False)
    processes = start_processes()
    if not processes.distributed:
        raise InputError("--context-parallel splits one render across processes: launch it with "
                         "torchrun --nproc-per-node N -m tryon_cli ...")
    return processes


def write_frames(path: Path, frames: np.ndarray, fps: float) -> None:
    height, width = frames.shape[1:3]
    with VideoWriter(path, fps, (width, height)) as writer:
        writer.write(frames)


def dress(request: GenerateRequest, progress: Progress | None = None, notice: Notice | None = None) -> GenerateResult:
    """The user wearing the given garments (0 to 4), moving as the motion video and/or prompt say."""
    return _generate(request, anchor_first_frame=False, progress=progress, notice=notice)


def dance(request: GenerateRequest, progress: Progress | None = None, notice: Notice | None = None) -> GenerateResult:
    """The user in their own clothes, moving; the first frame is their photo."""
    if request.garments:
        raise InputError("dance takes no garments (use dress)")
    return _generate(request, anchor_first_frame=True, progress=progress, notice=notice)


# -- models -----------------------------------------------------------------------------------


@dataclass
class ModelEntry:
    name: str
    kind: str  # preset | cached | default
    description: str


def list_models() -> list[ModelEntry]:
    """The presets, the default model, and the checkpoints in the local Hub cache."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    entries = [ModelEntry(p.name, "preset", f"{p.description}; needs {p.hardware}") for p in PRESETS.values()]
    if DEMO_MODEL.is_dir():
        entries.append(ModelEntry(str(DEMO_MODEL), "default", "the demo model shipped with tryon"))
    try:
        cache = scan_cache_dir()
    except CacheNotFound:
        return entries
    base_repos = {p.base_repo for p in PRESETS.values() if p.base_repo}
    for repo in sorted(cache.repos, key=lambda r: r.repo_id):
        snapshots = [r.snapshot_path for r in repo.revisions]
        is_tryon = any((s / "tryon.json").exists() for s in snapshots)
        if repo.repo_type == "model" and (is_tryon or repo.repo_id in base_repos):
            what = "tryon checkpoint" if is_tryon else "Wan base weights"
            entries.append(ModelEntry(repo.repo_id, "cached", f"{what}, {repo.size_on_disk_str} in the Hub cache"))
    return entries


def init_model(preset: str, folder: Path, seed: int = 0, overwrite: bool = False) -> Path:
    """Write a random-weight checkpoint of `preset` to `folder`, marked untrained."""
    spec = get_preset(preset)
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise InputError("already exists and is not empty (use --overwrite to replace it)", folder)
    pipeline = build_random(spec, seed=seed)
    return save_checkpoint(pipeline, folder, CheckpointInfo(kind="teacher", preset=spec.name, condnet_trained=False,
                                                            training={"note": f"random init, seed {seed}"}))


def convert_model(source: Path, folder: Path, base: str = "wan2.2-ti2v-5b", kind: str = "student",
                  overwrite: bool = False) -> Path:
    """Write a tryon checkpoint from a FashionChameleon checkpoint (Wan2.2's original key layout)
    to `folder`; the VAE, text encoder and tokenizer come from `base`."""
    from engine.checkpoint.convert import convert_checkpoint, read_original

    if kind not in ("teacher", "student"):
        raise InputError(f"--kind must be teacher or student, not '{kind}'")
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise InputError("already exists and is not empty (use --overwrite to replace it)", folder)
    original = read_original(source)
    dtype = next(iter(original.values())).dtype
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CondNetUntrainedWarning)  # the base's CondNet is replaced
        model = load_model(base, dtype=dtype)
    return convert_checkpoint(original, folder, model, kind, source_name=Path(source).name)


# -- data and evaluation ----------------------------------------------------------------------


def synthesize(
    out_dir: Path,
    count: int,
    seed: int,
    size: tuple[int, int] = (64, 112),
    num_frames: int = 17,
    fps: float = 8.0,
    progress: Progress | None = None,
) -> list[Path]:
    """Write `count` synthetic try-on samples (the training-folder layout) to `out_dir`."""
    from engine.synth import write_dataset

    report = progress or (lambda stage, done, total: None)
    return write_dataset(out_dir, count, seed, size=size, num_frames=num_frames, fps=fps,
                         progress=lambda done: report("samples", done, count))


def evaluate(prediction: Path, reference: Path):
    """Score a video (or a folder of videos) against ground truth: see engine.metrics."""
    from engine.metrics import evaluate as evaluate_videos

    return evaluate_videos(Path(prediction), Path(reference))


# -- training ---------------------------------------------------------------------------------

TRAIN_CONFIGS = Path(__file__).resolve().parent / "train" / "configs"


def _config_path(config: str | Path | None, default: str) -> Path:
    """A config file's path: `config` itself, or the built-in recipe of that name (or `default`)."""
    builtin = TRAIN_CONFIGS / f"{config or default}.json"
    if config is None or (not Path(config).exists() and builtin.is_file()):
        return builtin
    return Path(config)


def load_train_config(config: str | Path | None):
    """A training config file, or a built-in recipe by name (`default`, `demo`)."""
    from engine.train import TrainConfig

    return TrainConfig.from_file(_config_path(config, "default"))


def train_teacher(
    data: str,
    base: str,
    output: Path,
    config: str | Path | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    notice: Notice | None = None,
) -> Path:
    """Flow-matching training of the CondNet teacher on sample folders or the synthetic world."""
    from engine.train import train_teacher as run

    return run(_data_source(data), base, output, load_train_config(config), resume=resume, progress=progress,
               log=notice)


def load_student_config(config: str | Path | None):
    """A student distillation config file, or a built-in recipe by name (`student`)."""
    from engine.train.student_config import StudentConfig

    return StudentConfig.from_file(_config_path(config, "student"))


def train_student(
    teacher: str,
    data: str,
    output: Path,
    config: str | Path | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    notice: Notice | None = None,
) -> Path:
    """Distill a teacher checkpoint into the streaming student: teacher forcing, then (GR-)DMD."""
    from engine.train.student import train_student as run

    return run(teacher, _data_source(data), output, load_student_config(config), resume=resume, progress=progress,
               log=notice)


def _data_source(data: str) -> str | Path:
    """The training data argument: "synthetic", or a folder of sample folders."""
    return "synthetic" if data == "synthetic" else Path(data)


def train_vae(
    base: str,
    output: Path,
    steps: int,
    size: tuple[int, int],
    num_frames: int,
    lr: float,
    examples: int,
    batch_size: int = 1,
    progress: Progress | None = None,
) -> Path:
    """Fine-tune a checkpoint's VAE as an autoencoder on synthetic frames and clips."""
    from engine.train import train_vae as run

    return run(base, output, steps=steps, size=size, num_frames=num_frames, lr=lr, seeds=range(examples),
               batch_size=batch_size, progress=progress)


# -- benchmarks -------------------------------------------------------------------------------


def bench(request, notice: Notice | None = None):
    """Speed of the real pipeline on synthetic inputs (a `engine.bench.BenchRequest`): see engine.bench."""
    from engine.bench import bench_and_compare

    return bench_and_compare(request, notice=notice)
