"""`--model` with the public route: dress, dance and batch end to end on the tiny route, and its errors."""

import json

import pytest
from PIL import Image

from engine.media import probe_video

FAST = ("--size", "64x96", "--fps", "8", "--steps", "1")


def test_models_init_public_tiny_refuses_a_folder_that_is_not_empty(tryon, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    run = tryon("models", "init", "public-tiny", tmp_path)
    assert run.code == 2 and "not empty" in run.stderr and "Traceback" not in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_public_offline_is_one_line_exit_2_and_nothing_written(tryon, inputs, tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    run = tryon("dress", inputs / "user.png", f"{inputs / 'shirt.png'}:top", "--model", "public", "-o",
                tmp_path / "out.mp4")
    assert run.code == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Qwen/Qwen-Image-Edit-2509" in lines[0] and "HF_HUB_OFFLINE" in lines[0]
    assert not (tmp_path / "out.mp4").exists()


def test_the_route_takes_at_most_three_garments(tryon, tiny_route, inputs, tmp_path):
    garments = [f"{inputs / 'shirt.png'}:top"] * 2 + [f"{inputs / 'pants.png'}:bottom"] * 2
    run = tryon("dress", inputs / "user.png", *garments, "--model", tiny_route, *FAST, "-o", tmp_path / "o.mp4")
    assert run.code == 2 and "at most 3" in run.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_fuse_qkv_is_refused_on_the_route(tryon, tiny_route, inputs, tmp_path):
    run = tryon("dance", inputs / "user.png", "--model", tiny_route, "--fuse-qkv", *FAST, "-o", tmp_path / "o.mp4")
    assert run.code == 2 and "--fuse-qkv" in run.stderr and not (tmp_path / "o.mp4").exists()


@pytest.mark.slow
def test_dress_from_a_prompt_on_a_real_case(tryon, tiny_route, real_cases, tmp_path):
    case = real_cases / "case1"
    run = tryon("dress", case / "user.png", f"{case / 'garment.png'}:top", "--prompt", (case / "prompt.txt").read_text(),
                "--model", tiny_route, *FAST, "--seconds", "0.75", "-o", tmp_path / "out.mp4", "--json")
    assert run.code == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["frames"] == 6 and summary["size"] == [64, 96] and summary["fps"] == 8
    assert [s["stage"] for s in summary["stages"]] == ["edit", "i2v"]
    assert summary["stages"][0]["repo"] == "Qwen/Qwen-Image-Edit-2509" and summary["stages"][0]["revision"] == "main"
    info = probe_video(tmp_path / "out.mp4")
    assert (info.width, info.height, info.frame_count) == (64, 96, 6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


@pytest.mark.slow
def test_dress_and_dance_following_a_real_motion_video(tryon, tiny_route, real_cases, tmp_path):
    case = real_cases / "case4"
    run = tryon("dress", case / "user.png", case / "garment.png", "--motion", case / "target.mp4", "--model",
                tiny_route, *FAST, "--seconds", "1.5", "-o", tmp_path / "dress.mp4", "--json")
    assert run.code == 0, run.stderr
    summary = json.loads(run.stdout)
    assert [s["stage"] for s in summary["stages"]] == ["edit", "pose", "animate"]
    assert probe_video(tmp_path / "dress.mp4").frame_count == 12  # two animate windows of 9, chained
    run = tryon("dance", case / "user.png", "--motion", case / "target.mp4", "--model", tiny_route, *FAST,
                "--seconds", "0.5", "-o", tmp_path / "dance.mp4", "--json")
    assert run.code == 0, run.stderr
    assert [s["stage"] for s in json.loads(run.stdout)["stages"]] == ["pose", "animate"]  # dance skips the edit
    assert probe_video(tmp_path / "dance.mp4").frame_count == 4


@pytest.mark.slow
def test_batch_loads_each_stage_once(tryon, tiny_route, inputs, tmp_path, monkeypatch):
    from engine.api import loading
    from engine.checkpoint.public import route as route_module

    loading._loaded.clear()  # the route as a new process finds it: nothing loaded yet
    loads = []
    real_load = route_module.load_part
    monkeypatch.setattr(route_module, "load_part", lambda name, *a: loads.append(name) or real_load(name, *a))
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("user,garments,motion,prompt,seconds,seed,output\n"
                        f"{inputs / 'user.png'},{inputs / 'shirt.png'}:top,,she spins,0.5,1,a.mp4\n"
                        f"{inputs / 'user.png'},{inputs / 'pants.png'}:bottom,,she waves,0.5,2,b.mp4\n")
    run = tryon("batch", manifest, "-o", tmp_path / "out", "--model", tiny_route, *FAST)
    assert run.code == 0, run.stderr
    assert sorted(loads) == ["edit", "i2v"]
    assert probe_video(tmp_path / "out" / "a.mp4").frame_count == 4


def test_models_list_shows_the_route_with_repos_licences_and_computed_sizes(tryon):
    run = tryon("models", "list", "--json")
    assert run.code == 0, run.stderr
    entries = {entry["name"]: entry for entry in json.loads(run.stdout)["models"]}
    assert "computed from parameter counts" in entries["public"]["description"]
    for stage, repo in [("edit", "Qwen/Qwen-Image-Edit-2509"), ("i2v", "Wan-AI/Wan2.2-TI2V-5B-Diffusers"),
                        ("animate", "Wan-AI/Wan2.2-Animate-14B-Diffusers"), ("pose", "PekingU/rtdetr_r50vd_coco_o365")]:
        description = entries[f"public: {stage}"]["description"]
        assert repo in description and "Apache-2.0" in description and "with --offload model" in description
    assert "public-tiny" in entries


def test_the_demo_model_on_a_real_photo_points_at_the_route_once(tryon, real_cases, tmp_path):
    case = real_cases / "case2"
    run = tryon("dress", case / "user.png", f"{case / 'garment.png'}:top", "--steps", "1", "--seconds", "0.25",
                "-o", tmp_path / "out.mp4", "--json")
    assert run.code == 0, run.stderr
    notices = [n for n in json.loads(run.stdout)["notices"] if "--model public" in n]
    assert len(notices) == 1 and "synthetic world" in notices[0]


def test_the_demo_model_on_its_own_world_says_nothing_about_the_route(tryon, tmp_path):
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2] / "examples" / "sample_00002"
    run = tryon("dress", sample / "user.png", f"{sample / 'garment_top.png'}:top", "--steps", "1", "--seconds",
                "0.25", "-o", tmp_path / "out.mp4", "--json")
    assert run.code == 0, run.stderr
    assert not [n for n in json.loads(run.stdout)["notices"] if "--model public" in n]


@pytest.mark.slow
@pytest.mark.parametrize("motion", [False, True], ids=["edit+i2v", "edit+pose+animate"])
def test_every_stage_delivers_a_size_that_is_not_a_multiple_of_32(tryon, tiny_route, inputs, tmp_path, motion):
    # 72x100: neither side a multiple of 32 (nor of 16); generated at 96x128, centre-cropped.
    driving = ("--motion", inputs / "dance.mp4") if motion else ("--prompt", "she spins")
    run = tryon("dress", inputs / "user.png", f"{inputs / 'shirt.png'}:top", *driving, "--model", tiny_route,
                "--size", "72x100", "--fps", "8", "--steps", "1", "--seconds", "0.5", "-o", tmp_path / "out.mp4",
                "--keep-intermediates", tmp_path / "steps", "--json")
    assert run.code == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["size"] == [72, 100]
    stages = ["edit", "pose", "animate"] if motion else ["edit", "i2v"]
    assert [s["stage"] for s in summary["stages"]] == stages
    assert all(s["seconds"] > 0 for s in summary["stages"])
    assert sum(s["seconds"] for s in summary["stages"]) <= summary["seconds_taken"]
    info = probe_video(tmp_path / "out.mp4")
    assert (info.width, info.height, info.frame_count) == (72, 100, 4)
    kept = sorted(p.name for p in (tmp_path / "steps").iterdir())
    assert kept == (["dressed.png", "faces.mp4", "pose.mp4"] if motion else ["dressed.png"])
    assert sorted(summary["intermediates"]) == sorted(str(tmp_path / "steps" / name) for name in kept)
    assert Image.open(tmp_path / "steps" / "dressed.png").size == (96, 128)  # what the video stage started from
    if motion:
        pose, faces = probe_video(tmp_path / "steps" / "pose.mp4"), probe_video(tmp_path / "steps" / "faces.mp4")
        assert (pose.width, pose.height, pose.frame_count) == (96, 128, 4)
        assert (faces.width, faces.height, faces.frame_count) == (16, 16, 4)  # the tiny motion encoder's input


def test_keep_intermediates_is_refused_where_it_cannot_apply(tryon, tiny_route, tiny_checkpoint, inputs, tmp_path):
    (tmp_path / "file").write_text("mine")
    run = tryon("dance", inputs / "user.png", "--model", tiny_route, *FAST, "--keep-intermediates", tmp_path / "file",
                "-o", tmp_path / "o.mp4")
    assert run.code == 2 and "--keep-intermediates" in run.stderr and "file" in run.stderr
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "dressed.png").write_text("earlier")
    run = tryon("dress", inputs / "user.png", inputs / "shirt.png", "--model", tiny_route, *FAST,
                "--keep-intermediates", tmp_path / "steps", "-o", tmp_path / "o.mp4")
    assert run.code == 2 and "dressed.png" in run.stderr and "--overwrite" in run.stderr
    run = tryon("dance", inputs / "user.png", "--model", tiny_checkpoint, *FAST, "--keep-intermediates",
                tmp_path / "other", "-o", tmp_path / "o.mp4")
    assert run.code == 2 and "public route" in run.stderr and len(run.stderr.strip().splitlines()) <= 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "steps"]
    assert (tmp_path / "steps" / "dressed.png").read_text() == "earlier"
