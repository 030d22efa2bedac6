"""Reading videos, through imageio-ffmpeg's ffmpeg and nothing else.

`probe_video` tells a video's size, frame rate and frame count; `read_video` decodes it as a
stream, keeps only the frames the output needs (resampled to a frame rate, trimmed or looped
to a frame count, fitted to a size) and returns them as one uint8 array; `VideoFrames` gives
the same frames lazily, decoded as a stream asks for them. (Writing: engine.media.video_writer.)

Every problem with an input file becomes an `InputError` naming the file.
"""

from __future__ import annotations

import logging
import math
import re
import subprocess
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image

from engine.errors import InputError
from engine.media.geometry import fit_image
from engine.media.image import require_file

# Files PIL recognises as one still picture: ffmpeg would happily read them as a
# one-frame "video", which is never what the user meant.
_STILL_IMAGE_FORMATS = {"PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "JPEG2000", "ICO", "PPM"}


class _SkipRotationNotice(logging.Filter):
    """imageio-ffmpeg warns whenever ffmpeg rotates a phone video upright; that is expected."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is different from the source frame size" not in record.getMessage()


logging.getLogger("imageio_ffmpeg").addFilter(_SkipRotationNotice())


@dataclass(frozen=True)
class VideoInfo:
    """What `probe_video` finds: displayed size (after rotation), frame rate, frame count."""

    width: int
    height: int
    fps: float
    frame_count: int

    @property
    def duration(self) -> float:
        """Length in seconds: frame_count / fps."""
        return self.frame_count / self.fps


def probe_video(path: str | Path) -> VideoInfo:
    """Read a video's size, frame rate and exact frame count (this decodes the video once)."""
    path = _require_video_file(path)
    with _decoder(path) as (meta, _frames):
        width, height = meta["size"]
        fps = _source_fps(meta, path)
    try:
        frame_count, _seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
    except RuntimeError as err:
        raise InputError("truncated or corrupt video (ffmpeg could not decode it)", path) from err
    if not frame_count:
        raise InputError("has no frames", path)
    _check_complete(meta, frame_count, path)
    return VideoInfo(width, height, fps, frame_count)


def video_fps(path: str | Path) -> float:
    """A video's frame rate, from its header (nothing is decoded)."""
    path = _require_video_file(path)
    with _decoder(path) as (meta, _frames):
        return _source_fps(meta, path)


def resample_indices(
    source_count: int,
    source_fps: float,
    target_fps: float,
    count: int,
    loop: bool = True,
) -> list[int]:
    """Which source frame each of `count` output frames shows.

    Output frame i is shown at time i / target_fps and shows the source frame nearest to
    that time: i * source_fps / target_fps rounded to the nearest integer, exact halves
    rounded down. Past the last source frame the source either loops from its first frame
    (loop=True: the index modulo source_count) or holds its last frame (loop=False).

    For example 25 -> 24 fps shows source frames 0, 1, ..., 12, 14, 15, ... (13 is dropped,
    because output frame 13 at 0.5417 s is nearest to source frame 14 at 0.56 s).
    """
    if source_count < 1:
        raise ValueError(f"source_count must be at least 1, got {source_count}")
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")
    step = _fraction(source_fps) / _fraction(target_fps)
    indices = (_nearest_source_index(i, step) for i in range(count))
    if loop:
        return [index % source_count for index in indices]
    return [min(index, source_count - 1) for index in indices]


def read_video(
    path: str | Path,
    *,
    fps: float | None = None,
    num_frames: int | None = None,
    size: tuple[int, int] | None = None,
    fit: str = "cover",
    min_frames: int = 1,
) -> np.ndarray:
    """Decode a video into a (T, H, W, 3) uint8 RGB array.

    - fps: resample to this frame rate (see `resample_indices`); default the source's.
    - num_frames: exactly this many output frames, trimming the video or looping it from
      the start; default: ceil(source frames * fps / source fps), the output frames whose
      time lies inside the source (the last frame is held, never looped).
    - size: fit every frame to this (width, height) with `fit` ("cover" or "contain").
    - min_frames: fewer decodable source frames than this is an InputError.

    Frames are decoded as a stream and only those the output shows are kept, so a long
    video is never held in memory whole; decoding stops once the last needed frame is read.
    Raises InputError for a missing, empty, non-video or truncated file.
    """
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if num_frames is not None and num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if fit not in ("cover", "contain"):
        raise ValueError(f"fit must be 'cover' or 'contain', got {fit!r}")
    path = _require_video_file(path)
    prepare = _frame_preparer(size, fit)

    with _decoder(path) as (meta, frames):
        source_fps = _source_fps(meta, path)
        target_fps = fps or source_fps
        step = _fraction(source_fps) / _fraction(target_fps)
        wanted = (_nearest_source_index(i, step) for i in _output_numbers(num_frames))
        kept, decoded, reached_end = _keep_wanted(frames, wanted, min_frames, prepare)

    if reached_end:
        if decoded == 0:
            raise InputError("has no frames", path)
        _check_complete(meta, decoded, path)
    if decoded < min_frames:
        plural = "frame" if decoded == 1 else "frames"
        raise InputError(f"has {decoded} {plural}; at least {min_frames} are needed", path)

    if num_frames is None:
        count = math.ceil(decoded / step)  # the output frames whose time lies in the source
        indices = resample_indices(decoded, source_fps, target_fps, count, loop=False)
    elif reached_end:
        indices = resample_indices(decoded, source_fps, target_fps, num_frames, loop=True)
    else:  # stopped early: every index the output needs exists, no looping
        indices = [_nearest_source_index(i, step) for i in range(num_frames)]

    missing = set(indices) - kept.keys()
    if missing:  # looping needs frames that the first pass skipped; the video is short
        kept.update(_decode_selected(path, missing, prepare))
    return np.stack([kept[index] for index in indices])


class VideoFrames:
    """The frames `read_video(path, fps=, num_frames=, size=, fit=)` returns, decoded only when asked for.

    For streams, which ask for output frames in ascending order, a range at a time: one ffmpeg
    decoder runs forward through the file (a fresh one whenever a short video loops back to its
    start), and only the frames of the current request are held, so a long motion video never
    sits in memory whole. Index it like that array, with a list or array of output indices.
    The file is checked when this is made (`probe_video`, unless its `info` is given); close
    it, or use it in `with`.
    """

    def __init__(self, path: str | Path, *, fps: float, num_frames: int, size: tuple[int, int] | None = None,
                 fit: str = "cover", info: VideoInfo | None = None) -> None:
        info = info or probe_video(path)
        self.path = _require_video_file(path)
        self.num_frames = num_frames
        self._source_count = info.frame_count
        self._step = _fraction(info.fps) / _fraction(fps)
        self._prepare = _frame_preparer(size, fit)
        self._decoding = ExitStack()
        self._frames: Iterator[np.ndarray] | None = None
        self._position = 0  # the source index of the frame the decoder yields next
        self._last: tuple[int, np.ndarray] | None = None  # the latest prepared frame, by source index

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, indices) -> np.ndarray:
        """The output frames at `indices` (ascending within a loop of the source), as (N, H, W, 3)."""
        return np.stack([self._frame(self._source_index(int(i))) for i in np.atleast_1d(indices)])

    def _source_index(self, output_index: int) -> int:
        if not 0 <= output_index < self.num_frames:
            raise IndexError(f"output frame {output_index} of {self.num_frames}")
        return _nearest_source_index(output_index, self._step) % self._source_count  # loops, as read_video

    def _frame(self, index: int) -> np.ndarray:
        if self._last is not None and self._last[0] == index:
            return self._last[1]
        if self._frames is None or index < self._position:
            self._restart()
        frame = None
        while self._position <= index:
            frame = next(self._frames, None)
            if frame is None:
                raise InputError(f"truncated or corrupt video (frame {index} could not be read)", self.path)
            self._position += 1
        self._last = (index, self._prepare(frame))
        return self._last[1]

    def _restart(self) -> None:
        self._decoding.close()
        _meta, self._frames = self._decoding.enter_context(_decoder(self.path))
        self._position = 0

    def close(self) -> None:
        """Stop the decoder."""
        self._decoding.close()
        self._frames = None

    def __enter__(self) -> VideoFrames:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# ---- decoding ----


def _require_video_file(path: str | Path) -> Path:
    path = require_file(path)
    image_format = _still_image_format(path)
    if image_format is not None:
        raise InputError(f"not a video (it is a {image_format} image)", path)
    if _looks_like_text(path):
        raise InputError("not a video (it looks like text)", path)
    return path


def _looks_like_text(path: Path) -> bool:
    with open(path, "rb") as file:
        head = file.read(1024)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\0" not in head  # every video container starts with binary fields


def _still_image_format(path: Path) -> str | None:
    """The PIL format name if `path` holds a single still image, else None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                if image.format in _STILL_IMAGE_FORMATS and getattr(image, "n_frames", 1) <= 1:
                    return image.format
    except Exception:  # not something PIL knows: let ffmpeg judge it
        return None
    return None


@contextmanager
def _decoder(path: Path) -> Iterator[tuple[dict, Iterator[np.ndarray]]]:
    """Open ffmpeg on `path`: yields its header info and an iterator of (H, W, 3) frames."""
    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        try:
            meta = next(reader)
        except OSError as err:
            raise InputError(_unreadable_problem(str(err)), path) from err
        except Exception as err:  # ffmpeg printed something imageio-ffmpeg cannot parse
            raise InputError("not a video (ffmpeg could not read its header)", path) from err
        yield meta, _frames(reader, meta, path)
    finally:
        reader.close()


def _frames(reader: Iterator[bytes], meta: dict, path: Path) -> Iterator[np.ndarray]:
    width, height = meta["size"]
    try:
        for data in reader:
            yield np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)
    except RuntimeError as err:  # ffmpeg stopped in the middle of a frame
        raise InputError("truncated or corrupt video (a frame could not be read)", path) from err


def _unreadable_problem(ffmpeg_log: str) -> str:
    """One line saying why ffmpeg produced no frame, from its log."""
    if "Input #0" in ffmpeg_log and " Video:" in ffmpeg_log:
        return "has no frames (ffmpeg found a video stream but could not decode any frame)"
    if "Input #0" in ffmpeg_log:
        return "not a video (it has no video stream)"
    if "moov atom not found" in ffmpeg_log:
        return "not a video, or a truncated one (its index, the 'moov atom', is missing)"
    if "Permission denied" in ffmpeg_log:
        return "cannot read the file (permission denied)"
    return "not a video (ffmpeg could not read it)"


def _source_fps(meta: dict, path: Path) -> float:
    fps = float(meta.get("fps") or 0) or _header_fps(path)
    if fps <= 0:
        raise InputError("not a usable video (its frame rate is unknown)", path)
    return fps


def _header_fps(path: Path) -> float:
    """The frame rate in ffmpeg's description of the video stream, 0 if none.

    For rates imageio-ffmpeg cannot parse: from 1000 fps up, ffmpeg writes `1k fps`.
    """
    try:
        done = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                              capture_output=True, text=True, errors="replace", timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return 0.0
    for line in done.stderr.splitlines():
        match = re.search(r"Stream #.*Video:.* (\d+(?:\.\d+)?)(k?) fps", line)
        if match:
            return float(match[1]) * (1000 if match[2] else 1)
    return 0.0


def _check_complete(meta: dict, decoded: int, path: Path) -> None:
    """Raise InputError when far fewer frames decode than the container's duration promises.

    ffmpeg stops quietly where a file was cut off, but the duration in the header still
    tells the whole length. The container's duration is that of its longest stream, so
    files with an audio stream (which may outlast the picture) are not judged.
    """
    if "audio_codec" in meta:
        return
    expected = float(meta.get("duration") or 0) * float(meta.get("fps") or 0)
    if decoded < 0.95 * expected - 2:
        raise InputError(
            f"truncated or corrupt video (only {decoded} of about {round(expected)} "
            "frames could be decoded)",
            path,
        )


def _frame_preparer(
    size: tuple[int, int] | None, fit: str
) -> Callable[[np.ndarray], np.ndarray]:
    if size is None:
        return lambda frame: frame
    return lambda frame: np.asarray(fit_image(Image.fromarray(frame), size, fit))


def _keep_wanted(
    frames: Iterator[np.ndarray],
    wanted: Iterator[int],
    min_frames: int,
    prepare: Callable[[np.ndarray], np.ndarray],
) -> tuple[dict[int, np.ndarray], int, bool]:
    """Keep the frames whose index `wanted` (ascending, repeats allowed) names.

    Returns the kept frames by index, how many frames were decoded, and whether the video
    ended (False when decoding stopped early because nothing more was wanted).
    """
    kept: dict[int, np.ndarray] = {}
    next_wanted = next(wanted, None)
    decoded = 0
    for index, frame in enumerate(frames):
        decoded = index + 1
        if index == next_wanted:
            kept[index] = prepare(frame)
            while next_wanted == index:
                next_wanted = next(wanted, None)
        if next_wanted is None and decoded >= min_frames:
            return kept, decoded, False
    return kept, decoded, True


def _decode_selected(
    path: Path, indices: set[int], prepare: Callable[[np.ndarray], np.ndarray]
) -> dict[int, np.ndarray]:
    selected: dict[int, np.ndarray] = {}
    last = max(indices)
    with _decoder(path) as (_meta, frames):
        for index, frame in enumerate(frames):
            if index in indices:
                selected[index] = prepare(frame)
            if index >= last:
                break
    return selected


def _output_numbers(num_frames: int | None) -> Iterator[int]:
    index = 0
    while num_frames is None or index < num_frames:
        yield index
        index += 1


def _nearest_source_index(output_index: int, step: Fraction) -> int:
    # Nearest integer to output_index * step with halves rounded down, exactly.
    return math.ceil(output_index * step - Fraction(1, 2))


def _fraction(fps: float) -> Fraction:
    # Recovers NTSC rates (29.97... -> 30000/1001) so that exact halves stay exact.
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return Fraction(fps).limit_denominator(10_000)
