import json

import pytest
from PIL import Image

from engine.checkpoint import load_model


def test_train_teacher_from_the_command_line_writes_a_loadable_trained_checkpoint(tiny_checkpoint, tmp_path, tryon):
    config = tmp_path / "train.json"
    config.write_text(json.dumps({
        "stages": [{"name": "clips", "steps": 2, "size": [32, 32], "num_frames": 5, "fps": 8, "batch_size": 1}],
        "synthetic_examples": 2, "checkpoint_every": 2, "log_every": 1,
    }))
    run = tryon("train", "teacher", "--data", "synthetic", "--base", tiny_checkpoint, "--output", tmp_path / "t",
                "--config", config, "-q")
    assert run.code == 0, run.stderr
    loaded = load_model(str(tmp_path / "t"))
    assert loaded.info.condnet_trained and loaded.info.training
    lines = (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]
    with Image.open(tmp_path / "t" / "curves.png") as curves:  # the curves beside the metrics
        assert curves.format == "PNG" and curves.width >= 500


def test_train_rejects_a_bad_config_with_one_line(tiny_checkpoint, tmp_path, tryon):
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"stages": [], "learning_speed": 11}))
    run = tryon("train", "teacher", "--data", "synthetic", "--base", tiny_checkpoint, "--output", tmp_path / "t",
                "--config", config)
    assert run.code == 2 and "bad.json" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "t").exists()


def test_builtin_training_recipes_parse():
    from engine.api import load_student_config, load_train_config
    from engine.api.train import builtin_recipes

    teachers, students = builtin_recipes("teacher"), builtin_recipes("student")
    assert teachers[0] == "default"
    assert {"demo", "demo-continue", "demo-anneal", "demo-refine", "demo-refine2", "demo-refine3", "demo-refine4",
            "wan5b-teacher"} <= set(teachers)
    assert {"student", "wan5b-student"} <= set(students) and not set(students) & set(teachers)
    assert builtin_recipes("decoder") == ["decoder"]
    for name in teachers:
        assert load_train_config(name).total_steps > 0
    for name in students:
        assert load_student_config(name).total_steps > 0


def test_the_5b_student_recipe_asks_for_the_aesthetic_model_or_an_explicit_heuristic(tmp_path, tryon):
    args = ("train", "student", "--teacher", tmp_path / "teacher", "--data", "synthetic", "-o", tmp_path / "out",
            "--config", "wan5b-student")
    run = tryon(*args)
    assert run.code == 2 and len(run.stderr.strip().splitlines()) == 1
    assert "--scorer sharpness_colour" in run.stderr and "--kind aesthetic" in run.stderr
    run = tryon(*args, "--scorer", "sharpness_colour")
    assert run.code == 2 and "teacher" in run.stderr and "scorer" not in run.stderr
    assert not (tmp_path / "out").exists()


def test_train_vae_minutes_stops_checkpointed_and_resume_goes_on(tiny_checkpoint, tmp_path, tryon):
    args = ("train", "vae", "--output", tmp_path / "vae", "--steps", "2", "--batch-size", "1", "--size", "32x32",
            "--frames", "1", "--examples", "2", "-q")
    run = tryon(*args, "--base", tiny_checkpoint, "--minutes", "0")
    assert run.code == 0, run.stderr
    assert "stopped after 0 minutes at step 1 of 2: --resume goes on" in run.stderr
    run = tryon(*args, "--resume")
    assert run.code == 0, run.stderr
    assert load_model(str(tmp_path / "vae")).info.training["vae"]["steps"] == 2


def test_train_vae_decoder_only_is_recorded_and_must_stay_on_when_resumed(tiny_checkpoint, tmp_path, tryon):
    args = ("train", "vae", "--output", tmp_path / "vae", "--steps", "2", "--batch-size", "1", "--size", "32x32",
            "--frames", "1", "--examples", "2", "-q")
    run = tryon(*args, "--base", tiny_checkpoint, "--minutes", "0", "--decoder-only")
    assert run.code == 0, run.stderr
    run = tryon(*args, "--resume")  # the flag left out: the saved run trained the decoder alone
    assert run.code == 2 and len(run.stderr.strip().splitlines()) == 1 and "--decoder-only" in run.stderr
    run = tryon(*args, "--resume", "--decoder-only")
    assert run.code == 0, run.stderr
    assert load_model(str(tmp_path / "vae")).info.training["vae"]["decoder_only"] is True


def test_a_bad_time_budget_is_one_line_before_any_training(tiny_checkpoint, tmp_path, tryon):
    run = tryon("train", "teacher", "--data", "synthetic", "--base", tiny_checkpoint, "--output", tmp_path / "t",
                "--config", "demo", "--minutes", "-1")
    assert run.code == 2 and "--minutes" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("command", ["teacher", "decoder", "vae"])
def test_a_bad_mixed_precision_is_one_line_naming_the_flag(tiny_checkpoint, tmp_path, tryon, command):
    sources = {"teacher": ("--data", "synthetic", "--base", tiny_checkpoint, "--config", "demo"),
               "decoder": ("--data", "synthetic", "--vae", tiny_checkpoint), "vae": ("--base", tiny_checkpoint)}
    run = tryon("train", command, *sources[command], "--output", tmp_path / "out", "--mixed-precision", "fp16")
    assert run.code == 2 and len(run.stderr.strip().splitlines()) == 1
    assert "--mixed-precision must be one of auto, bf16, no" in run.stderr
    assert not (tmp_path / "out").exists()


def test_a_bad_kl_weight_is_one_line_naming_the_flag_before_any_training(tiny_checkpoint, tmp_path, tryon):
    run = tryon("train", "vae", "--base", tiny_checkpoint, "--output", tmp_path / "out", "--kl-weight", "-1")
    assert run.code == 2 and len(run.stderr.strip().splitlines()) == 1
    assert "--kl-weight must be a number from 0 to 1" in run.stderr
    assert not (tmp_path / "out").exists()
