"""engine.media.video_reader: probing, reading and lazily decoding videos."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import engine.media.video_reader as video_module
from engine.errors import InputError
from engine.media.video_reader import (
    VideoFrames,
    VideoInfo,
    probe_video,
    read_video,
    resample_indices,
)
from engine.media.video_writer import write_video

# ---- resample_indices ----


def test_25_to_24_fps_drops_one_frame_in_25():
    assert resample_indices(100, 25, 24, 25) == list(range(13)) + list(range(14, 26))


def test_24_to_25_fps_repeats_one_frame_in_24():
    assert resample_indices(100, 24, 25, 26) == list(range(13)) + list(range(12, 25))


def test_exact_halves_round_down():
    # 2 -> 4 fps: output frames 1 and 3 fall exactly between two source frames.
    assert resample_indices(10, 2, 4, 6) == [0, 0, 1, 1, 2, 2]


def test_ntsc_rates_keep_their_exact_halves():
    # 29.97 -> 23.976 is 30 -> 24 slowed down by 1001/1000: the same frames, halves included.
    ntsc = resample_indices(100, 30000 / 1001, 24000 / 1001, 12)
    assert ntsc == resample_indices(100, 30, 24, 12) == [0, 1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 14]


def test_past_the_end_loops_or_holds():
    assert resample_indices(3, 24, 24, 7, loop=True) == [0, 1, 2, 0, 1, 2, 0]
    assert resample_indices(3, 24, 24, 7, loop=False) == [0, 1, 2, 2, 2, 2, 2]


@given(
    st.integers(1, 200),
    st.sampled_from([12, 15, 23.976, 24, 25, 29.97, 30, 50, 60]),
    st.sampled_from([8, 12, 16, 24, 25, 30]),
    st.integers(0, 300),
)
def test_resample_indices_properties(source_count, source_fps, target_fps, count):
    looped = resample_indices(source_count, source_fps, target_fps, count, loop=True)
    held = resample_indices(source_count, source_fps, target_fps, count, loop=False)
    assert len(looped) == len(held) == count
    assert all(0 <= index < source_count for index in looped + held)
    assert held == sorted(held)  # holding never goes back in time
    for i, index in enumerate(held):
        # the shown frame is within half a source frame of the output time, until the end
        if index < source_count - 1:
            assert abs(index / source_fps - i / target_fps) <= 0.5 / source_fps + 1e-9
    for i, (index, held_index) in enumerate(zip(looped, held, strict=True)):
        # looping shows the frame nearest to the output time, counted modulo the duration
        offset = (i * source_fps / target_fps - index) % source_count
        assert min(offset, source_count - offset) <= 0.5 + 1e-9
        assert index == held_index or held_index == source_count - 1


@pytest.mark.parametrize(
    "arguments", [(0, 25, 24, 5), (10, 0, 24, 5), (10, 25, 0, 5), (10, 25, 24, -1)]
)
def test_resample_indices_rejects_impossible_arguments(arguments):
    with pytest.raises(ValueError):
        resample_indices(*arguments)


# ---- read_video: frame rate, count, size ----


def test_read_resamples_25_to_24_fps(numbered_video, read_numbers):
    frames = read_video(numbered_video, fps=24)
    # 30 frames at 25 fps last 1.2 s, which 24 fps covers with 29 frames.
    assert frames.shape == (29, 64, 64, 3)
    assert read_numbers(frames) == resample_indices(30, 25, 24, 29, loop=False)


def test_read_loops_a_short_video_to_num_frames(numbered_video, read_numbers):
    frames = read_video(numbered_video, fps=24, num_frames=70)
    assert read_numbers(frames) == resample_indices(30, 25, 24, 70, loop=True)


def test_read_trims_and_stops_decoding_early(numbered_video, read_numbers, monkeypatch):
    pulled = []
    real_read_frames = imageio_ffmpeg.read_frames

    def counting_read_frames(*args, **kwargs):
        for item in real_read_frames(*args, **kwargs):
            pulled.append(item)
            yield item

    monkeypatch.setattr(video_module.imageio_ffmpeg, "read_frames", counting_read_frames)
    frames = read_video(numbered_video, num_frames=5)
    assert read_numbers(frames) == [0, 1, 2, 3, 4]
    assert len(pulled) - 1 <= 6  # the header, then 5 frames (not all 30)


def test_read_fits_frames_to_a_size(numbered_video, read_numbers):
    covered = read_video(numbered_video, num_frames=4, size=(32, 48))
    assert covered.shape == (4, 48, 32, 3)
    assert read_numbers(covered) == [0, 1, 2, 3]
    contained = read_video(numbered_video, num_frames=2, size=(32, 48), fit="contain")
    assert contained.shape == (2, 48, 32, 3)
    assert contained[:, 0].min() == 255 and contained[:, -1].min() == 255  # white bars
    assert read_numbers(contained[:, 16:32]) == [0, 1]


def count_decoders(monkeypatch) -> list[int]:
    """Counts the ffmpeg readers opened, and the items each has yielded (its header and frames)."""
    opened: list[int] = []
    real_read_frames = imageio_ffmpeg.read_frames

    def counting_read_frames(*args, **kwargs):
        opened.append(0)
        for item in real_read_frames(*args, **kwargs):
            opened[-1] += 1
            yield item

    monkeypatch.setattr(video_module.imageio_ffmpeg, "read_frames", counting_read_frames)
    return opened


@pytest.mark.parametrize("num_frames", [12, 70])  # trimmed; looped more than twice
def test_lazy_frames_equal_read_video_and_decode_forward_once_per_loop(numbered_video, read_numbers, monkeypatch,
                                                                       num_frames):
    whole = read_video(numbered_video, fps=24, num_frames=num_frames, size=(32, 48))
    opened = count_decoders(monkeypatch)
    with VideoFrames(numbered_video, fps=24, num_frames=num_frames, size=(32, 48)) as lazy:
        assert len(lazy) == num_frames
        spans = [(0, 1), *((a, min(a + 4, num_frames)) for a in range(1, num_frames, 4))]  # as a stream asks
        chunks = [lazy[np.arange(a, b)] for a, b in spans]
    np.testing.assert_array_equal(np.concatenate(chunks), whole)
    unlooped = resample_indices(10_000, 25, 24, num_frames)  # source indices were the video endless
    passes = 1 + unlooped[-1] // 30  # through the 30-frame source
    assert len(opened) == 1 + passes  # probe_video's reader (header only), then one decoder per pass
    if num_frames == 12:
        assert opened[-1] - 1 <= 13  # its header and the 12 or 13 frames it needed, not all 30


def test_too_few_frames_for_min_frames(make_video):
    path = make_video("single.mp4", count=1)
    assert read_video(path).shape == (1, 64, 64, 3)
    with pytest.raises(InputError) as caught:
        read_video(path, min_frames=2)
    assert str(caught.value) == f"{path}: has 1 frame; at least 2 are needed"


def test_rotated_phone_video_is_read_upright(tmp_path, caplog):
    landscape = np.zeros((3, 32, 64, 3), np.uint8)
    landscape[:, :, :32] = 255  # white left half
    source = tmp_path / "landscape.mp4"
    write_video(source, landscape, fps=24)
    rotated = tmp_path / "rotated.mp4"
    _ffmpeg("-display_rotation", "90", "-i", str(source), "-c", "copy", str(rotated))

    assert (probe_video(rotated).width, probe_video(rotated).height) == (32, 64)
    frames = read_video(rotated)
    assert frames.shape == (3, 64, 32, 3)
    rows = frames[0, :, :, 0].mean(axis=1)
    assert abs(rows[0] - rows[-1]) > 200  # the white half is now at one end, top or bottom
    assert not [record for record in caplog.records if record.name == "imageio_ffmpeg"]


# ---- bad inputs ----


def _noise_video(tmp_path: Path) -> Path:
    noise = np.random.default_rng(0).integers(0, 256, (48, 64, 64, 3), dtype=np.uint8)
    path = tmp_path / "noise.mp4"
    write_video(path, noise, fps=24)
    return path


def _cut(path: Path, fraction: float) -> Path:
    cut = path.with_name(f"cut-{fraction}.mp4")
    data = path.read_bytes()
    cut.write_bytes(data[: int(len(data) * fraction)])
    return cut


def _png_named_mp4(tmp_path: Path) -> Path:
    path = tmp_path / "photo.mp4"
    Image.new("RGB", (16, 16), "red").save(path, format="PNG")
    return path


def _text_named_mp4(tmp_path: Path) -> Path:
    path = tmp_path / "notes.mp4"
    path.write_text("not a video\n" * 20)
    return path


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.mp4"
    path.touch()
    return path


def _folder(tmp_path: Path) -> Path:
    path = tmp_path / "clips.mp4"
    path.mkdir()
    return path


def _binary_junk(tmp_path: Path) -> Path:
    path = tmp_path / "junk.mp4"
    path.write_bytes(bytes(range(256)) * 40)
    return path


def _index_only(tmp_path: Path) -> Path:
    """A real MP4 cut right after its index: a video stream, but not one frame of data."""
    path = _noise_video(tmp_path)
    data = path.read_bytes()
    cut = tmp_path / "index-only.mp4"
    cut.write_bytes(data[: data.index(b"mdat") + 4])
    return cut


def _ffmpeg(*arguments: str) -> None:
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *arguments]
    subprocess.run(command, check=True, capture_output=True)


def _audio_only(tmp_path: Path) -> Path:
    path = tmp_path / "sound.mp4"
    _ffmpeg("-f", "lavfi", "-i", "sine=d=0.5", "-c:a", "aac", str(path))
    return path


BAD_VIDEOS = [
    (lambda tmp: tmp / "missing.mp4", "file not found"),
    (_folder, "is a folder"),
    (_empty, "file is empty"),
    (_png_named_mp4, "not a video (it is a PNG image)"),
    (_text_named_mp4, "not a video (it looks like text)"),
    (_binary_junk, "not a video"),
    (_audio_only, "not a video (it has no video stream)"),
    (_index_only, "has no frames"),
]


@pytest.mark.parametrize("reader", [probe_video, read_video])
@pytest.mark.parametrize(("make", "problem"), BAD_VIDEOS)
def test_bad_videos_give_one_line_naming_the_file(tmp_path, reader, make, problem):
    path = make(tmp_path)
    with pytest.raises(InputError) as caught:
        reader(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {problem}")
    assert "\n" not in message


@pytest.mark.parametrize("reader", [probe_video, read_video])
def test_truncated_videos_are_input_errors_not_hangs(tmp_path, reader):
    whole = _noise_video(tmp_path)
    for fraction in (0.01, 0.1, 0.3, 0.5, 0.75):
        cut = _cut(whole, fraction)
        started = time.monotonic()
        with pytest.raises(InputError) as caught:
            reader(cut)
        assert time.monotonic() - started < 15
        assert str(caught.value).startswith(f"{cut}: ")
        assert "\n" not in str(caught.value)


def test_a_1000_fps_video_is_read_at_its_rate(tmp_path, make_frames, read_numbers):
    path = tmp_path / "fast.mp4"
    write_video(path, make_frames(30), 1000)  # ffmpeg describes it as "1k fps"
    info = probe_video(path)
    assert (info.fps, info.frame_count) == (1000, 30)
    assert read_numbers(read_video(path, fps=100, num_frames=3)) == [0, 10, 20]


def test_a_video_whose_sound_outlasts_the_picture_is_not_called_truncated(tmp_path):
    path = tmp_path / "long sound.mp4"
    _ffmpeg("-f", "lavfi", "-i", "sine=d=3", "-f", "lavfi", "-i", "testsrc=d=1:s=64x64:r=24",
            "-c:v", "libx264", "-c:a", "aac", str(path))  # fmt: skip
    assert probe_video(path).frame_count == 24
    assert read_video(path).shape == (24, 64, 64, 3)


# ---- real inputs ----


def test_probe_real_videos(real_case_dir):
    assert probe_video(real_case_dir / "case1" / "target.mp4") == VideoInfo(720, 1280, 25.0, 85)
    case4 = probe_video(real_case_dir / "case4" / "target.mp4")
    assert (case4.width, case4.height, case4.fps) == (750, 1000, 25.0)


def test_read_real_video_resampled_and_fitted(real_case_dir):
    frames = read_video(
        real_case_dir / "case1" / "target.mp4", fps=24, num_frames=48, size=(256, 448), min_frames=2
    )
    assert frames.shape == (48, 448, 256, 3) and frames.dtype == np.uint8
    assert 20 < frames.mean() < 235
    assert not np.array_equal(frames[0], frames[-1])  # the person moves
