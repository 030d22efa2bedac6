"""Frame-quality scores R for GR-DMD's reweighting (engine.train.distill): higher is better,
on the aesthetic predictor's raw scale, about 1 to 10.

A `FrameScorer` maps decoded frames, uint8 (T, H, W, 3), to one score per frame, (T,).
FashionChameleon uses the LAION aesthetic reward on its own scale with A = softmax(−R/τ),
τ = 0.2: on that scale a difference of 0.2 in R changes a weight e-fold. Rescaling R to
[0, 1] would make τ = 0.2 act like τ = 1.8 (nearly uniform weights), so every scorer here
returns the raw 1–10 scale: the aesthetic model as it is, the default heuristic mapped as
1 + 9·s from its [0, 1] score s.

- `SharpnessColourScorer` (the default; no model, about a millisecond a frame): the mean of
  · sharpness: the standard deviation of the 4-neighbour Laplacian of the luma (pixels in
    [0, 1]), the "variance of the Laplacian" blur measure (Pech-Pacheco et al., 2000),
    squashed as 1 − exp(−s / 0.15); and
  · colourfulness: Hasler & Süsstrunk's (2003) M = √(σ_rg² + σ_yb²) + 0.3·√(μ_rg² + μ_yb²),
    rg = R − G, yb = (R + G)/2 − B on 0..255 pixels, squashed as 1 − exp(−M / 50).
  Why these two: a drifting autoregressive rollout degrades by over-smoothing (blur, the mean
  of uncertain predictions) and by washing out toward grey, and both drop on exactly those
  frames. The scales put the synthetic world's frames near 0.6–0.7 (96x160: Laplacian std
  ~0.14–0.25, M ~45–65), a 5-pixel box blur near 0.25 (sharpness) and halved saturation near
  0.45 (colour). Limit: noise and flicker score HIGH on both (they add edges and chroma
  variance), so this score cannot catch noisy frames; an aesthetic model can.
- `AestheticScorer`: the LAION aesthetic predictor (score 1–10, its raw scale): CLIP ViT-L/14's
  image embedding through the predictor's MLP. Used only when its weights exist locally, in a
  folder holding `clip/` (a transformers CLIPVisionModelWithProjection with its
  CLIPImageProcessor, .safetensors) and `head.safetensors` (linear layers `layers.<i>.weight/bias`,
  applied in order, no activations, as that predictor's MLP): what `tryon models convert
  sac+logos+ava1-l14-linearMSE.pth DIR --kind aesthetic --clip CLIP_DIR` writes
  (engine.checkpoint.aesthetic). None ship with tryon.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from engine.checkpoint.aesthetic import CLIP_FOLDER, HEAD_FILE, is_aesthetic_folder
from engine.errors import InputError

RAW_LOW, RAW_HIGH = 1.0, 10.0  # the aesthetic predictor's scale, which every scorer returns
SHARPNESS_SCALE = 0.15  # Laplacian std (luma in [0, 1]) that scores 1 − 1/e
COLOUR_SCALE = 50.0  # Hasler–Süsstrunk M that scores 1 − 1/e ("averagely colourful" is 45)


class FrameScorer(Protocol):
    """Frames uint8 (T, H, W, 3) → quality scores (T,), higher is better, about 1 to 10."""

    name: str
    keep_from: float  # on the same scale: the curation gate keeps a clip whose mean score reaches this

    def __call__(self, frames: np.ndarray) -> torch.Tensor: ...


def _pixels(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) → float (T, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0


def sharpness(pixels: torch.Tensor) -> torch.Tensor:
    """Standard deviation of the luma's 4-neighbour Laplacian, per frame (pixels (T, 3, H, W) in [0, 1])."""
    luma = (pixels * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    return F.conv2d(luma, kernel).flatten(1).std(dim=1)


def colourfulness(pixels: torch.Tensor) -> torch.Tensor:
    """Hasler & Süsstrunk's M per frame, on 0..255 pixels."""
    red, green, blue = (pixels * 255.0).unbind(dim=1)
    rg, yb = (red - green).flatten(1), (0.5 * (red + green) - blue).flatten(1)
    spread = (rg.var(dim=1, unbiased=False) + yb.var(dim=1, unbiased=False)).sqrt()
    return spread + 0.3 * (rg.mean(dim=1) ** 2 + yb.mean(dim=1) ** 2).sqrt()


class SharpnessColourScorer:
    """The default score: mean of squashed sharpness and colourfulness (see the module docstring)."""

    name = "sharpness_colour"
    # The curation gate's default (engine.curate): real footage at the analysis size scores 6.6-7.1
    # (tryon's real cases), the same frames under a radius-4 Gaussian blur ~4.1, in greyscale ~3.5,
    # a flat frame 1.0.
    keep_from = 4.5

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        pixels = _pixels(frames)
        sharp = 1.0 - torch.exp(-sharpness(pixels) / SHARPNESS_SCALE)
        colour = 1.0 - torch.exp(-colourfulness(pixels) / COLOUR_SCALE)
        return RAW_LOW + (RAW_HIGH - RAW_LOW) * 0.5 * (sharp + colour)


class AestheticScorer:
    """The LAION aesthetic predictor: its MLP on CLIP's unit-length image embedding, its raw score. CLIP sees
    each frame as its own CLIPImageProcessor prepares it (resize, centre crop, normalisation)."""

    name = "aesthetic"
    keep_from = 4.5  # the curation gate's default: LAION-Aesthetics V2's widest published subset, "4.5+"

    def __init__(self, folder: Path) -> None:
        from safetensors.torch import load_file

        from engine.vision.embedders import ClipEmbedder

        self.clip = ClipEmbedder(Path(folder) / CLIP_FOLDER)
        head = load_file(Path(folder) / HEAD_FILE)
        indices = sorted({int(key.split(".")[1]) for key in head if key.startswith("layers.")})
        self.layers = [(head[f"layers.{i}.weight"], head[f"layers.{i}.bias"]) for i in indices]

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        score = torch.from_numpy(self.clip.images(list(frames)))
        for weight, bias in self.layers:  # the published MLP: Linear layers, Dropout between, no activations
            score = F.linear(score, weight, bias)
        return score[:, 0]


def aesthetic_weights_present(folder: str | Path | None) -> bool:
    return folder is not None and is_aesthetic_folder(Path(folder))


def check_scorer_weights(choice: str, aesthetic_weights: str | None) -> None:
    """Scorer "aesthetic" needs its weights present (before anything else loads)."""
    if choice == "aesthetic" and not aesthetic_weights_present(aesthetic_weights):
        where = "aesthetic_weights is not set" if aesthetic_weights is None else f"{aesthetic_weights} is not one"
        raise InputError(f"scorer 'aesthetic' needs the LAION aesthetic predictor's folder ({where}): make it with "
                         "tryon models convert sac+logos+ava1-l14-linearMSE.pth DIR --kind aesthetic --clip CLIP_DIR "
                         "and give DIR as aesthetic_weights (tryon train student --aesthetic-weights DIR), or ask "
                         "for the sharpness and colour heuristic: scorer sharpness_colour (tryon train student "
                         "--scorer sharpness_colour)")


def make_scorer(choice: str, aesthetic_weights: str | None, log: Callable[[str], None]) -> FrameScorer:
    """The scorer a config names: "sharpness_colour", "aesthetic", or "auto" (aesthetic when its
    weights are present, else sharpness_colour, with a notice through `log`)."""
    if choice == "sharpness_colour":
        return SharpnessColourScorer()
    if aesthetic_weights_present(aesthetic_weights):
        return AestheticScorer(Path(aesthetic_weights))
    check_scorer_weights(choice, aesthetic_weights)
    where = f"at {aesthetic_weights}" if aesthetic_weights else "(aesthetic_weights is not set)"
    log(f"no aesthetic model weights {where}: GR-DMD scores frames by sharpness and colourfulness")
    return SharpnessColourScorer()
