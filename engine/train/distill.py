"""Distribution matching distillation (DMD, DMD2) with FashionChameleon's gradient reweighting (GR-DMD).

Rules, in flow-matching form (x_t = (1 − σ)·x0 + σ·ε; a model predicts the flow v = ε − x0
at timestep 1000·σ):

- A flow prediction gives x0 = x_t − σ·v.
- s_real is the frozen teacher with classifier-free guidance g: v = v_u + g·(v_c − v_u). The
  unconditional branch drops only the prompt and keeps the reference, the garments and the
  motion, as FashionChameleon's DMD (gr_dmd_ic.py: its unconditional dict keeps src_data and
  cloth_data; guidance_scale 3.0). g ≤ 1: no guidance. With `keep_garments` off it drops the
  garments too: the branch a teacher trained with tryon's `condition_dropout` (prompt and
  garments dropped together) learned, and the one its own pipeline guides with.
- s_fake is the critic (the "fake score"), conditional, without guidance.
- The DMD gradient for a generated clip x, at its re-noised version x_t (DMD; DMD2's normaliser):
      g = (x0_fake − x0_real) / mean|x − x0_real|        (mean over each example)
  This is ∝ s_fake − s_real (a score is ∝ (1 − σ)·x0 − x_t), so descending it moves x away
  from where the critic thinks the generator's samples are and toward the teacher's.
- GR-DMD: for latent frame i of f, g_i ← A_i · f · g_i with A = softmax(−R/τ) over the clip's
  frames, R a frame-quality score on the aesthetic model's raw 1–10 scale
  (engine.train.scorer), averaged over the video frames of each latent frame and then over
  each chunk, as the official code does (every latent frame of a chunk gets the chunk's
  mean). Low-quality chunks get more of the gradient. Uniform A (all R equal, or τ → ∞)
  gives A_i·f = 1: plain DMD.
- The surrogate loss 0.5·mean((x − sg(x − g))²) has the gradient g / x.numel() with respect
  to x; back-propagating it through x trains the generator.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from engine.model.transformer_condnet import without_garments
from engine.train.flow import FlowBatch
from engine.train.loop import predict_flow


def predicted_x0(model, batch: FlowBatch, guidance: float = 1.0, negative_text: torch.Tensor | None = None,
                 keep_garments: bool = True) -> torch.Tensor:
    """x0 = x_t − σ·v for `batch` (one example's noisy clip), v the model's (guided) flow."""
    flow = predict_flow(model, batch)
    if guidance > 1.0:
        # Unconditional branch: the negative prompt's text; the reference and the motion stay, the garments as asked.
        conditions = batch.conditions if keep_garments else without_garments(batch.conditions)
        uncond = predict_flow(model, replace(batch, text=negative_text, conditions=conditions))
        flow = uncond + guidance * (flow - uncond)
    sigma = (batch.timestep / 1000.0)[:, None, :, None, None]
    return batch.noisy - sigma * flow


def dmd_gradient(x: torch.Tensor, x0_real: torch.Tensor, x0_fake: torch.Tensor) -> torch.Tensor:
    """g = (x0_fake − x0_real) / mean|x − x0_real|, the mean over each example (see the module rules)."""
    dims = tuple(range(1, x.ndim))
    normaliser = (x - x0_real).abs().mean(dim=dims, keepdim=True).clamp_min(1e-6)
    return (x0_fake - x0_real) / normaliser


def frame_weights(scores: torch.Tensor, tau: float) -> torch.Tensor:
    """A_i = exp(−R_i/τ) / Σ_j exp(−R_j/τ) over the clip's frames (scores R: (f,))."""
    return torch.softmax(-scores.double() / tau, dim=0).float()


def reweight(grad: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """g_i ← A_i · f · g_i for each latent frame i of `grad` (B, C, f, h, w); uniform A changes nothing."""
    frames = grad.shape[2]
    return grad * (weights * frames).to(grad)[None, None, :, None, None]


def dmd_loss(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """0.5·mean((x − sg(x − g))²): its gradient with respect to x is g / x.numel()."""
    return 0.5 * (x.float() - (x - grad).detach().float()).pow(2).mean()


def latent_frame_scores(pixel_scores: torch.Tensor, latent_frames: int, temporal_factor: int) -> torch.Tensor:
    """One score per latent frame: the mean over the video frames it decodes to.

    Latent frame 0 decodes to video frame 0, latent frame k ≥ 1 to frames
    (k−1)·t+1 … k·t (t = temporal_factor, 4 for Wan).
    """
    if len(pixel_scores) != (latent_frames - 1) * temporal_factor + 1:
        raise ValueError(f"{len(pixel_scores)} frame scores for {latent_frames} latent frames")
    rest = pixel_scores[1:].reshape(latent_frames - 1, temporal_factor).mean(dim=1)
    return torch.cat([pixel_scores[:1], rest])


def chunk_scores(latent_scores: torch.Tensor, chunk_frames: int) -> torch.Tensor:
    """Each latent frame's score replaced by the mean of its chunk's (the last chunk may be shorter)."""
    return torch.cat([chunk.mean().expand(len(chunk)) for chunk in latent_scores.split(chunk_frames)])
