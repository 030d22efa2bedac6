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

Storage: one persistent buffer per layer (`keys`, `values`: (layers, tokens, heads, head_dim)),
laid out `[conditions | sink | history slots | scratch]`; each region is a slice of it. The
conditions are written against the end of their slice (the number of garments varies), so in
the steady stream (full-length entries) everything cached is one contiguous run of the buffer.
`context(layer, key, value)` — what a pass's video tokens attend to — writes the pass's own
keys and values right after that run (into the scratch, or into history slots not yet used)
and returns the run as a view: no concatenation of the cache per layer per pass. Attention
does not depend on the order of its keys, so the ring's slots are read in slot order. Where
the run is not contiguous (a short chunk, a pinned view of an older time) or gradients are on
(in-place writes into a buffer whose views autograd kept would break the backward pass), it
falls back to concatenating the valid entries.

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
    """`slots` entries of at most `entry_tokens` tokens each, for every layer; a ring if slots > 1.

    Its storage is the slice of the cache's buffers from `offset`; `align_end`: an entry's tokens
    are written against the end of its slot instead of its start.
    """

    def __init__(self, slots: int, entry_tokens: int, buffers: tuple[torch.Tensor, torch.Tensor], offset: int,
                 align_end: bool = False) -> None:
        stop = offset + slots * entry_tokens
        self.offset, self.align_end = offset, align_end
        self.keys, self.values = (buffer[:, offset:stop].unflatten(1, (slots, entry_tokens)) for buffer in buffers)
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
        where = self._tokens_of(tokens)
        self.keys[layer, self.cursor, where] = key[0]
        self.values[layer, self.cursor, where] = value[0]
        self.pending = tokens

    def _tokens_of(self, tokens: int) -> slice:
        """Where in its slot an entry of `tokens` tokens lies."""
        return slice(self.entry_tokens - tokens, None) if self.align_end else slice(0, tokens)

    def spans(self, entries: tuple[Entry, ...]) -> list[tuple[int, int]]:
        """Where `entries` lie in the cache's buffers: (start, stop) token indices, in the entries' order."""
        spans = []
        for entry in entries:
            start = self.offset + entry.slot * self.entry_tokens + self._tokens_of(entry.tokens).indices(
                self.entry_tokens)[0]
            spans.append((start, start + entry.tokens))
        return spans

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
        keys = [self.keys[layer, entry.slot, self._tokens_of(entry.tokens)] for entry in entries]
        values = [self.values[layer, entry.slot, self._tokens_of(entry.tokens)] for entry in entries]
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
                 window: int, dtype: torch.dtype, device: torch.device, pass_tokens: int | None = None) -> None:
        if window < 0:
            raise ValueError(f"the history window cannot be negative, got {window}")
        chunk_tokens = chunk_frames * frame_tokens
        condition_tokens = (1 + MAX_GARMENTS) * frame_tokens
        # The scratch after the history: one pass's own keys (a chunk, and as many motion tokens).
        self.scratch = max(pass_tokens or 0, chunk_tokens)
        total = condition_tokens + (1 + window) * chunk_tokens + self.scratch
        shape = (layers, total, heads, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        buffers = (self.keys, self.values)
        self.regions = {
            "conditions": Region(1, condition_tokens, buffers, 0, align_end=True),
            "sink": Region(1, chunk_tokens, buffers, condition_tokens),
            "history": Region(window, chunk_tokens, buffers, condition_tokens + chunk_tokens),
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
        chunk_tokens = chunk_frames * frame_tokens
        attended_motion = config.get("motion_conditioning") == "attention"
        return cls(layers=config.num_layers, heads=config.num_attention_heads, head_dim=config.attention_head_dim,
                   frame_tokens=frame_tokens, chunk_frames=chunk_frames, window=window,
                   dtype=transformer.dtype, device=device or transformer.device,
                   pass_tokens=2 * chunk_tokens if attended_motion else chunk_tokens)

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

    def context(self, layer: int, key: torch.Tensor, value: torch.Tensor,
                view: CacheView | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """What a pass's video tokens attend to at `layer`: everything cached (or what `view` pinned),
        then this pass's `key` and `value` (1, tokens, heads, head_dim); a view of the buffers where
        it can be (see the module docstring), in an order attention does not depend on."""
        spans = self._spans(view)
        place = None
        if not torch.is_grad_enabled() and key.shape[0] == 1:
            place = self._run_before(spans, key.shape[1], pinned=view is not None)
        if place is None:
            cached_key, cached_value = self.keys_values(layer, view)
            return torch.cat([cached_key, key], dim=1), torch.cat([cached_value, value], dim=1)
        start, end = place
        stop = end + key.shape[1]
        self.keys[layer, end:stop] = key[0]
        self.values[layer, end:stop] = value[0]
        return self.keys[layer, start:stop][None], self.values[layer, start:stop][None]

    def _spans(self, view: CacheView | None) -> list[tuple[int, int]]:
        spans = []
        for name in REGIONS:
            region = self.regions[name]
            spans += region.spans(region.view() if view is None else region._unchanged(view[name]))
        return spans

    def _run_before(self, spans: list[tuple[int, int]], tokens: int, pinned: bool) -> tuple[int, int] | None:
        """(start, end) when `spans` are one contiguous run [start, end) followed by room for `tokens`
        tokens that hold nothing valid now; else None."""
        ordered = sorted(spans)
        if any(a[1] != b[0] for a, b in zip(ordered, ordered[1:])):
            return None
        scratch = self.keys.shape[1] - self.scratch
        start, end = (ordered[0][0], ordered[-1][1]) if ordered else (scratch, scratch)
        stop = end + tokens
        if stop > self.keys.shape[1]:
            return None
        if pinned and any(a < stop and end < b for a, b in self._spans(None)):
            return None  # a pinned view of an older time: what follows its run holds newer entries
        return start, end

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
