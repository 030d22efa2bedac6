"""Per-frame video quality metrics on uint8 RGB arrays.

Every function takes videos as numpy arrays of shape (T, H, W, 3), dtype uint8, RGB, and
masks as (T, H, W) bool arrays. Nothing here reads files. Two-video metrics need arrays of
the same shape (the caller aligns frame counts and sizes, see `evaluate.score_videos`).
A shape or dtype problem is a programming error here and raises `ValueError`.

Formulas (x = prediction, y = reference, frames indexed t = 1..T, pixel values 0..255):

* PSNR: per frame, MSE_t = mean over pixels and channels of (x_t - y_t)^2 and
  PSNR_t = 10 * log10(255^2 / MSE_t), capped at `PSNR_CAP_DB` = 100 dB (identical frames,
  MSE_t = 0, score exactly 100). Result: mean over frames of PSNR_t.
* SSIM (Wang et al. 2004) on luma Y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601, 0..255):
  Gaussian window w (11 x 11, sigma 1.5, sum 1), mu_x = w * x, sigma_x^2 = w * x^2 - mu_x^2,
  sigma_xy = w * (x y) - mu_x mu_y ('valid' filtering, no padding), C1 = (0.01 * 255)^2,
  C2 = (0.03 * 255)^2, SSIM map = ((2 mu_x mu_y + C1)(2 sigma_xy + C2)) /
  ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2)). Per frame: mean of the map.
  Result: mean over frames. No downsampling of large frames.
* Garment colour error: per frame whose mask is non-empty, the mean RGB of x inside the mask
  and the mean RGB of y inside the mask are each converted sRGB -> CIELAB (D65 white) and
  their Euclidean distance is CIE76 Delta E. Result: mean over those frames.
* Garment MAE: per frame whose mask is non-empty, mean over masked pixels and the 3 channels
  of |x - y| (0..255). Result: mean over those frames.
* Smoothness: 1 - mean_{t=2..T-1} mean_pixels |x_t - (x_{t-1} + x_{t+1}) / 2| / 255;
  1.0 when T < 3.
* Motion magnitude: mean_{t=2..T} mean_pixels |x_t - x_{t-1}| / 255; 0.0 when T < 2.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

PSNR_CAP_DB = 100.0
"""PSNR of identical frames (MSE 0), and the ceiling of every per-frame PSNR."""

DATA_RANGE = 255.0

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
BT601_LUMA = (0.299, 0.587, 0.114)

SRGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
"""Linear sRGB -> CIE XYZ (D65), IEC 61966-2-1."""

D65_WHITE = np.array([0.95047, 1.0, 1.08883])
"""Reference white (Xn, Yn, Zn) of CIELAB, D65 2° observer."""

_SSIM_PIXELS_PER_CHUNK = 1 << 22  # bounds the float32 working set of `ssim` (~250 MB)


# --- validation ---------------------------------------------------------------------------


def check_video(video: np.ndarray, what: str = "video") -> None:
    """Raise ValueError unless `video` is a uint8 (T, H, W, 3) array with T >= 1."""
    if not isinstance(video, np.ndarray) or video.dtype != np.uint8:
        raise ValueError(f"{what}: expected a uint8 numpy array")
    if video.ndim != 4 or video.shape[-1] != 3 or video.shape[0] < 1:
        raise ValueError(f"{what}: expected shape (T, H, W, 3) with T >= 1, got {video.shape}")


def _check_pair(pred: np.ndarray, ref: np.ndarray) -> None:
    check_video(pred, "pred")
    check_video(ref, "ref")
    if pred.shape != ref.shape:
        raise ValueError(f"pred {pred.shape} and ref {ref.shape} differ in shape")


def _check_mask(mask: np.ndarray, video: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != video.shape[:3]:
        raise ValueError(f"mask {mask.shape} does not match video frames {video.shape[:3]}")
    return mask.astype(bool, copy=False)


# --- full-frame fidelity ------------------------------------------------------------------


def psnr_per_frame(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """PSNR_t = min(10 log10(255^2 / MSE_t), 100) for each frame, as a (T,) float64 array."""
    _check_pair(pred, ref)
    out = np.empty(pred.shape[0])
    for t in range(pred.shape[0]):
        diff = pred[t].astype(np.int32) - ref[t].astype(np.int32)
        mse = float(np.mean(diff * diff))
        if mse == 0.0:
            out[t] = PSNR_CAP_DB
        else:
            out[t] = min(10.0 * math.log10(DATA_RANGE**2 / mse), PSNR_CAP_DB)
    return out


def psnr(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean over frames of per-frame PSNR in dB (data range 255, each frame capped at 100 dB).

    PSNR_t = 10 log10(255^2 / MSE_t), MSE_t = mean over pixels and RGB channels of
    (pred_t - ref_t)^2. Identical frames score exactly 100 dB instead of infinity, so the mean
    stays finite and JSON-safe.
    """
    return float(np.mean(psnr_per_frame(pred, ref)))


def luma(video: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B, float64, range 0..255, shape (T,H,W)."""
    r, g, b = BT601_LUMA
    v = video.astype(np.float64)
    return r * v[..., 0] + g * v[..., 1] + b * v[..., 2]


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """1-D Gaussian, exp(-(i - c)^2 / (2 sigma^2)) for i = 0..size-1, c = (size-1)/2, sum 1.

    The 2-D SSIM window is its outer product with itself (as MATLAB fspecial('gaussian')).
    """
    i = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(i * i) / (2.0 * sigma * sigma))
    return g / g.sum()


def _luma_tensor(video: np.ndarray, device: torch.device) -> torch.Tensor:
    """BT.601 luma of uint8 (N, H, W, 3) frames as float32 (N, H, W), minus 128 (see below)."""
    weights = torch.tensor(BT601_LUMA, dtype=torch.float32, device=device)
    frames = torch.from_numpy(np.ascontiguousarray(video)).to(device)
    return frames.to(torch.float32) @ weights - 128.0


def _ssim_maps(x: torch.Tensor, y: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The SSIM map of each frame ('valid': (N, H - k + 1, W - k + 1)); x, y: (N, H, W) luma minus 128.

    Working in float32 on luma shifted by -128 keeps E[x^2] - mu^2 accurate (variances and
    covariances do not depend on the shift; the means get the 128 added back).
    """
    stack = torch.stack([x, y, x * x, y * y, x * y], dim=1)  # (N, 5, H, W)
    k = kernel.numel()
    kh = kernel.view(1, 1, 1, k).expand(5, 1, 1, k)
    kv = kernel.view(1, 1, k, 1).expand(5, 1, k, 1)
    filtered = F.conv2d(F.conv2d(stack, kh, groups=5), kv, groups=5)  # separable, 'valid'
    mu_x, mu_y, e_xx, e_yy, e_xy = filtered.unbind(dim=1)
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov = e_xy - mu_x * mu_y
    mu_x, mu_y = mu_x + 128.0, mu_y + 128.0
    c1 = (SSIM_K1 * DATA_RANGE) ** 2
    c2 = (SSIM_K2 * DATA_RANGE) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return (num / den).to(torch.float64)


def ssim_maps(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """The SSIM map of each frame's BT.601 luma (see `ssim`), (T, H - 10, W - 10) float64: entry
    (i, j) is the window centred on pixel (i + 5, j + 5)."""
    _check_pair(pred, ref)
    t, h, w, _ = pred.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"frames are {w}x{h}; SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kernel = torch.from_numpy(gaussian_window()).to(device, torch.float32)
    chunk = max(1, _SSIM_PIXELS_PER_CHUNK // (h * w))
    out = []
    with torch.no_grad():
        for s in range(0, t, chunk):
            x, y = (_luma_tensor(v[s : s + chunk], device) for v in (pred, ref))
            out.append(_ssim_maps(x, y, kernel).cpu())
    return torch.cat(out).numpy()


def ssim_per_frame(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """SSIM of each frame's BT.601 luma (see `ssim`), as a (T,) float64 array."""
    return ssim_maps(pred, ref).mean(axis=(1, 2))


def ssim(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean over frames of SSIM (Wang et al. 2004) on ITU-R BT.601 luma.

    Y = 0.299 R + 0.587 G + 0.114 B (0..255). With an 11x11 Gaussian window w (sigma 1.5,
    normalised to sum 1) applied without padding ('valid'): mu = w*Y, sigma_x^2 = w*x^2 - mu_x^2,
    sigma_xy = w*(xy) - mu_x mu_y, C1 = (0.01*255)^2, C2 = (0.03*255)^2 and
    SSIM = mean over the map of ((2 mu_x mu_y + C1)(2 sigma_xy + C2)) /
    ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2)). Frames must be at least 11x11.
    Computed with a separable torch conv2d in float32 (within 1e-5 of a float64 reference),
    on the GPU when torch sees one.
    """
    return float(np.mean(ssim_per_frame(pred, ref)))


# --- garment region -----------------------------------------------------------------------


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (0..255, any shape (..., 3), may be fractional) -> CIELAB (..., 3), D65 white.

    c = RGB/255; linear = c/12.92 if c <= 0.04045 else ((c + 0.055)/1.055)^2.4;
    XYZ = `SRGB_TO_XYZ` @ linear; with f(u) = u^(1/3) if u > (6/29)^3 else
    u / (3 (6/29)^2) + 4/29: L* = 116 f(Y/Yn) - 16, a* = 500 (f(X/Xn) - f(Y/Yn)),
    b* = 200 (f(Y/Yn) - f(Z/Zn)), (Xn, Yn, Zn) = `D65_WHITE`.
    """
    c = np.asarray(rgb, dtype=np.float64) / DATA_RANGE
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ SRGB_TO_XYZ.T / D65_WHITE
    delta = 6.0 / 29.0
    f = np.where(xyz > delta**3, np.cbrt(xyz), xyz / (3 * delta**2) + 4.0 / 29.0)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def delta_e76(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIE76 colour difference: Euclidean distance between CIELAB colours (last axis)."""
    d = np.asarray(lab1, dtype=np.float64) - np.asarray(lab2, dtype=np.float64)
    return np.sqrt(np.sum(d * d, axis=-1))


def garment_color_error(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean CIE76 Delta E between the garment's mean colour in pred and in ref.

    For each frame t with a non-empty mask M_t: m_x = mean RGB of pred_t over M_t,
    m_y = mean RGB of ref_t over M_t (sRGB values 0..255), Delta E_t = ||Lab(m_x) - Lab(m_y)||_2
    (`rgb_to_lab`, D65). Result: mean of Delta E_t over those frames; None when the mask is
    empty in every frame (the garment is never visible, so there is nothing to score).

    Region means, not per-pixel differences: a generated garment whose print or folds sit a
    few pixels off the ground truth still has the right colour, and a per-pixel Delta E would
    punish that misalignment as colour error. The mean over the region measures the colour
    itself (is the red the right red?) and leaves alignment to PSNR/SSIM/garment MAE.
    """
    _check_pair(pred, ref)
    mask = _check_mask(mask, ref)
    errors = []
    for t in range(ref.shape[0]):
        m = mask[t]
        if not m.any():
            continue
        mean_x = pred[t][m].mean(axis=0, dtype=np.float64)
        mean_y = ref[t][m].mean(axis=0, dtype=np.float64)
        errors.append(float(delta_e76(rgb_to_lab(mean_x), rgb_to_lab(mean_y))))
    return float(np.mean(errors)) if errors else None


def garment_mae(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean absolute RGB error inside the garment mask, 0..255.

    For each frame t with a non-empty mask M_t: MAE_t = mean over pixels in M_t and the 3
    channels of |pred_t - ref_t|. Result: mean of MAE_t over those frames; None when the mask
    is empty in every frame.
    """
    _check_pair(pred, ref)
    mask = _check_mask(mask, ref)
    errors = []
    for t in range(ref.shape[0]):
        m = mask[t]
        if not m.any():
            continue
        diff = np.abs(pred[t][m].astype(np.int16) - ref[t][m].astype(np.int16))
        errors.append(float(diff.mean(dtype=np.float64)))
    return float(np.mean(errors)) if errors else None


def garment_ssim(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float | None:
    """The garment pattern's fidelity: SSIM (`ssim`'s windows, on luma) inside the garment mask.

    The mean of the SSIM map over the windows centred on a garment pixel (those at least 5
    pixels from the frame's edge), pooled over all frames; None when no such pixel exists.
    Colour error barely moves when stripes or checks turn into their mean colour; the local
    variance and covariance in SSIM's windows fall with them.
    """
    _check_pair(pred, ref)
    mask = _check_mask(mask, ref)
    r = SSIM_WINDOW // 2
    centres = mask[:, r : mask.shape[1] - r, r : mask.shape[2] - r]
    values = [ssim_maps(pred[t : t + 1], ref[t : t + 1])[0][centres[t]]
              for t in range(len(centres)) if centres[t].any()]  # frame by frame: large videos
    return float(np.concatenate(values).mean()) if values else None


# --- temporal -----------------------------------------------------------------------------


LEAKAGE_MIN_SEPARATION = 10.0  # Delta E: a performer garment closer than this to the given one tells nothing


def performer_colour(category: str, performer: dict[str, object]) -> object | None:
    """The performer's garment colour over the body part `category` covers: the same category,
    else their dress (for a top or a bottom), else their top (for a dress); None if none."""
    fallback = {"top": "dress", "bottom": "dress", "dress": "top"}.get(category)
    for candidate in (category, fallback):
        if candidate in performer:
            return performer[candidate]
    return None


def motion_leakage(
    pred: np.ndarray, ref: np.ndarray, masks: dict[str, np.ndarray], performer: dict[str, object]
) -> float | None:
    """How much the output garment looks like the motion video performer's garment rather than
    the garment given: 0 = the given garment's colour, 1 = the performer's, 0.5 = halfway.

    For each garment category c (mask M_c frame-aligned with `ref`) and frame t with M_c
    non-empty: m = mean RGB of pred_t over M_c, g = mean RGB of ref_t over M_c (the given garment
    as the reference shows it), p = the performer's mean garment RGB over the same body part
    (`performer_colour`); with d(.,.) the CIE76 Delta E of the Lab colours,
    leakage = d(m, g) / (d(m, g) + d(m, p)). Frames where d(g, p) < LEAKAGE_MIN_SEPARATION are
    skipped (the two garments look alike). Result: the mean over all such (c, t); None when
    there are none.
    """
    _check_pair(pred, ref)
    values = []
    for category, mask in masks.items():
        colour = performer_colour(category, performer)
        if colour is None:
            continue
        mask = _check_mask(mask, ref)
        performer_lab = rgb_to_lab(np.asarray(colour, dtype=np.float64))
        for t in range(ref.shape[0]):
            m = mask[t]
            if not m.any():
                continue
            made = rgb_to_lab(pred[t][m].mean(axis=0, dtype=np.float64))
            given = rgb_to_lab(ref[t][m].mean(axis=0, dtype=np.float64))
            if float(delta_e76(given, performer_lab)) < LEAKAGE_MIN_SEPARATION:
                continue
            to_given, to_performer = float(delta_e76(made, given)), float(delta_e76(made, performer_lab))
            values.append(to_given / (to_given + to_performer) if to_given + to_performer > 0 else 0.5)
    return float(np.mean(values)) if values else None


def smoothness(video: np.ndarray) -> float:
    """1 - mean_{t=2..T-1} mean_pixels |x_t - (x_{t-1} + x_{t+1}) / 2| / 255; 1.0 if T < 3.

    How well each inner frame is predicted by linearly interpolating its two neighbours, in the
    spirit of FashionChameleon's Smoo.: 1.0 for a still video or one changing linearly in time,
    lower for flicker and jitter. Mean over pixels and RGB channels.
    """
    check_video(video)
    n = video.shape[0]
    if n < 3:
        return 1.0
    total = 0.0
    for t in range(1, n - 1):
        # 2 x_t - x_{t-1} - x_{t+1} in int16 is exact; halve it afterwards.
        prev, cur, nxt = (video[i].astype(np.int16) for i in (t - 1, t, t + 1))
        twice = 2 * cur - prev - nxt
        total += float(np.abs(twice).mean(dtype=np.float64)) / 2.0
    return 1.0 - total / (n - 2) / DATA_RANGE


def motion_magnitude(video: np.ndarray) -> float:
    """mean_{t=2..T} mean_pixels |x_t - x_{t-1}| / 255; 0.0 if T < 2.

    Average amount of change between consecutive frames (mean over pixels and RGB channels),
    in the spirit of FashionChameleon's Amp.: 0 for a still video. Read it next to smoothness:
    a frozen video is perfectly smooth and has no motion.
    """
    check_video(video)
    n = video.shape[0]
    if n < 2:
        return 0.0
    total = 0.0
    for t in range(1, n):
        diff = video[t].astype(np.int16) - video[t - 1].astype(np.int16)
        total += float(np.abs(diff).mean(dtype=np.float64))
    return total / (n - 1) / DATA_RANGE
