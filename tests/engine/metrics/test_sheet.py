"""`evaluate(..., sheet=PNG)`: a contact sheet of inputs, output frames and ground truth."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.errors import InputError
from engine.metrics import evaluate
from engine.metrics.sheet import SHEET_FRAMES, picked_frames


def test_picked_frames_spread_over_the_video_and_hold_the_worst():
    assert picked_frames(17, None) == [0, 2, 5, 7, 9, 11, 14, 16]
    with_worst = picked_frames(17, 13)
    assert 13 in with_worst and 14 not in with_worst and len(with_worst) == SHEET_FRAMES
    assert picked_frames(3, 1) == [0, 1, 2]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    from engine.synth import make_sample, write_sample

    made = make_sample(3, size=(64, 112), num_frames=9)
    return made, write_sample(made, tmp_path_factory.mktemp("samples") / "s")


@pytest.mark.slow
def test_the_sheet_shows_inputs_motion_output_and_truth_and_frames_the_worst(sample, tmp_path):
    from engine.media import write_video

    made, folder = sample
    blanked = made.target.copy()
    blanked[4] = blanked[4, 0, 0]  # the figure gone in frame 4: the worst frame
    write_video(tmp_path / "pred.mp4", blanked, 8)
    report = evaluate(tmp_path / "pred.mp4", folder, sheet=tmp_path / "sheet.png")
    assert report.samples[0].figure_worst_frame == 4

    sheet = np.asarray(Image.open(tmp_path / "sheet.png").convert("RGB"))
    rows = 4  # inputs, motion, output, truth
    assert sheet.shape[0] > rows * 112 and sheet.shape[1] > SHEET_FRAMES * 64
    user = np.asarray(Image.open(folder / "user.png").convert("RGB"))
    assert _found(sheet, user)  # the inputs row
    assert _found(sheet, made.target[0][:40])  # the truth row (decoded video: nearly the same pixels)
    red = (sheet[..., 0] > 200) & (sheet[..., 1] < 60) & (sheet[..., 2] < 60)
    assert red.sum() > 2 * (112 + 64)  # the worst frame's frame, in the output and truth rows


def test_a_plain_video_reference_gives_output_and_truth_rows_only(sample, tmp_path):
    made, folder = sample
    evaluate(folder / "target.mp4", folder / "target.mp4", sheet=tmp_path / "plain.png")
    evaluate(folder / "target.mp4", folder, sheet=tmp_path / "sample.png")
    plain, full = (Image.open(tmp_path / name) for name in ("plain.png", "sample.png"))
    assert plain.height < full.height - 2 * 112


@pytest.mark.parametrize("name, words", [("sheet.jpg", "must be a .png"), ("missing/sheet.png", "folder does not exist")])
def test_a_bad_sheet_path_is_an_input_error_before_any_work(sample, tmp_path, name, words):
    _, folder = sample
    with pytest.raises(InputError, match=words):
        evaluate(folder / "target.mp4", folder, sheet=tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def _found(sheet: np.ndarray, patch: np.ndarray, tolerance: float = 12.0) -> bool:
    """Whether `patch` appears somewhere in `sheet` (mean absolute difference below `tolerance`)."""
    h, w = patch.shape[:2]
    for top in range(0, sheet.shape[0] - h + 1):
        for left in range(0, sheet.shape[1] - w + 1, 1):
            window = sheet[top : top + h, left : left + w]
            if abs(int(window[h // 2, w // 2].mean()) - int(patch[h // 2, w // 2].mean())) > tolerance:
                continue
            if np.abs(window.astype(int) - patch.astype(int)).mean() < tolerance:
                return True
    return False
