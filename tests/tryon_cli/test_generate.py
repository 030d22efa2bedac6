import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.media import probe_video

from .conftest import run_program, tryon_program

FAST = ("--steps", "1", "--seconds", "0.25", "--fps", "24", "--size", "64x96")


def files_in(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.slow
def test_dress_end_to_end_through_the_installed_program(tiny_checkpoint, inputs, tmp_path):
    run = run_program(
        "dress", inputs / "user.png", f"{inputs / 'shirt.png'}:top", f"{inputs / 'pants.png'}:bottom",
        "--motion", inputs / "dance.mp4", "--model", tiny_checkpoint, "--size", "64x96", "--seconds", "0.5",
        "--fps", "24", "--seed", "7", "--steps", "2", "-o", "out.mp4", "--json", cwd=tmp_path,
    )
    assert run.code == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["frames"] == 12 and summary["fps"] == 24 and summary["size"] == [64, 96]
    assert summary["seed"] == 7 and summary["model"] == str(tiny_checkpoint) and summary["seconds_taken"] > 0
    info = probe_video(tmp_path / "out.mp4")
    assert (info.width, info.height, info.frame_count, info.fps) == (64, 96, 12, 24)
    assert "untrained" in run.stderr  # the loud warning for an untrained CondNet
    assert files_in(tmp_path) == ["out.mp4"]


def test_dance_with_prompt_and_default_output_name(tiny_checkpoint, inputs, tmp_path, tryon):
    run = tryon("dance", inputs / "user.png", "--prompt", "she spins slowly", "--model", tiny_checkpoint, *FAST,
                cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert files_in(tmp_path) == ["user_dance.mp4"]
    assert probe_video(tmp_path / "user_dance.mp4").frame_count == 6


def test_dress_with_prompt_only_names_output_after_inputs(tiny_checkpoint, inputs, tmp_path, tryon):
    run = tryon("dress", inputs / "user.png", f"{inputs / 'shirt.png'}:dress", "--prompt", "she spins slowly",
                "--model", tiny_checkpoint, *FAST, cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert files_in(tmp_path) == ["user_shirt.mp4"]


def test_output_follows_the_photo_orientation_and_has_exactly_the_size_asked(tiny_checkpoint, inputs, tmp_path, tryon):
    out = tmp_path / "portrait.mp4"
    run = tryon("dress", inputs / "user.png", inputs / "shirt.png", "--model", tiny_checkpoint, "--steps", "1",
                "--seconds", "0.1", "-o", out, "--json")
    assert run.code == 0, run.stderr
    assert json.loads(run.stdout)["size"] == [256, 448]  # the tiny preset's default, portrait like the photo
    run = tryon("dress", inputs / "user.png", inputs / "shirt.png", "--model", tiny_checkpoint, "--steps", "1",
                "--seconds", "0.1", "--size", "100x70", "-o", tmp_path / "exact.mp4", "--json")
    assert run.code == 0, run.stderr
    assert json.loads(run.stdout)["size"] == [100, 70]  # generated at 128x96, centre-cropped
    info = probe_video(tmp_path / "exact.mp4")
    assert (info.width, info.height) == (100, 70)


def test_existing_output_is_kept_unless_overwrite(tiny_checkpoint, inputs, tmp_path, tryon):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"precious")
    args = ("dance", inputs / "user.png", "--model", tiny_checkpoint, *FAST, "-o", out)
    run = tryon(*args)
    assert run.code == 2 and "already exists" in run.stderr and "out.mp4" in run.stderr
    assert out.read_bytes() == b"precious"
    assert tryon(*args, "--overwrite").code == 0
    assert probe_video(out).frame_count == 6


def test_speed_and_memory_modes_render_the_same_length(tiny_checkpoint, inputs, tmp_path, tryon):
    out = tmp_path / "out.mp4"
    run = tryon("dress", inputs / "user.png", inputs / "shirt.png", "--model", tiny_checkpoint, *FAST, "-o", out,
                "--fp8-weights", "--fuse-qkv", "--offload", "group")
    assert run.code == 0, run.stderr
    assert probe_video(out).frame_count == 6


@pytest.mark.slow
def test_torchrun_splits_one_render_across_two_processes(tiny_checkpoint, inputs, tmp_path):
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--master-addr=127.0.0.1",
               f"--master-port={port.getsockname()[1]}", "-m", "tryon_cli", "dress", str(inputs / "user.png"),
               str(inputs / "shirt.png"), "--model", str(tiny_checkpoint), *FAST, "-o", "out.mp4", "--context-parallel"]
    port.close()
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("wrote out.mp4") == 1  # the first process speaks and writes for both
    assert probe_video(tmp_path / "out.mp4").frame_count == 6


BAD_INPUTS = {
    "missing user photo": (["dress", "{in}/nobody.png", "{in}/shirt.png"], "nobody.png"),
    "text named .png": (["dress", "{in}/notes.png", "{in}/shirt.png"], "notes.png"),
    "unknown garment category": (["dress", "{in}/user.png", "{in}/shirt.png:hat"], "hat"),
    "too many garments": (["dress", "{in}/user.png"] + ["{in}/shirt.png"] * 5, "at most 4"),
    "dress with a top": (["dress", "{in}/user.png", "{in}/shirt.png:dress", "{in}/pants.png:top"], "one piece"),
    "zero seconds": (["dance", "{in}/user.png", "--seconds", "0"], "--seconds"),
    "negative seconds": (["dance", "{in}/user.png", "--seconds", "-2"], "--seconds"),
    "absurd seconds": (["dance", "{in}/user.png", "--seconds", "100000"], "--seconds"),
    "bad size": (["dance", "{in}/user.png", "--size", "big"], "big"),
    "zero size": (["dance", "{in}/user.png", "--size", "0x64"], "0x64"),
    "one-frame motion": (["dance", "{in}/user.png", "--motion", "{in}/still.mp4"], "still.mp4"),
    "picture named .mp4": (["dance", "{in}/user.png", "--motion", "{in}/image.mp4"], "image.mp4"),
    "missing motion": (["dance", "{in}/user.png", "--motion", "{in}/gone.mp4"], "gone.mp4"),
    "missing output folder": (["dance", "{in}/user.png", "-o", "{tmp}/no/such/out.mp4"], "no/such"),
    "output not mp4": (["dance", "{in}/user.png", "-o", "{tmp}/out.gif"], "out.gif"),
    "missing model": (["dance", "{in}/user.png", "--model", "{tmp}/no-model"], "no-model"),
    "no steps": (["dance", "{in}/user.png", "--steps", "0"], "--steps"),
    "bad device": (["dance", "{in}/user.png", "--device", "tpu"], "--device"),
    "bad offload": (["dance", "{in}/user.png", "--offload", "disk"], "--offload"),
    "context parallel alone": (["dance", "{in}/user.png", "--context-parallel"], "torchrun"),
    "unknown option": (["dance", "{in}/user.png", "--colour", "red"], "--colour"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_no_output(case, tiny_checkpoint, inputs, tmp_path, tryon):
    args, needle = BAD_INPUTS[case]
    args = [a.format(**{"in": inputs, "tmp": tmp_path}) for a in args]
    if "--model" not in args:
        args += ["--model", str(tiny_checkpoint)]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "out.mp4")]
    run = tryon(*args, "--steps" if "--steps" not in args else "--seed", "1", cwd=tmp_path)
    assert run.code == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tryon: error:"), run.stderr
    assert needle in lines[0]
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "out.mp4").exists() and files_in(tmp_path) == []


def test_pickled_checkpoint_is_refused(tiny_checkpoint, inputs, tmp_path, tryon):
    bad = tmp_path / "pickled"
    shutil.copytree(tiny_checkpoint, bad)
    (bad / "vae" / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    run = tryon("dance", inputs / "user.png", "--model", bad, "-o", tmp_path / "out.mp4")
    assert run.code == 2 and "pickled weights are refused" in run.stderr and "diffusion_pytorch_model.bin" in run.stderr
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.slow
def test_ctrl_c_exits_130_and_leaves_nothing(tiny_checkpoint, inputs, tmp_path):
    process = subprocess.Popen(
        [tryon_program(), "dance", inputs / "user.png", "--model", tiny_checkpoint, "--steps", "1000",
         "--seconds", "0.5", "--size", "64x96", "-o", "out.mp4"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True,
        # A shell's background job starts with SIGINT ignored, and so would the child: a user's Ctrl-C is not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    seen = ""
    while "untrained" not in seen and time.monotonic() < deadline:  # the model is loaded: generation starts
        seen += process.stderr.readline()
    time.sleep(0.5)  # 1000 steps (the most --steps allows) cannot finish first
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 130, seen + rest
    assert "interrupted" in rest and "Traceback" not in rest
    assert files_in(tmp_path) == []


def _ctrl_c_after(function, on_call: int = 1):
    """`function`, with a real SIGINT (a Ctrl-C) as its `on_call`-th call returns."""
    calls = []

    def wrapped(*args, **kwargs):
        result = function(*args, **kwargs)
        calls.append(1)
        if len(calls) == on_call:
            signal.raise_signal(signal.SIGINT)
        return result
    return wrapped


@pytest.mark.parametrize("moment", ["encoder starts", "frames sent", "ffmpeg finishes", "rename"])
def test_ctrl_c_while_the_mp4_is_written_is_exit_130_and_leaves_no_temp_file(
        moment, tiny_checkpoint, inputs, tmp_path, tryon, monkeypatch):
    from engine.media import video_writer as video

    if moment == "encoder starts":
        monkeypatch.setattr(video.subprocess, "Popen", _ctrl_c_after(subprocess.Popen))
    elif moment == "frames sent":
        monkeypatch.setattr(video._Encoder, "send", _ctrl_c_after(video._Encoder.send, on_call=2))
    elif moment == "ffmpeg finishes":
        monkeypatch.setattr(video._Encoder, "finish", _ctrl_c_after(video._Encoder.finish))
    else:
        monkeypatch.setattr(video.os, "replace", _ctrl_c_after(os.replace))
    run = tryon("dance", inputs / "user.png", "--model", tiny_checkpoint, *FAST, "-o", tmp_path / "out.mp4")
    monkeypatch.undo()
    assert run.code == 130 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("tryon: interrupted")
    time.sleep(0.2)  # an encoder left running would create its file again by now
    left = files_in(tmp_path)
    assert left == (["out.mp4"] if moment == "rename" else [])  # renamed before the Ctrl-C: complete
    if left:
        assert probe_video(tmp_path / "out.mp4").frame_count == 6


@pytest.mark.slow
def test_real_cases_portrait_and_three_by_four_at_25_fps(real_cases, tiny_checkpoint, tmp_path, tryon):
    for case in ("case1", "case4"):
        folder = real_cases / case
        out = tmp_path / f"{case}.mp4"
        run = tryon("dress", folder / "user.png", f"{folder / 'garment.png'}:top", "--motion", folder / "target.mp4",
                    "--prompt", (folder / "prompt.txt").read_text(), "--model", tiny_checkpoint, "--steps", "1",
                    "--seconds", "0.3", "--fps", "24", "-o", out, "--json")
        assert run.code == 0, run.stderr
        info = probe_video(out)
        assert (info.width, info.height, info.frame_count) == (256, 448, 7)


def test_bad_timing_is_refused_before_any_model_is_loaded(inputs, tmp_path, tryon):
    for option, value in (("--seconds", "0"), ("--fps", "500")):
        run = tryon("dance", inputs / "user.png", option, value, "--model", tmp_path / "not-a-model",
                    "-o", tmp_path / "out.mp4")
        assert run.code == 2 and option in run.stderr and "not-a-model" not in run.stderr


def test_the_quickstart_runs_on_the_shipped_demo_model(tmp_path, tryon):
    examples = Path(__file__).resolve().parents[2] / "examples" / "sample_00002"
    run = tryon("dress", examples / "user.png", f"{examples / 'garment_top.png'}:top", "--motion",
                examples / "motion.mp4", "--steps", "2", "-o", tmp_path / "out.mp4", "--json")
    assert run.code == 0, run.stderr
    summary = json.loads(run.stdout)
    assert Path(summary["model"]).name == "demo" and "untrained" not in run.stderr
    assert summary["size"] == [96, 160] and summary["frames"] == 16 and summary["fps"] == 8
