"""`tryon eval --bench hgc`: render a tiny bench in HGC-Bench's layout with a model, score it, table and JSON."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from engine.media import probe_video


@pytest.fixture
def bench(tmp_path):
    folder = tmp_path / "HGC-Bench"
    (folder / "samples").mkdir(parents=True)
    rng = np.random.default_rng(0)
    with open(folder / "meta_data.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["src_image", "cloth_image", "prompt"])
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (96, 64, 3), dtype=np.uint8)).save(folder / "samples" / f"s{i}.png")
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / "samples" / f"c{i}.png")
            writer.writerow([f"samples/s{i}.png", f"samples/c{i}.png", json.dumps({"caption": {"en_short": "she spins"}})])
    return folder


@pytest.mark.slow
def test_the_bench_is_rendered_with_a_model_then_scored(tryon, tiny_checkpoint, bench, tmp_path):
    predictions = tmp_path / "pred"
    args = ["eval", bench, "--bench", "hgc", "--model", tiny_checkpoint, "--predictions", predictions,
            "--size", "32x64", "--seconds", "0.5", "--fps", "8", "--steps", "2", "--device", "cpu"]
    run = tryon(*args, "--json")
    assert run.code == 0, run.stderr
    report = json.loads(run.stdout)
    assert (report["samples"], report["scored"], report["render"]["ok"]) == (2, 2, 2)
    info = probe_video(predictions / "output_1.mp4")
    assert (info.width, info.height, info.frame_count) == (32, 64, 4)
    assert report["metrics"]["Smoo"]["value"] is not None and report["metrics"]["HGC"]["skipped"]

    again = tryon(*args)  # renders nothing twice, prints the paper's columns and why each is missing
    assert again.code == 0, again.stderr
    assert "Cur ↑" in again.stdout and "NTP ↑" in again.stdout
    assert "HGC: skipped: no VLM judge" in again.stdout


def test_bench_usage_errors_are_one_line(tryon, bench):
    run = tryon("eval", bench, "--bench", "hgc")
    assert run.code == 2 and "--predictions" in run.stderr
    run = tryon("eval", bench, "--bench", "vbench", "--predictions", bench)
    assert run.code == 2 and "--bench must be hgc" in run.stderr
    run = tryon("eval", bench / "samples", "--bench", "hgc", "--predictions", bench)
    assert run.code == 2 and "meta_data.csv" in run.stderr
    run = tryon("eval", bench)
    assert run.code == 2 and "--reference" in run.stderr


def test_plan_prints_the_memory_table_and_training_needs_its_options(tryon):
    run = tryon("train", "teacher", "--plan", "--preset", "tiny", "--config", "demo", "--gpus", "2",
                "--gpu-memory", "8", "--json")
    assert run.code == 0, run.stderr
    plan = json.loads(run.stdout)
    assert plan["fits"] and [s["stage"] for s in plan["stages"]] == ["images", "clips"]
    table = tryon("train", "teacher", "--plan", "--preset", "tiny", "--config", "demo")
    assert table.code == 0 and "activations" in table.stdout and "fits" in table.stdout
    missing = tryon("train", "teacher", "--base", "x")
    assert missing.code == 2 and "--data" in missing.stderr and "--output" in missing.stderr
