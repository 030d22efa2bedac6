"""Self-attention for CondNet sequences, and the choice of attention backend.

A CondNet sequence is `[condition tokens | video tokens]`. Condition tokens (the user photo
and the garments) attend only among themselves; video tokens attend to everything. Done as
two unmasked attention calls rather than one masked call, so every backend (SDPA, flash,
xformers) runs its fast path, and so that the conditions' keys and values never depend on the
video: that is what lets a KV cache keep them across chunks and swap garments cheaply.

Streaming is the same code path with a KV cache in the layout: video tokens also attend to
everything the cache holds (conditions, sink, history), and when the layout names a region,
every layer writes this pass's (rotated) keys and values into it. See engine.model.kv_cache.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn

from engine.errors import InputError

if TYPE_CHECKING:
    from engine.model.kv_cache import CacheView, KVCache

ATTENTION_CHOICES = ("auto", "sdpa", "cudnn", "flash", "xformers")

# Our names -> diffusers' attention backend names (cudnn: PyTorch's SDPA held to its cuDNN kernel).
_BACKENDS = {"sdpa": "native", "cudnn": "_native_cudnn", "flash": "flash", "flash3": "_flash_3",
             "xformers": "xformers"}
HALF_DTYPES = (torch.bfloat16, torch.float16)  # what cuDNN and flash attention compute in


@dataclass
class SequenceLayout:
    """What every layer needs to know about the current forward pass.

    `num_condition_tokens`: where the condition tokens end; `num_motion_tokens`: how many
    attended motion tokens follow them (they attend only among themselves, the video attends to
    them, and they are never written to a cache). `cache`: a streaming KV cache whose
    keys and values video tokens also attend to; `write_region`: the cache region this pass's
    keys and values are written to (None: the pass only reads the cache).
    `cache_view`: the cache entries to read (`KVCache.view`); None: those valid now.
    `conditions_see_video`: in a pass without a cache, condition tokens attend to the whole
    sequence (FashionChameleon's bidirectional teacher) instead of only among themselves.
    `text`: what the cross-attention's text comes from in this pass: the prompt embeddings given to
    the transformer, then the version counters of them and of the text embedder's weights (see
    `TextAttnProcessor`); None: unknown, nothing is kept.
    """

    num_condition_tokens: int = 0
    num_motion_tokens: int = 0
    cache: KVCache | None = None
    write_region: str | None = None
    cache_view: CacheView | None = None
    conditions_see_video: bool = False
    text: tuple | None = None

    def pinned(self) -> SequenceLayout:
        """A copy that reads the cache entries valid now, whenever it is used."""
        return replace(self, cache_view=None if self.cache is None else self.cache.view())

    @contextmanager
    def set_to(self, other: SequenceLayout) -> Iterator[None]:
        """Within the block, this layout (which the processors hold) is `other`; then what it was."""
        before = replace(self)
        self._assign(other)
        try:
            yield
        finally:
            self._assign(before)

    def _assign(self, other: SequenceLayout) -> None:
        for field in fields(self):
            setattr(self, field.name, getattr(other, field.name))


def _apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # Same interleaved-pair rotation as diffusers' Wan attention.
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos[..., 0::2], sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)


class CondNetAttnProcessor:
    """Self-attention processor for `WanAttention` that respects the CondNet layout."""

    _attention_backend = None  # set by ModelMixin.set_attention_backend
    _parallel_config = None

    def __init__(self, layout: SequenceLayout, layer: int = 0) -> None:
        self.layout = layout
        self.layer = layer  # this block's index: its slot in a KV cache

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        query, key, value = self.project(attn, hidden_states, rotary_emb)
        n, m = self.layout.num_condition_tokens, self.layout.num_motion_tokens
        parts = []
        if n:
            whole = self.layout.conditions_see_video and self.layout.cache is None
            parts.append(self.attend(query[:, :n], key[:, : None if whole else n], value[:, : None if whole else n]))
        if m:
            parts.append(self.attend(query[:, n : n + m], key[:, n : n + m], value[:, n : n + m]))
        if query.shape[1] > n + m:
            context = self.context(key, value)  # a statement of its own: torch.compile breaks its graph here
            parts.append(self.attend(query[:, n + m :], *context))
        if self.layout.cache is not None and self.layout.write_region is not None:
            if m:  # a chunk's motion tokens belong to that chunk only
                key, value = (torch.cat([t[:, :n], t[:, n + m :]], dim=1) for t in (key, value))
            self.write_cache(key, value)
        out = torch.cat(parts, dim=1).flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))

    def context(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What video tokens attend to: the cached keys and values and this pass's (KVCache.context)."""
        if self.layout.cache is None:
            return key, value
        return self.read_cache(key, value)

    # The cache is reached outside torch.compile: every block's processor differs only in its
    # `layer`, and a compiled block reading it would be recompiled for each of the 30 layers.
    @torch.compiler.disable
    def read_cache(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.layout.cache.context(self.layer, key, value, self.layout.cache_view)

    @torch.compiler.disable
    def write_cache(self, key: torch.Tensor, value: torch.Tensor) -> None:
        self.layout.cache.write(self.layout.write_region, self.layer, key, value)

    @staticmethod
    def project(attn, hidden_states: torch.Tensor, rotary_emb) -> tuple[torch.Tensor, ...]:
        """Queries, keys and values as (batch, tokens, heads, head_dim), normalised and rotated."""
        if attn.fused_projections:
            query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        else:
            query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        query, key = attn.norm_q(query), attn.norm_k(key)
        query, key, value = (t.unflatten(2, (attn.heads, -1)) for t in (query, key, value))
        if rotary_emb is not None:
            query = _apply_rotary(query, *rotary_emb)
            key = _apply_rotary(key, *rotary_emb)
        return query, key, value

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return dispatch_attention_fn(query, key, value, backend=self._attention_backend,
                                     parallel_config=self._parallel_config)


class TextAttnProcessor:
    """Cross-attention to the text for `WanAttention`: diffusers' `WanAttnProcessor` without its
    image branch (CondNet has none), with the text's keys and values kept between calls.

    A stream runs every pass with the same prompt embeddings, so the text's projected keys and
    values are computed once per stream instead of once per pass. They are reused only while no
    gradient is needed, for the very same prompt tensor (`layout.text`; held, so its memory cannot
    be reused by another) and unchanged weights (version counters: an optimizer step bumps them),
    and never in training mode (a sharded student's distillation drifted from one process's with
    the keys kept there).
    """

    _attention_backend = None  # set by ModelMixin.set_attention_backend
    _parallel_config = None

    def __init__(self, layout: SequenceLayout) -> None:
        self.layout = layout
        self._kept: tuple[torch.Tensor, tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] | None = None

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, rotary_emb=None) -> torch.Tensor:
        if attn.add_k_proj is not None:
            raise ValueError("TextAttnProcessor has no image branch (a Wan I2V model's added K/V)")
        query = attn.to_q(hidden_states)
        query = attn.norm_q(query).unflatten(2, (attn.heads, -1))
        key, value = self.text_keys_values(attn, encoder_hidden_states)
        out = dispatch_attention_fn(query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False,
                                    backend=self._attention_backend, parallel_config=None)
        return attn.to_out[1](attn.to_out[0](out.flatten(2, 3).type_as(query)))

    @torch.compiler.disable  # identity checks on Python objects: outside compiled code
    def text_keys_values(self, attn, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        projections = (attn.to_kv,) if attn.fused_projections else (attn.to_k, attn.to_v)
        source = None if attn.training else self.layout.text  # a model in training may change under us
        if source is not None:
            versions = (*source[1:], *(projection.weight._version for projection in projections))
            if self._kept is not None and self._kept[0] is source[0] and self._kept[1] == versions:
                return self._kept[2]
        if attn.fused_projections:
            key, value = attn.to_kv(text).chunk(2, dim=-1)
        else:
            key, value = attn.to_k(text), attn.to_v(text)
        key = attn.norm_k(key).unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))
        keep = source is not None and not torch.is_grad_enabled()
        self._kept = (source[0], versions, (key, value)) if keep else None
        return key, value


def installed_backends() -> list[str]:
    """Our attention choices whose packages are importable here (SDPA always is)."""
    found = ["sdpa"]
    if torch.backends.cudnn.is_available():
        found.append("cudnn")
    if importlib.util.find_spec("flash_attn_interface") is not None:
        found.append("flash3")
    if importlib.util.find_spec("flash_attn") is not None:
        found.append("flash")
    if importlib.util.find_spec("xformers") is not None:
        found.append("xformers")
    return found


def resolve_attention(choice: str, device: torch.device, dtype: torch.dtype | None = None) -> str:
    """Turn the `attention` option into a backend we can run: `auto` picks the fastest installed on CUDA:
    FlashAttention-3, then (in bf16 or fp16, on Hopper and later) cuDNN's, then FlashAttention-2, xformers."""
    if choice not in ATTENTION_CHOICES:
        raise InputError(f"must be one of {', '.join(ATTENTION_CHOICES)}, not '{choice}'", option="attention")
    if choice == "auto":
        if device.type != "cuda":
            return "sdpa"
        hopper = torch.cuda.get_device_capability(device) >= (9, 0)
        for preferred in ("flash3", "cudnn", "flash", "xformers"):
            if preferred == "cudnn" and not (hopper and dtype in HALF_DTYPES):
                continue
            if preferred in installed_backends():
                return preferred
        return "sdpa"
    if choice == "cudnn" and dtype is not None and dtype not in HALF_DTYPES:
        raise InputError("cudnn computes in bf16 or fp16: give --dtype bf16 (or try sdpa)", option="attention")
    if choice == "flash" and "flash3" in installed_backends():
        return "flash3"
    if choice != "sdpa" and choice not in installed_backends():
        raise InputError(f"{choice}: the {choice} package is not installed (try sdpa)", option="attention")
    if choice != "sdpa" and device.type != "cuda":
        raise InputError(f"{choice} needs a CUDA device (try sdpa)", option="attention")
    return choice


def diffusers_backend(choice: str) -> str:
    """The diffusers backend name for one of our resolved choices."""
    return _BACKENDS[choice]
