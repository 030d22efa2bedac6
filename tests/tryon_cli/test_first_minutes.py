"""What a new user meets first: --version, --help that shows choices, paths printed as given,
usage errors before torch loads, progress beside --json; and Ctrl-C at any moment."""

from __future__ import annotations

import signal
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

from .conftest import tryon_program
from .test_startup import probe


def test_version(tryon):
    run = tryon("--version")
    assert run.code == 0 and run.stdout.startswith("tryon ") and len(run.stdout.split()) >= 2


def test_help_shows_choices_and_no_type_for_flags(tryon, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    help_text = tryon("dress", "--help").stdout
    rows = {line.split()[1]: line for line in help_text.splitlines() if line.startswith("│ --")}
    assert "auto|cpu|cuda|cuda:N" in rows["--device"]
    assert "auto|bf16|fp16|fp32" in rows["--dtype"] and "none|model|group" in rows["--offload"]
    assert "<bool>" not in help_text and "--threads" in rows
    assert "dress|stream" in tryon("bench", "--help").stdout
    assert "pip install 'tryon[ray]'" in " ".join(tryon("batch", "--help").stdout.split())


def test_a_choice_outside_the_list_is_a_usage_error(tryon):
    run = tryon("dance", "u.png", "--dtype", "bf17")
    assert run.code == 2 and "--dtype" in run.stderr and len(run.stderr.splitlines()) == 1


def test_paths_are_printed_as_given_not_as_emoji_or_markup(tryon, tmp_path):
    for name in ("x:dress:.png", "a[bold]b[/bold].png", ":smile:.png"):
        run = tryon("dance", tmp_path / name, "-o", tmp_path / "o.mp4")
        assert run.code == 2 and f"{tmp_path / name}: file not found" in run.stderr


def test_a_bad_row_is_listed_as_written(tryon, tmp_path):
    (tmp_path / "jobs.csv").write_text("user,output\n:dress:[red].png,x:smile:[b].mp4\n")
    run = tryon("batch", "jobs.csv", "-o", "out", "--quiet", cwd=tmp_path)
    assert run.code == 1 and "x:smile:[b].mp4" in run.stderr and ":dress:[red].png" in run.stderr


@pytest.mark.slow  # fresh interpreters
@pytest.mark.parametrize("args", [
    ("dress", "absent.png", "shirt.png"),
    ("dress", "user.png", "shirt.png:hat"),
    ("dance", "user.png", "--size", "2x2"),
    ("dance", "user.png", "-m", ""),
    ("swap", "user.png", "-g", "absent.png"),
    ("extend", "absent.mp4", "--seconds", "1"),
    ("dance", "user.png", "--threads", "0"),
])
def test_usage_errors_answer_before_torch_loads(args, tmp_path):
    Image.fromarray(np.zeros((90, 60, 3), dtype=np.uint8)).save(tmp_path / "user.png")
    result, stderr = probe(*args, cwd=tmp_path)
    assert result["code"] == 2 and not {"torch", "diffusers", "transformers"} & set(result["loaded"]), stderr
    assert stderr.startswith("tryon: error:") and len(stderr.strip().splitlines()) == 1


@pytest.mark.slow  # a fresh interpreter
def test_models_list_loads_no_torch(tmp_path):
    result, stderr = probe("models", "list", "--json", cwd=tmp_path)
    assert result["code"] == 0 and not {"torch", "diffusers", "transformers"} & set(result["loaded"]), stderr


@pytest.mark.slow  # fresh interpreters, each interrupted at another moment of its start
def test_ctrl_c_at_any_moment_of_the_start_is_one_line_and_130(tmp_path):
    Image.fromarray(np.zeros((90, 60, 3), dtype=np.uint8)).save(tmp_path / "user.png")
    for delay in (0.6, 1.0, 1.5, 2.5, 4.0):  # before ~0.5 s Python itself is still starting (its site module)
        process = subprocess.Popen(
            [tryon_program(), "dance", "user.png", "-m", "absent-model", "-o", "out.mp4"], cwd=tmp_path,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
        if process.returncode == 2 and "absent-model" in stderr:
            continue  # it had already finished: the model's absence, one line
        assert process.returncode == 130, (delay, stderr)
        assert stderr == "tryon: interrupted; no partial output was left\n", (delay, stderr)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["user.png"]


@pytest.mark.slow  # a real batch, then a re-run in a fresh interpreter
def test_a_finished_batch_rerun_answers_before_torch_loads(tiny_checkpoint, tryon, tmp_path):
    Image.fromarray(np.zeros((90, 60, 3), dtype=np.uint8)).save(tmp_path / "user.png")
    (tmp_path / "jobs.csv").write_text("user\nuser.png\n")
    options = ("-o", "out", "--model", tiny_checkpoint, "--size", "64x64", "--seconds", "0.25", "--steps", "1")
    assert tryon("batch", "jobs.csv", *options, "--quiet", cwd=tmp_path).code == 0  # the same manifest path
    report = (tmp_path / "out" / "report.jsonl").read_text()
    result, stderr = probe("batch", "jobs.csv", *map(str, options), "--quiet", cwd=tmp_path)
    assert result["code"] == 0 and not {"torch", "diffusers", "transformers"} & set(result["loaded"]), stderr
    assert "1 already complete" in stderr
    assert (tmp_path / "out" / "report.jsonl").read_text() == report  # its render's line, kept


@pytest.mark.slow  # a server in a fresh interpreter
def test_the_studio_stops_within_two_seconds_of_ctrl_c_and_says_so(tiny_checkpoint, tmp_path):
    pytest.importorskip("uvicorn")
    process = subprocess.Popen(
        [tryon_program(), "studio", "--port", "0", "--model", str(tiny_checkpoint), "--size", "64x64"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    line = process.stdout.readline()
    assert "tryon studio: open http://" in line, process.stderr.read() if process.poll() is not None else line
    process.send_signal(signal.SIGINT)
    asked = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - asked < 2.0
    assert process.returncode == 130 and stderr.strip().splitlines()[-1] == "tryon studio: stopped"
