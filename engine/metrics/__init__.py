"""Video quality metrics behind `tryon eval`: fidelity, garment colour and pattern, the figure's
silhouette, temporal behaviour.

Array-level functions live in `frames` (no file I/O), `silhouette` (the figure against the
backdrop) and `perceptual` (LPIPS, offline only);
`evaluate` reads videos and sample folders and builds the report.
"""

from engine.metrics.evaluation import (
    METRICS,
    EvalReport,
    SampleScores,
    evaluate,
    figure_scores,
    mean_scores,
    score_videos,
)
from engine.metrics.frames import (
    PSNR_CAP_DB,
    delta_e76,
    garment_color_error,
    garment_mae,
    garment_ssim,
    luma,
    motion_magnitude,
    psnr,
    psnr_per_frame,
    rgb_to_lab,
    smoothness,
    ssim,
    ssim_per_frame,
)
from engine.metrics.perceptual import lpips_available, lpips_distance

__all__ = [
    "METRICS",
    "PSNR_CAP_DB",
    "EvalReport",
    "SampleScores",
    "delta_e76",
    "evaluate",
    "garment_color_error",
    "garment_mae",
    "garment_ssim",
    "figure_scores",
    "lpips_available",
    "lpips_distance",
    "luma",
    "mean_scores",
    "motion_magnitude",
    "psnr",
    "psnr_per_frame",
    "rgb_to_lab",
    "score_videos",
    "smoothness",
    "ssim",
    "ssim_per_frame",
]
