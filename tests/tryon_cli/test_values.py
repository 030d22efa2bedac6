"""Absurd numbers are refused before any work, in one line; a render gone NaN writes nothing;
the notices say what the model and the modes can and cannot do."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

MISSING = "/nonexistent/tryon-model"


def one_line(run) -> str:
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in run.stderr and "internal error" not in run.stderr, run.stderr
    return lines[0]


@pytest.mark.parametrize("option, value, says", [
    ("--seed", "99999999999999999999999", "--seed must be an integer from 0 to 4294967295"),
    ("--seed", "-1", "--seed must be an integer from 0 to 4294967295"),
    ("--guidance", "inf", "--guidance must be a number from 0 to 100"),
    ("--guidance", "nan", "--guidance must be a number from 0 to 100"),
    ("--steps", "1000000000", "--steps must be an integer from 1 to 1000"),
])
def test_generation_values_are_refused_before_the_model_loads(option, value, says, inputs, tmp_path, tryon):
    run = tryon("dance", inputs / "user.png", option, value, "--model", MISSING, "-o", tmp_path / "out.mp4")
    assert run.code == 2 and says in one_line(run) and MISSING not in run.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, says", [
    (["--count", "18446744073709551616"], "--count must be an integer from 1 to 100003"),
    (["--frames", "100000000000000000000000"], "--frames must be an integer from 1 to 1000"),
    (["--size", "8192x8192"], "at most 2048 pixels"),
    (["--seed", "4294967296"], "--seed must be an integer from 0 to 4294967295"),
    (["--fps", "nan"], "--fps must be above 0"),
])
def test_data_synth_refuses_absurd_numbers_before_writing(args, says, tmp_path, tryon):
    run = tryon("data", "synth", tmp_path / "data", *args, "--quiet")
    assert run.code == 2 and says in one_line(run)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, says", [
    (["--mode", "stream", "--window", "100000"], "--window must be an integer from 0 to 64"),
    (["--mode", "stream", "--chunk-frames", "0"], "--chunk-frames must be an integer from 1 to 16"),
    (["--window", "2"], "--window and --chunk-frames are for stream mode"),
    (["--repeat", "1000000"], "--repeat must be an integer from 1 to 100"),
])
def test_bench_refuses_absurd_numbers_before_loading(args, says, tryon):
    run = tryon("bench", "--model", MISSING, *args)
    assert run.code == 2 and says in one_line(run)


def test_a_video_too_big_for_memory_is_refused_before_generating(inputs, tiny_checkpoint, tmp_path, tryon):
    run = tryon("dance", inputs / "user.png", "--model", tiny_checkpoint, "--size", "8192x8192", "--seconds", "600",
                "--fps", "120", "-o", tmp_path / "out.mp4")
    assert run.code == 2 and "GiB of memory" in run.stderr.splitlines()[-1]
    assert list(tmp_path.iterdir()) == []


def test_a_render_that_turns_nan_fails_in_one_line_and_writes_nothing(inputs, tiny_checkpoint, tmp_path, tryon):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    weights_file = broken / "transformer" / "diffusion_pytorch_model.safetensors"
    weights = load_file(weights_file)
    name = next(key for key in weights if key.startswith("proj_out") and key.endswith("weight"))
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, weights_file)
    out = tmp_path / "out"
    out.mkdir()
    run = tryon("dance", inputs / "user.png", "--model", broken, "--steps", "1", "--seconds", "0.1", "--size", "64x96",
                "-o", out / "x.mp4", "--quiet")
    assert run.code == 1 and "non-finite" in run.stderr.splitlines()[-1] and "Traceback" not in run.stderr
    assert list(out.iterdir()) == []


def test_models_list_names_both_shipped_defaults(tryon):
    from engine.api.loading import DEMO_MODEL, DEMO_STUDENT

    run = tryon("models", "list", "--json")
    assert run.code == 0, run.stderr
    names = {entry["name"]: entry for entry in json.loads(run.stdout)["models"]}
    for shipped in (DEMO_MODEL, DEMO_STUDENT):
        if shipped.is_dir():
            assert names[str(shipped)]["kind"] == "default"
    assert DEMO_STUDENT.is_dir() and str(DEMO_STUDENT) in names


def test_the_untrained_warning_names_no_garments_in_dance(inputs, tiny_checkpoint, tmp_path, tryon):
    run = tryon("dance", inputs / "user.png", "--model", tiny_checkpoint, "--steps", "1", "--seconds", "0.1",
                "--size", "64x96", "-o", tmp_path / "out.mp4", "--quiet")
    assert run.code == 0, run.stderr
    warning = next(line for line in run.stderr.splitlines() if "untrained" in line)
    assert "garment" not in warning
