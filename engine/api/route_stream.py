"""`swap`, `extend` and the studio on the public route: the editor and LongLive's student, live.

engine.api.stream runs the stream loop for every model; for a route (`--model public` or a
route folder) it takes its stream from here (engine.pipelines.public.stream): the editor
dresses the photo, the student streams from it, and each switch re-dresses the last shown
frame in the background and lands a chunk or more later.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.checkpoint.public import PUBLIC, LoadedRoute, is_route_source
from engine.checkpoint.public.loading import RouteSource, live_part
from engine.checkpoint.public.route import MAX_ROUTE_GARMENTS, RenderRecord
from engine.checkpoint.public.sizes import GIB, live_memory_problem
from engine.errors import InputError
from engine.pipelines.pipeline_tryon_streaming import StreamConfig
from engine.pipelines.public.stages import dress_photo
from engine.pipelines.public.stream import LiveRouteStream, LiveSettings, redress_frame
from engine.pipelines.runtime import Runtime


def check_live_source(source: str, motion=None) -> None:
    """Before anything loads: a route streams from the prompt (a motion video is an input error),
    and `--model public` needs LongLive converted on this machine (one line saying how)."""
    if not is_route_source(source):
        return
    if motion is not None:
        raise InputError("the public route's live stream (LongLive) is driven by --prompt, not a motion video: drop "
                         "--motion, or use `tryon dance --model public --motion VIDEO` to follow a video")
    if not Path(source).expanduser().is_dir():  # the Hub's `public`: its student is a local conversion
        live_part(RouteSource(PUBLIC, {}, {}, source), "stream")


def load_live_parts(model: LoadedRoute) -> None:
    """Load the student and the Lightning editor now (the studio, so that a missing part fails at start)."""
    model.pipeline.student()
    model.pipeline.editor(lightning=True)


def check_route_garments(count: int) -> None:
    if count > MAX_ROUTE_GARMENTS:
        raise InputError(f"{count} garments worn at once; the public route dresses at most {MAX_ROUTE_GARMENTS}")


def check_gpu_memory(model: LoadedRoute, runtime: Runtime, size: tuple[int, int]) -> None:
    """On a GPU too small for the real route's editor and student together, one line saying so."""
    if model.preset.name != "public" or runtime.device.type != "cuda" or runtime.acceleration.offload != "none":
        return
    device_gib = torch.cuda.get_device_properties(runtime.device).total_memory / GIB
    eight_bit = runtime.acceleration.fp8 or runtime.acceleration.fp8_weights  # both keep the weights in float8
    problem = live_memory_problem(device_gib, eight_bit, size)
    if problem:
        raise InputError(problem)


class LiveRoute:
    """The route set up for live streaming: its student, its editor (with Lightning), their settings."""

    def __init__(self, model: LoadedRoute, runtime: Runtime, size: tuple[int, int]) -> None:
        check_gpu_memory(model, runtime, size)
        self.route = model.pipeline
        record = RenderRecord(lightning=True)  # what --json says of the parts loaded, with their seconds
        with record.timing("edit"):
            self.editor = self.route.editor(lightning=True)
        with record.timing("stream"):
            self.student = self.route.student()
        self.route.last = record
        self.route.live_on_device()
        self.settings = LiveSettings.from_section(self.route.stream_info.stream)
        self.device = runtime.device

    @property
    def config(self) -> StreamConfig:
        return self.settings.stream_config()

    def _edit_options(self, seed: int) -> dict:
        """The editor's settings with Lightning; its own generator for each edit, so that a switch
        never changes the stream's random numbers."""
        preset = self.route.preset
        settings = self.route.edit_settings(lightning=True)
        return dict(steps=settings.steps, true_cfg=settings.guidance, negative_prompt=preset.negative_prompt,
                    generator=torch.Generator(device=self.device).manual_seed(seed), image_area=preset.edit_image_area)

    def dress(self, photo: Image.Image, garments: list[tuple[str, Image.Image]], seed: int) -> np.ndarray:
        """The photo dressed in `garments` by the editor: the stream's first frame, (1, H, W, 3) uint8."""
        return np.asarray(dress_photo(self.editor, photo, garments, photo.size, **self._edit_options(seed)).convert(
            "RGB"))[None]

    def stream(self, *, start: np.ndarray, photo: Image.Image, prompt: str, seed: int,
               show_start: bool) -> LiveRouteStream:
        """The student streaming after the clean frames `start`; switches re-dressed with `photo` as identity."""
        return LiveRouteStream(self.student, start=start, prompt=prompt,
                               generator=torch.Generator(device=self.device).manual_seed(seed),
                               settings=self.settings, redress=partial(self._redress, photo=photo, seed=seed),
                               show_start=show_start)

    def _redress(self, frame: np.ndarray, garments: list[tuple[str, Image.Image]], *, photo: Image.Image,
                 seed: int) -> Image.Image:
        return redress_frame(self.editor, frame, garments, photo=photo, **self._edit_options(seed))
