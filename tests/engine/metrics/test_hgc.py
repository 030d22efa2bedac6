"""HGC-Bench: its published layout, the metrics through pluggable models, skipped ones with their reason."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from engine.errors import InputError
from engine.media import read_video, write_video
from engine.metrics import motion_magnitude, smoothness
from engine.api.data import BenchModels, bench_metrics
from engine.metrics.hgc import JUDGE_QUESTIONS, METRICS, JudgeMetric, bench_prompt, read_bench, score_bench


def make_bench(folder, rows: int = 2):
    """A tiny bench in HGC-Bench's layout: meta_data.csv (src_image, cloth_image, prompt JSON) + images."""
    rng = np.random.default_rng(1)
    (folder / "samples").mkdir(parents=True)
    with open(folder / "meta_data.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["src_image", "cloth_image", "prompt"])
        for i in range(rows):
            Image.fromarray(rng.integers(0, 255, (80, 48, 3), dtype=np.uint8)).save(folder / "samples" / f"{i}_src.png")
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / "samples" / f"{i}_cloth.png")
            caption = {"caption": {"en_short": f"a woman walks {i}", "cn_short": "一位女性"}}
            writer.writerow([f"samples/{i}_src.png", f"samples/{i}_cloth.png", json.dumps(caption, ensure_ascii=False)])
    return folder


@pytest.fixture
def bench(tmp_path):
    return make_bench(tmp_path / "HGC-Bench")


def test_the_published_layout_reads_as_samples(bench):
    samples = read_bench(bench)
    assert [s.index for s in samples] == [0, 1]
    assert samples[1].prompt == "a woman walks 1"  # en_short, as FashionChameleon's predictors use
    assert samples[0].source == bench / "samples" / "0_src.png"
    assert samples[1].prediction_name == "output_1.mp4"
    assert bench_prompt("plain words") == "plain words"
    assert bench_prompt(json.dumps({"caption": {"en_long": ["she walks.", "a street."]}})) == "she walks. a street."


def test_a_broken_bench_names_the_file_and_row(tmp_path, bench):
    with pytest.raises(InputError, match="meta_data.csv"):
        read_bench(tmp_path / "nothing")
    (bench / "samples" / "1_cloth.png").unlink()
    with pytest.raises(InputError, match="row 1: cloth_image"):
        read_bench(bench)
    (bench / "meta_data.csv").write_text("src_image,prompt\na.png,x\n")
    with pytest.raises(InputError, match="missing cloth_image"):
        read_bench(bench)


def test_existing_predictions_are_scored_and_metrics_without_models_say_why(bench, tmp_path):
    predictions = tmp_path / "pred"
    predictions.mkdir()
    frames = np.random.default_rng(2).integers(0, 255, (9, 64, 48, 3), dtype=np.uint8)
    write_video(predictions / "output_0.mp4", frames, 8)
    report = score_bench(read_bench(bench), predictions, bench_metrics(BenchModels()), read_video)
    assert (report.samples, report.scored, report.missing) == (2, 1, ["output_1.mp4"])
    decoded = read_video(predictions / "output_0.mp4")
    assert report.means["Amp"] == pytest.approx(motion_magnitude(decoded))
    assert report.means["Smoo"] == pytest.approx(smoothness(decoded))
    for key in ("Cur", "GME", "VQ", "HGC", "LGC", "NTP"):
        assert report.means[key] is None and report.skipped[key]
    assert "VLM" in report.skipped["HGC"] and "identity" in report.skipped["Cur"]
    data = report.to_dict()
    assert list(data["metrics"]) == list(METRICS)
    assert data["metrics"]["Amp"]["model"] and data["metrics"]["NTP"]["skipped"]


def test_a_model_that_cannot_load_is_a_skip_not_a_crash(bench, tmp_path):
    metrics = bench_metrics(BenchModels(vlm=tmp_path / "no-vlm", quality=tmp_path / "no-aesthetic"))
    assert "could not be loaded" in metrics.skipped["HGC"]
    assert "could not be loaded" in metrics.skipped["VQ"]


@pytest.mark.slow
def test_tiny_models_of_the_real_classes_score_every_metric(bench, tmp_path):
    from engine.vision.embedders import build_tiny_clip
    from engine.vision.vlm import LocalVLM, build_tiny_vlm

    vlm, clip = build_tiny_vlm(tmp_path / "vlm"), build_tiny_clip(tmp_path / "clip")
    predictions = tmp_path / "pred"
    predictions.mkdir()
    for i in range(2):
        write_video(predictions / f"output_{i}.mp4",
                    np.random.default_rng(i).integers(0, 255, (5, 64, 48, 3), dtype=np.uint8), 8)
    models = BenchModels(vlm=vlm, identity=clip, text=clip)
    samples = read_bench(bench)
    report = score_bench(samples, predictions, bench_metrics(models), read_video)
    assert report.scored == 2
    judge = LocalVLM(vlm)  # the judge asked directly: garment, person, then 4 frames spread over the video
    frames = read_video(predictions / "output_1.mp4")
    images = [Image.open(samples[1].garment), Image.open(samples[1].source),
              *[Image.fromarray(frames[i]) for i in (0, 1, 3, 4)]]
    for key in ("HGC", "LGC", "NTP"):
        assert report.per_sample[1][key] == pytest.approx(judge.rate(images, JUDGE_QUESTIONS[key]))
    for key in ("Cur", "GME"):
        assert -1.0 <= report.means[key] <= 1.0
    assert report.skipped == {"VQ": report.skipped["VQ"]}  # only VQ lacks its model


def test_the_judge_scores_the_expected_digit_of_each_question(bench, tmp_path, tiny_vlm_folder, monkeypatch):
    """HGC, LGC and NTP are each the mean digit the VLM gives its own question (a stand-in distribution)."""
    from engine.vision.vlm import LocalVLM

    vlm = LocalVLM(tiny_vlm_folder)
    digit = {d: vlm.tokenizer.convert_tokens_to_ids(d) for d in "12345"}
    answers = {"HGC": {"5": 1.0}, "LGC": {"1": 0.5, "3": 0.5}, "NTP": {"2": 0.25, "4": 0.25}}  # 0.01 elsewhere
    seen = []

    def probabilities(images, question):
        seen.append(len(images))
        key = next(k for k, text in JUDGE_QUESTIONS.items() if text == question)
        p = torch.full((len(vlm.tokenizer),), 0.01)
        for answer, mass in answers[key].items():
            p[digit[answer]] = mass
        return p

    monkeypatch.setattr(vlm, "next_token_probabilities", probabilities)
    predictions = tmp_path / "pred"
    predictions.mkdir()
    write_video(predictions / "output_0.mp4", np.random.default_rng(0).integers(0, 255, (9, 64, 48, 3), np.uint8), 8)
    metrics = bench_metrics(BenchModels())  # the model-free metrics, and the judge given its VLM by hand:
    metrics.add(JudgeMetric.keys, lambda: JudgeMetric(vlm), "")
    for key in JudgeMetric.keys:
        del metrics.skipped[key]
    report = score_bench(read_bench(bench), predictions, metrics, read_video)
    assert report.means["HGC"] == pytest.approx((0.01 * (1 + 2 + 3 + 4) + 1.0 * 5) / 1.04)
    assert report.means["LGC"] == pytest.approx((0.5 * 1 + 0.01 * 2 + 0.5 * 3 + 0.01 * 4 + 0.01 * 5) / 1.03)
    assert report.means["NTP"] == pytest.approx((0.01 * 1 + 0.25 * 2 + 0.01 * 3 + 0.25 * 4 + 0.01 * 5) / 0.53)
    assert seen == [6, 6, 6]  # garment, person, and 4 of the video's 9 frames
