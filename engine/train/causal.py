"""The student's block-causal passes over one clip, for training, on the streaming engine's code path.

A clip of F latent frames is cut into chunks of `chunk_frames` (the last may be shorter),
exactly as TryOnStream cuts a stream, and runs through the same `BlockCausalRunner`
(engine.pipelines.block_causal) as streaming:

1. the condition tokens (user photo, garments) run alone and write the `conditions` region;
2. chunk i is predicted while attending to the cache (conditions, sink, history);
3. the finished chunk i runs once more at t=0 and writes its keys and values, into `sink` if
   it is empty, else into the `history` ring of `window` chunks.

So chunk i sees the conditions, the clean chunks before it (the sink and the last `window`)
and itself: the block-causal in-context mask of FashionChameleon's teacher forcing, with
its sliding window. Unlike TryOnStream these passes may record gradients, also
through the cached keys and values: a masked full-sequence forward would back-propagate
into the condition and history tokens too.

- Teacher forcing (`teacher_forcing_flow`): step 3 writes the GROUND-TRUTH clean chunk, and
  step 2 predicts the flow of the noisy chunk.
- Self-rollout (`rollout`): step 2 is the student's few-step schedule from noise; step 3
  writes the student's own output (without gradient, as Self-Forcing does).
"""

from __future__ import annotations

import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from engine.model.transformer_condnet import Condition, CondNetTransformer
from engine.pipelines.block_causal import BlockCausalRunner, FlowModel
from engine.pipelines.pipeline_tryon_streaming import renoise_sigmas, renoise_step


def chunk_spans(frames: int, chunk_frames: int) -> list[slice]:
    """The latent frames of each chunk: [0, c), [c, 2c), ..., the last one possibly shorter."""
    return [slice(start, min(start + chunk_frames, frames)) for start in range(0, frames, chunk_frames)]


class ChunkedClip:
    """One clip's conditions, motion and block-causal runner (see the module docstring).

    `model` is what is called (the transformer or its DDP wrapper), `transformer` the module
    itself. Batch size 1, as the cache holds one sequence. `text` (1, L, D); `motion`
    (1, C, F, h, w) or None, sliced per chunk.
    """

    def __init__(self, model: FlowModel, transformer: CondNetTransformer, *, text: torch.Tensor,
                 conditions: list[Condition], motion: torch.Tensor | None, latent_size: tuple[int, int],
                 chunk_frames: int, window: int) -> None:
        self.runner = BlockCausalRunner(model, transformer, text=text, latent_size=latent_size,
                                        chunk_frames=chunk_frames, window=window)
        self.transformer, self.cache, self.chunk_frames = transformer, self.runner.cache, chunk_frames
        self.conditions, self.motion = conditions, motion

    def write_conditions(self) -> None:
        """Step 1: the conditions' keys and values into the `conditions` region."""
        self.runner.write_conditions(self.conditions)

    def predict(self, latents: torch.Tensor, timestep: torch.Tensor, span: slice) -> torch.Tensor:
        """Step 2: the flow of chunk `span` (latents (1, C, n, h, w), timestep (1, n)) given the cache."""
        return self.runner.predict(latents, timestep, span.start, self._motion(span))

    def write_chunk(self, clean: torch.Tensor, span: slice) -> None:
        """Step 3: a t=0 pass on the clean chunk writes its keys and values (sink if empty, else history)."""
        self.runner.write_chunk(clean, span.start, self._motion(span))

    def _motion(self, span: slice) -> torch.Tensor | None:
        return None if self.motion is None else self.motion[:, :, span]


def teacher_forcing_flow(clip: ChunkedClip, noisy: torch.Tensor, timestep: torch.Tensor,
                         clean: torch.Tensor) -> torch.Tensor:
    """The student's flow for every noisy chunk given the clean ground truth of the chunks before it.

    noisy, clean (1, C, F, h, w); timestep (1, F). Returns the flow (1, C, F, h, w).
    """
    clip.write_conditions()
    spans = chunk_spans(noisy.shape[2], clip.chunk_frames)
    flows = []
    for number, span in enumerate(spans):
        flows.append(clip.predict(noisy[:, :, span], timestep[:, span], span))
        if number < len(spans) - 1:  # the last chunk's keys are never read
            clip.write_chunk(clean[:, :, span], span)
    return torch.cat(flows, dim=2)


def rollout(clip: ChunkedClip, noise: torch.Tensor, scheduler: FlowMatchEulerDiscreteScheduler, steps: int,
            grad: bool, sampler: str = "euler", exit_step: int | None = None,
            renoise_generator: torch.Generator | None = None) -> torch.Tensor:
    """The student's own clip from `noise` (1, C, F, h, w), chunk by chunk as TryOnStream makes it.

    "euler": each chunk is denoised by `steps` Euler steps of `scheduler` (reset per chunk),
    attending to the cache; its last step is the x0 prediction. "renoise" (the official
    sampler, engine.pipelines.pipeline_tryon_streaming): x0 predicted at each of `renoise_sigmas`, re-noised
    to the next with noise from `renoise_generator`; with `exit_step` e the chunk stops at step
    e and its x0 prediction there is the chunk (Self-Forcing's random exit, the same e for
    every chunk). With `grad` only the step a chunk ends on records gradients (Self-Forcing):
    earlier steps, the condition pass and the cache writes do not. Returns the clean clip.
    """
    if sampler == "renoise":
        return _renoise_rollout(clip, noise, float(scheduler.config.shift), steps, grad,
                                steps - 1 if exit_step is None else exit_step, renoise_generator)
    with torch.no_grad():
        clip.write_conditions()
    chunks = []
    for span in chunk_spans(noise.shape[2], clip.chunk_frames):
        latents = noise[:, :, span]
        scheduler.set_timesteps(steps, device=noise.device)
        scheduler.set_begin_index(0)  # no host sync to find t in the schedule (see TryOnPipeline.start_schedule)
        last = len(scheduler.timesteps) - 1
        for index, t in enumerate(scheduler.timesteps):
            with torch.set_grad_enabled(grad and index == last):
                flow = clip.predict(latents, t.expand(1, latents.shape[2]), span)
                latents = scheduler.step(flow, t, latents, return_dict=False)[0]
        chunks.append(latents)
        if span.stop < noise.shape[2]:  # the last chunk's keys are never read
            with torch.no_grad():
                clip.write_chunk(latents.detach(), span)
    return torch.cat(chunks, dim=2)


def _renoise_rollout(clip: ChunkedClip, noise: torch.Tensor, shift: float, steps: int, grad: bool, exit_step: int,
                     generator: torch.Generator | None) -> torch.Tensor:
    if not 0 <= exit_step < steps:
        raise ValueError(f"exit_step must be in 0..{steps - 1}, not {exit_step}")
    sigmas = renoise_sigmas(steps, shift)[: exit_step + 1]
    with torch.no_grad():
        clip.write_conditions()
    chunks = []
    for span in chunk_spans(noise.shape[2], clip.chunk_frames):
        latents = noise[:, :, span]
        for index, sigma in enumerate(sigmas):
            last = index == len(sigmas) - 1
            with torch.set_grad_enabled(grad and last):
                flow = clip.predict(latents, torch.full((1, latents.shape[2]), 1000.0 * sigma, device=noise.device),
                                    span)
                fresh = None if last else torch.randn(latents.shape, generator=generator, dtype=torch.float32
                                                      ).to(latents.device, latents.dtype)
                latents = renoise_step(latents, flow, sigma, None if last else sigmas[index + 1], fresh)
        chunks.append(latents)
        if span.stop < noise.shape[2]:
            with torch.no_grad():
                clip.write_chunk(latents.detach(), span)
    return torch.cat(chunks, dim=2)
