"""The figure as the eye sees it: its silhouette, segmented from each frame against the backdrop.

A synthetic sample's figure is drawn on a known backdrop (a plain or two-tone background,
`engine.synth.render.background`), so any video of that scene, the ground truth or a
prediction, is segmented the same way: a pixel belongs to the figure where it differs from
the backdrop by more than `FIGURE_THRESHOLD` in some RGB channel, after each frame's tint is
taken out (per backdrop colour, the median difference over that colour's area: the figure
covers less than half of it, so the median is the background's own shift; a generated or
VAE-decoded frame often draws the backdrop a few shades off), and specks of fewer than
`MIN_SPECK` connected pixels (video compression, noise) are dropped; the figure's own outline,
thin limbs and corners included, is kept exactly.
Full-frame PSNR and SSIM barely move when a figure loses its head and legs; its silhouette's
overlap with the truth (IoU) and its height do.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FIGURE_THRESHOLD = 40  # 0..255: a blur's faint halo and compression noise stay below it
MIN_SPECK = 5  # pixels, 8-connected: smaller parts are noise, not a hand


def figure_masks(video: np.ndarray, backdrop: np.ndarray, threshold: int = FIGURE_THRESHOLD) -> np.ndarray:
    """(T, H, W) bool: where each frame of uint8 `video` (T, H, W, 3) differs from `backdrop` (H, W, 3)."""
    if video.ndim != 4 or video.shape[1:] != backdrop.shape:
        raise ValueError(f"video {video.shape} and backdrop {backdrop.shape} do not match (T, H, W, 3) / (H, W, 3)")
    difference = video.astype(np.int16) - backdrop.astype(np.int16)
    colours, regions = np.unique(backdrop.reshape(-1, 3), axis=0, return_inverse=True)
    regions = regions.reshape(backdrop.shape[:2])
    for region in range(len(colours)):
        area = regions == region
        tint = np.median(difference[:, area], axis=1)  # (T, 3)
        difference[:, area] -= tint.round().astype(np.int16)[:, None]
    differs = np.abs(difference).max(axis=-1) > threshold
    return np.stack([_without_specks(frame) for frame in differs])


def _without_specks(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= MIN_SPECK
    keep[0] = False
    return keep[labels]


def silhouette_iou_per_frame(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(T,) intersection over union of two (T, H, W) bool masks; 1 where both are empty."""
    inter = np.logical_and(pred, ref).sum(axis=(1, 2))
    union = np.logical_or(pred, ref).sum(axis=(1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def figure_heights(masks: np.ndarray) -> np.ndarray:
    """(T,) rows from the figure's top row to its bottom row (0 for an empty frame)."""
    rows = masks.any(axis=2)
    top = rows.argmax(axis=1)
    bottom = rows.shape[1] - rows[:, ::-1].argmax(axis=1)
    return np.where(rows.any(axis=1), bottom - top, 0)


def height_ratio_per_frame(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(T,) the shorter figure's height over the taller's (1: the same height; 0: one is missing)."""
    hp, hr = figure_heights(pred).astype(float), figure_heights(ref).astype(float)
    taller = np.maximum(hp, hr)
    return np.where(taller > 0, np.minimum(hp, hr) / np.maximum(taller, 1), 1.0)
