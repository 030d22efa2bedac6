"""Flow matching for the CondNet teacher: encodings, random draws, model inputs, the loss.

Rules (rectified flow, as Wan is trained):
- x_t = (1 − σ)·x0 + σ·noise; the model predicts the flow noise − x0 at timestep σ·1000.
- σ = shift·u / (1 + (shift − 1)·u) with u uniform in [0, 1): the sampler's timestep shift.
- One σ per example, given to every latent frame (the teacher is bidirectional); the
  student's teacher forcing may instead draw one per chunk (`Draw.frame_sigmas`).
- Condition dropout removes the garments and the prompt together (user photo and motion
  stay): exactly the sampler's unconditional branch for guidance.
- A "dance" example (the anchored mode of `tryon dance`): no garments, the user photo IS
  the target's first frame, and the first latent frame is given clean at timestep 0 and
  left out of the loss.
- Every random choice of an example comes from (seed, position), its place in the run's
  example stream, so a resumed run, or one on more processes, draws the same.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from engine.model.transformer_condnet import Condition
from engine.pipelines.pipeline_tryon import TryOnPipeline
from engine.train.config import TrainConfig
from engine.train.data import TrainingExample


@dataclass
class Encoded:
    """One example in latent space: normalised VAE latents and UMT5 embeddings, batch 1."""

    target: torch.Tensor  # (1, C, F, h, w)
    user: torch.Tensor  # (1, C, 1, h, w)
    garments: list[tuple[str, torch.Tensor]]  # (role, (1, C, 1, h, w))
    motion: torch.Tensor | None  # (1, C, F, h, w)
    text: torch.Tensor  # (1, L, D)

    def to(self, device: torch.device) -> "Encoded":
        return Encoded(
            target=self.target.to(device),
            user=self.user.to(device),
            garments=[(role, latent.to(device)) for role, latent in self.garments],
            motion=None if self.motion is None else self.motion.to(device),
            text=self.text.to(device),
        )


class Encoder:
    """The pipeline's frozen VAE and text encoder, remembering what they encoded.

    With `cache`, each example's encodings are kept in CPU memory under its dataset index
    (the encoders never change during a run), and each prompt's embeddings under its text.
    """

    def __init__(self, pipeline: TryOnPipeline, cache: bool,
                 autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> None:
        self.pipeline = pipeline
        self.cache = cache
        self.autocast = autocast  # the run's mixed precision (bf16 encodes are faster); latents kept fp32
        self.examples: dict[int, Encoded] = {}
        self.prompts: dict[str, torch.Tensor] = {}
        self.empty_prompt = pipeline.encode_prompt("").cpu()  # the unconditional branch's

    def prompt(self, text: str) -> torch.Tensor:
        if text in self.prompts:
            return self.prompts[text]
        embeddings = self.pipeline.encode_prompt(text).cpu()
        if self.cache:
            self.prompts[text] = embeddings
        return embeddings

    def example(self, dataset: Sequence[TrainingExample], index: int) -> Encoded:
        """Example `index` of `dataset`, encoded; read from the dataset only when not cached."""
        if index in self.examples:
            return self.examples[index]
        example = dataset[index]

        def latents(frames: np.ndarray) -> torch.Tensor:
            with self.autocast():
                return self.pipeline.encode_frames(frames).float().cpu()

        encoded = Encoded(
            target=latents(example.target),
            user=latents(example.user[None]),
            garments=[(role, latents(image[None])) for role, image in example.garments],
            motion=None if example.motion is None else latents(example.motion),
            text=self.prompt(example.caption),
        )
        if self.cache:
            self.examples[index] = encoded
        return encoded

    def forget_examples(self) -> None:
        """Drop the cached examples (a new stage has another size or length)."""
        self.examples.clear()


@dataclass(frozen=True)
class Draw:
    """The random choices for one example."""

    sigma: float
    noise_seed: int
    drop_conditions: bool
    drop_motion: bool
    dance: bool
    unknown_garments: tuple[bool, ...]
    frame_sigmas: tuple[float, ...] | None = None  # one σ per latent frame, replacing `sigma` (block noise)


def shift_sigma(u: float, shift: float) -> float:
    """σ' = shift·σ / (1 + (shift − 1)·σ): more training at high noise when shift > 1."""
    return shift * u / (1.0 + (shift - 1.0) * u)


def draw(rng: np.random.Generator, config: TrainConfig, shift: float, num_garments: int, latent_frames: int) -> Draw:
    """The choices for one example, from its own generator (seeded by its stream position).

    A dance example needs a second latent frame to learn from, so single-frame examples
    are never dance.
    """
    sigma = shift_sigma(float(rng.random()), shift)
    noise_seed = int(rng.integers(2**63))
    drop_conditions = bool(rng.random() < config.condition_dropout)
    drop_motion = bool(rng.random() < config.motion_dropout)
    dance = bool(rng.random() < config.p_dance) and latent_frames > 1
    unknown = tuple(bool(u < config.category_dropout) for u in rng.random(num_garments))
    return Draw(sigma, noise_seed, drop_conditions, drop_motion, dance, unknown)


@dataclass
class FlowBatch:
    """Model inputs and the flow to predict, for examples sharing one condition layout."""

    noisy: torch.Tensor  # (B, C, F, h, w)
    timestep: torch.Tensor  # (B, F)
    text: torch.Tensor  # (B, L, D)
    conditions: list[Condition]  # latents (B, C, 1, h, w)
    motion: torch.Tensor | None  # (B, C, F, h, w)
    flow: torch.Tensor  # (B, C, F, h, w): noise − x0
    loss_frames: torch.Tensor  # (B, F) bool: the frames the loss counts

    @property
    def layout(self) -> tuple:
        """Examples with equal layouts can share one forward pass."""
        return tuple(c.role for c in self.conditions), self.motion is None, tuple(self.noisy.shape[1:])


def flow_example(encoded: Encoded, choice: Draw, empty_text: torch.Tensor) -> FlowBatch:
    """Noise one encoded example according to `choice` (see the module rules)."""
    x0 = encoded.target
    generator = torch.Generator().manual_seed(choice.noise_seed)
    noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(x0.device, x0.dtype)
    frames = x0.shape[2]
    sigmas = [choice.sigma] * frames if choice.frame_sigmas is None else list(choice.frame_sigmas)
    if len(sigmas) != frames:
        raise ValueError(f"{len(sigmas)} frame sigmas for {frames} latent frames")
    # (1 − σ) and σ·1000 in float64, then rounded once: as a Python float σ would be
    sigma = torch.tensor(sigmas, dtype=torch.float64, device=x0.device).view(1, 1, frames, 1, 1)
    noisy = (1.0 - sigma).to(x0.dtype) * x0 + sigma.to(x0.dtype) * noise
    timestep = (sigma.view(1, frames) * 1000.0).float()
    loss_frames = torch.ones(1, frames, dtype=torch.bool, device=x0.device)

    user = encoded.user
    garments = [("unknown" if unknown else role, latent)
                for (role, latent), unknown in zip(encoded.garments, choice.unknown_garments)]
    if choice.dance:
        user = x0[:, :, :1]
        garments = []
        noisy[:, :, :1] = user
        timestep[:, 0] = 0.0
        loss_frames[:, 0] = False
    if choice.drop_conditions:
        garments = []
    return FlowBatch(
        noisy=noisy,
        timestep=timestep,
        text=empty_text if choice.drop_conditions else encoded.text,
        conditions=[Condition("user", user)] + [Condition(role, latent) for role, latent in garments],
        motion=None if choice.drop_motion else encoded.motion,
        flow=noise - x0,
        loss_frames=loss_frames,
    )


def group_by_layout(examples: list[FlowBatch]) -> list[FlowBatch]:
    """Stack examples that share a layout into one batch each, in order of first appearance."""
    groups: dict[tuple, list[FlowBatch]] = {}
    for example in examples:
        groups.setdefault(example.layout, []).append(example)
    return [_stack(members) for members in groups.values()]


def _stack(members: list[FlowBatch]) -> FlowBatch:
    if len(members) == 1:
        return members[0]
    first = members[0]
    return FlowBatch(
        noisy=torch.cat([m.noisy for m in members]),
        timestep=torch.cat([m.timestep for m in members]),
        text=torch.cat([m.text for m in members]),
        conditions=[Condition(c.role, torch.cat([m.conditions[i].latent for m in members]))
                    for i, c in enumerate(first.conditions)],
        motion=None if first.motion is None else torch.cat([m.motion for m in members]),
        flow=torch.cat([m.flow for m in members]),
        loss_frames=torch.cat([m.loss_frames for m in members]),
    )


def flow_loss(predicted: torch.Tensor, batch: FlowBatch) -> torch.Tensor:
    """Per-example MSE (B,) between predicted and true flow, over the frames the loss counts."""
    per_frame = (predicted.float() - batch.flow.float()).pow(2).mean(dim=(1, 3, 4))
    mask = batch.loss_frames.float()
    return (per_frame * mask).sum(dim=1) / mask.sum(dim=1)
