"""How well a checkpoint's VAE carries held-out synthetic clips, and their garments' patterns.

    python examples/measure_vae.py --model weights/demo --count 8
    python examples/measure_vae.py --model /work/demo-train/z48-vae --count 8 --sheet /tmp/vae.png

Held-out samples (dataset seed 7 unless --seed, never trained on: the VAE recipes cycle the
first samples of seed 0), 17 frames at 96x160, drawn in memory (no video compression).
Each clip is encoded (posterior mode) and decoded; printed as JSON: PSNR over all frames,
PSNR and SSIM (`tryon eval`'s garment SSIM) inside the garment masks, over all garments
and over the striped or checked ones alone (issue 29's bar: >= 28 dB over all frames, the
stripes still visible), and the figure's worst-frame silhouette IoU and height ratio (what
a model on this VAE can reach at best), with `figure_whole`: how many clips the VAE alone
keeps whole by issue 29's bar (`prove_it_learns.py`'s count: the ceiling of any model on this
VAE). Two diagnostics beside them: the PSNR of each frame index (a causal VAE that drifts over
the clip shows it falling) and of frames 0, 8 and 16 coded one at a time (what the VAE does
without its temporal compression). --sheet writes a picture: the patterned samples' frames 0,
8, 16, originals above their reconstructions.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.checkpoint import load_model
from engine.metrics import figure_scores, garment_ssim, psnr
from engine.pipelines.pipeline_tryon import frames_to_pixels
from engine.synth import SEED_STRIDE, make_sample
from engine.synth.render import background
from prove_it_learns import is_whole

PATTERNS = ("stripes", "checks")
ALONE = (0, 8, 16)  # frames also coded one at a time


@torch.no_grad()
def reconstruct(vae, frames: np.ndarray) -> np.ndarray:
    pixels = frames_to_pixels(frames, vae.device)
    decoded = vae.decode(vae.encode(pixels).latent_dist.mode()).sample  # (1, 3, T, H, W) in [-1, 1]
    video = ((decoded[0].permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return video.cpu().numpy()


def frame_psnr(pred: np.ndarray, ref: np.ndarray) -> float:
    error = np.mean((pred.astype(np.float64) - ref.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(error, 1e-10)))


def masked_psnr(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float | None:
    if not mask.any():
        return None
    return frame_psnr(pred[mask], ref[mask])


def _mean(values: list) -> float | None:
    kept = [v for v in values if v is not None]
    return round(float(np.mean(kept)), 3) if kept else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="weights/demo")
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7, help="the held-out dataset's seed")
    parser.add_argument("--sheet", type=Path, help="a PNG of originals above reconstructions")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vae = load_model(args.model).pipeline.vae.eval()
    rows = {"psnr": [], "garment_psnr": [], "garment_ssim": [], "pattern_psnr": [], "pattern_ssim": [],
            "figure_iou_worst": [], "figure_height_ratio": []}
    by_frame, alone = [], []
    shown = []
    for i in range(args.count):
        sample = make_sample(args.seed * SEED_STRIDE + i, size=(96, 160), num_frames=17, fps=8.0)
        target = sample.target
        rebuilt = reconstruct(vae, target)
        rows["psnr"].append(psnr(rebuilt, target))
        by_frame.append([frame_psnr(rebuilt[k], target[k]) for k in range(len(target))])
        alone.append([frame_psnr(reconstruct(vae, target[k:k + 1])[0], target[k]) for k in ALONE])
        figure = figure_scores(rebuilt, target, background(sample.meta["person"]["appearance"]["background"], (96, 160)))
        rows["figure_iou_worst"].append(figure["figure_iou_worst"])
        rows["figure_height_ratio"].append(figure["figure_height_ratio"])
        union = np.any(list(sample.masks.values()), axis=0)
        patterned = [sample.masks[c] for c, spec in sample.meta["garment_specs"].items()
                     if spec["texture"]["pattern"] in PATTERNS]
        rows["garment_psnr"].append(masked_psnr(rebuilt, target, union))
        rows["garment_ssim"].append(garment_ssim(rebuilt, target, union))
        if patterned:
            mask = np.any(patterned, axis=0)
            rows["pattern_psnr"].append(masked_psnr(rebuilt, target, mask))
            rows["pattern_ssim"].append(garment_ssim(rebuilt, target, mask))
            shown.append(np.concatenate([np.concatenate(list(v[[0, 8, 16]]), axis=1) for v in (target, rebuilt)]))
    whole = sum(map(is_whole, rows["figure_iou_worst"], rows["figure_height_ratio"]))
    result = {"model": args.model, "clips": args.count, "patterned_clips": len(rows["pattern_psnr"]),
              **{key: _mean(values) for key, values in rows.items()}, "figure_whole": whole,
              "figure_iou_worst_each": np.round(rows["figure_iou_worst"], 3).tolist(),
              "psnr_by_frame": np.round(np.mean(by_frame, axis=0), 1).tolist(),
              f"psnr_frames_{'_'.join(map(str, ALONE))}_coded_alone": np.round(np.mean(alone, axis=0), 1).tolist()}
    print(json.dumps(result))
    if args.sheet and shown:
        Image.fromarray(np.concatenate(shown[:4], axis=1)).save(args.sheet)


if __name__ == "__main__":
    main()
