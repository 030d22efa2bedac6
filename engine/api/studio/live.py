"""One live stream of a studio session: `tryon swap --live`, watched in a browser.

The stream is `engine.api.stream.swap` itself, run on a worker thread: garment clicks are
its live lines (one `PATH:CATEGORY` line per click, put on at the next chunk by the three KV
operations the session chose), its per-chunk hook hands each chunk to the event loop as JPEG
frames, and Stop is its `should_stop`. The MP4 is written by swap's own writer, so a stopped
stream is a complete, playable video of the frames made.

Frames reach the browser paced at the video's frame rate, never ahead of it: a chunk's frames
are sent 1/fps apart, or as they come when the model is slower than real time. The worker
waits while a chunk is still queued for sending (at most one chunk ahead), so a click is
never stuck behind a long backlog; that waiting is left out of the generated frame rate.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import queue
import shlex
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from engine.api import stream
from engine.api.studio.sessions import Garment, Session
from engine.checkpoint.store import CheckpointInfo
from engine.modes import RunOptions

JPEG_QUALITY = 90
Send = Callable[[dict | bytes], Awaitable[None]]


@dataclass(frozen=True)
class StudioModel:
    """The streaming model the studio serves (`run.model`: its source, as swap() finds it again)
    and how streams are made with it."""

    run: RunOptions
    fps: float  # what streams are made at (the model's default unless asked otherwise)
    size: tuple[int, int] | None = None  # None: the model's, in the photo's orientation
    steps: int | None = None  # None: as the student was distilled
    # the switch operations the page starts with ticked: the checkpoint's choice (CheckpointInfo.switch_defaults)
    switch_defaults: dict[str, bool] = field(default_factory=lambda: CheckpointInfo().switch_defaults())


@dataclass(frozen=True)
class StreamOptions:
    """What the page's Start sends: the starting outfit, the motion source and the KV operations."""

    garments: list[str]  # garment ids worn from the first frame
    prompt: str = ""
    seconds: float = 10.0
    refresh: bool | None = None  # None: the checkpoint's choice (swap's)
    withdraw: bool | None = None
    disentangle: bool | None = None


@dataclass
class Chunk:
    start: int  # output index of the first frame
    jpegs: list[bytes]
    switches: list[dict]  # switch events first worn in this chunk
    generated_fps: float | None  # this chunk's frames per second of generation


@dataclass
class Figures:
    """Generation speed, measured on the worker: waiting for the browser is left out."""

    frames: int = 0
    seconds: float = 0.0  # generation time of the chunks after the first
    first_chunk_s: float | None = None  # from the start of swap to the first chunk (setup included)
    switch_latencies: list[float] = field(default_factory=list)  # click received -> first frame written

    @property
    def generated_fps(self) -> float | None:
        return round(self.frames / self.seconds, 2) if self.seconds > 0 else None


def frame_message(index: int, jpeg: bytes) -> bytes:
    """A binary WebSocket message: the output frame index (uint32, big-endian), then the JPEG."""
    return struct.pack(">I", index) + jpeg


def encode_jpeg(frame: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


class LiveRun:
    """A stream in progress: generate() runs on a worker thread, deliver() on the event loop."""

    def __init__(self, session: Session, options: StreamOptions, model: StudioModel,
                 loop: asyncio.AbstractEventLoop, notify: Callable[[str], None]) -> None:
        self.session = session
        self.options = options
        self.model = model
        self.loop = loop
        self.notify = notify  # a notice for the page (called on the worker thread)
        self.figures = Figures()
        self.outfit = [session.garments[gid] for gid in options.garments]
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._by_line: dict[str, Garment] = {}
        self._chunks: asyncio.Queue[Chunk | None] = asyncio.Queue(maxsize=1)
        self._stop = threading.Event()
        self._abandoned = threading.Event()  # nobody is receiving the frames any more
        self._started = time.perf_counter()
        self._resumed = self._started  # when the worker last went back to generating

    # -- controls (event loop) ----------------------------------------------------------------

    def switch(self, garment: Garment) -> None:
        """Put `garment` on at the next chunk: one live line, as typed into `tryon swap --live`."""
        self._by_line[garment.line] = garment
        self._lines.put(shlex.quote(garment.line))

    def stop(self) -> None:
        """End the stream after the chunk being made; what was made is still sent and kept."""
        self._stop.set()

    def abandon(self) -> None:
        """The tab is gone: stop, and hand nothing more over."""
        self._abandoned.set()
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # -- the worker thread --------------------------------------------------------------------

    def generate(self) -> stream.StreamResult:
        """Run the stream to its end (or Stop); the frames go to deliver() as they are written."""
        session, options, model = self.session, self.options, self.model
        request = stream.SwapRequest(
            user=session.user.path, output=session.video, garments=[g.spec for g in self.outfit],
            motion=session.motion.path if session.motion else None, prompt=options.prompt,
            size=model.size, fps=model.fps, steps=model.steps, seconds=options.seconds, run=model.run,
            overwrite=True, refresh=options.refresh, withdraw=options.withdraw,
            disentangle=options.disentangle, live=self._live_lines(), on_chunk=self._on_chunk,
            should_stop=self._stop.is_set,
        )
        self._started = self._resumed = time.perf_counter()
        try:
            return stream.swap(request, notice=self.notify)
        finally:
            self._lines.put(None)  # ends the live-line reader
            self._hand_over(None)

    def _live_lines(self) -> Iterator[str]:
        while (line := self._lines.get()) is not None:
            yield line

    def _on_chunk(self, chunk: stream.ChunkWritten) -> None:
        now = time.perf_counter()
        chunk_seconds = now - self._resumed
        if self.figures.first_chunk_s is None:
            self.figures.first_chunk_s = round(now - self._started, 3)
            generated_fps = None
        else:
            self.figures.frames += chunk.frames
            self.figures.seconds += chunk_seconds
            generated_fps = round(chunk.frames / chunk_seconds, 2)
        switches = [self._switch_event(report) for report in chunk.worn]
        self._hand_over(Chunk(chunk.start, [encode_jpeg(frame) for frame in chunk.images], switches, generated_fps))
        self._resumed = time.perf_counter()

    def _switch_event(self, report: stream.SwitchReport) -> dict:
        garments = [self._by_line[line] for line in report.garments if line in self._by_line]
        for garment in garments:
            self.outfit = [g for g in self.outfit if not stream.clashes(g.spec, garment.spec)] + [garment]
        if report.latency is not None:
            self.figures.switch_latencies.append(report.latency)
        return {"type": "switch", "garments": [g.id for g in garments], "frame": report.frame,
                "server_latency_s": report.latency, "outfit": [g.id for g in self.outfit]}

    def _hand_over(self, chunk: Chunk | None) -> None:
        """Queue the chunk for deliver(), waiting while the previous one is still queued."""
        if self._abandoned.is_set() or self.loop.is_closed():
            return
        put = asyncio.run_coroutine_threadsafe(self._chunks.put(chunk), self.loop)
        while True:
            try:
                put.result(timeout=0.2)
                return
            except concurrent.futures.TimeoutError:
                if self._abandoned.is_set() or self.loop.is_closed():
                    put.cancel()
                    return

    # -- the event loop -----------------------------------------------------------------------

    async def deliver(self, send: Send, fps: float) -> None:
        """Send each chunk's switch events, then its frames paced at `fps`, until the stream ends."""
        period = 1.0 / fps
        due = None
        while (chunk := await self._chunks.get()) is not None:
            for event in chunk.switches:
                await send(event)
            await send({"type": "chunk", "start": chunk.start, "frames": len(chunk.jpegs),
                        "generated_fps": chunk.generated_fps})
            for offset, jpeg in enumerate(chunk.jpegs):
                now = self.loop.time()
                due = now if due is None else max(due + period, now)
                if due > now:
                    await asyncio.sleep(due - now)
                await send(frame_message(chunk.start + offset, jpeg))
