"""A streaming KV cache: named regions of fixed capacity, for every transformer layer.

Regions (what a chunk's video tokens attend to, in this order):

- `conditions`: the clean condition tokens, the reference (user photo, or a frame taken from
  the stream) then the garments. `read("reference")` and `read("garments")` address the two
  slices. They are written together by one condition pass, because conditions attend among
  themselves: past the first layer each one's keys depend on all the others.
- `sink`: the first chunk written after the cache was empty, kept until it is cleared.
- `history`: a ring buffer of the last `window` chunks after the sink; a new chunk replaces
  the oldest. A window of 0 keeps no history: chunks attend to the conditions and the sink.

Keys are stored after RoPE, at the positions they were computed for. Positions keep counting
as the stream grows (`frame_offset`), so sliding the window never re-rotates anything.

A write is two steps: during a forward pass every layer `write`s its keys and values into the
region's current entry, and `commit` then makes the entry visible. Until the commit each layer
still reads the entry that is being replaced, so a pass sees the same context at every layer.
Capacity is allocated up front: memory never grows with the length of the stream.
The cache holds one sequence (batch size 1).

`view()` pins what a pass reads: the entries valid now, each with the number of times its slot
has been committed. `keys_values(layer, view)` reads exactly those entries later — what
activation checkpointing needs to recompute a block in the backward pass — and refuses if one
has been replaced since (a ring that wrapped).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.model.roles import MAX_GARMENTS

REGIONS = ("conditions", "sink", "history")


@dataclass(frozen=True)
class Entry:
    """One valid entry of a region as a view saw it: its slot, length and commit count."""

    slot: int
    tokens: int
    generation: int


CacheView = dict[str, tuple[Entry, ...]]  # region name -> its valid entries, oldest first


class Region:
    """`slots` entries of at most `entry_tokens` tokens each, for every layer; a ring if slots > 1."""

    def __init__(self, slots: int, entry_tokens: int, layers: int, heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device) -> None:
        shape = (layers, slots, entry_tokens, heads, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.lengths = [0] * slots  # valid tokens in each entry; 0: empty
        self.generations = [0] * slots  # commits into each slot so far
        self.cursor = 0  # the entry the next write goes to: the oldest one
        self.pending = 0

    @property
    def entry_tokens(self) -> int:
        return self.keys.shape[2]

    @property
    def capacity(self) -> int:
        return self.keys.shape[1] * self.entry_tokens

    def write(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> None:
        tokens = key.shape[1]
        if not self.lengths:
            raise ValueError("this cache region has no entries (a history window of 0)")
        if key.shape[0] != 1 or tokens > self.entry_tokens:
            raise ValueError(f"a cache entry holds one sequence of at most {self.entry_tokens} tokens, "
                             f"got {tuple(key.shape[:2])}")
        self.keys[layer, self.cursor, :tokens] = key[0]
        self.values[layer, self.cursor, :tokens] = value[0]
        self.pending = tokens

    def commit(self) -> None:
        self.lengths[self.cursor] = self.pending
        self.generations[self.cursor] += 1
        self.cursor = (self.cursor + 1) % len(self.lengths)
        self.pending = 0

    def clear(self) -> None:
        self.lengths = [0] * len(self.lengths)
        self.cursor = 0
        self.pending = 0

    def entries(self) -> list[int]:
        """The valid entries, oldest first."""
        order = [(self.cursor + i) % len(self.lengths) for i in range(len(self.lengths))]
        return [slot for slot in order if self.lengths[slot]]

    def view(self) -> tuple[Entry, ...]:
        return tuple(Entry(slot, self.lengths[slot], self.generations[slot]) for slot in self.entries())

    def valid(self, layer: int, view: tuple[Entry, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (tokens, heads, head_dim) of the valid entries at one layer, or of `view`'s."""
        entries = self.view() if view is None else self._unchanged(view)
        keys = [self.keys[layer, entry.slot, : entry.tokens] for entry in entries]
        values = [self.values[layer, entry.slot, : entry.tokens] for entry in entries]
        if not keys:
            return self.keys[layer].flatten(0, 1)[:0], self.values[layer].flatten(0, 1)[:0]
        return torch.cat(keys), torch.cat(values)

    def _unchanged(self, view: tuple[Entry, ...]) -> tuple[Entry, ...]:
        """`view`, unless one of its entries has been replaced since (RuntimeError)."""
        for entry in view:
            if entry.generation != self.generations[entry.slot]:
                raise RuntimeError(f"cache slot {entry.slot} was replaced after a pass read it: the pass cannot be "
                                   "recomputed (a history window shorter than the training clip)")
        return view

    @property
    def tokens(self) -> int:
        return sum(self.lengths)


class KVCache:
    """The regions `conditions`, `sink` and `history` (see the module docstring)."""

    def __init__(self, *, layers: int, heads: int, head_dim: int, frame_tokens: int, chunk_frames: int,
                 window: int, dtype: torch.dtype, device: torch.device) -> None:
        if window < 0:
            raise ValueError(f"the history window cannot be negative, got {window}")
        shape = dict(layers=layers, heads=heads, head_dim=head_dim, dtype=dtype, device=device)
        chunk_tokens = chunk_frames * frame_tokens
        self.regions = {
            "conditions": Region(1, (1 + MAX_GARMENTS) * frame_tokens, **shape),
            "sink": Region(1, chunk_tokens, **shape),
            "history": Region(window, chunk_tokens, **shape),
        }
        self.layers = layers
        self.frame_tokens = frame_tokens
        self.reference_tokens = frame_tokens  # the reference is one image of the output size

    @classmethod
    def for_transformer(cls, transformer, frame_tokens: int, chunk_frames: int, window: int,
                        device: torch.device | None = None) -> KVCache:
        """A cache shaped for `transformer` (a CondNetTransformer) and chunks of `chunk_frames` frames.

        `device`: where the transformer runs, when its weights are elsewhere (offloaded).
        """
        config = transformer.config
        return cls(layers=config.num_layers, heads=config.num_attention_heads, head_dim=config.attention_head_dim,
                   frame_tokens=frame_tokens, chunk_frames=chunk_frames, window=window,
                   dtype=transformer.dtype, device=device or transformer.device)

    # -- region operations --------------------------------------------------------------------

    def write(self, region: str, layer: int, key: torch.Tensor, value: torch.Tensor) -> None:
        """Write one layer's keys and values (1, tokens, heads, head_dim) into `region`'s current entry."""
        self.regions[region].write(layer, key, value)

    def commit(self, region: str) -> None:
        """Make the entry just written visible; in the ring, the next write replaces the oldest entry."""
        self.regions[region].commit()

    def clear(self, region: str) -> None:
        self.regions[region].clear()

    def is_empty(self, region: str) -> bool:
        return self.regions[region].tokens == 0

    def frames(self, region: str) -> int:
        """Latent frames `region` holds now."""
        return self.regions[region].tokens // self.frame_tokens

    def view(self) -> CacheView:
        """The entries every region holds now (see the module docstring)."""
        return {name: self.regions[name].view() for name in REGIONS}

    def keys_values(self, layer: int, view: CacheView | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Everything cached at `layer`, or what `view` pinned, (1, tokens, heads, head_dim): conditions, sink,
        history."""
        parts = [self.regions[name].valid(layer, None if view is None else view[name]) for name in REGIONS]
        keys = torch.cat([k for k, _ in parts])
        values = torch.cat([v for _, v in parts])
        return keys[None], values[None]

    def read(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """A region, or the `reference` / `garments` slice of `conditions`: (layers, tokens, heads, head_dim)."""
        region = self.regions["conditions" if name in ("reference", "garments") else name]
        per_layer = [region.valid(layer) for layer in range(self.layers)]
        keys = torch.stack([k for k, _ in per_layer])
        values = torch.stack([v for _, v in per_layer])
        if name == "reference":
            return keys[:, : self.reference_tokens], values[:, : self.reference_tokens]
        if name == "garments":
            return keys[:, self.reference_tokens :], values[:, self.reference_tokens :]
        return keys, values

    @property
    def tokens(self) -> int:
        """Tokens cached now, in all regions."""
        return sum(region.tokens for region in self.regions.values())

    @property
    def capacity(self) -> int:
        """The most tokens this cache can ever hold."""
        return sum(region.capacity for region in self.regions.values())

    @property
    def window(self) -> int:
        """History chunks the cache can hold besides the sink."""
        return len(self.regions["history"].lengths)

    def history_chunks(self) -> int:
        return len(self.regions["history"].entries())
