"""Writing videos: `VideoWriter` encodes H.264 (yuv420p, BT.709, crf 18, faststart) with an
ffmpeg that dies with us, to a hidden temp file beside the destination, renamed into place only
when the video is complete. (Reading: engine.media.video_reader.)
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from queue import Queue
from typing import Any

import imageio_ffmpeg
import numpy as np

from engine.errors import DISK_FULL, DiskFull, RuntimeFailure
from engine.media.atomic import create_temp_beside, deferred_interrupt, disk_is_full, release_temp, remove_stale_temps

# Encoder settings: H.264 that every player and browser opens, visually lossless (crf 18),
# index at the front (faststart) so playback can start before the download ends, and the
# BT.709 colour matrix applied *and* tagged, so players do not guess BT.601 for HD sizes.
DEFAULT_CRF = 18

_H264_OUTPUT_PARAMS = [
    "-movflags", "+faststart",
    "-vf", "scale=out_color_matrix=bt709:out_range=tv,"
    "setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709:range=tv",
]  # fmt: skip


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

    `queue` > 0: frames are encoded on a writer thread, behind a queue of that many `write`
    calls (a producer that gets ahead waits); `write` returns at once and takes anything
    `np.asarray` turns into frames — such as a chunk still being copied from the GPU, which the
    thread waits for. The bytes and their order are those of the same writes on the caller's
    thread. An error on the thread is raised by the next `write`, or when the block ends. On
    Ctrl-C the frames already handed over are still written before the file is finished.
    `on_written` is called once each `write`'s frames are with the encoder (on the thread that
    sent them): a benchmark's view of when the user's file got them.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        size: tuple[int, int],
        *,
        keep_partial_on_interrupt: bool = False,
        crf: int = DEFAULT_CRF,
        queue: int = 0,
        on_written: Callable[[], None] | None = None,
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
        self._queue: Queue | None = Queue(maxsize=queue) if queue > 0 else None
        self._thread: threading.Thread | None = None
        self._thread_error: BaseException | None = None
        self._drop_queued = False  # the video is being discarded: the thread only empties the queue
        self._on_written = on_written

    def __enter__(self) -> VideoWriter:
        remove_stale_temps(self.path.parent, name=self.path.name)
        self._temp = create_temp_beside(self.path, ".tmp.mp4")
        if self._queue is not None:
            self._thread = threading.Thread(target=self._drain, name=f"write {self.path.name}", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type, exc, traceback) -> bool:
        keeps_queued = exc_type is None or (exc_type is KeyboardInterrupt and self.keep_partial_on_interrupt)
        error = self._stop_thread(keep_queued=keeps_queued)
        if error is not None and exc_type is None:
            self._discard()
            raise error
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

    def write(self, frames: Any) -> None:
        """Append one (H, W, 3) frame or a (T, H, W, 3) batch of uint8 RGB frames."""
        if self._temp is None:
            raise RuntimeError("VideoWriter.write called outside its with block")
        if self._queue is None:
            self._write_now(frames)
            return
        if self._thread_error is not None:
            raise self._thread_error
        # ffmpeg is started here, not on the writer thread: it is killed when the thread that
        # started it ends (PR_SET_PDEATHSIG follows the thread), and the writer thread ends first.
        self._guarded(self._start_encoder)
        self._queue.put(frames)

    def _drain(self) -> None:
        """The writer thread: write what the queue holds, in order, until it holds None."""
        while (frames := self._queue.get()) is not None:
            if self._thread_error is not None or self._drop_queued:
                continue  # keep emptying the queue, so that no producer waits on it
            try:
                self._write_now(frames)
            except BaseException as error:  # raised again on the caller's thread
                self._thread_error = error

    def _stop_thread(self, keep_queued: bool) -> BaseException | None:
        """Let the writer thread finish (writing what is queued, or dropping it); its error, if any."""
        if self._thread is None:
            return None
        self._drop_queued = not keep_queued
        with deferred_interrupt():  # a second Ctrl-C must not leave the thread writing into the temp file
            self._queue.put(None)
            self._thread.join()
        self._thread = None
        return self._thread_error

    def _write_now(self, frames: Any) -> None:
        for frame in self._as_batch(frames):
            self._guarded(self._send, np.ascontiguousarray(frame))
            self.frames_written += 1
        if self._on_written is not None:
            self._on_written()

    def _guarded(self, step: Callable[..., None], *args: Any) -> None:
        """Run one step of writing; any failure marks the writer failed (OSError: as a RuntimeFailure)."""
        try:
            step(*args)
        except OSError as err:  # also: no ffmpeg found, or it cannot start
            self._failed = True
            raise self._failure(err) from err
        except BaseException:
            self._failed = True
            raise

    def _start_encoder(self) -> None:
        if self._encoder is None:
            with deferred_interrupt():  # an encoder we do not know of would outlive the clean-up
                self._encoder = _Encoder(self._temp, self.fps, self.size, self.crf)

    def _send(self, frame: np.ndarray) -> None:
        self._start_encoder()
        self._encoder.send(frame)

    def _as_batch(self, frames: Any) -> np.ndarray:
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
