"""The block-causal chunk runner: the passes of FashionChameleon's student over a KV cache.

One runner holds one video's KV cache (engine.model.kv_cache), sized for its latent frame grid,
chunk length and history window, and runs the three passes that every block-causal user of
the model makes — the streaming pipeline (`TryOnStream`), the student's training passes
(engine.train.causal) and so the benchmark's stream mode:

1. `write_conditions`: the condition tokens (reference, garments) alone, writing the
   `conditions` region;
2. `predict`: a chunk's flow at its frame offset, attending to everything cached;
3. `write_chunk`: the finished chunk once more at t=0, writing its keys and values into the
   `sink` when that is empty, else into the `history` ring; with a window of 0 there is no
   ring, and the pass is skipped.

So chunk i sees the conditions, the sink, the last `window` chunks and itself, at its own RoPE
slot — except with a window of 0, where the layout is always that of a two-chunk training
clip: the sink at the reference's slot, every chunk after it right after the sink. RoPE is
relative, so a student distilled on such clips sees the distances to the reference, the
garments and the sink of its training however long the stream, and after a switch too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from engine.model.kv_cache import KVCache
from engine.model.transformer_condnet import Condition, CondNetTransformer

FlowModel = Callable[..., tuple[torch.Tensor, ...]]  # the transformer, or its DDP wrapper


class BlockCausalRunner:
    """One video's KV cache and the passes over it (see the module docstring).

    `model` is what is called (the transformer, or its DDP wrapper in training), `transformer`
    the module itself (its attention layout and condition pass). `text` (1, L, D);
    `latent_size` the (height, width) of a latent frame. Batch size 1: the cache holds one
    sequence.
    """

    def __init__(self, model: FlowModel, transformer: CondNetTransformer, *, text: torch.Tensor,
                 latent_size: tuple[int, int], chunk_frames: int, window: int,
                 device: torch.device | None = None) -> None:
        self.model, self.transformer, self.text = model, transformer, text
        _, p_h, p_w = transformer.config.patch_size
        frame_tokens = (latent_size[0] // p_h) * (latent_size[1] // p_w)
        self.cache = KVCache.for_transformer(transformer, frame_tokens, chunk_frames, window, device=device)
        self.chunk_frames = chunk_frames
        self.user_slot = 0  # the reference's RoPE slot (write_conditions)

    def write_conditions(self, conditions: list[Condition], user_slot: int = 0) -> None:
        """Pass 1: the conditions' keys and values into the `conditions` region (the reference at `user_slot`)."""
        with self.transformer.attend_to(self.cache, write="conditions"):
            self.model(None, None, self.text, conditions=conditions, user_slot=user_slot, return_dict=False)
        self.user_slot = user_slot

    def predict(self, latents: torch.Tensor, timestep: torch.Tensor, frame_offset: int,
                motion: torch.Tensor | None) -> torch.Tensor:
        """Pass 2: the flow of a chunk (latents (1, C, n, h, w), timestep (1, n)) whose first latent
        frame sits at `frame_offset`, given the cache."""
        with self.transformer.attend_to(self.cache):
            return self._forward(latents, timestep, self.slot(frame_offset), motion)

    def write_chunk(self, clean: torch.Tensor, frame_offset: int, motion: torch.Tensor | None) -> None:
        """Pass 3: a t=0 pass on a finished chunk writes its keys and values, into the sink if it
        is empty, else into the history ring; nothing to write (no pass) when the window is 0."""
        if self.cache.is_empty("sink"):
            region = "sink"
        elif self.cache.window:
            region = "history"
        else:
            return
        with self.transformer.attend_to(self.cache, write=region):
            self._forward(clean, torch.zeros(1, clean.shape[2], device=clean.device), self.slot(frame_offset), motion)

    def slot(self, frame_offset: int) -> int:
        """The RoPE slot of a chunk whose first latent frame is frame `frame_offset` of the video
        (see the module docstring)."""
        if self.cache.window:
            return frame_offset
        return self.user_slot + self.cache.frames("sink")

    def _forward(self, latents: torch.Tensor, timestep: torch.Tensor, frame_offset: int,
                 motion: torch.Tensor | None) -> torch.Tensor:
        return self.model(latents, timestep, self.text, motion_latents=motion, frame_offset=frame_offset,
                          return_dict=False)[0]
