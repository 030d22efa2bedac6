"""Reading and writing videos, through imageio-ffmpeg's ffmpeg and nothing else.

Reading: `probe_video` tells a video's size, frame rate and frame count; `read_video`
decodes it as a stream, keeps only the frames the output needs (resampled to a frame rate,
trimmed or looped to a frame count, fitted to a size) and returns them as one uint8 array;
`VideoFrames` gives the same frames lazily, decoded as a stream asks for them.
Writing: `VideoWriter` encodes H.264 (yuv420p, BT.709, crf 18, faststart) with an ffmpeg that dies
with us, to a hidden temp file beside the destination, renamed into place only when the
video is complete.

Every problem with an input file becomes an `InputError` naming the file.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image

from engine.errors import DISK_FULL, DiskFull, InputError, RuntimeFailure
from engine.media.atomic import create_temp_beside, deferred_interrupt, disk_is_full, release_temp, remove_stale_temps
from engine.media.geometry import fit_image
from engine.media.image import require_file

# Encoder settings: H.264 that every player and browser opens, visually lossless (crf 18),
# index at the front (faststart) so playback can start before the download ends, and the
# BT.709 colour matrix applied *and* tagged, so players do not guess BT.601 for HD sizes.
DEFAULT_CRF = 18

_H264_OUTPUT_PARAMS = [
    "-movflags", "+faststart",
    "-vf", "scale=out_color_matrix=bt709:out_range=tv,"
    "setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709:range=tv",
]  # fmt: skip

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


class VideoWriter:
    """Write an MP4 (H.264, yuv420p) atomically, frame by frame.

        with VideoWriter("out.mp4", fps=24, size=(1152, 704)) as writer:
            writer.write(frames)  # (H, W, 3) or (T, H, W, 3) uint8

    Frames go to a hidden temp file `.<name>.<pid>-<random>.tmp.mp4` in the destination
    folder (see engine.media.atomic), which replaces `path` only when the `with` block ends
    cleanly. On any exception, Ctrl-C included, the encoder is killed and the temp file
    deleted, so nothing partial is ever left; except that with keep_partial_on_interrupt=True
    a KeyboardInterrupt finishes the file properly and keeps it (a playable video of
    everything written so far). Entering the block deletes the stale temp files of this
    output that killed runs left behind. The encoder dies with this process, even by SIGKILL.

    Raises InputError when the folder is missing or not writable (on entering the block),
    DiskFull (a RuntimeFailure) when the disk fills up, RuntimeFailure when the encoder
    fails, ValueError for an odd size (yuv420p needs even sides), for frames of the wrong
    shape, or when no frame was written.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        size: tuple[int, int],
        *,
        keep_partial_on_interrupt: bool = False,
        crf: int = DEFAULT_CRF,
    ) -> None:
        width, height = int(size[0]), int(size[1])
        if width < 2 or height < 2 or width % 2 or height % 2:
            raise ValueError(f"video size must be even for yuv420p, got {width}x{height}")
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = Path(path)
        self.fps = fps
        self.size = (width, height)
        self.keep_partial_on_interrupt = keep_partial_on_interrupt
        self.crf = crf
        self.frames_written = 0
        self._temp: Path | None = None
        self._encoder: _Encoder | None = None
        self._failed = False

    def __enter__(self) -> VideoWriter:
        remove_stale_temps(self.path.parent, name=self.path.name)
        self._temp = create_temp_beside(self.path, ".tmp.mp4")
        return self

    def __exit__(self, exc_type, exc, traceback) -> bool:
        if exc_type is None:
            self._commit()
        elif exc_type is KeyboardInterrupt and self._can_keep_partial():
            try:
                self._commit()
            except Exception:  # the interrupt matters more; _commit cleaned up
                pass
        else:
            self._discard()
        return False

    def write(self, frames: np.ndarray) -> None:
        """Append one (H, W, 3) frame or a (T, H, W, 3) batch of uint8 RGB frames."""
        if self._temp is None:
            raise RuntimeError("VideoWriter.write called outside its with block")
        for frame in self._as_batch(frames):
            try:
                self._send(np.ascontiguousarray(frame))
            except OSError as err:  # also: no ffmpeg found, or it cannot start
                self._failed = True
                raise self._failure(err) from err
            except BaseException:
                self._failed = True
                raise
            self.frames_written += 1

    def _send(self, frame: np.ndarray) -> None:
        if self._encoder is None:
            with deferred_interrupt():  # an encoder we do not know of would outlive the clean-up
                self._encoder = _Encoder(self._temp, self.fps, self.size, self.crf)
        self._encoder.send(frame)

    def _as_batch(self, frames: np.ndarray) -> np.ndarray:
        batch = np.asarray(frames)
        if batch.ndim == 3:
            batch = batch[None]
        width, height = self.size
        if batch.ndim != 4 or batch.shape[1:] != (height, width, 3) or batch.dtype != np.uint8:
            raise ValueError(
                f"expected uint8 frames of shape (H, W, 3) or (T, H, W, 3) with "
                f"H={height}, W={width}; got {batch.shape} {batch.dtype}"
            )
        return batch

    def _can_keep_partial(self) -> bool:
        return self.keep_partial_on_interrupt and not self._failed and self.frames_written > 0

    def _commit(self) -> None:
        if self.frames_written == 0:
            self._discard()
            raise ValueError(f"{self.path}: no frames were written")
        try:
            self._encoder.finish()  # a Ctrl-C while ffmpeg finishes discards the file
            with deferred_interrupt():  # renamed and released, or neither
                os.replace(self._temp, self.path)
                release_temp(self._temp, delete=False)
                self._temp = None
        except BaseException as err:
            self._discard()
            if isinstance(err, OSError):
                raise self._failure(err) from err
            raise
        self._encoder = None

    def _discard(self) -> None:
        with deferred_interrupt():  # a second Ctrl-C must not leave the temp file behind
            if self._encoder is not None:
                self._encoder.kill()
                self._encoder = None
            if self._temp is not None:
                release_temp(self._temp, delete=True)
                self._temp = None

    def _failure(self, err: Exception) -> RuntimeFailure:
        # When ffmpeg hits a full disk it dies and we only see a broken pipe, hence the
        # free-space check besides the errno.
        if getattr(err, "errno", None) in DISK_FULL or disk_is_full(self.path.parent):
            return DiskFull(self.path, "writing the video")
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return RuntimeFailure(f"{self.path}: the video encoder failed ({reason})")


def write_video(path: str | Path, frames: np.ndarray, fps: float, crf: int = DEFAULT_CRF) -> None:
    """Write a (T, H, W, 3) uint8 array as an MP4 at `fps` (see VideoWriter)."""
    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise ValueError(f"expected (T, H, W, 3) frames, got shape {frames.shape}")
    with VideoWriter(path, fps, (frames.shape[2], frames.shape[1]), crf=crf) as writer:
        writer.write(frames)


# ---- encoding ----


class _Encoder:
    """One ffmpeg process turning raw RGB frames (on its stdin) into an H.264 MP4 file.

    Started here rather than by imageio-ffmpeg's write_frames, which lets ffmpeg outlive a
    killed tryon (it goes on writing the temp file) and prints ffmpeg's log on our stderr.
    Here ffmpeg gets SIGKILL when this process dies (Linux), runs in its own process group
    (so a Ctrl-C in the terminal reaches only us, and we decide whether it finishes the file),
    and its log goes to an unnamed temporary file, quoted when it fails.
    """

    def __init__(self, path: Path, fps: float, size: tuple[int, int], crf: int) -> None:
        rate = fps if isinstance(fps, Fraction) else Fraction(float(fps)).limit_denominator()
        command = [
            imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size[0]}x{size[1]}", "-r", str(rate), "-i", "-",
            "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(crf), *_H264_OUTPUT_PARAMS, str(path),
        ]  # fmt: skip
        self._log = tempfile.TemporaryFile()
        try:
            self._process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log,
                preexec_fn=_child_setup(), close_fds=True,
            )
        except BaseException:
            self._log.close()
            raise

    def send(self, frame: np.ndarray) -> None:
        try:
            self._process.stdin.write(memoryview(frame).cast("B"))
        except BrokenPipeError:
            self._process.wait()
            raise OSError(errno.EPIPE, f"ffmpeg stopped: {self._first_log_line()}") from None

    def finish(self) -> None:
        """Let ffmpeg flush and finalise the file; OSError if it failed."""
        try:
            self._process.stdin.close()
        except BrokenPipeError:
            pass
        code = self._process.wait()
        message = self._first_log_line()
        self._log.close()
        if code:
            raise OSError(f"ffmpeg exited with code {code}: {message}")

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        try:
            self._process.stdin.close()
        except OSError:
            pass
        self._process.wait()
        self._log.close()

    def _first_log_line(self) -> str:
        """ffmpeg's first complaint (the cause; later lines are consequences), without its `[codec @ 0x...]` tag."""
        self._log.seek(0)
        lines = self._log.read(65536).decode("utf-8", "replace").strip().splitlines()
        return re.sub(r"^(\[[^]]*\]\s*)+", "", lines[0]) if lines else "no message"


def _child_setup() -> Callable[[], None] | None:
    """What the encoder's child process runs before ffmpeg: its own process group, and on Linux
    SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG), checked against a parent that died first."""
    if os.name != "posix":
        return None
    prctl = _libc_prctl()
    parent = os.getpid()

    def setup() -> None:
        os.setpgid(0, 0)
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:  # the parent died before the line above
                os.kill(os.getpid(), signal.SIGKILL)

    return setup


_PR_SET_PDEATHSIG = 1


@functools.cache
def _libc_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


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
