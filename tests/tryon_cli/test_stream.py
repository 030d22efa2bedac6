import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.media import probe_video, read_video, write_video
from engine.pipelines.pipeline_tryon_streaming import TryOnStream

# 24 frames: chunks start at frames 0, 9 (1.125 s) and 21 (2.625 s)
FAST = ("--steps", "1", "--seconds", "3", "--fps", "8", "--size", "64x64")


def files_in(folder):
    return sorted(p.name for p in folder.iterdir())


def test_swap_switches_on_schedule_and_writes_every_frame(tiny_checkpoint, inputs, tmp_path, tryon):
    out = tmp_path / "out.mp4"
    run = tryon("swap", inputs / "user.png", "-g", inputs / "shirt.png", "-g", f"{inputs / 'pants.png'}@1",
                "-g", f"{inputs / 'shirt.png'}:top@2.5", "--model", tiny_checkpoint, *FAST, "-o", out, "--json")
    assert run.code == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["frames"] == 24 and probe_video(out).frame_count == 24
    assert [(s["at"], s["frame"]) for s in summary["switches"]] == [(1.0, 9), (2.5, 21)]
    assert "switch at 2.5 s" in run.stderr
    assert files_in(tmp_path) == ["out.mp4"]


def test_live_lines_from_stdin_switch_at_the_next_chunks(tiny_checkpoint, inputs, tmp_path, tryon, monkeypatch):
    lines = f"{inputs / 'pants.png'}\n{inputs / 'nothing.png'}\n{inputs / 'shirt.png'}:dress\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    run = tryon("swap", inputs / "user.png", "-g", f"{inputs / 'shirt.png'}:top", "--live", "--model", tiny_checkpoint,
                *FAST, "-o", tmp_path / "live.mp4", "--json")
    assert run.code == 0, run.stderr
    switches = json.loads(run.stdout)["switches"]
    assert [s["frame"] for s in switches] == [9, 21]  # the first chunk keeps the starting outfit
    assert all(s["at"] is None and s["latency"] > 0 for s in switches)
    assert "nothing.png" in run.stderr and "live switch" in run.stderr


def test_live_without_seconds_runs_until_stdin_closes_and_every_line_is_on(tiny_checkpoint, inputs, tmp_path, tryon,
                                                                             monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{inputs / 'pants.png'}\n{inputs / 'shirt.png'}:dress\n"))
    untimed = [arg for arg in FAST if arg not in ("--seconds", "3")]
    run = tryon("swap", inputs / "user.png", "-g", f"{inputs / 'shirt.png'}:top", "--live", "--model", tiny_checkpoint,
                *untimed, "-o", tmp_path / "live.mp4", "--json")
    assert run.code == 0, run.stderr
    summary = json.loads(run.stdout)
    assert [s["frame"] for s in summary["switches"]] == [9, 21]
    assert summary["frames"] == 33 == probe_video(tmp_path / "live.mp4").frame_count  # the chunk wearing the dress


def test_a_live_line_left_when_the_video_ends_is_reported_too_late(tiny_checkpoint, inputs, tmp_path, tryon,
                                                                  monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{inputs / 'pants.png'}\n"))
    timed = [arg if arg != "3" else "1" for arg in FAST]  # 8 frames: one chunk, no boundary to switch at
    run = tryon("swap", inputs / "user.png", "-g", f"{inputs / 'shirt.png'}:top", "--live", "--model", tiny_checkpoint,
                *timed, "-o", tmp_path / "live.mp4", "--json")
    assert run.code == 0, run.stderr
    assert json.loads(run.stdout)["switches"] == [{"garments": [str(inputs / "pants.png")], "at": None, "frame": None,
                                                   "latency": None}]
    assert "pants.png came too late: the video ended at frame 8" in run.stderr


def test_extend_appends_seconds_at_the_input_fps_and_size(tiny_checkpoint, inputs, tmp_path, tryon):
    clip = tmp_path / "clip.mp4"
    write_video(clip, np.random.default_rng(0).integers(0, 255, (9, 64, 96, 3), dtype=np.uint8), 8)
    run = tryon("extend", clip, "--seconds", "1", "-g", f"{inputs / 'shirt.png'}:top", "--steps", "1",
                "--model", tiny_checkpoint, "-o", tmp_path / "longer.mp4", "--json")
    assert run.code == 0, run.stderr
    summary = json.loads(run.stdout)
    info = probe_video(tmp_path / "longer.mp4")
    assert (info.frame_count, info.width, info.height, info.fps) == (9 + 8, 96, 64, 8)
    assert summary["frames"] == 17 and summary["switches"][0]["frame"] == 9  # the garment from the first new frame


def test_swap_delivers_a_size_the_model_cannot_generate_exactly(tiny_checkpoint, inputs, tmp_path, tryon):
    out = tmp_path / "exact.mp4"
    run = tryon("swap", inputs / "user.png", "-g", inputs / "shirt.png", "--model", tiny_checkpoint, "--steps", "1",
                "--seconds", "1", "--fps", "8", "--size", "80x48", "-o", out, "--json")
    assert run.code == 0, run.stderr
    info = probe_video(out)
    assert json.loads(run.stdout)["size"] == [80, 48] and (info.width, info.height, info.frame_count) == (80, 48, 8)


def test_extend_keeps_an_input_size_the_model_cannot_generate_exactly(tiny_checkpoint, tmp_path, tryon):
    clip = tmp_path / "clip.mp4"
    frames = np.full((5, 50, 70, 3), 128, dtype=np.uint8)
    write_video(clip, frames, 8)
    run = tryon("extend", clip, "--seconds", "0.5", "--steps", "1", "--model", tiny_checkpoint,
                "-o", tmp_path / "longer.mp4")
    assert run.code == 0, run.stderr
    assert "rounded" not in run.stderr and "scaled" not in run.stderr
    info = probe_video(tmp_path / "longer.mp4")
    assert (info.frame_count, info.width, info.height) == (5 + 4, 70, 50)


def test_extend_copies_a_long_video_a_batch_at_a_time(tiny_checkpoint, tmp_path, tryon):
    levels = (10 + 8 * (np.arange(150) % 30)).astype(np.uint8)  # frame k: grey, its level tells k mod 30
    clip = tmp_path / "long.mp4"
    write_video(clip, np.broadcast_to(levels[:, None, None, None], (150, 64, 64, 3)).copy(), 8)
    run = tryon("extend", clip, "--seconds", "0.5", "--steps", "1", "--model", tiny_checkpoint,
                "-o", tmp_path / "longer.mp4")
    assert run.code == 0, run.stderr
    out = read_video(tmp_path / "longer.mp4")
    assert len(out) == 150 + 4
    np.testing.assert_allclose(out[:150].reshape(150, -1).mean(axis=1), levels, atol=2)  # every frame, in order


def test_ctrl_c_keeps_a_playable_video_of_the_chunks_made(tiny_checkpoint, inputs, tmp_path, tryon, monkeypatch):
    original = TryOnStream.next_chunk_frames  # what the stream loop calls
    calls = []

    def interrupted_after_one_chunk(self, max_frames=None):
        calls.append(max_frames)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, max_frames)

    monkeypatch.setattr(TryOnStream, "next_chunk_frames", interrupted_after_one_chunk)
    run = tryon("swap", inputs / "user.png", "-g", inputs / "shirt.png", "--model", tiny_checkpoint, *FAST,
                "-o", tmp_path / "out.mp4")
    assert run.code == 130 and "kept the 9 frames" in run.stderr
    assert probe_video(tmp_path / "out.mp4").frame_count == 9
    assert files_in(tmp_path) == ["out.mp4"]


def test_ctrl_c_during_extend_counts_the_generated_frames_apart(tiny_checkpoint, inputs, tmp_path, tryon,
                                                                monkeypatch):
    def interrupted(self, max_frames=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(TryOnStream, "next_chunk_frames", interrupted)  # Ctrl-C before the first new frame
    run = tryon("extend", inputs / "dance.mp4", "--seconds", "0.5", "--steps", "1", "--model", tiny_checkpoint,
                "-o", tmp_path / "longer.mp4")
    assert run.code == 130
    assert "kept 20 frames" in run.stderr and "the input's 20 and 0 generated" in run.stderr
    assert probe_video(tmp_path / "longer.mp4").frame_count == 20


BAD_SCHEDULES = {
    "negative time": (["-g", "{in}/shirt.png@-1"], "0 or more"),
    "first garment not at 0": (["-g", "{in}/shirt.png@1", "-g", "{in}/pants.png"], "cannot start at 1 s"),
    "switch after the end": (["-g", "{in}/shirt.png", "-g", "{in}/pants.png@3"], "at or after the end"),
    "dress with a top": (["-g", "{in}/shirt.png:dress", "-g", "{in}/pants.png:top"], "one piece"),
    "no garment": ([], "--garment"),
}


@pytest.mark.parametrize("case", list(BAD_SCHEDULES))
def test_bad_schedule_is_one_line_exit_2_and_no_output(case, tiny_checkpoint, inputs, tmp_path, tryon):
    args, needle = BAD_SCHEDULES[case]
    args = [a.format(**{"in": inputs}) for a in args]
    run = tryon("swap", inputs / "user.png", *args, "--model", tiny_checkpoint, *FAST, "-o", tmp_path / "out.mp4")
    assert run.code == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tryon: error:") and needle in lines[0], run.stderr
    assert files_in(tmp_path) == []


def test_extend_refuses_a_picture_and_a_switch_past_the_end(tiny_checkpoint, inputs, tmp_path, tryon):
    run = tryon("extend", inputs / "image.mp4", "--seconds", "1", "--model", tiny_checkpoint, "-o", tmp_path / "o.mp4")
    assert run.code == 2 and "image.mp4" in run.stderr
    run = tryon("extend", inputs / "dance.mp4", "--seconds", "1", "-g", f"{inputs / 'shirt.png'}@2",
                "--model", tiny_checkpoint, "-o", tmp_path / "o.mp4")
    assert run.code == 2 and "at or after the end" in run.stderr
    assert files_in(tmp_path) == []


def test_swap_defaults_to_the_shipped_demo_student(tmp_path, tryon):
    examples = Path(__file__).resolve().parents[2] / "examples"
    first, second = examples / "sample_00002", examples / "sample_00001"
    run = tryon("swap", first / "user.png", "-g", f"{first / 'garment_top.png'}:top",
                "-g", f"{second / 'garment_dress.png'}:dress@1", "--motion", first / "motion.mp4", "--steps", "1",
                "-o", tmp_path / "out.mp4", "--json")
    assert run.code == 0, run.stderr
    summary = json.loads(run.stdout)
    assert Path(summary["model"]).name == "demo-student" and "untrained" not in run.stderr
    assert summary["frames"] == 16 and summary["switches"][0]["frame"] is not None


def route_notices(run) -> list[str]:
    return [n for n in json.loads(run.stdout)["notices"] if "--model public" in n]


@pytest.mark.slow
def test_the_demo_student_on_a_camera_photo_points_at_the_route_in_swap_and_extend(tryon, real_cases, tmp_path):
    case = real_cases / "case1"
    run = tryon("swap", case / "user.png", "-g", f"{case / 'garment.png'}:top", "--steps", "1", "--seconds", "0.5",
                "--size", "96x160", "-o", tmp_path / "swap.mp4", "--json")
    assert run.code == 0, run.stderr
    notices = route_notices(run)
    assert len(notices) == 1 and "synthetic world" in notices[0]
    camera = read_video(case / "target.mp4", fps=8, num_frames=9, size=(96, 160), fit="cover")
    write_video(tmp_path / "camera.mp4", camera, 8)
    run = tryon("extend", tmp_path / "camera.mp4", "--seconds", "0.5", "--steps", "1", "-o", tmp_path / "ext.mp4",
                "--json")
    assert run.code == 0, run.stderr
    assert len(route_notices(run)) == 1


@pytest.mark.slow
def test_the_demo_student_on_its_own_world_says_nothing_about_the_route(tryon, tmp_path):
    sample = Path(__file__).resolve().parents[2] / "examples" / "sample_00002"
    run = tryon("swap", sample / "user.png", "-g", f"{sample / 'garment_top.png'}:top", "--steps", "1",
                "--seconds", "0.5", "-o", tmp_path / "swap.mp4", "--json")
    assert run.code == 0, run.stderr
    assert route_notices(run) == []
    run = tryon("extend", sample / "motion.mp4", "--seconds", "0.5", "--steps", "1", "-o", tmp_path / "ext.mp4",
                "--json")
    assert run.code == 0, run.stderr
    assert route_notices(run) == []
