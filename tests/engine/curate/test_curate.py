"""`tryon data curate`: raw videos → training samples, every decision logged, resumable, sharded like batch."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from engine.api.batch import Shard
from engine.curate import curate
from engine.curate import filtering
from engine.curate.pipeline import LOG_FILE
from engine.media import probe_video, write_video
from engine.synth import make_sample



def synthetic_clip(seed: int) -> np.ndarray:
    return make_sample(seed, size=(96, 160), num_frames=17, fps=8).target


@pytest.fixture
def videos(tmp_path, real_cases_or_none):
    """The done-when folder: real targets (when present), synthetic clips, a corrupt file, a two-person clip,
    a still clip, and a video with a scene cut."""
    folder = tmp_path / "videos"
    folder.mkdir()
    for case in real_cases_or_none:
        shutil.copy(case / "target.mp4", folder / f"real_{case.name}.mp4")
    for seed in (1, 2):
        write_video(folder / f"synthetic_{seed}.mp4", synthetic_clip(seed), 8)
    (folder / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    write_video(folder / "two_people.mp4", np.concatenate([synthetic_clip(3), synthetic_clip(4)], axis=2), 8)
    write_video(folder / "still.mp4", np.repeat(synthetic_clip(5)[:1], 17, axis=0), 8)
    write_video(folder / "cut.mp4", np.concatenate([synthetic_clip(6), 255 - synthetic_clip(7)]), 8)
    return folder


@pytest.fixture
def real_cases_or_none(real_cases_root):
    """The real cases' folders when they are there (tests/conftest.py); none otherwise (the rest still runs)."""
    return sorted(path for path in real_cases_root.glob("case*") if (path / "target.mp4").is_file())


def decisions(out):
    return [json.loads(line) for line in (out / LOG_FILE).read_text().splitlines()]


@pytest.mark.slow
def test_curation_writes_samples_that_train_and_explains_every_drop(videos, curation_models, toy_curation,
                                                                   tiny_checkpoint, tmp_path, real_cases_or_none):
    from safetensors.torch import load_file

    from engine.train.config import TrainConfig
    from engine.train.data import FolderDataset
    from engine.train.teacher import train_teacher

    out = tmp_path / "curated"
    summary = curate(videos, out, curation_models, toy_curation)
    log = decisions(out)
    dropped = {(entry["video"], entry["stage"]): entry["reason"] for entry in log if entry["decision"] == "dropped"}
    assert "not decodable" in dropped[("corrupt.mp4", "filter")]
    assert "2 persons detected" in dropped[("two_people.mp4", "filter")]
    assert "too still" in dropped[("still.mp4", "filter")]
    assert all(entry["reason"] for entry in log)  # every decision says why
    cut = [entry for entry in log if entry["video"] == "cut.mp4" and entry["stage"] == "filter"]
    assert [entry["clip"] for entry in cut] == ["cut-000", "cut-001"] and cut[0]["scenes"] == 2

    samples = summary.samples
    assert {sample.name for sample in samples} >= {"synthetic_1-000", "synthetic_2-000", "cut-000", "cut-001"}
    for sample in samples:
        names = {path.name for path in sample.iterdir()}
        assert {"user.png", "target.mp4", "caption.txt", "meta.json"} <= names
        assert any(name.startswith("garment_") for name in names)
    meta = json.loads((out / "samples" / "synthetic_1-000" / "meta.json").read_text())
    assert meta["source"] == "synthetic_1.mp4" and meta["reference_garments_from"]
    assert probe_video(out / "samples" / "synthetic_1-000" / "target.mp4").frame_count == 17

    # `tryon train teacher` reads them as they are: the folder dataset, and one training step.
    for case in real_cases_or_none:  # real footage goes through all four stages too
        assert (out / "samples" / f"real_{case.name}-000").is_dir() or any(
            entry["video"] == f"real_{case.name}.mp4" and entry["decision"] == "dropped" for entry in log)
    config = TrainConfig.from_dict({"stages": [{"name": "clips", "steps": 2, "size": [32, 32], "num_frames": 5,
                                                "fps": 8, "batch_size": 1}], "checkpoint_every": 2})
    example = FolderDataset(out, (32, 32), 5, 8)[0]
    assert example.target.shape == (5, 32, 32, 3) and example.garments
    teacher = train_teacher(out, str(tiny_checkpoint), tmp_path / "teacher", config)
    trained = load_file(teacher / "transformer" / "diffusion_pytorch_model.safetensors")
    base = load_file(tiny_checkpoint / "transformer" / "diffusion_pytorch_model.safetensors")
    assert any(not np.array_equal(trained[name].numpy(), base[name].numpy()) for name in base)

    # A re-run has nothing left to do: no new decisions, the same samples.
    again = curate(videos, out, curation_models, toy_curation)
    assert decisions(out) == log and sorted(again.samples) == sorted(samples)
    assert again.decisions == {}


@pytest.mark.slow
def test_shards_split_the_videos_like_batch_and_share_the_log(tmp_path, curation_models, toy_curation):
    folder = tmp_path / "videos"
    folder.mkdir()
    for seed in (1, 2, 3):
        write_video(folder / f"v{seed}.mp4", synthetic_clip(seed), 8)
    out = tmp_path / "out"
    first = curate(folder, out, curation_models, toy_curation, shard=Shard(1, 2))
    second = curate(folder, out, curation_models, toy_curation, shard=Shard(2, 2))
    assert (first.videos, second.videos) == (2, 1)  # v1, v3 | v2
    videos = [entry["video"] for entry in decisions(out) if entry["stage"] == "filter"]
    assert sorted(videos) == ["v1.mp4", "v2.mp4", "v3.mp4"]


def test_validation_drops_a_garment_with_its_reason(tmp_path, curation_models, toy_curation):
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "v.mp4", synthetic_clip(1), 8)
    curate(folder, tmp_path / "out", curation_models, replace(toy_curation, min_validation=1.0))
    garment = [entry for entry in decisions(tmp_path / "out") if entry["stage"] == "garment"]
    assert garment and all(entry["decision"] == "dropped" for entry in garment)
    assert "failed validation" in garment[0]["reason"] and garment[-1]["reason"] == "no extracted garment passed validation"
    assert not (tmp_path / "out" / "samples").exists()


def test_scene_cuts_and_checks_on_frames(toy_curation, curation_models):
    clip = synthetic_clip(1)
    assert filtering.scene_segments(clip, 0.4) == [filtering.Segment(0, 17)]
    joined = np.concatenate([clip, 255 - synthetic_clip(2)])
    assert filtering.scene_segments(joined, 0.4) == [filtering.Segment(0, 17), filtering.Segment(17, 34)]
    config = toy_curation
    assert filtering.check_resolution(60, 100, config).startswith("resolution 60x100")
    assert filtering.check_duration(4, 8, config) == "video lasts 0.50 s, under 1 s"
    reason, counts = filtering.check_one_person(curation_models.detector, np.concatenate([clip, clip], axis=2), config)
    assert reason.startswith("2 persons") and counts == [2, 2, 2]


def test_the_real_detector_class_runs_at_tiny_size(tmp_path):
    from engine.curate.models import RTDetrPersonDetector, build_tiny_detector

    detector = RTDetrPersonDetector(build_tiny_detector(tmp_path / "detector"))
    scores = detector.person_scores(list(synthetic_clip(1)[:2]))
    assert len(scores) == 2 and all(0.0 <= score <= 1.0 for frame in scores for score in frame)


@pytest.mark.parametrize("scorer", ["SharpnessColourScorer", "AestheticScorer"])
def test_each_scorer_keeps_its_threshold_on_its_own_scale(scorer):
    from engine.curate.config import CurateConfig
    from engine.train import scorer as scorers

    kind = getattr(scorers, scorer)
    assert scorers.RAW_LOW < kind.keep_from < scorers.RAW_HIGH
    assert filtering.quality_threshold(CurateConfig(), kind) == kind.keep_from
    assert filtering.quality_threshold(CurateConfig(min_quality=7.5), kind) == 7.5


def test_the_default_quality_gate_drops_a_flat_grey_clip_and_keeps_a_lively_one():
    from engine.curate.config import CurateConfig
    from engine.train.scorer import make_scorer

    config = CurateConfig()  # every default: the scorer is the one `auto` finds without aesthetic weights
    scorer = make_scorer(config.scorer, config.aesthetic_weights, log=lambda message: None)
    grey = np.full((8, 64, 48, 3), 128, dtype=np.uint8)
    reason, quality = filtering.check_quality(scorer, grey, config)
    assert quality == pytest.approx(1.0) and reason is not None and "under" in reason
    reason, _ = filtering.check_quality(scorer, synthetic_clip(1), config)
    assert reason is None


@pytest.mark.parametrize("value", [0.3, 0.0, 10.5])
def test_a_quality_threshold_off_the_scorers_scale_is_refused(value):
    from engine.curate.config import CurateConfig
    from engine.errors import InputError

    with pytest.raises(InputError, match="min_quality.*1 to 10"):
        CurateConfig(min_quality=value)
