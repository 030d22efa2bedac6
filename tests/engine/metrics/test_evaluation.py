"""score_videos alignment, file/folder evaluation, the report, and LPIPS's offline gate."""

from __future__ import annotations

import json
import math
import sys
import types

import numpy as np
import pytest
import torch

from engine.errors import InputError
from engine.metrics import (
    METRICS,
    EvalReport,
    SampleScores,
    evaluate,
    mean_scores,
    perceptual,
    score_videos,
)

# The package re-exports the function `evaluate`, which shadows the submodule attribute.


def _video(rng, t=6, h=32, w=32) -> np.ndarray:
    return rng.integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


def _garment_masks(t=6, h=32, w=32) -> dict[str, np.ndarray]:
    top = np.zeros((t, h, w), dtype=bool)
    top[:, 4:14, 6:26] = True
    bottom = np.zeros((t, h, w), dtype=bool)
    bottom[:, 16:30, 8:24] = True
    return {"top": top, "bottom": bottom}


# --- score_videos -------------------------------------------------------------------------


def test_score_identical_videos(rng):
    x = _video(rng)
    s = score_videos(x, x, _garment_masks(), "a")
    assert (s.name, s.frames, s.psnr, s.garment_color_error, s.garment_mae) == ("a", 6, 100.0, 0.0, 0.0)
    assert s.ssim == pytest.approx(1.0, abs=1e-6)
    assert s.smoothness == s.ref_smoothness and s.motion_magnitude == s.ref_motion_magnitude


def test_score_without_masks_has_no_garment_metrics(rng):
    x = _video(rng)
    s = score_videos(x, x, None, "a")
    assert s.garment_color_error is None and s.garment_mae is None
    assert score_videos(x, x, {}, "a").garment_mae is None


def test_score_uses_union_of_garment_masks(rng):
    x = _video(rng)
    y = x.copy()
    masks = _garment_masks()
    y[masks["bottom"]] = 0  # only the bottom garment differs
    assert score_videos(y, x, {"top": masks["top"]}, "a").garment_mae == 0.0
    assert score_videos(y, x, masks, "a").garment_mae > 0.0


def test_score_compares_first_common_frames(rng):
    x = _video(rng, t=6)
    pred = np.concatenate([x[:4], _video(rng, t=3)])  # 7 frames, first 4 match
    notices: list[str] = []
    s = score_videos(pred, x[:4], _garment_masks(t=4), "a", notices=notices)
    assert s.frames == 4 and s.psnr == 100.0
    assert any("7 frames, reference 4" in n for n in notices)


def test_score_resizes_prediction_to_reference(rng):
    x = np.full((3, 32, 32, 3), 90, dtype=np.uint8)
    notices: list[str] = []
    s = score_videos(np.full((3, 64, 48, 3), 90, dtype=np.uint8), x, None, "a", notices=notices)
    assert s.psnr == 100.0
    assert any("48x64" in n and "resized" in n for n in notices)


def test_score_reports_lpips_skipped(rng):
    x = _video(rng)
    notices: list[str] = []
    s = score_videos(x, x, None, "a", notices=notices)
    if s.lpips is None:
        assert any(n.startswith("LPIPS skipped: ") for n in notices)


# --- the report ---------------------------------------------------------------------------


def _scores(name, **overrides) -> SampleScores:
    values = dict(
        psnr=30.0, ssim=0.9, lpips=None, garment_color_error=None, garment_mae=None, motion_leakage=None,
        smoothness=0.99, motion_magnitude=0.01, ref_smoothness=0.98, ref_motion_magnitude=0.02,
    )
    values.update(overrides)
    return SampleScores(name=name, frames=5, **values)


def test_mean_is_none_aware():
    mean = mean_scores([_scores("a", garment_mae=2.0), _scores("b", psnr=40.0)])
    assert mean["psnr"] == 35.0 and mean["garment_mae"] == 2.0
    assert mean["lpips"] is None and mean["garment_color_error"] is None
    assert set(mean) == set(METRICS)


def test_report_to_dict_is_json_ready():
    report = EvalReport(samples=[_scores("a")], mean=mean_scores([_scores("a")]), notices=["n"])
    data = json.loads(json.dumps(report.to_dict()))
    assert data["samples"][0]["name"] == "a" and data["samples"][0]["lpips"] is None
    assert data["mean"]["psnr"] == 30.0 and data["notices"] == ["n"]


# --- files and folders --------------------------------------------------------------------


def test_evaluate_single_file_against_plain_video(tmp_path, rng, write_video):
    x = _video(rng)
    y = np.clip(x.astype(np.int32) + 10, 0, 255).astype(np.uint8)
    report = evaluate(write_video(tmp_path / "pred.mp4", y), write_video(tmp_path / "gt.mp4", x))
    (s,) = report.samples
    assert s.name == "pred" and s.frames == 6 and s.garment_mae is None
    assert s.psnr == pytest.approx(score_videos(y, x, None, "pred").psnr)
    assert report.mean["garment_color_error"] is None


def test_evaluate_compares_videos_of_different_fps_by_time(tmp_path, write_video):
    # 48 frames of 2 s at 24 fps, each a different flat colour; the prediction is the same
    # clip at 8 fps (every third frame). Frame by frame, frame i would meet frame 3i.
    colours = np.linspace(0, 255, 48).astype(np.uint8)
    reference = np.broadcast_to(colours[:, None, None, None], (48, 32, 32, 3)).copy()
    report = evaluate(write_video(tmp_path / "pred.mp4", reference[::3], fps=8),
                      write_video(tmp_path / "gt.mp4", reference, fps=24))
    (s,) = report.samples
    assert s.psnr == 100.0 and s.frames == 16  # at 8 fps: reference frames 0, 3, 6, ...
    assert any("8 fps, reference 24 fps; compared by time, at 8 fps" in notice for notice in report.notices)
    frame_by_frame = score_videos(reference[::3], reference[:16])
    assert frame_by_frame.psnr < 40


def test_evaluate_single_file_against_sample_folder(tmp_path, rng, write_video, write_sample):
    x = _video(rng)
    sample = write_sample(tmp_path / "ref" / "s1", x, _garment_masks())
    report = evaluate(write_video(tmp_path / "s1.mp4", x), sample)
    (s,) = report.samples
    assert (s.psnr, s.garment_color_error, s.garment_mae) == (100.0, 0.0, 0.0)
    assert s.ssim == pytest.approx(1.0, abs=1e-6)


def test_evaluate_folder_pair_matches_by_name(tmp_path, rng, write_video, write_sample):
    masks = _garment_masks()
    a, b = _video(rng), _video(rng)
    b_pred = b.copy()
    b_pred[masks["top"]] = [255, 0, 0]  # recolour the top garment only
    write_sample(tmp_path / "ref" / "a", a, masks)
    write_video(tmp_path / "ref" / "b.mp4", b)  # plain reference: no masks
    write_sample(tmp_path / "ref" / "c", b, None)  # reference without prediction
    write_video(tmp_path / "pred" / "a.mp4", a)
    write_video(tmp_path / "pred" / "b.mp4", b_pred)
    write_video(tmp_path / "pred" / "extra.mp4", a)  # prediction without reference

    report = evaluate(tmp_path / "pred", tmp_path / "ref")

    assert [s.name for s in report.samples] == ["a", "b"]
    sa, sb = report.samples
    assert (sa.psnr, sa.garment_color_error) == (100.0, 0.0)
    assert sb.garment_color_error is None and sb.psnr < 100.0
    assert report.mean["psnr"] == pytest.approx((100.0 + sb.psnr) / 2)
    assert report.mean["garment_color_error"] == 0.0  # only sample a has masks
    assert any(n.startswith("extra: no reference") for n in report.notices)
    assert any("have no prediction: c" in n for n in report.notices)
    assert len(report.notices) == len(set(report.notices))
    json.dumps(report.to_dict())


def test_evaluate_garment_error_sees_recoloured_garment(tmp_path, rng, write_video, write_sample):
    masks = _garment_masks()
    x = np.full((6, 32, 32, 3), 255, dtype=np.uint8)  # white garments on white
    pred = x.copy()
    pred[masks["top"] | masks["bottom"]] = [255, 0, 0]
    write_sample(tmp_path / "ref" / "s", x, masks)
    report = evaluate(write_video(tmp_path / "s.mp4", pred), tmp_path / "ref" / "s")
    red_to_white = math.sqrt((100 - 53.2408) ** 2 + 80.0925**2 + 67.2032**2)
    assert report.samples[0].garment_color_error == pytest.approx(red_to_white, abs=1e-2)


def test_evaluate_missing_pred_names_it(tmp_path, rng, write_video):
    ref = write_video(tmp_path / "gt.mp4", _video(rng, t=2))
    with pytest.raises(InputError, match="nope.mp4: not found"):
        evaluate(tmp_path / "nope.mp4", ref)
    with pytest.raises(InputError, match="gone: not found"):
        evaluate(ref, tmp_path / "gone")


def test_evaluate_missing_target_names_it(tmp_path, rng, write_video):
    (tmp_path / "ref" / "a").mkdir(parents=True)
    (tmp_path / "ref" / "a" / "meta.json").write_text("{}")
    write_video(tmp_path / "pred" / "a.mp4", _video(rng, t=2))
    with pytest.raises(InputError, match=r"target\.mp4: not found"):
        evaluate(tmp_path / "pred", tmp_path / "ref")


def test_evaluate_missing_masks_file_names_it(tmp_path, rng, write_video, write_sample):
    x = _video(rng, t=2)
    sample = write_sample(tmp_path / "s", x, _garment_masks(t=2))
    (sample / "masks.npz").unlink()
    with pytest.raises(InputError, match=r"masks\.npz: masks file not found"):
        evaluate(write_video(tmp_path / "p.mp4", x), sample)


def test_evaluate_mask_of_wrong_size_names_the_masks_file(tmp_path, rng, write_video, write_sample):
    x = _video(rng, t=2)
    sample = write_sample(tmp_path / "s", x, _garment_masks(t=2, h=16, w=16))
    with pytest.raises(InputError, match=r"masks\.npz: mask 'top' has shape"):
        evaluate(write_video(tmp_path / "p.mp4", x), sample)


def test_evaluate_no_matches_is_an_input_error(tmp_path, rng, write_video, write_sample):
    write_video(tmp_path / "pred" / "x.mp4", _video(rng, t=2))
    write_sample(tmp_path / "ref" / "y", _video(rng, t=2), None)
    with pytest.raises(InputError, match="no prediction matches a reference"):
        evaluate(tmp_path / "pred", tmp_path / "ref")


def test_evaluate_empty_pred_folder_and_mixed_kinds(tmp_path, rng, write_video):
    (tmp_path / "pred").mkdir()
    (tmp_path / "ref").mkdir()
    with pytest.raises(InputError, match=r"pred: no \.mp4 files"):
        evaluate(tmp_path / "pred", tmp_path / "ref")
    ref = write_video(tmp_path / "gt.mp4", _video(rng, t=2))
    with pytest.raises(InputError, match="needs a folder of references"):
        evaluate(tmp_path / "pred", ref)


def test_evaluate_rejects_frames_too_small_for_ssim(tmp_path, rng, write_video):
    x = _video(rng, t=2, h=8, w=8)
    with pytest.raises(InputError, match="gt.mp4: frames are 8x8"):
        evaluate(write_video(tmp_path / "p.mp4", x), write_video(tmp_path / "gt.mp4", x))


# --- LPIPS gate ---------------------------------------------------------------------------


@pytest.fixture
def fresh_lpips():
    perceptual._load_lpips.cache_clear()
    yield
    perceptual._load_lpips.cache_clear()


def test_lpips_skipped_without_package(monkeypatch, rng, fresh_lpips):
    monkeypatch.setitem(sys.modules, "lpips", None)  # import lpips -> ImportError
    x = _video(rng, t=1)
    assert perceptual.lpips_distance(x, x) == (None, "LPIPS skipped: the lpips package is not installed")


class _FakeLPIPS(torch.nn.Module):
    """Stands in for lpips.LPIPS: a backbone with lpips' slice naming, distance = mean |x - y|."""

    def __init__(self, **kwargs):
        super().__init__()
        assert kwargs["pnet_rand"] is True  # never asks torchvision for pretrained weights
        self.net = torch.nn.Module()
        self.net.slice1 = torch.nn.Sequential()
        self.net.slice1.add_module("0", torch.nn.Conv2d(3, 2, 1))

    def forward(self, x, y):
        assert x.min() >= -1 and x.max() <= 1
        return (x - y).abs().mean(dim=(1, 2, 3), keepdim=True)


def _fake_lpips_package(tmp_path, monkeypatch, with_weights: bool):
    pkg = tmp_path / "lpips"
    (pkg / "weights" / "v0.1").mkdir(parents=True)
    if with_weights:
        (pkg / "weights" / "v0.1" / "alex.pth").write_bytes(b"")
        hub = tmp_path / "hub"
        (hub / "checkpoints").mkdir(parents=True)
        torch.save({"features.0.weight": torch.zeros(2, 3, 1, 1), "features.0.bias": torch.ones(2)},
                   hub / "checkpoints" / perceptual.ALEXNET_CHECKPOINT)
        monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    module = types.ModuleType("lpips")
    module.__file__ = str(pkg / "__init__.py")
    module.LPIPS = _FakeLPIPS
    monkeypatch.setitem(sys.modules, "lpips", module)


def test_lpips_skipped_without_weights(tmp_path, monkeypatch, rng, fresh_lpips):
    _fake_lpips_package(tmp_path, monkeypatch, with_weights=False)
    x = _video(rng, t=1)
    score, notice = perceptual.lpips_distance(x, x)
    assert score is None and notice.startswith("LPIPS skipped: weights not found at ")
    assert "alex.pth" in notice


def test_lpips_runs_when_package_and_weights_are_local(tmp_path, monkeypatch, rng, fresh_lpips):
    _fake_lpips_package(tmp_path, monkeypatch, with_weights=True)
    x = np.zeros((10, 16, 16, 3), dtype=np.uint8)  # more frames than one batch
    y = np.full_like(x, 255)
    assert perceptual.lpips_distance(x, x) == (0.0, None)
    assert perceptual.lpips_distance(x, y) == (pytest.approx(2.0), None)
    model, _ = perceptual._load_lpips()
    assert torch.equal(model.net.slice1[0].bias, torch.ones(2))  # backbone loaded from the cache
    s = score_videos(x, y, None, "a")
    assert s.lpips == pytest.approx(2.0)


def test_evaluate_single_file_finds_its_sample_in_a_folder(tmp_path, rng, write_video, write_sample):
    x = _video(rng, t=2)
    write_sample(tmp_path / "ref" / "s7", x, _garment_masks(t=2))
    report = evaluate(write_video(tmp_path / "s7.mp4", x), tmp_path / "ref")
    assert report.samples[0].name == "s7" and report.samples[0].garment_mae == 0.0
    with pytest.raises(InputError, match="holds no reference named 'other'"):
        evaluate(write_video(tmp_path / "other.mp4", x), tmp_path / "ref")


def test_evaluate_bad_meta_json_names_it(tmp_path, rng, write_video, write_sample):
    x = _video(rng, t=2)
    sample = write_sample(tmp_path / "s", x, None)
    (sample / "meta.json").write_text("{not json")
    with pytest.raises(InputError, match=r"meta\.json: cannot read sample metadata"):
        evaluate(write_video(tmp_path / "p.mp4", x), sample)


def test_a_synthetic_sample_reference_gives_motion_leakage(tmp_path):
    from engine.synth import make_sample, write_sample

    sample = make_sample(5, size=(64, 112), num_frames=5)
    folder = write_sample(sample, tmp_path / "s")
    from engine.media import write_video

    write_video(tmp_path / "s.mp4", sample.target, 8)
    own = evaluate(tmp_path / "s.mp4", folder).samples[0]
    assert own.motion_leakage is not None and own.motion_leakage < 0.2  # the target wears the given garments
    write_video(tmp_path / "plain.mp4", sample.target, 8)
    assert evaluate(tmp_path / "plain.mp4", tmp_path / "s.mp4").samples[0].motion_leakage is None  # no masks
