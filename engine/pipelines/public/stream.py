"""The public route's live stream: LongLive's student streams from a clean frame, the editor re-dresses.

LongLive-2.0-5B (converted by `tryon models convert --from longlive`) is a block-causal
Wan2.2-TI2V-5B student with no condition tokens: it continues clean frames held in its KV
cache, driven by the prompt. So a try-on stream on public weights is "edit, then stream":

- the start: the editor dresses the photo; that frame (or, for `extend`, the video's last
  frames) is prefilled as clean context into the sink, and chunks follow it;
- a switch: the editor re-dresses the last shown frame in the new outfit, with the original
  photo as a second reference image for identity. It runs on a background thread while the
  stream keeps making chunks in the old outfit. Once the edited frame is ready, at the next
  chunk boundary, the sink and history that hold the old outfit are withdrawn, the VAE
  decoder starts afresh, and the edited frame is prefilled as the new sink: the stream
  continues from it. RoPE positions and output frame numbers keep counting.

It is the block-causal stream of engine.pipelines.pipeline_tryon_streaming (one chunk runner,
one KV cache) with the chunking and timesteps of the checkpoint's `stream` section, no
condition pass, and this switch in place of the KV-cache rescheduling of FashionChameleon.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from engine.model.causal_vae import CausalDecoder
from engine.pipelines.pipeline_tryon import TryOnPipeline
from engine.pipelines.pipeline_tryon_streaming import StreamConfig, TryOnStream, warp_timesteps
from engine.pipelines.public.stages import dress_photo, garments_in_pictures
from engine.pipelines.transfer import HostFrames

# (last shown frame uint8 (H, W, 3), the outfit as (role, image) pairs) -> that frame re-dressed, same size
Redress = Callable[[np.ndarray, list[tuple[str, Image.Image]]], Image.Image]


def switch_prompt(roles: list[str]) -> str:
    """The instruction for a switch: picture 1 is the last frame, picture 2 the person's photo, 3.. the garments."""
    return (f"The person in picture 1 now wears {garments_in_pictures(roles, 3)}. Picture 2 is the same person: keep "
            "their face, hair and identity as in picture 2, and the pose, framing and background of picture 1 "
            "exactly; only the clothes change, with the garments' exact colours, patterns, logos and cut.")


def redress_frame(pipeline, frame: np.ndarray, garments: list[tuple[str, Image.Image]], *, photo: Image.Image,
                  steps: int, true_cfg: float, negative_prompt: str, generator: torch.Generator,
                  image_area: int | None = None) -> Image.Image:
    """The editor with the last frame, the person's photo (identity) and the garments: the frame re-dressed,
    at its own size."""
    height, width = frame.shape[:2]
    return dress_photo(pipeline, Image.fromarray(frame), garments, (width, height), steps, true_cfg, negative_prompt,
                       generator, image_area=image_area, references=(photo,),
                       prompt=switch_prompt([role for role, _ in garments]))


@dataclass(frozen=True)
class LiveSettings:
    """A released student's `stream` section as our chunk runner takes it.

    `chunk_frames` latent frames per chunk; `local_window_frames` the frames a chunk's attention
    window spans, itself included, so `window` = the history chunks before it; the sink holds
    the first `sink_frames` clean frames the stream started (or restarted) from (at most a
    chunk); `sigmas` are the timesteps warped by the shift.
    """

    chunk_frames: int
    window: int
    sink_frames: int
    sigmas: tuple[float, ...]

    @classmethod
    def from_section(cls, section: dict) -> LiveSettings:
        chunk = int(section["chunk_frames"])
        window = max(0, math.ceil((int(section["local_window_frames"]) - chunk) / chunk))
        sigmas = warp_timesteps([float(t) for t in section["timesteps"]], float(section["shift"]))
        return cls(chunk, window, min(int(section.get("sink_frames", 1)), chunk), tuple(sigmas))

    def stream_config(self) -> StreamConfig:
        return StreamConfig(chunk_frames=self.chunk_frames, steps=len(self.sigmas), window=self.window,
                            sampler="renoise")


class LiveRouteStream(TryOnStream):
    """Streams after the clean frames `start` (4k+1 uint8 frames at the stream size); `switch`
    re-dresses in the background (module docstring). With `show_start`, the last start frame
    (the dressed photo) is the first frame returned."""

    def __init__(self, pipeline: TryOnPipeline, *, start: np.ndarray, prompt: str, generator: torch.Generator,
                 settings: LiveSettings, redress: Redress, show_start: bool = False) -> None:
        self.settings = settings
        super().__init__(pipeline, reference=Image.fromarray(start[-1]), garments=[], prompt=prompt,
                         generator=generator, context=start, config=settings.stream_config())
        self.redress = redress
        self.start_frame = start[-1] if show_start else None
        self._editor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tryon-redress")
        self._edits: deque[Future] = deque()

    def _write_conditions(self) -> None:
        """LongLive has no condition tokens: what it continues is in its sink and history."""

    def sigmas(self) -> list[float]:
        return list(self.settings.sigmas)

    @torch.no_grad()
    def _prefill(self, latents: torch.Tensor) -> None:
        """Cache clean frames as if generated: the first `sink_frames` as the sink, the rest chunk by
        chunk into the history; then run them through the decoder."""
        sink = self.settings.sink_frames
        self.runner.write_chunk(latents[:, :, :sink], self.position, None)
        self.position += min(sink, latents.shape[2])
        for start in range(sink, latents.shape[2], self.config.chunk_frames):
            chunk = latents[:, :, start : start + self.config.chunk_frames]
            self.runner.write_chunk(chunk, self.position, None)
            self.position += chunk.shape[2]
        self._decode(latents)

    @torch.no_grad()
    def next_chunk_frames(self, max_frames: int | None = None) -> HostFrames:
        """The next chunk; the first one is led by the start frame (shown once, as frame 0)."""
        if self.start_frame is None:
            return super().next_chunk_frames(max_frames)
        first, self.start_frame = self.start_frame[None], None
        self.frames_made += 1
        if max_frames != 1:
            first = np.concatenate([first, super().next_chunk_frames(None if max_frames is None else max_frames - 1)])
        return HostFrames(torch.from_numpy(first), torch.tensor(True))

    # -- switches -----------------------------------------------------------------------------

    def switch(self, garments: list[tuple[str, Image.Image]]) -> None:
        """Start re-dressing the last shown frame in `garments` (the whole new outfit); the stream
        goes on in the old one until `land_switches` finds the edit done."""
        self._edits.append(self._editor.submit(self.redress, self.last_frame.copy(), garments))

    @property
    def edits_pending(self) -> int:
        return len(self._edits)

    def wait_for_edits(self) -> None:
        """Block until every edit started has finished (tests, and a stream that must not end before its switches land)."""
        for edit in list(self._edits):
            edit.exception()

    def land_switches(self) -> int:
        """Restart from every finished edit, oldest first (between chunks); how many landed.
        An edit that failed raises its error here."""
        landed = 0
        while self._edits and self._edits[0].done():
            frame = np.asarray(self._edits.popleft().result().convert("RGB"))
            self.restart_from(frame)
            landed += 1
        return landed

    @torch.no_grad()
    def restart_from(self, frame: np.ndarray) -> None:
        """Withdraw the sink and history (the old outfit), start the decoder afresh, prefill `frame`
        (uint8 (H, W, 3) at the stream size) as the new sink at the next RoPE position."""
        height, width = self.last_frame.shape[:2]
        if frame.shape[:2] != (height, width):
            raise ValueError(f"the re-dressed frame is {frame.shape[1]}x{frame.shape[0]}, the stream {width}x{height}")
        self.withdraw_history()
        self.decoder = CausalDecoder(self.pipeline.vae)
        self._prefill(self.pipeline.encode_frames(frame[None]))
        self._last = frame[None]

    def close(self) -> None:
        """Let the editor thread go (an edit in progress finishes, its result is dropped)."""
        self._editor.shutdown(wait=False, cancel_futures=True)
        super().close()
