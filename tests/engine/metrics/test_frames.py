"""The per-frame metric math of engine.metrics.frames, on small arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.metrics import frames as fm


def _video(rng: np.random.Generator, t: int = 4, h: int = 24, w: int = 20) -> np.ndarray:
    return rng.integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


def _add(video: np.ndarray, delta: np.ndarray | int) -> np.ndarray:
    return np.clip(video.astype(np.int32) + delta, 0, 255).astype(np.uint8)


# --- PSNR ---------------------------------------------------------------------------------


def test_psnr_identical_frames_are_capped(rng):
    x = _video(rng)
    assert fm.psnr(x, x) == fm.PSNR_CAP_DB == 100.0


def test_psnr_constant_offset_has_known_value():
    x = np.full((3, 16, 16, 3), 100, dtype=np.uint8)
    assert fm.psnr(_add(x, 10), x) == pytest.approx(20 * math.log10(255 / 10), abs=1e-9)


def test_psnr_is_mean_of_per_frame_values():
    x = np.full((2, 16, 16, 3), 100, dtype=np.uint8)
    y = x.copy()
    y[1] += 10  # frame 0 identical (100 dB), frame 1 off by 10
    expected = (100.0 + 20 * math.log10(255 / 10)) / 2
    assert fm.psnr(y, x) == pytest.approx(expected)
    np.testing.assert_allclose(fm.psnr_per_frame(y, x), [100.0, 20 * math.log10(25.5)])


def test_psnr_rejects_mismatched_shapes(rng):
    with pytest.raises(ValueError, match="differ in shape"):
        fm.psnr(_video(rng, t=3), _video(rng, t=4))


def test_metrics_reject_non_uint8(rng):
    x = _video(rng)
    with pytest.raises(ValueError, match="uint8"):
        fm.psnr(x.astype(np.float32), x)


# --- SSIM ---------------------------------------------------------------------------------


def _slow_ssim(x_rgb: np.ndarray, y_rgb: np.ndarray) -> float:
    """Straightforward SSIM of one frame: explicit loops over every 11x11 window position."""
    def luma(img):
        img = img.astype(np.float64)
        return 0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]

    x, y = luma(x_rgb), luma(y_rgb)
    i = np.arange(11) - 5.0
    window = np.exp(-(i[:, None] ** 2 + i[None, :] ** 2) / (2 * 1.5**2))
    window /= window.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for r in range(x.shape[0] - 10):
        for c in range(x.shape[1] - 10):
            px, py = x[r : r + 11, c : c + 11], y[r : r + 11, c : c + 11]
            mx, my = (window * px).sum(), (window * py).sum()
            vx = (window * (px - mx) ** 2).sum()
            vy = (window * (py - my) ** 2).sum()
            cxy = (window * (px - mx) * (py - my)).sum()
            num = (2 * mx * my + c1) * (2 * cxy + c2)
            values.append(num / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_of_identical_videos_is_one(rng):
    x = _video(rng)
    assert fm.ssim(x, x) == pytest.approx(1.0, abs=1e-6)


def test_ssim_matches_slow_reference_on_random_images(rng):
    x = _video(rng, t=2, h=23, w=19)
    y = _add(x, rng.integers(-40, 41, size=x.shape))
    fast = fm.ssim_per_frame(x, y)
    slow = [_slow_ssim(x[t], y[t]) for t in range(2)]
    np.testing.assert_allclose(fast, slow, atol=1e-5)
    assert fm.ssim(x, y) == pytest.approx(np.mean(slow), abs=1e-5)


def test_ssim_matches_slow_reference_on_smooth_images():
    yy, xx = np.mgrid[0:20, 0:26]
    base = np.stack([xx * 9, yy * 11, (xx + yy) * 5], axis=-1)
    x = np.clip(base, 0, 255).astype(np.uint8)[None]
    y = np.clip(base * 0.9 + 12 + np.sin(xx / 3.0)[..., None] * 6, 0, 255).astype(np.uint8)[None]
    np.testing.assert_allclose(fm.ssim_per_frame(x, y), [_slow_ssim(x[0], y[0])], atol=1e-5)


def test_ssim_decreases_as_noise_grows(rng):
    x = _video(rng, t=2, h=32, w=32)
    noisy = [_add(x, rng.normal(0, s, size=x.shape).round().astype(np.int32)) for s in (2, 10, 40)]
    scores = [fm.ssim(n, x) for n in noisy]
    assert 1.0 > scores[0] > scores[1] > scores[2]


def test_ssim_needs_frames_of_window_size(rng):
    x = _video(rng, h=10, w=30)
    with pytest.raises(ValueError, match="11x11"):
        fm.ssim(x, x)


def test_ssim_handles_many_frames_in_chunks(rng, monkeypatch):
    monkeypatch.setattr(fm, "_SSIM_PIXELS_PER_CHUNK", 16 * 16)  # one frame per chunk
    x = _video(rng, t=3, h=16, w=16)
    y = _add(x, 7)
    chunked = fm.ssim_per_frame(x, y)
    monkeypatch.undo()
    np.testing.assert_allclose(chunked, fm.ssim_per_frame(x, y), atol=1e-9)


# --- colour -------------------------------------------------------------------------------

# CIELAB (D65) of sRGB primaries, published values (e.g. Bruce Lindbloom's calculator).
RED_LAB = (53.2408, 80.0925, 67.2032)


def test_rgb_to_lab_known_colours():
    np.testing.assert_allclose(fm.rgb_to_lab(np.array([255, 0, 0])), RED_LAB, atol=1e-3)
    np.testing.assert_allclose(fm.rgb_to_lab(np.array([255, 255, 255])), [100, 0, 0], atol=1e-3)
    np.testing.assert_allclose(fm.rgb_to_lab(np.array([0, 0, 0])), [0, 0, 0], atol=1e-9)
    # mid grey by hand: ((128/255 + 0.055)/1.055)^2.4 = 0.215861; 116 * 0.215861^(1/3) - 16 = 53.585
    np.testing.assert_allclose(fm.rgb_to_lab(np.array([128, 128, 128])), [53.585, 0, 0], atol=1e-3)


def _solid(color, t=3, h=12, w=12) -> np.ndarray:
    return np.broadcast_to(np.array(color, dtype=np.uint8), (t, h, w, 3)).copy()


def test_garment_color_error_of_two_known_colours():
    mask = np.ones((3, 12, 12), dtype=bool)
    red, white = _solid([255, 0, 0]), _solid([255, 255, 255])
    expected = math.sqrt((100 - RED_LAB[0]) ** 2 + RED_LAB[1] ** 2 + RED_LAB[2] ** 2)  # 116.35
    assert fm.garment_color_error(red, white, mask) == pytest.approx(expected, abs=1e-3)
    assert fm.garment_mae(red, white, mask) == pytest.approx(255 * 2 / 3)


def test_garment_metrics_are_zero_for_identical_videos(rng):
    x = _video(rng)
    mask = rng.random(x.shape[:3]) < 0.5
    assert fm.garment_color_error(x, x, mask) == 0.0
    assert fm.garment_mae(x, x, mask) == 0.0


def test_garment_metrics_only_look_inside_the_mask(rng):
    x = _video(rng)
    y = _add(x, rng.integers(-30, 31, size=x.shape))
    mask = np.zeros(x.shape[:3], dtype=bool)
    mask[:, 4:15, 3:12] = True
    before = (fm.garment_color_error(y, x, mask), fm.garment_mae(y, x, mask))
    y2, x2 = y.copy(), x.copy()
    y2[~mask] = 0
    x2[~mask] = 255
    assert (fm.garment_color_error(y2, x2, mask), fm.garment_mae(y2, x2, mask)) == before


def test_garment_metrics_skip_frames_with_empty_mask():
    red, black = _solid([255, 0, 0]), _solid([0, 0, 0])
    mask = np.zeros((3, 12, 12), dtype=bool)
    mask[1, 2:5, 2:5] = True  # garment visible only in frame 1
    expected = math.sqrt(sum(v * v for v in RED_LAB))
    assert fm.garment_color_error(red, black, mask) == pytest.approx(expected, abs=1e-3)
    assert fm.garment_mae(red, black, mask) == pytest.approx(85.0)


def test_garment_metrics_are_none_when_mask_is_always_empty(rng):
    x = _video(rng)
    mask = np.zeros(x.shape[:3], dtype=bool)
    assert fm.garment_color_error(x, x, mask) is None
    assert fm.garment_mae(x, x, mask) is None


def test_garment_color_error_uses_region_means_not_pixels():
    """A stripe pattern shifted by one pixel has the same mean colour: Delta E 0, MAE > 0."""
    stripes = np.zeros((1, 12, 12, 3), dtype=np.uint8)
    stripes[:, :, ::2] = [200, 30, 30]
    shifted = np.roll(stripes, 1, axis=2)
    mask = np.ones((1, 12, 12), dtype=bool)
    assert fm.garment_color_error(shifted, stripes, mask) == pytest.approx(0.0, abs=1e-9)
    assert fm.garment_mae(shifted, stripes, mask) > 50


def test_garment_metrics_reject_mask_of_wrong_shape(rng):
    x = _video(rng)
    with pytest.raises(ValueError, match="mask"):
        fm.garment_mae(x, x, np.ones((2, 5, 5), dtype=bool))


# --- temporal -----------------------------------------------------------------------------


def test_smoothness_is_one_for_linear_ramp_in_time():
    t = np.arange(8)
    ramp = np.broadcast_to((10 + 20 * t)[:, None, None, None], (8, 6, 6, 3)).astype(np.uint8)
    assert fm.smoothness(ramp) == 1.0
    assert fm.motion_magnitude(ramp) == pytest.approx(20 / 255)


def test_smoothness_is_lower_for_flicker():
    flicker = np.zeros((8, 6, 6, 3), dtype=np.uint8)
    flicker[1::2] = 100
    # every inner frame is 100 away from the mean of its neighbours
    assert fm.smoothness(flicker) == pytest.approx(1 - 100 / 255)
    assert fm.motion_magnitude(flicker) == pytest.approx(100 / 255)


def test_smoothness_of_short_videos_is_one(rng):
    assert fm.smoothness(_video(rng, t=1)) == 1.0
    assert fm.smoothness(_video(rng, t=2)) == 1.0


def test_motion_magnitude_of_still_video_is_zero(rng):
    still = np.repeat(_video(rng, t=1), 5, axis=0)
    assert fm.motion_magnitude(still) == 0.0
    assert fm.smoothness(still) == 1.0
    assert fm.motion_magnitude(still[:1]) == 0.0


def test_smoothness_uses_exact_integer_midpoints():
    video = np.zeros((3, 2, 2, 3), dtype=np.uint8)
    video[0], video[1], video[2] = 0, 1, 1  # midpoint 0.5: error 0.5 everywhere
    assert fm.smoothness(video) == pytest.approx(1 - 0.5 / 255)


# --- properties ---------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, database=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(11, 18),
    w=st.integers(11, 18),
    noise=st.integers(0, 80),
)
def test_ssim_properties(seed, h, w, noise):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(1, h, w, 3), dtype=np.uint8)
    y = _add(x, rng.integers(-noise, noise + 1, size=x.shape))
    s = fm.ssim(x, y)
    assert s == pytest.approx(_slow_ssim(x[0], y[0]), abs=1e-5)
    assert s == pytest.approx(fm.ssim(y, x), abs=1e-6)  # symmetric
    assert -1.0 <= s <= 1.0 + 1e-6
    assert fm.psnr(x, y) == fm.psnr(y, x) <= fm.PSNR_CAP_DB


# ---- motion_leakage ----


def _flat(colour, t=3, h=8, w=8):
    return np.broadcast_to(np.array(colour, dtype=np.uint8), (t, h, w, 3)).copy()


def test_motion_leakage_is_0_for_the_given_garment_1_for_the_performers_and_half_between():
    given, performer = (200, 30, 30), (30, 30, 200)
    ref = _flat(given)
    masks = {"top": np.ones((3, 8, 8), dtype=bool)}
    assert fm.motion_leakage(ref, ref, masks, {"top": list(performer)}) == pytest.approx(0.0)
    assert fm.motion_leakage(_flat(performer), ref, masks, {"top": list(performer)}) == pytest.approx(1.0)
    closer_to_performer = fm.motion_leakage(_flat((60, 30, 170)), ref, masks, {"top": list(performer)})
    assert 0.5 < closer_to_performer < 1.0


def test_motion_leakage_uses_the_performers_garment_over_the_same_body_part():
    ref, masks = _flat((200, 30, 30)), {"bottom": np.ones((3, 8, 8), dtype=bool)}
    assert fm.motion_leakage(_flat((30, 30, 200)), ref, masks, {"dress": [30, 30, 200]}) == pytest.approx(1.0)
    assert fm.motion_leakage(_flat((30, 30, 200)), ref, masks, {"top": [30, 30, 200]}) is None  # tops cover no legs
    assert fm.motion_leakage(ref, ref, masks, {"bottom": [201, 31, 31]}) is None  # alike garments tell nothing
