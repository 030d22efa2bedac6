"""engine.media.video_writer: atomic MP4 writing, and what is left after failures and Ctrl-C."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import engine.media.video_writer as video_module
from engine.errors import InputError, RuntimeFailure
from engine.media.video_reader import VideoInfo, probe_video, read_video
from engine.media.video_writer import VideoWriter, write_video

# ---- round trip ----


def test_write_probe_read_round_trip(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (200, 120, 40), (30, 30, 30), (250, 250, 250)]
    frames = np.stack([np.full((48, 64, 3), colour, np.uint8) for colour in colours])
    path = tmp_path / "colours.mp4"
    write_video(path, frames, fps=24)

    info = probe_video(path)
    assert info == VideoInfo(width=64, height=48, fps=24.0, frame_count=6)
    assert info.duration == pytest.approx(0.25)

    decoded = read_video(path)
    assert decoded.shape == (6, 48, 64, 3) and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - frames.astype(int)).max() <= 6


def test_writer_accepts_single_frames_and_batches(tmp_path, make_frames, read_numbers):
    frames = make_frames(5)
    path = tmp_path / "mixed.mp4"
    with VideoWriter(path, fps=12, size=(64, 64)) as writer:
        writer.write(frames[0])
        writer.write(frames[1:])
        assert writer.frames_written == 5
    assert probe_video(path).fps == 12
    assert read_numbers(read_video(path)) == [0, 1, 2, 3, 4]


def test_writer_takes_numpy_fps(tmp_path, make_frames):
    path = tmp_path / "np.mp4"
    write_video(path, make_frames(2), fps=np.float32(12.5))
    assert probe_video(path).fps == 12.5


def test_writer_replaces_an_existing_file(tmp_path, make_frames):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"old junk")
    write_video(path, make_frames(3), fps=24)
    assert probe_video(path).frame_count == 3


# ---- writer: nothing partial is left ----


def _folder_listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_an_exception_leaves_no_file_and_no_temp_file(tmp_path, make_frames):
    path = tmp_path / "out.mp4"
    with pytest.raises(ZeroDivisionError):
        with VideoWriter(path, fps=24, size=(64, 64)) as writer:
            writer.write(make_frames(3))
            assert len(_folder_listing(tmp_path)) == 1  # the hidden temp file
            assert _folder_listing(tmp_path)[0].startswith(".out.mp4.")
            assert _folder_listing(tmp_path)[0].endswith(".tmp.mp4")
            1 / 0
    assert _folder_listing(tmp_path) == []


def test_an_interrupt_without_keep_partial_leaves_nothing(tmp_path, make_frames):
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(tmp_path / "out.mp4", fps=24, size=(64, 64)) as writer:
            writer.write(make_frames(3))
            raise KeyboardInterrupt
    assert _folder_listing(tmp_path) == []


def test_keep_partial_on_interrupt_leaves_a_playable_file(tmp_path, make_frames, read_numbers):
    path = tmp_path / "stream.mp4"
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(path, fps=24, size=(64, 64), keep_partial_on_interrupt=True) as writer:
            writer.write(make_frames(4))
            raise KeyboardInterrupt
    assert _folder_listing(tmp_path) == ["stream.mp4"]
    assert probe_video(path).frame_count == 4
    assert read_numbers(read_video(path)) == [0, 1, 2, 3]


def test_keep_partial_still_discards_on_other_errors(tmp_path, make_frames):
    with pytest.raises(ValueError, match="boom"):
        with VideoWriter(tmp_path / "s.mp4", 24, (64, 64), keep_partial_on_interrupt=True) as w:
            w.write(make_frames(2))
            raise ValueError("boom")
    assert _folder_listing(tmp_path) == []


def test_a_full_disk_is_a_runtime_failure_and_leaves_nothing(tmp_path, make_frames, monkeypatch):
    real_send = VideoWriter._send

    def send_until_the_disk_is_full(self, frame):
        if self.frames_written >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_send(self, frame)

    monkeypatch.setattr(VideoWriter, "_send", send_until_the_disk_is_full)
    path = tmp_path / "out.mp4"
    with pytest.raises(RuntimeFailure) as caught:
        with VideoWriter(path, fps=24, size=(64, 64)) as writer:
            writer.write(make_frames(5))
    assert str(caught.value) == f"{path}: disk full while writing the video"
    assert writer.frames_written == 2
    assert _folder_listing(tmp_path) == []


def test_a_failing_encoder_is_a_runtime_failure_and_leaves_nothing(
    tmp_path, make_frames, monkeypatch
):
    def broken_pipe(self, frame):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(VideoWriter, "_send", broken_pipe)
    monkeypatch.setattr(video_module, "disk_is_full", lambda folder: False)
    with pytest.raises(RuntimeFailure, match="the video encoder failed"):
        with VideoWriter(tmp_path / "out.mp4", fps=24, size=(64, 64)) as writer:
            writer.write(make_frames(1))
    assert _folder_listing(tmp_path) == []


ENCODE_THEN_HANG = """
import sys, time
import numpy as np
from engine.media import VideoWriter
writer = VideoWriter(sys.argv[1], fps=24, size=(64, 64)).__enter__()
writer.write(np.zeros((3, 64, 64, 3), np.uint8))
print(writer._encoder._process.pid, writer._temp, flush=True)
time.sleep(60)
"""


def _gone(pid: int) -> bool:
    """Whether a process (not our child) has exited: no /proc entry, or a zombie awaiting its reaper."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_the_encoder_dies_with_a_killed_writer_and_the_next_writer_removes_its_temp(tmp_path):
    path = tmp_path / "out.mp4"
    writer = subprocess.Popen([sys.executable, "-c", ENCODE_THEN_HANG, str(path)], stdout=subprocess.PIPE, text=True)
    encoder_pid, temp = writer.stdout.readline().split()
    writer.kill()
    writer.wait()
    deadline = time.monotonic() + 10
    while not _gone(int(encoder_pid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _gone(int(encoder_pid))
    # Killed with us, ffmpeg never finished the file: had it outlived us, it would have
    # written a complete video from the frames it had.
    with pytest.raises(InputError):
        probe_video(temp)
    assert _folder_listing(tmp_path) == [Path(temp).name]
    write_video(path, np.zeros((2, 64, 64, 3), np.uint8), 24)
    assert _folder_listing(tmp_path) == ["out.mp4"]


def test_ffmpegs_own_log_never_reaches_stderr(tmp_path, capfd):
    with pytest.raises(RuntimeFailure, match="invalid width x height") as caught:
        with VideoWriter(tmp_path / "wide.mp4", fps=24, size=(16400, 2)) as writer:  # too wide for libx264
            writer.write(np.zeros((2, 2, 16400, 3), np.uint8))
    assert "\n" not in str(caught.value)
    assert capfd.readouterr().err == ""
    assert _folder_listing(tmp_path) == []


def _interrupt_after(function):
    """`function`, followed by a real SIGINT (a Ctrl-C) as soon as it returns."""
    def wrapped(*args, **kwargs):
        result = function(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)
        return result
    return wrapped


def test_ctrl_c_as_the_encoder_starts_leaves_no_temp_file(tmp_path, make_frames, monkeypatch):
    started = []

    def popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    real_popen = subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", _interrupt_after(popen))
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(tmp_path / "out.mp4", fps=24, size=(64, 64)) as writer:
            writer.write(make_frames(3))
    monkeypatch.undo()
    started[0].wait(timeout=10)  # an encoder left running could still create the file
    assert _folder_listing(tmp_path) == []


@pytest.mark.parametrize("moment", ["finish", "replace", "kill"])
def test_ctrl_c_while_the_file_is_finished_leaves_no_temp_file(tmp_path, make_frames, monkeypatch, moment):
    if moment == "finish":
        monkeypatch.setattr(video_module._Encoder, "finish", _interrupt_after(video_module._Encoder.finish))
    elif moment == "replace":
        monkeypatch.setattr(video_module.os, "replace", _interrupt_after(os.replace))
    else:  # a second Ctrl-C while the first one's clean-up kills the encoder
        monkeypatch.setattr(video_module._Encoder, "kill", _interrupt_after(video_module._Encoder.kill))
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(tmp_path / "out.mp4", fps=24, size=(64, 64)) as writer:
            writer.write(make_frames(3))
            if moment == "kill":
                raise KeyboardInterrupt
    listing = _folder_listing(tmp_path)
    assert listing == (["out.mp4"] if moment == "replace" else [])  # renamed before the Ctrl-C: complete
    if listing:
        assert probe_video(tmp_path / "out.mp4").frame_count == 3


def test_closing_without_frames_is_an_error_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        with VideoWriter(tmp_path / "out.mp4", fps=24, size=(64, 64)):
            pass
    assert _folder_listing(tmp_path) == []


def test_frames_of_the_wrong_shape_are_refused_and_leave_nothing(tmp_path):
    with pytest.raises(ValueError, match="H=64, W=64"):
        with VideoWriter(tmp_path / "out.mp4", fps=24, size=(64, 64)) as writer:
            writer.write(np.zeros((64, 32, 3), np.uint8))
    assert _folder_listing(tmp_path) == []


@pytest.mark.parametrize("size", [(63, 64), (64, 31), (0, 64)])
def test_odd_sizes_are_refused(tmp_path, size):
    with pytest.raises(ValueError, match="even"):
        VideoWriter(tmp_path / "out.mp4", fps=24, size=size)


# ---- writer: output folder problems ----


def test_a_missing_output_folder_names_the_folder(tmp_path):
    folder = tmp_path / "not here"
    with pytest.raises(InputError) as caught:
        with VideoWriter(folder / "out.mp4", fps=24, size=(64, 64)):
            pass
    assert str(caught.value) == f"{folder}: folder does not exist"


def test_an_output_folder_that_is_a_file_names_it(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    with pytest.raises(InputError) as caught:
        write_video(not_a_folder / "out.mp4", np.zeros((1, 8, 8, 3), np.uint8), fps=24)
    assert str(caught.value) == f"{not_a_folder}: is not a folder"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_a_read_only_output_folder_names_the_folder(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(InputError) as caught:
            write_video(folder / "out.mp4", np.zeros((1, 8, 8, 3), np.uint8), fps=24)
        assert str(caught.value).startswith(f"{folder}: cannot write to this folder")
    finally:
        folder.chmod(0o700)


def test_a_permission_error_on_the_output_folder_names_the_folder(tmp_path, monkeypatch):
    # The same as above, simulated, because root may write anywhere.
    folder = tmp_path / "locked"
    folder.mkdir()
    real_open = os.open

    def denied(path, *args, **kwargs):
        if Path(path).parent == folder:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(InputError) as caught:
        write_video(folder / "out.mp4", np.zeros((1, 8, 8, 3), np.uint8), fps=24)
    assert str(caught.value) == f"{folder}: cannot write to this folder (Permission denied)"


def test_paths_with_spaces_and_non_ascii_characters(tmp_path, make_frames, read_numbers):
    folder = tmp_path / "vidéos été 動画"
    folder.mkdir()
    path = folder / "my clip ü.mp4"
    write_video(path, make_frames(3), fps=24)
    assert probe_video(path).frame_count == 3
    assert read_numbers(read_video(path, num_frames=3)) == [0, 1, 2]
    assert _folder_listing(folder) == ["my clip ü.mp4"]


# ---- writer thread ----


def test_a_writer_thread_writes_the_same_bytes_as_the_callers_thread(tmp_path, make_frames):
    frames = np.random.default_rng(0).integers(0, 256, (9, 48, 64, 3), dtype=np.uint8)
    for name, queue in (("direct.mp4", 0), ("threaded.mp4", 2)):
        with VideoWriter(tmp_path / name, fps=24, size=(64, 48), queue=queue) as writer:
            for batch in (frames[:1], frames[1:5], frames[5], frames[6:]):
                writer.write(batch)
        assert writer.frames_written == 9
    assert (tmp_path / "direct.mp4").read_bytes() == (tmp_path / "threaded.mp4").read_bytes()


class SlowFrames:
    """Frames that take a while to arrive (as a chunk copied from the GPU): np.asarray waits for them."""

    def __init__(self, frames: np.ndarray, waited: list) -> None:
        self.frames, self.waited = frames, waited

    def __array__(self, dtype=None, copy=None):
        time.sleep(0.05)
        self.waited.append(threading.current_thread().name)
        return self.frames


def test_frames_handed_over_are_materialised_on_the_writer_thread_in_order(tmp_path, make_frames, read_numbers):
    waited = []
    with VideoWriter(tmp_path / "out.mp4", fps=24, size=(64, 64), queue=1) as writer:
        for batch in np.split(make_frames(6), 3):
            writer.write(SlowFrames(batch, waited))
    assert read_numbers(read_video(tmp_path / "out.mp4")) == list(range(6))
    assert waited and all(name.startswith("write ") for name in waited)


def test_ctrl_c_with_a_writer_thread_keeps_every_frame_handed_over_playable(tmp_path, make_frames, read_numbers):
    frames = make_frames(6)
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(tmp_path / "out.mp4", fps=24, size=(64, 64), keep_partial_on_interrupt=True,
                         queue=2) as writer:
            writer.write(frames[:2])
            writer.write(frames[2:4])
            raise KeyboardInterrupt  # as Ctrl-C mid-stream: the queue still holds frames
    assert writer.frames_written == 4
    assert read_numbers(read_video(tmp_path / "out.mp4")) == [0, 1, 2, 3]
    assert _folder_listing(tmp_path) == ["out.mp4"]


def test_an_error_on_the_writer_thread_reaches_the_caller_and_leaves_nothing(tmp_path, make_frames):
    with pytest.raises(ValueError, match="expected uint8 frames"):
        with VideoWriter(tmp_path / "out.mp4", fps=24, size=(64, 64), queue=1) as writer:
            writer.write(make_frames(2))
            writer.write(np.zeros((1, 8, 8, 3), dtype=np.uint8))  # the wrong size, found on the thread
            for _ in range(20):
                writer.write(make_frames(1))
                time.sleep(0.01)
    assert _folder_listing(tmp_path) == []
