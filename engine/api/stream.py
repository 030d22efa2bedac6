"""Streaming try-on for the CLI and scripts: `swap` (garments switched mid-video) and `extend`.

Both run engine.pipelines.pipeline_tryon_streaming chunk by chunk and write each chunk to the MP4 as soon as
it is decoded. Ctrl-C finishes the file with everything written so far and raises
`StreamInterrupted` (nothing is kept when no frame was written yet).

Garment rules (`PATH[:CATEGORY][@SECONDS]`, see engine.api.specs):

- Garments with the same start time are put on together. A garment replaces the worn ones it
  clashes with: the same category, a dress against a top or a bottom, and a garment without
  a category against everything.
- `swap`: the first garment given must start at 0; the garments at 0 are worn from the first
  frame. `extend`: garments are all switches; those at 0 are put on at the first new frame,
  and without garments the person keeps the clothes of the video.
- A switch at T seconds is applied at the first chunk that starts at or after T, so frames
  before it never change. A switch at or after the end of the video is an input error; one
  that falls after the last chunk has started is reported in the notices and not applied.
- Live switches (`SwapRequest.live`, e.g. stdin): each line holds one or more garment specs
  (shell-quoted, without @time). A background thread reads and loads them; they are put on in
  order, one line per chunk boundary, never before the second chunk. A bad line is reported
  and skipped. Each switch reports its latency: from reading the line to writing its first
  frame. Without `seconds` the video runs until the input closes and every line read has been
  put on (at most MAX_SECONDS); lines still waiting when the video ends are reported as too late.

`extend` writes the input's frames followed by `seconds` more, at the input's fps and size. New
frames are made at the smallest size the model accepts that covers the input and centre-cropped
back to it; the input's last frames, its memory, are padded to that size by repeating their
edge pixels, so the cropped centre is exactly the input. The input's sides must be even
(H.264 yuv420p).

Streaming takes no classifier-free guidance: the student is distilled to run without it.

On the public route (engine.api.route_stream) the stream is the editor and LongLive's student:
a switch starts an edit of the last shown frame and is worn from the first chunk after the
edit is done (the frames in between keep the old outfit); its latency runs from starting the
edit to writing that chunk. A switch whose edit is still running when the video ends is
reported as not applied.
"""

from __future__ import annotations

import queue
import shlex
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from itertools import groupby
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.api import route_stream
from engine.api.decoder import stream_decoder
from engine.api.generate import GenerateRequest, GenerateResult, note_demo_on_camera_photo, plan_output
from engine.api.inputs import check_garments, check_motion, check_options, check_output, check_prompt, load_photo
from engine.api.loading import default_model, get_model
from engine.api.options import out_of_memory_is_a_failure, resolve_run
from engine.api.specs import GarmentSpec, parse_garment
from engine.checkpoint import LoadedModel
from engine.checkpoint.public import LoadedRoute
from engine.errors import InputError
from engine.media import (
    VideoFrames,
    VideoWriter,
    choose_output_size,
    fit_image,
    pad_edges,
    probe_video,
)
from engine.modes import RunOptions
from engine.pipelines.pipeline_tryon_streaming import StreamConfig, TryOnStream
from engine.pipelines.public.stream import LiveRouteStream
from engine.pipelines.runtime import runtime_notices
from engine.pipelines.transfer import HostFrames
from engine.pipelines.shapes import MAX_SECONDS, frame_count
from engine.progress import Notice, Notices, Progress, no_progress

Worn = tuple[GarmentSpec, Image.Image]
COPY_BATCH = 64  # frames of the input video `extend` decodes and copies at a time
WRITE_QUEUE = 4  # chunks handed to the writer thread and not yet written, at most


@dataclass
class SwapRequest(GenerateRequest):
    """A `GenerateRequest` whose garments carry start times, plus the switch operations to use."""

    # the switch operations; None: the checkpoint's choice (its tryon.json `stream`), else on
    refresh: bool | None = None
    withdraw: bool | None = None
    disentangle: bool | None = None
    live: Iterable[str] | None = None  # lines of garment specs read while generating (e.g. sys.stdin)
    on_chunk: Callable[[ChunkWritten], None] | None = None  # hears about each chunk written (module docstring)
    should_stop: Callable[[], bool] | None = None  # asked before each chunk; True ends the video there


@dataclass
class ExtendRequest:
    """Continue `video` by `seconds`; None means the model preset's default."""

    video: Path
    output: Path
    seconds: float
    garments: list[GarmentSpec] = field(default_factory=list)
    prompt: str = ""
    seed: int = 0
    steps: int | None = None
    overwrite: bool = False
    refresh: bool | None = None  # None: as in SwapRequest
    withdraw: bool | None = None
    disentangle: bool | None = None
    run: RunOptions = RunOptions()


@dataclass
class SwitchReport:
    garments: list[str]  # as given: PATH or PATH:CATEGORY
    at: float | None  # the scheduled time in seconds; None for a live line
    frame: int | None  # the first output frame wearing them; None: never applied
    latency: float | None = None  # live: seconds from reading the line to writing that frame


@dataclass
class StreamResult(GenerateResult):
    switches: list[SwitchReport] = field(default_factory=list)
    decoder: str = "full"  # which decoder made the frames (engine.api.decoder)


class StreamInterrupted(KeyboardInterrupt):
    """Ctrl-C during a stream: `frames` frames were kept in `output` (0: nothing was written),
    of which `copied` were the input's (extend) and the rest generated."""

    def __init__(self, output: Path, frames: int, copied: int = 0) -> None:
        super().__init__(f"{output}: {frames} frames kept")
        self.output = output
        self.frames = frames
        self.copied = min(copied, frames)

    @property
    def generated(self) -> int:
        return self.frames - self.copied


# -- garments over time -----------------------------------------------------------------------


@dataclass
class Switch:
    """Garments to put on at `at` seconds, or (a live line) as soon as possible."""

    garments: list[Worn]
    at: float | None = None
    read_at: float | None = None  # time.perf_counter() when a live line was read
    started_at: float | None = None  # when its edit started (the public route)


def clashes(worn: GarmentSpec, new: GarmentSpec) -> bool:
    """Whether putting on `new` takes `worn` off (the rule in the module docstring)."""
    if worn.category is None or new.category is None:
        return True
    return worn.category == new.category or "dress" in (worn.category, new.category)


def put_on(outfit: list[Worn], new: list[Worn]) -> list[Worn]:
    """The outfit after putting on `new`; an InputError if it cannot be worn."""
    kept = [item for item in outfit if not any(clashes(item[0], spec) for spec, _ in new)]
    result = kept + new
    check_garments([spec for spec, _ in result])
    return result


def plan_switches(garments: list[GarmentSpec], worn_from_start: bool) -> tuple[list[Worn], list[Switch]]:
    """Load the garments; return the outfit worn from the start and the switches in time order.

    With `worn_from_start` (swap) the first garment must start at 0 and the garments at 0 are
    the starting outfit; otherwise (extend) every garment is a switch.
    """
    if worn_from_start and garments and garments[0].start > 0:
        raise InputError(f"the first garment is worn from the start: '{garments[0].path}' cannot start at "
                         f"{garments[0].start:g} s (give it first without @, or @0)")
    images = {spec.path: load_photo(spec.path) for spec in garments}
    outfit: list[Worn] = []
    switches = []
    by_time = sorted(garments, key=lambda spec: spec.start)
    for start, group in groupby(by_time, key=lambda spec: spec.start):
        items = [(spec, images[spec.path]) for spec in group]
        if worn_from_start and start == 0:
            outfit = put_on(outfit, items)
        else:
            switches.append(Switch(items, at=start))
    worn = outfit
    for switch in switches:  # every outfit along the way must be wearable
        worn = put_on(worn, switch.garments)
    return outfit, switches


def check_switch_times(switches: list[Switch], seconds: float) -> None:
    for switch in switches:
        if switch.at >= seconds:
            raise InputError(f"garment '{switch.garments[0][0].path}' starts at {switch.at:g} s, "
                             f"at or after the end of the {seconds:g} s video")


def describe(garments: list[Worn]) -> list[str]:
    return [f"{spec.path}:{spec.category}" if spec.category else str(spec.path) for spec, _ in garments]


class LiveSwitches:
    """Garment lines read on a background thread while the video is generated."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._queue: queue.Queue[Switch | str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(lines,), daemon=True)
        self._reader.start()

    def _read(self, lines: Iterable[str]) -> None:
        for line in lines:
            read_at = time.perf_counter()
            if not line.strip():
                continue
            try:
                specs = [parse_garment(text) for text in shlex.split(line)]
                self._queue.put(Switch([(spec, load_photo(spec.path)) for spec in specs], read_at=read_at))
            except (InputError, ValueError) as error:
                self._queue.put(f"live: ignored '{line.strip()}': {error}")

    def ended(self) -> bool:
        """The input is closed and every line read from it has been taken."""
        return not self._reader.is_alive() and self._queue.empty()

    def too_late(self, frames: int, tell: Notice) -> list[SwitchReport]:
        """Report the switches read but never applied: the video ended (after `frames` frames) first."""
        reports = []
        while (switch := self.next(tell)) is not None:
            tell(f"live: {' '.join(describe(switch.garments))} came too late: the video ended at frame {frames}")
            reports.append(SwitchReport(describe(switch.garments), None, None))
        return reports

    def next(self, tell: Notice) -> Switch | None:
        """The oldest switch read and not yet taken, or None; problems with lines go to `tell`."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return None
            if isinstance(item, Switch):
                return item
            tell(item)


# -- the stream loop --------------------------------------------------------------------------


@dataclass
class ChunkWritten:
    """What `SwitchingStream.write` tells `on_chunk` about each chunk, times by its clock."""

    frames: int
    context_tokens: int  # tokens in the KV cache the chunk attended to (before its own)
    switches: list[Switch]  # applied just before the chunk
    started: float  # before the switches
    switched: float  # after the switches, as the chunk began
    written: float  # its frames handed to the writer
    start: int  # the output index of its first frame
    pending: HostFrames  # its frames as written, on their way to the host (see `images`)
    worn: list[SwitchReport]  # the switches first worn in it

    @property
    def images(self) -> np.ndarray:
        """Its frames as written, uint8 (T, H, W, 3); on CUDA, reading them waits for the device."""
        return self.pending.numpy()


@dataclass
class SwitchingStream:
    """A try-on stream, what it wears, and the switches to come."""

    stream: TryOnStream
    outfit: list[Worn]
    switches: list[Switch]
    live: LiveSwitches | None
    size: tuple[int, int]  # generation size: garments are fitted to it
    fps: float
    tell: Notice
    output_start: int = 0  # the output frame index of the first frame made (extend: after the input)
    editing: list[Switch] = field(default_factory=list)  # applied, edit still running (the public route)

    def write(self, writer: VideoWriter, num_frames: int, progress: Progress = no_progress,
              to_output: Callable[[np.ndarray], np.ndarray] = lambda frames: frames,
              on_chunk: Callable[[ChunkWritten], None] | None = None,
              clock: Callable[[], float] = time.perf_counter,
              should_stop: Callable[[], bool] | None = None) -> list[SwitchReport]:
        """Generate `num_frames` frames chunk by chunk into `writer`, switching garments on time.

        `on_chunk` hears about every chunk once it is written (the benchmark times them by its
        `clock`, which waits for the GPU; the studio sends its frames to the browser).
        `should_stop`, asked before each chunk, ends the video early: with the frames made, or,
        before the first chunk, with nothing kept (`StreamInterrupted`).
        """
        reports = []
        made = 0
        while made < num_frames and not (should_stop and should_stop()):
            started = clock()
            taken = self._worn_next(self._take_switches(), clock)
            switched = clock() if taken else started
            context_tokens = self.stream.cache.tokens
            frames = self.stream.next_chunk_frames(num_frames - made).then(to_output)
            writer.write(frames)  # a writer thread waits for the frames; this thread goes on
            written_at = clock()
            worn = [self._report(switch, self.output_start + made, written_at) for switch in taken]
            if on_chunk is not None:
                on_chunk(ChunkWritten(len(frames), context_tokens, taken, started, switched, written_at,
                                      self.output_start + made, frames, worn))
            reports += worn
            made += len(frames)
            progress("frames", made, num_frames)
        if made == 0:  # told to stop before the first chunk: like Ctrl-C, nothing is kept
            raise StreamInterrupted(writer.path, 0)
        for switch in self.switches:
            self.tell(f"garments at {switch.at:g} s start after the last chunk has begun; not applied")
            reports.append(SwitchReport(describe(switch.garments), switch.at, None))
        for switch in self.editing:
            self.tell(f"the edit for {' '.join(describe(switch.garments))} was not ready before the video ended; "
                      "not applied")
            reports.append(SwitchReport(describe(switch.garments), switch.at, None))
        if self.live is not None:
            reports += self.live.too_late(self.output_start + made, self.tell)
        return reports

    def _take_switches(self) -> list[Switch]:
        """Apply the switches due at the chunk about to start; return them."""
        start = self.stream.frames_made
        due = []
        while self.switches and start >= self.switches[0].at * self.fps - 1e-6:  # they are in time order
            due.append(self.switches.pop(0))
        if self.live is not None and start > 0:
            line = self.live.next(self.tell)
            if line is not None:
                due.append(line)
        return [switch for switch in due if self._apply(switch)]

    def _worn_next(self, taken: list[Switch], clock: Callable[[], float]) -> list[Switch]:
        """The switches the next chunk wears: all those just applied, or, on the public route, those
        whose edit has landed (the oldest first; edits run one at a time, in order)."""
        if not isinstance(self.stream, LiveRouteStream):
            return taken
        for switch in taken:
            switch.started_at = clock()
        self.editing += taken
        landed = self.stream.land_switches()
        worn, self.editing = self.editing[:landed], self.editing[landed:]
        return worn

    def _apply(self, switch: Switch) -> bool:
        try:
            outfit = put_on(self.outfit, switch.garments)
        except InputError as error:  # only live lines can get here: the schedule was checked
            self.tell(f"live: ignored {' '.join(describe(switch.garments))}: {error}")
            return False
        self.stream.switch([(spec.role, fit_image(image, self.size, "contain")) for spec, image in outfit])
        self.outfit = outfit
        return True

    def _report(self, switch: Switch, frame: int, written_at: float) -> SwitchReport:
        names = " ".join(describe(switch.garments))
        if switch.read_at is None and switch.started_at is not None:
            latency = written_at - switch.started_at
            self.tell(f"switch at {switch.at:g} s: {names} from frame {frame} ({frame / self.fps:.2f} s), "
                      f"{latency:.2f} s after its edit started")
            return SwitchReport(describe(switch.garments), switch.at, frame, round(latency, 3))
        if switch.read_at is None:
            self.tell(f"switch at {switch.at:g} s: {names} from frame {frame} ({frame / self.fps:.2f} s)")
            return SwitchReport(describe(switch.garments), switch.at, frame)
        latency = written_at - switch.read_at
        self.tell(f"live switch: {names} from frame {frame}, {latency:.2f} s after the line was read")
        return SwitchReport(describe(switch.garments), None, frame, round(latency, 3))


class StreamWriter(VideoWriter):
    """A VideoWriter that counts the frames copied from an input apart from those generated."""

    copied = 0

    def copy(self, frames: np.ndarray) -> None:
        self.write(frames)
        self.copied += len(frames)


@contextmanager
def streaming_writer(path: Path, fps: float, size: tuple[int, int], device: torch.device) -> Iterator[StreamWriter]:
    """A StreamWriter that keeps what was written on Ctrl-C (as StreamInterrupted)."""
    writer = StreamWriter(path, fps, size, keep_partial_on_interrupt=True, queue=WRITE_QUEUE)
    try:
        with writer, out_of_memory_is_a_failure(device, "lower --size, use --dtype bf16, or --device cpu"):
            yield writer
    except KeyboardInterrupt:
        raise StreamInterrupted(path, writer.frames_written, writer.copied) from None


# -- the commands -----------------------------------------------------------------------------


def context_length(available: int, config: StreamConfig, pipeline) -> int:
    """How many of a video's last frames to continue from: 4k+1 (what the VAE encodes), at most
    what the cache's sink and history hold."""
    temporal = pipeline.vae.config.scale_factor_temporal
    latent_frames = min((available - 1) // temporal + 1, config.context_latent_frames)
    return temporal * (latent_frames - 1) + 1


def stream_config(request: SwapRequest | ExtendRequest, model: LoadedModel) -> StreamConfig:
    """Chunking as the student was distilled for (its tryon.json), else StreamConfig's defaults;
    `--steps` from the request; each switch operation as the request asks, else as the
    checkpoint's `stream` says, else on."""
    trained = model.info.training if model.info.kind == "student" else {}
    defaults = StreamConfig()
    switch = {name: asked if (asked := getattr(request, name)) is not None else default
              for name, default in model.info.switch_defaults().items()}
    return StreamConfig(
        chunk_frames=trained.get("chunk_frames", defaults.chunk_frames),
        steps=trained.get("steps_per_chunk", defaults.steps) if request.steps is None else request.steps,
        window=trained.get("window", defaults.window),
        sampler=trained.get("sampler", defaults.sampler),
        **switch,
    )


def swap(request: SwapRequest, progress: Progress | None = None, notice: Notice | None = None) -> StreamResult:
    """The user wearing each garment from its start time on, made and written chunk by chunk."""
    started = time.perf_counter()
    tell = Notices(notice)
    report = progress or no_progress

    # 1. Everything the user gave us, checked before any model is loaded.
    runtime = resolve_run(request.run)
    check_output(request.output, request.overwrite)
    if not request.garments:
        raise InputError("swap needs at least one garment (--garment PATH[:CATEGORY][@SECONDS])")
    if request.guidance not in (None, 1.0):
        raise InputError("streaming takes no --guidance: the student runs without classifier-free guidance")
    user = load_photo(request.user)
    outfit, switches = plan_switches(request.garments, worn_from_start=True)
    source = request.run.model or default_model(streaming=True)
    route_stream.check_live_source(source, request.motion)
    motion_info = check_motion(request.motion)
    check_options(request.seconds, request.fps, request.steps, seed=request.seed)
    check_prompt(request.prompt)
    for message in runtime_notices(runtime):
        tell(message)
    if request.seconds is not None:
        check_switch_times(switches, request.seconds)

    # 2. The model and the output it implies.
    model = get_model(source, request.run.revision, runtime, tell)
    note_demo_on_camera_photo(model, user, tell)
    tiny_decoder, decoder = stream_decoder(model, runtime)
    until_input_ends = request.live is not None and request.seconds is None
    plan = plan_output(replace(request, seconds=MAX_SECONDS) if until_input_ends else request, model, user.size)
    for message in plan.notices:
        tell(message)
    check_switch_times(switches, plan.num_frames / plan.fps)
    size = plan.generate_size  # the output is its centre
    route = None  # the public route's editor and student, set up for streaming
    if isinstance(model, LoadedRoute):
        route_stream.check_route_garments(len(outfit))
        route = route_stream.LiveRoute(model, runtime, size)

    # 3. Stream into the MP4, decoding the motion video as the stream reaches it.
    with ExitStack() as resources:
        motion = None
        if request.motion is not None:
            motion = resources.enter_context(VideoFrames(request.motion, fps=plan.fps, num_frames=plan.num_frames,
                                                         size=size, fit="cover", info=motion_info))
        writer = resources.enter_context(streaming_writer(request.output, plan.fps, plan.size, runtime.device))
        photo = fit_image(user, size, "cover")
        garments = [(spec.role, fit_image(image, size, "contain")) for spec, image in outfit]
        if route is not None:
            stream = route.stream(start=route.dress(photo, garments, request.seed), photo=photo, prompt=request.prompt,
                                  seed=request.seed, show_start=True)
        else:
            stream = TryOnStream(
                model.pipeline,
                reference=photo,
                garments=garments,
                prompt=request.prompt,
                generator=torch.Generator(device=runtime.device).manual_seed(request.seed),
                motion=motion,
                config=stream_config(request, model),
                tiny_decoder=tiny_decoder,
            )
        resources.callback(stream.close)  # before the motion video closes
        live = None if request.live is None else LiveSwitches(request.live)

        def should_stop() -> bool:
            if request.should_stop is not None and request.should_stop():
                return True
            return until_input_ends and stream.frames_made > 0 and live.ended()

        switching = SwitchingStream(stream, outfit, switches, live, size, plan.fps, tell)
        reports = switching.write(writer, plan.num_frames, report, plan.crop, on_chunk=request.on_chunk,
                                  should_stop=should_stop)
    return StreamResult(
        output=str(request.output), frames=stream.frames_made, fps=plan.fps, size=list(plan.size),
        seconds_taken=round(time.perf_counter() - started, 3), model=source, seed=request.seed,
        notices=list(tell), switches=reports, decoder=decoder, stages=route_stages(model),
    )


def route_stages(model: LoadedModel | LoadedRoute) -> list[dict]:
    """What --json says about the public route's parts a stream used (nothing for a tryon checkpoint)."""
    if not isinstance(model, LoadedRoute):
        return []
    return model.pipeline.stage_records()


def extend(request: ExtendRequest, progress: Progress | None = None, notice: Notice | None = None) -> StreamResult:
    """The video followed by `seconds` more of it: its last frames are the stream's memory."""
    started = time.perf_counter()
    tell = Notices(notice)
    report = progress or no_progress

    # 1. Everything the user gave us, checked before any model is loaded.
    runtime = resolve_run(request.run)
    check_output(request.output, request.overwrite)
    info = probe_video(request.video)
    if info.width % 2 or info.height % 2:
        raise InputError(f"is {info.width}x{info.height}; extend writes the same size, which H.264 needs even",
                         request.video)
    if not 1 <= info.fps <= 120:
        raise InputError(f"has {info.fps:g} fps; extend keeps the frame rate, which must be 1 to 120", request.video)
    num_new = frame_count(request.seconds, info.fps)
    _, switches = plan_switches(request.garments, worn_from_start=False)
    source = request.run.model or default_model(streaming=True)
    route_stream.check_live_source(source)
    check_switch_times(switches, request.seconds)
    check_options(steps=request.steps, seed=request.seed)
    check_prompt(request.prompt)
    for message in runtime_notices(runtime):
        tell(message)

    # 2. The model, and the size it generates at.
    model = get_model(source, request.run.revision, runtime, tell)
    tiny_decoder, decoder = stream_decoder(model, runtime)
    output_size = (info.width, info.height)
    decision = choose_output_size(output_size, output_size, multiple=model.pipeline.size_multiple)
    route = route_stream.LiveRoute(model, runtime, decision.generate_size) if isinstance(model, LoadedRoute) else None
    config = route.config if route else stream_config(request, model)
    student = route.student if route else model.pipeline

    # 3. The video is copied into the MP4 (decoded a batch at a time); its last frames fill the
    #    cache; the new frames follow them.
    count = info.frame_count
    with VideoFrames(request.video, fps=info.fps, num_frames=count, info=info) as video, \
            streaming_writer(request.output, info.fps, output_size, runtime.device) as writer:
        tail_start = count - context_length(count, config, student)
        tail = []
        for start in range(0, count, COPY_BATCH):
            frames = video[np.arange(start, min(start + COPY_BATCH, count))]
            writer.copy(frames)
            tail.append(frames[max(0, tail_start - start) :])
            report("copying", writer.copied, count)
        context = pad_edges(np.concatenate(tail), decision.generate_size)
        note_demo_on_camera_photo(model, Image.fromarray(context[-1]), tell)
        if route is not None:
            stream = route.stream(start=context, photo=Image.fromarray(context[-1]), prompt=request.prompt,
                                  seed=request.seed, show_start=False)
        else:
            stream = TryOnStream(
                student,
                reference=Image.fromarray(context[-1]),
                garments=[],
                prompt=request.prompt,
                generator=torch.Generator(device=runtime.device).manual_seed(request.seed),
                context=context,
                config=config,
                tiny_decoder=tiny_decoder,
            )
        switching = SwitchingStream(stream, [], switches, None, decision.generate_size, info.fps, tell, count)
        try:
            reports = switching.write(writer, num_new, report, decision.crop)
        finally:
            stream.close()  # every stream lets its threads go, as swap's does (the route's editor among them)
    return StreamResult(
        output=str(request.output), frames=count + num_new, fps=info.fps, size=list(output_size),
        seconds_taken=round(time.perf_counter() - started, 3), model=source, seed=request.seed,
        notices=list(tell), switches=reports, decoder=decoder, stages=route_stages(model),
    )
