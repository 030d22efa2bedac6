"""`tryon dress` and `tryon dance`: one try-on video from the teacher pipeline.

Each call checks every input before loading a model, so bad input fails in milliseconds
with one clear line, and writes its output atomically, so a failure leaves nothing behind.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.api.inputs import check_garments, check_motion, check_options, check_output, check_prompt, load_photo
from engine.api.loading import default_model, get_model
from engine.api.options import out_of_memory_is_a_failure, resolve_run
from engine.api.specs import GenerateRequest
from engine.api.route import check_intermediates_folder, keep_intermediates, render_request
from engine.checkpoint import LoadedModel
from engine.checkpoint.public import LoadedRoute, is_route_source
from engine.errors import InputError
from engine.limits import check_frames_fit_in_memory
from engine.media import (
    SizeDecision,
    VideoWriter,
    choose_output_size,
    fit_image,
    read_video,
)
from engine.model.distributed import Processes, enable_context_parallel, start_processes
from engine.pipelines.pipeline_tryon import to_uint8
from engine.pipelines.runtime import Runtime, runtime_notices
from engine.pipelines.shapes import frame_count
from engine.progress import Notice, Notices, Progress, no_progress
from engine.synth.recognise import looks_synthetic

DEMO_ON_REAL_PHOTO = ("notice: the demo model knows only tryon's synthetic world (flat 2D figures); on a camera "
                      "photo it makes a smear of colour. For real people use the public route: --model public "
                      "(README: 'Which model')")


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
    stages: list[dict] = field(default_factory=list)  # the public route's stages: stage, repo, revision, seconds
    intermediates: list[str] = field(default_factory=list)  # the files --keep-intermediates wrote

    def to_dict(self) -> dict:
        return asdict(self)



@dataclass(frozen=True)
class OutputPlan(SizeDecision):
    """What a request will produce with a given model: the output size and the size the model generates
    at (the smallest it accepts that covers the output; SizeDecision), fps and exact frame count."""

    fps: float
    num_frames: int
    reach_notice: str | None = None  # the model generates at a size other than the one it was trained at

    @property
    def notices(self) -> list[str]:
        return [self.reach_notice] if self.reach_notice else []


def note_demo_on_camera_photo(model: LoadedModel | LoadedRoute, photo: Image.Image, tell: Notice) -> None:
    """The demo model knows only the synthetic world: on a camera photo, say where real people are served."""
    if isinstance(model, LoadedModel) and model.info.preset == "demo" and not looks_synthetic(photo):
        tell(DEMO_ON_REAL_PHOTO)


def plan_output(request: GenerateRequest, model: LoadedModel | LoadedRoute, user_size: tuple[int, int]) -> OutputPlan:
    """The model preset's defaults for what the request leaves open; the size rule of engine.media."""
    preset = model.preset
    fps = float(preset.default_fps if request.fps is None else request.fps)  # one JSON number type
    seconds = preset.default_seconds if request.seconds is None else request.seconds
    size = choose_output_size(user_size, request.size, default=preset.default_size,
                              multiple=model.pipeline.size_multiple)
    trained = model.info.training_size if isinstance(model, LoadedModel) else None
    reach = None
    if trained and size.generate_size != trained:
        width, height = size.generate_size
        reach = (f"note: this model was trained at {trained[0]}x{trained[1]} only; at {width}x{height} "
                 "it may draw the figure more than once or smear it")
    return OutputPlan(size.width, size.height, *size.generate_size, fps, frame_count(seconds, fps), reach)


def _generate(
    request: GenerateRequest,
    anchor_first_frame: bool,
    progress: Progress | None,
    notice: Notice | None,
) -> GenerateResult:
    started = time.perf_counter()
    tell = Notices(notice)
    report = progress or no_progress

    # 1. Everything the user gave us, checked before any model is loaded.
    runtime = resolve_run(request.run)
    check_output(request.output, request.overwrite)
    check_intermediates_folder(request.keep_intermediates, request.overwrite)
    check_garments(request.garments)
    user = load_photo(request.user)
    garments = [(spec.role, load_photo(spec.path)) for spec in request.garments]
    check_motion(request.motion)
    check_options(request.seconds, request.fps, request.steps, request.guidance, request.seed)
    check_prompt(request.prompt)
    for message in runtime_notices(runtime):
        tell(message)

    # 2. The model, and the shapes it implies.
    processes = _context_parallel_processes(runtime)
    if processes.distributed:
        runtime = replace(runtime, device=processes.device)
    source = request.run.model or default_model()
    if request.keep_intermediates is not None and not is_route_source(source):
        raise InputError("--keep-intermediates applies to the public route (--model public or a route folder); "
                         f"{source} makes the video in one pass")
    model = get_model(source, request.run.revision, runtime, tell)
    if processes.distributed and getattr(model.pipeline.transformer, "_parallel_config", None) is None:
        enable_context_parallel(model.pipeline.transformer, processes)
    pipeline, preset = model.pipeline, model.preset
    plan = plan_output(request, model, user.size)
    for message in plan.notices:
        tell(message)
    check_frames_fit_in_memory(plan.num_frames, plan.generate_width, plan.generate_height, "the video")
    note_demo_on_camera_photo(model, user, tell)
    if isinstance(model, LoadedRoute):  # the public route runs its own stages
        frames = render_request(model, request, user, garments, plan, anchor_first_frame, report)
        result = _finish(request, frames, plan, source, list(tell), started, report, processes.is_main,
                         model.pipeline.stage_records())
        if request.keep_intermediates is not None:
            kept = keep_intermediates(request.keep_intermediates, model.pipeline.last, plan.fps)
            result.intermediates = [str(path) for path in kept]
        return result
    fps = plan.fps

    # 3. Inputs fitted to the generation size (the output is its centre).
    target = plan.generate_size
    motion = None
    if request.motion is not None:
        motion = read_video(request.motion, fps=fps, num_frames=plan.num_frames, size=target, fit="cover", min_frames=2)

    # 4. Generate and write.
    generator = torch.Generator(device=runtime.device).manual_seed(request.seed)
    with out_of_memory_is_a_failure(runtime.device, "lower --size or --seconds, use --dtype bf16, or --device cpu"):
        frames = pipeline(
            fit_image(user, target, "cover"),
            garments=[(role, fit_image(image, target, "contain")) for role, image in garments],
            motion=motion,
            prompt=request.prompt,
            height=plan.generate_height,
            width=plan.generate_width,
            num_frames=plan.num_frames,
            num_inference_steps=preset.default_steps if request.steps is None else request.steps,
            guidance_scale=preset.default_guidance if request.guidance is None else request.guidance,
            anchor_first_frame=anchor_first_frame,
            generator=generator,
            progress=report,
        ).frames
    return _finish(request, to_uint8(frames[0]), plan, source, list(tell), started, report, processes.is_main)


def _finish(request: GenerateRequest, frames: np.ndarray, plan: OutputPlan, source: str, notices: list[str],
            started: float, report: Progress, is_main: bool = True, stages: list[dict] | None = None) -> GenerateResult:
    """Write the video (the first process only) and say what was made."""
    if is_main:
        report("writing", 0, 1)
        write_frames(request.output, plan.crop(frames), plan.fps)
        report("writing", 1, 1)
    return GenerateResult(
        output=str(request.output),
        frames=len(frames),
        fps=plan.fps,
        size=[plan.width, plan.height],
        seconds_taken=round(time.perf_counter() - started, 3),
        model=source,
        seed=request.seed,
        notices=notices,
        stages=stages or [],
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
