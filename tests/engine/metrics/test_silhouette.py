"""The figure's silhouette against the backdrop, its IoU and height, and the garment pattern's SSIM."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from engine.media import read_video
from engine.metrics import evaluate, figure_scores, frames as fm
from engine.metrics.silhouette import figure_masks, height_ratio_per_frame, silhouette_iou_per_frame
from engine.synth import make_sample, write_sample
from engine.synth.render import background

BACKDROP = np.full((60, 40, 3), (88, 88, 94), np.uint8)


def _figure_video(top: int = 10, bottom: int = 50, left: int = 10, width: int = 20, frames: int = 3) -> np.ndarray:
    """A plain backdrop with an orange rectangle `width` wide, rows top..bottom, from column `left`."""
    video = np.repeat(BACKDROP[None], frames, axis=0)
    video[:, top:bottom, left : left + width] = (240, 130, 35)
    return video


@pytest.fixture(scope="module")
def sample_folder(tmp_path_factory):
    """A synthetic sample whose checked or striped garment is on screen, as `tryon data synth` writes it."""
    sample = make_sample(4200128, size=(96, 160), num_frames=9)  # examples/sample_00002's seed
    return sample, write_sample(sample, tmp_path_factory.mktemp("samples") / "s")


def test_the_figure_is_what_differs_from_the_backdrop():
    masks = figure_masks(_figure_video(), BACKDROP)
    assert masks.sum(axis=(1, 2)).tolist() == [40 * 20] * 3 and masks[:, 10:50, 10:30].all()


def test_a_backdrop_drawn_a_few_shades_off_is_still_backdrop():
    tinted = np.clip(_figure_video().astype(int) + (45, 30, -45), 0, 255).astype(np.uint8)  # a decoder's tint
    assert figure_scores(tinted, _figure_video(), BACKDROP)["figure_iou_worst"] == 1.0
    two_tone = BACKDROP.copy()
    two_tone[40:] = (206, 206, 206)
    truth = np.repeat(two_tone[None], 2, axis=0)
    truth[:, 20:55, 10:20] = (35, 85, 205)  # a figure standing over both tones
    tinted = truth.astype(int)
    tinted[:, :40] += 50  # the wall lighter, the floor as drawn
    tinted = np.clip(tinted, 0, 255).astype(np.uint8)
    tinted[:, 20:55, 10:20] = (35, 85, 205)
    assert figure_scores(tinted, truth, two_tone)["figure_iou_worst"] == 1.0


def test_the_same_figure_scores_one_and_an_empty_frame_zero():
    figure = _figure_video()
    same = figure_scores(figure, figure, BACKDROP)
    assert (same["figure_iou"], same["figure_iou_worst"], same["figure_height_ratio"]) == (1.0, 1.0, 1.0)
    empty = figure_scores(np.repeat(BACKDROP[None], 3, axis=0), figure, BACKDROP)
    assert (empty["figure_iou"], empty["figure_iou_worst"], empty["figure_height_ratio"]) == (0.0, 0.0, 0.0)


def test_a_shifted_figure_overlaps_by_the_shared_columns_and_a_cropped_one_by_its_rows():
    truth = _figure_video()
    shifted = figure_scores(_figure_video(left=20), truth, BACKDROP)  # 10 of 20 columns shared: 400 / 1200
    assert shifted["figure_iou"] == pytest.approx(1 / 3) and shifted["figure_height_ratio"] == 1.0
    headless = figure_scores(_figure_video(top=30), truth, BACKDROP)  # the top half missing
    assert headless["figure_iou"] == pytest.approx(0.5) and headless["figure_height_ratio"] == pytest.approx(0.5)


def test_the_worst_frame_is_named_and_scored():
    truth, pred = _figure_video(), _figure_video()
    pred[1] = BACKDROP  # the figure vanishes in frame 1 only
    scores = figure_scores(pred, truth, BACKDROP)
    assert scores["figure_iou_frames"] == [1.0, 0.0, 1.0] and scores["figure_worst_frame"] == 1
    assert scores["figure_iou"] == pytest.approx(2 / 3) and scores["figure_iou_worst"] == 0.0


def test_height_ratio_is_symmetric_and_iou_of_two_empty_frames_is_one():
    tall, short = figure_masks(_figure_video(top=0, bottom=60), BACKDROP), figure_masks(_figure_video(), BACKDROP)
    assert height_ratio_per_frame(tall, short).tolist() == height_ratio_per_frame(short, tall).tolist() == [40 / 60] * 3
    nothing = np.zeros((2, 5, 5), bool)
    assert silhouette_iou_per_frame(nothing, nothing).tolist() == [1.0, 1.0]


def test_the_decoded_ground_truth_segments_like_the_drawn_one(sample_folder):
    """Video compression does not move the silhouette: the written target.mp4 against the exact render."""
    sample, folder = sample_folder
    backdrop = background(sample.meta["person"]["appearance"]["background"], (96, 160))
    drawn = (sample.target != backdrop).any(axis=-1)
    decoded = figure_masks(read_video(folder / "target.mp4"), backdrop)
    assert silhouette_iou_per_frame(decoded, drawn).min() > 0.95


@pytest.mark.slow
def test_evaluate_reports_the_figure_against_a_synthetic_sample(sample_folder, tmp_path):
    from engine.media import write_video

    sample, folder = sample_folder
    backdrop = background(sample.meta["person"]["appearance"]["background"], (96, 160))
    itself = evaluate(folder / "target.mp4", folder).samples[0]
    assert (itself.figure_iou_worst, itself.figure_height_ratio, itself.garment_ssim) == (1.0, 1.0, 1.0)

    write_video(tmp_path / "blank.mp4", np.repeat(backdrop[None], 9, axis=0), 8)
    blank = evaluate(tmp_path / "blank.mp4", folder).samples[0]
    assert blank.figure_iou < 0.02 and blank.figure_height_ratio < 0.05

    moved = np.repeat(backdrop[None], 9, axis=0)
    moved[:, :, 12:] = sample.target[:, :, :-12]  # the figure 12 pixels to the right
    write_video(tmp_path / "moved.mp4", moved, 8)
    scores = evaluate(tmp_path / "moved.mp4", folder).samples[0]
    figure = (sample.target != backdrop).any(axis=-1)
    expected = silhouette_iou_per_frame(np.roll(figure, 12, axis=2), figure)
    assert 0.1 < scores.figure_iou < 0.9
    assert scores.figure_iou == pytest.approx(expected.mean(), abs=0.03)
    assert scores.figure_height_ratio > 0.95


def test_a_blurred_figure_stays_whole_and_a_flattened_pattern_loses_its_ssim(sample_folder):
    sample, _ = sample_folder
    truth = sample.target
    backdrop = background(sample.meta["person"]["appearance"]["background"], (96, 160))
    blurred = np.stack([gaussian_filter(frame.astype(float), sigma=(1.0, 1.0, 0)) for frame in truth])
    assert figure_scores(blurred.round().astype(np.uint8), truth, backdrop)["figure_iou_worst"] > 0.85

    mask = sample.masks["top"]
    flat = truth.copy()
    for t in range(len(flat)):  # each frame's checks replaced by their mean colour
        flat[t][mask[t]] = truth[t][mask[t]].mean(axis=0).round().astype(np.uint8)
    assert fm.garment_color_error(flat, truth, mask) < 5  # the colour is right ...
    assert fm.garment_ssim(flat, truth, mask) < 0.6  # ... the pattern is gone (edges keep some structure)
    assert fm.garment_ssim(truth, truth, mask) == pytest.approx(1.0)
    assert fm.garment_ssim(truth, truth, np.zeros_like(mask)) is None
