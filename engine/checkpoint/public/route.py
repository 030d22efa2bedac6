"""The public route as one object: its stages loaded once each, run in order for a request.

`dress`: edit (garments onto the photo, at a size covering the output) → motion. `dance`: motion from
the photo itself. Motion is Wan2.2-TI2V-5B image-to-video from `--prompt` alone, or
Wan2.2-Animate-14B driven by the pose and face videos extracted from `--motion`.

Each stage is loaded the first time a request needs it and kept for the next request (so a
batch loads each stage once). Without offloading, a stage that is done waits in CPU memory
while the next one runs, so the GPU holds one stage at a time — except a live stream
(engine.pipelines.public.stream), which keeps its editor and its student on the GPU together.

The editor is the edit stage: Qwen-Image-Edit-2509 as its card runs it (40 steps, true CFG),
or with the 4-step Lightning LoRA (`lightning`): what live switches use, and `dress` with
`TRYON_PUBLIC_EDITOR=lightning`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from engine.errors import InputError
from engine.model.attention import diffusers_backend
from engine.checkpoint.public.loading import RouteSource, live_part, load_part, quiet_loading, resolve_route
from engine.checkpoint.public.presets import (LIGHTNING_SCHEDULER, LIGHTNING_WEIGHTS, PART_STAGE, Part, RoutePreset,
                                              StageSettings)
from engine.checkpoint.store import CheckpointInfo, load_model
from engine.pipelines.pipeline_tryon import TryOnPipeline
from engine.pipelines.public.pose import DrivingVideos, PoseExtractor
from engine.pipelines.public.stages import animate_photo, dress_photo, follow_motion
from engine.pipelines.runtime import Runtime, apply_runtime, fp8_matmuls

MAX_ROUTE_GARMENTS = 3  # Qwen-Image-Edit-2509 is made for 1-3 reference images beside the person


@dataclass
class RouteInputs:
    """One request, fitted to its generation size (a multiple of the preset's `size_multiple` on each side, the
    smallest covering the output; engine.media.SizeDecision): photo, garments and motion frames at that size."""

    user: Image.Image
    garments: list[tuple[str, Image.Image]]
    prompt: str
    motion: np.ndarray | None  # (frames, H, W, 3) uint8 at `size` and the output fps, or None
    size: tuple[int, int]
    num_frames: int
    steps: int | None = None  # the video stage's (the edit stage keeps its preset's)
    guidance: float | None = None  # the video stage's
    seed: int = 0


@dataclass
class RenderRecord:
    """One render's stages in the order they ran, with their seconds, and what they handed on."""

    seconds: dict[str, float] = field(default_factory=dict)
    dressed: Image.Image | None = None  # the edit stage's photo, the video stage's first frame
    driving: DrivingVideos | None = None  # the pose stage's pose and face videos
    lightning: bool = False  # whether the edit stage ran with the Lightning LoRA

    @contextmanager
    def timing(self, stage: str, before: float = 0.0) -> Iterator[None]:
        """The seconds of the block, plus `before` (the stage's loading, done ahead of it), as `stage`'s."""
        started = time.perf_counter()
        yield
        self.seconds[stage] = round(before + time.perf_counter() - started, 3)


@dataclass
class PublicRoute:
    """The route's parts, where they live, and the runtime they run on."""

    source: RouteSource
    runtime: Runtime
    _stages: dict[str, object] = field(default_factory=dict)
    last: RenderRecord = field(default_factory=RenderRecord)  # what the last render (or live stream) did
    _full_scheduler: object | None = None  # the edit stage's own scheduler, while Lightning's is in use
    live_parts: dict[str, Part] = field(default_factory=dict)  # the live parts loaded (stream, lightning)
    stream_info: CheckpointInfo | None = None  # the live student's tryon.json, once loaded

    @property
    def preset(self) -> RoutePreset:
        return self.source.preset

    @property
    def size_multiple(self) -> int:
        return self.preset.size_multiple

    def stage_records(self) -> list[dict]:
        """What --json says about the stages the last render ran: their parts' repos and revisions (the live
        parts once used), and the seconds each took (loading it, when this render loaded it, included)."""
        records = []
        for stage, seconds in self.last.seconds.items():
            live = {name: part for name, part in self.live_parts.items() if name != "lightning" or self.last.lightning}
            parts = [p for name, p in {**self.source.parts, **live}.items() if PART_STAGE[name] == stage]
            records.append({"stage": stage, "repo": ", ".join(p.repo for p in parts),
                            "revision": ", ".join(p.revision for p in parts), "seconds": seconds})
        return records

    # -- loading ------------------------------------------------------------------------------

    def stage(self, name: str):
        """The stage's pipeline (or the pose extractor), loaded and set up on first use."""
        if name not in self._stages:
            if name == "pose":
                detector = load_part("detector", self.source.parts["detector"], self.source.folders["detector"],
                                     self.runtime.dtype)
                keypoints = load_part("keypoints", self.source.parts["keypoints"], self.source.folders["keypoints"],
                                      self.runtime.dtype)
                self._stages[name] = (detector, keypoints)
            else:
                pipeline = load_part(name, self.source.parts[name], self.source.folders[name], self.runtime.dtype)
                pipeline.set_progress_bar_config(disable=True)
                apply_stage_runtime(pipeline, self.runtime)
                self._stages[name] = pipeline
        return self._stages[name]

    def _on_device(self, name: str):
        """The stage, on the runtime's device; every other stage back in CPU memory (without offloading)."""
        stage = self.stage(name)
        if self.runtime.acceleration.offload == "none" and self.runtime.device.type != "cpu":
            for other, loaded in self._stages.items():
                if other != name:
                    _move(loaded, torch.device("cpu"))
            _move(stage, self.runtime.device)
        return stage

    # -- live streaming -----------------------------------------------------------------------

    def student(self) -> TryOnPipeline:
        """The live stream's student (LongLive converted), loaded once; its tryon.json in `stream_info`."""
        if "stream" not in self._stages:
            part, folder = live_part(self.source, "stream")
            model = load_model(str(folder), device=self.runtime.load_device, dtype=self.runtime.dtype)
            if not {"chunk_frames", "local_window_frames", "timesteps", "shift"} <= model.info.stream.keys():
                raise InputError("is not a streaming student converted from LongLive (its tryon.json has no stream "
                                 "chunking): convert it with `tryon models convert model_bf16.pt DIR --from longlive`",
                                 folder)
            model.pipeline.set_progress_bar_config(disable=True)
            apply_runtime(model.pipeline, self.runtime)
            self._stages["stream"] = model.pipeline
            self.live_parts["stream"] = part
            self.stream_info = model.info
        return self._stages["stream"]

    def editor(self, lightning: bool):
        """The edit stage's pipeline, with the Lightning LoRA and its scheduler on (`lightning`) or off."""
        pipeline = self.stage("edit")
        if lightning:
            if "lightning" not in self.live_parts:
                part, folder = live_part(self.source, "lightning")
                with quiet_loading():
                    pipeline.load_lora_weights(folder, weight_name=LIGHTNING_WEIGHTS, adapter_name="lightning")
                _lora_in_compute_dtype(pipeline.transformer, self.runtime.dtype)
                self.live_parts["lightning"] = part
            pipeline.enable_lora()
            if self._full_scheduler is None:
                self._full_scheduler = pipeline.scheduler
                pipeline.scheduler = type(pipeline.scheduler).from_config(LIGHTNING_SCHEDULER)
        elif "lightning" in self.live_parts:
            pipeline.disable_lora()
            if self._full_scheduler is not None:
                pipeline.scheduler, self._full_scheduler = self._full_scheduler, None
        return pipeline

    def edit_settings(self, lightning: bool) -> StageSettings:
        return self.preset.lightning if lightning else self.preset.edit

    def live_on_device(self) -> None:
        """The editor and the student on the runtime's device together; every other stage in CPU memory."""
        if self.runtime.acceleration.offload == "none" and self.runtime.device.type != "cpu":
            for name, loaded in self._stages.items():
                if name not in ("edit", "stream"):
                    _move(loaded, torch.device("cpu"))
            for name in ("edit", "stream"):
                _move(self._stages[name], self.runtime.device)

    def extractor(self) -> PoseExtractor:
        (detector, detector_processor), (keypoints, keypoints_processor) = self._on_device("pose")
        device = self.runtime.device if self.runtime.acceleration.offload == "none" else torch.device("cpu")
        return PoseExtractor(detector, detector_processor, keypoints, keypoints_processor, device)

    # -- rendering ----------------------------------------------------------------------------

    def render(self, inputs: RouteInputs, anchor_first_frame: bool, report) -> np.ndarray:
        """The video for one request: exactly `inputs.num_frames` uint8 frames at `inputs.size`.

        Afterwards `last` says which stages ran, how long each took, and what they handed on.
        """
        if any(side % self.size_multiple for side in inputs.size):
            # diffusers would round such a size down, and the frames would no longer cover the output
            raise ValueError(f"the route generates at multiples of {self.size_multiple}, not at "
                             f"{inputs.size[0]}x{inputs.size[1]} (plan the size with engine.media.choose_output_size)")
        if len(inputs.garments) > MAX_ROUTE_GARMENTS:
            raise InputError(f"{len(inputs.garments)} garments given; the public route dresses at most "
                             f"{MAX_ROUTE_GARMENTS} at once")
        preset = self.preset
        self.last = RenderRecord()
        photo = inputs.user
        if inputs.garments and not anchor_first_frame:
            report("edit: loading", 0, 1)
            with self.last.timing("edit"):
                self._on_device("edit")
                lightning = lightning_for_dress()
                self.last.lightning = lightning
                pipeline, settings = self.editor(lightning), self.edit_settings(lightning)
                photo = dress_photo(pipeline, inputs.user, inputs.garments, inputs.size, settings.steps,
                                    settings.guidance, preset.negative_prompt, self._generator(inputs.seed),
                                    lambda done, total: report("edit", done, total), preset.edit_image_area)
            self.last.dressed = photo
        if inputs.motion is None:
            return self._from_prompt(photo, inputs, report)
        return self._from_motion(photo, inputs, report)

    def _from_prompt(self, photo: Image.Image, inputs: RouteInputs, report) -> np.ndarray:
        settings = self.preset.i2v
        report("i2v: loading", 0, 1)
        with self.last.timing("i2v"):
            pipeline = self._on_device("i2v")
            return animate_photo(pipeline, photo, inputs.prompt, self.preset.negative_prompt, inputs.size,
                                 inputs.num_frames, inputs.steps or settings.steps,
                                 settings.guidance if inputs.guidance is None else inputs.guidance,
                                 self._generator(inputs.seed), lambda done, total: report("i2v", done, total))

    def _from_motion(self, photo: Image.Image, inputs: RouteInputs, report) -> np.ndarray:
        settings = self.preset.animate
        started = time.perf_counter()
        faces = face_size(self.stage("animate"))  # the face crops' size: the animate stage loads first
        loading = time.perf_counter() - started
        report("pose", 0, 1)
        with self.last.timing("pose"):
            driving = self.extractor().driving_videos(inputs.motion, faces)
        self.last.driving = driving
        report("pose", 1, 1)
        with self.last.timing("animate", before=loading):
            pipeline = self._on_device("animate")
            return follow_motion(pipeline, photo, driving.pose, driving.face, inputs.prompt,
                                 self.preset.negative_prompt, inputs.size, self.preset.animate_window,
                                 self.preset.animate_overlap, inputs.steps or settings.steps,
                                 settings.guidance if inputs.guidance is None else inputs.guidance,
                                 self._generator(inputs.seed), lambda done, total: report("animate", done, total))

    def driving_videos(self, motion: np.ndarray) -> DrivingVideos:
        """The pose and face videos the animate stage would be driven by (for inspection and tests)."""
        return self.extractor().driving_videos(motion, face_size(self.stage("animate")))

    def _generator(self, seed: int) -> torch.Generator:
        # Offloaded pipelines draw their noise on the execution device, like diffusers' own examples.
        return torch.Generator(device=self.runtime.device).manual_seed(seed)


def face_size(animate_pipeline) -> int:
    """The face crops' side: the animate transformer's motion-encoder input size."""
    return int(animate_pipeline.transformer.config.motion_encoder_size)


def apply_stage_runtime(pipeline, runtime: Runtime) -> None:
    """The speed and memory modes that apply to a diffusers pipeline of the route, with diffusers' own tools."""
    modes = runtime.acceleration
    if modes.fuse_qkv:
        raise InputError("--fuse-qkv applies to the CondNet models only, not to the public route")
    if modes.context_parallel:
        raise InputError("--context-parallel applies to the CondNet models only, not to the public route")
    backend = diffusers_backend(runtime.attention)
    if backend != "native":
        pipeline.transformer.set_attention_backend(backend)
    if modes.vae_bf16:
        raise InputError("--vae-bf16 applies to the CondNet models only, not to the public route")
    if modes.fp8_weights:
        pipeline.transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=runtime.dtype)
    if modes.fp8:
        fp8_matmuls(pipeline.transformer)
    if modes.offload == "model":
        pipeline.enable_model_cpu_offload(device=runtime.device)
    elif modes.offload == "group":
        pipeline.enable_group_offload(onload_device=runtime.device, offload_type="block_level",
                                      num_blocks_per_group=1, use_stream=runtime.device.type == "cuda")
    if modes.compile:
        pipeline.transformer.compile_repeated_blocks(dynamic=True)


def lightning_for_dress(environ: dict[str, str] | None = None) -> bool:
    """Whether `dress` edits with the 4-step Lightning editor: TRYON_PUBLIC_EDITOR=lightning (default: full)."""
    chosen = (os.environ if environ is None else environ).get("TRYON_PUBLIC_EDITOR", "full")
    if chosen not in ("full", "lightning"):
        raise InputError(f"TRYON_PUBLIC_EDITOR must be full or lightning, not '{chosen[:40]}'")
    return chosen == "lightning"


def _lora_in_compute_dtype(transformer: torch.nn.Module, dtype: torch.dtype) -> None:
    """LoRA weights take their base layer's dtype, FP8 under --fp8-weights, where no layerwise-casting hook
    upcasts them: they are small, so they are kept in the compute dtype."""
    for name, param in transformer.named_parameters():
        if "lora_" in name and param.dtype != dtype:
            param.data = param.data.to(dtype)


def _move(stage, device: torch.device) -> None:
    if isinstance(stage, tuple):  # the pose stage: (model, processor) pairs
        for model, _ in stage:
            model.to(device)
    else:
        stage.to(device)


@dataclass
class LoadedRoute:
    """What the generation API holds for `--model public` or a route folder (like a LoadedModel)."""

    pipeline: PublicRoute
    source: str

    @property
    def preset(self) -> RoutePreset:
        return self.pipeline.preset


def load_route(source: str, runtime: Runtime) -> LoadedRoute:
    """Find every part (downloading `public`'s from the Hub); stages load when a request needs them."""
    found = resolve_route(source)
    if runtime.acceleration.context_parallel or runtime.acceleration.fuse_qkv:
        apply_stage_runtime(None, runtime)  # raises the option's one-line error before anything loads
    return LoadedRoute(PublicRoute(found, runtime), source)

