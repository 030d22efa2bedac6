"""CondNet on the Wan transformer: try-on conditioning as in-context tokens.

The model is diffusers' `WanTransformer3DModel` (so the Wan2.2-TI2V-5B base weights load
unchanged) plus three zero-initialised parts, which make a fresh CondNet start as the base
model:

- `role_embedding`: the user photo and each garment become clean latent tokens in the same
  self-attention sequence as the noisy video, marked by their role (user, top, bottom,
  dress, unknown), at timestep 0. They attend only among themselves (see `attention.py`).
- motion, by `motion_conditioning`:
  - `"additive"`: `motion_embedding` of the motion video's latents, frame-aligned with the
    output, added to the patch embedding. Equivalent to concatenating them as extra input
    channels whose weights start at zero, but it keeps `patch_embedding` the base model's
    own tensor.
  - `"attention"` (Dress&Dance's CondNet: video conditions through attention): the motion
    latents become clean tokens of their own (the patch embedding plus `motion_role`), at
    timestep 0, each latent frame at the RoPE slot of the output frame it belongs to. They
    attend only among themselves and the video attends to them, so the performer's body
    and clothes reach the output only through what attention picks. `motion_pool` k
    averages k x k patches into one token (RoPE at their mean position) to bound the cost.
    A stream passes only the current chunk's motion latents.
- text goes through Wan's own cross-attention, unchanged.

RoPE positions: video frame f sits at temporal slot `frame_offset + f`; the user photo at
slot 0, the same slot as the first output frame, which anchors the video's start to the
person; garment k at slot -(k+1), before the video, so garments never collide with any
video frame however long a stream runs. A stream that takes a new reference mid-video moves
all condition slots with `user_slot` (the reference at the next frame's slot, garments just
before it), keeping their distances to the frames to come as in training; see
engine.pipelines.pipeline_tryon_streaming.

`condition_layout="fashionchameleon"` (config) is the layout of FashionChameleon's released
code, for its converted checkpoints (engine.checkpoint.convert): the conditions are latent
frames just before the video, reference then garments (its RoPE slots 0, 1, .. with the video
from slot 1 + garments; here the same distances, ending just before `user_slot`), with no role
embedding of their own (a converted model keeps `role_embedding` at zero); in a pass without a
KV cache (its bidirectional teacher) they attend to the whole sequence, in streams only among
themselves (its block-causal mask).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
# A checkpoint's model_index.json names this module for its transformer. diffusers' pipeline loader
# (DiffusionPipeline.from_pretrained) picks a component's load method by looking its base classes up
# by name in the component's module, so `ModelMixin` must be importable from here.
from diffusers import ModelMixin, WanTransformer3DModel  # noqa: F401
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import get_1d_rotary_pos_embed
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.utils import apply_lora_scale

from engine.errors import InputError
from engine.model.attention import CondNetAttnProcessor, SequenceLayout, TextAttnProcessor
from engine.model.kv_cache import KVCache
from engine.model.roles import ROLES, role_id
from engine.model.roles import GARMENT_CATEGORIES, MAX_GARMENTS  # noqa: F401 - re-exported

CONDITION_LAYOUTS = ("tryon", "fashionchameleon")
MOTION_CONDITIONING = ("additive", "attention")


@dataclass
class Condition:
    """One clean in-context image: its role and its VAE latent, shape (B, C, 1, h, w)."""

    role: str
    latent: torch.Tensor


def without_garments(conditions: list[Condition]) -> list[Condition]:
    """The conditions that guidance's unconditional branch keeps: the user photo alone."""
    return [c for c in conditions if c.role == "user"]


class CondNetTransformer(WanTransformer3DModel):
    """`WanTransformer3DModel` with CondNet conditioning (see the module docstring)."""

    _skip_layerwise_casting_patterns = ["patch_embedding", "motion_embedding", "role_embedding", "condition_embedder", "norm"]

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 24,
        attention_head_dim: int = 128,
        in_channels: int = 48,
        out_channels: int = 48,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 14336,
        num_layers: int = 30,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: int | None = None,
        added_kv_proj_dim: int | None = None,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: int | None = None,
        num_roles: int = len(ROLES),
        motion_channels: int | None = None,  # default: in_channels (motion goes through the same VAE)
        condition_layout: str = "tryon",
        motion_conditioning: str = "additive",
        motion_pool: int = 1,
    ) -> None:
        super().__init__(
            patch_size=patch_size,
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            in_channels=in_channels,
            out_channels=out_channels,
            text_dim=text_dim,
            freq_dim=freq_dim,
            ffn_dim=ffn_dim,
            num_layers=num_layers,
            cross_attn_norm=cross_attn_norm,
            qk_norm=qk_norm,
            eps=eps,
            image_dim=image_dim,
            added_kv_proj_dim=added_kv_proj_dim,
            rope_max_seq_len=rope_max_seq_len,
            pos_embed_seq_len=pos_embed_seq_len,
        )
        if condition_layout not in CONDITION_LAYOUTS:
            raise ValueError(f"condition_layout must be one of {CONDITION_LAYOUTS}, not {condition_layout!r}")
        if motion_conditioning not in MOTION_CONDITIONING:
            raise ValueError(f"motion_conditioning must be one of {MOTION_CONDITIONING}, not {motion_conditioning!r}")
        if motion_pool < 1:
            raise ValueError(f"motion_pool must be at least 1, not {motion_pool}")
        inner_dim = num_attention_heads * attention_head_dim
        self.role_embedding = nn.Embedding(num_roles, inner_dim)
        # Each motion form has only its own parameters: attended motion goes through the patch embedding.
        additive = motion_conditioning == "additive"
        self.motion_embedding = nn.Conv3d(motion_channels or in_channels, inner_dim, kernel_size=patch_size,
                                          stride=patch_size) if additive else None
        self.motion_role = None if additive else nn.Parameter(torch.zeros(inner_dim))
        self.layout = SequenceLayout(conditions_see_video=condition_layout == "fashionchameleon")
        for index, block in enumerate(self.blocks):
            block.attn1.set_processor(CondNetAttnProcessor(self.layout, layer=index))
            block.attn2.set_processor(TextAttnProcessor(self.layout))
        self.zero_condnet_parameters()

    # -- parameters ---------------------------------------------------------------------------

    def zero_condnet_parameters(self) -> None:
        """Zero the CondNet-only parameters, so the model behaves as its base model."""
        with torch.no_grad():
            for param in self.condnet_parameters():
                param.zero_()

    def condnet_parameters(self) -> list[nn.Parameter]:
        motion = self.motion_embedding.parameters() if self.motion_role is None else [self.motion_role]
        return [*self.role_embedding.parameters(), *motion]

    def condnet_is_zero(self) -> bool:
        """True while CondNet has never been trained (all its parameters are still zero)."""
        return all(not p.detach().abs().sum().item() for p in self.condnet_parameters())

    @classmethod
    def from_base(cls, base: WanTransformer3DModel, **condnet_config) -> "CondNetTransformer":
        """Wrap a plain Wan transformer (e.g. the Wan2.2 base weights) in a fresh CondNet."""
        config = {k: v for k, v in base.config.items() if not k.startswith("_")}
        model = cls(**{**config, **condnet_config})
        own = ("role_embedding", "motion_embedding", "motion_role")  # CondNet's, not the Wan backbone's
        missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
        fresh = {name for name, _ in model.named_parameters() if name.startswith(own)}
        unexpected = [name for name in unexpected if not name.startswith(own)]  # a CondNet base's other motion form
        if set(missing) - fresh or unexpected:
            raise ValueError(f"base transformer does not match: missing {missing}, unexpected {unexpected}")
        return model if base.dtype == torch.float32 else model.to(base.dtype)

    # -- positions ----------------------------------------------------------------------------

    @contextmanager
    def attend_to(self, cache: KVCache, write: str | None = None) -> Iterator[None]:
        """Within this block, passes of this transformer attend to `cache`.

        With `write`, every layer writes the pass's keys and values into that region, and the
        entry is committed when the block ends without an error.
        """
        self.layout.cache, self.layout.write_region = cache, write
        try:
            yield
        finally:
            self.layout.cache, self.layout.write_region = None, None
        if write is not None:
            cache.commit(write)

    def rotary(self, frame_positions: torch.Tensor, height: int | torch.Tensor,
               width: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE (cos, sin) of shape (1, len(frame_positions)*height*width, 1, head_dim).

        `frame_positions` is one temporal slot per latent frame (any integers, negative too);
        height and width are in patches (rows and columns at 0, 1, ..), or the positions of the
        rows and columns. Matches diffusers' WanRotaryPosEmbed for slots 0..F-1.
        """
        rope = self.rope
        device = frame_positions.device
        rows = torch.arange(height, device=device) if isinstance(height, int) else height
        columns = torch.arange(width, device=device) if isinstance(width, int) else width
        height, width = len(rows), len(columns)
        parts_cos, parts_sin = [], []
        axes = (frame_positions, rows, columns)
        for dim, positions in zip((rope.t_dim, rope.h_dim, rope.w_dim), axes):
            cos, sin = get_1d_rotary_pos_embed(
                dim, positions.to(torch.float64), 10000.0, use_real=True, repeat_interleave_real=True,
                freqs_dtype=torch.float64,
            )
            parts_cos.append(cos)
            parts_sin.append(sin)
        frames = len(frame_positions)

        def grid(parts: list[torch.Tensor]) -> torch.Tensor:
            t, h, w = parts
            full = torch.cat(
                [
                    t.view(frames, 1, 1, -1).expand(frames, height, width, -1),
                    h.view(1, height, 1, -1).expand(frames, height, width, -1),
                    w.view(1, 1, width, -1).expand(frames, height, width, -1),
                ],
                dim=-1,
            )
            return full.reshape(1, frames * height * width, 1, -1).float()

        return grid(parts_cos), grid(parts_sin)

    # -- forward ------------------------------------------------------------------------------

    def embed_conditions(
        self, conditions: list[Condition], user_slot: int = 0
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]] | None:
        """Tokens and RoPE of the clean condition images, or None when there are none.

        The user image sits at temporal slot `user_slot`, garment k at `user_slot - (k+1)`;
        in the FashionChameleon layout the conditions, in order, take the slots just before
        `user_slot`.
        """
        if not conditions:
            return None
        tokens, cos, sin = [], [], []
        slots = self.condition_slots(conditions, user_slot)
        for condition, slot in zip(conditions, slots):
            latent = condition.latent.to(self.patch_embedding.weight.dtype)
            embedded = self.patch_embedding(latent).flatten(2).transpose(1, 2)
            role = torch.tensor(role_id(condition.role), device=embedded.device)
            tokens.append(embedded + self.role_embedding(role).to(embedded.dtype))
            _, _, _, h, w = latent.shape
            p_h, p_w = self.config.patch_size[1:]
            c, s = self.rotary(torch.tensor([slot], device=embedded.device), h // p_h, w // p_w)
            cos.append(c)
            sin.append(s)
        return torch.cat(tokens, dim=1), (torch.cat(cos, dim=1), torch.cat(sin, dim=1))

    def embed_motion(
        self, motion_latents: torch.Tensor, frame_offset: int = 0
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Motion tokens (B, tokens, dim) and their RoPE: latent frame f at slot `frame_offset + f`,
        k x k patches pooled into one token at their mean position (k = `motion_pool`)."""
        tokens = self.patch_embedding(motion_latents.to(self.patch_embedding.weight.dtype))  # (B, D, f, h, w)
        _, _, f, h, w = tokens.shape
        rows, columns = torch.arange(h, device=tokens.device), torch.arange(w, device=tokens.device)
        pool = self.config.motion_pool
        if pool > 1:
            tokens = nn.functional.avg_pool3d(tokens, (1, pool, pool), ceil_mode=True)
            rows, columns = (_pooled_positions(axis, pool) for axis in (rows, columns))
        tokens = tokens.flatten(2).transpose(1, 2) + self.motion_role.to(tokens.dtype)
        positions = torch.arange(frame_offset, frame_offset + f, device=tokens.device)
        return tokens, self.rotary(positions, rows, columns)

    def condition_slots(self, conditions: list[Condition], user_slot: int = 0) -> list[int]:
        """The temporal RoPE slot of each condition (see `embed_conditions`)."""
        if self.config.condition_layout == "fashionchameleon":
            return list(range(user_slot - len(conditions), user_slot))
        slots, garment_index = [], 0
        for condition in conditions:
            if condition.role == "user":
                slots.append(user_slot)
            else:
                garment_index += 1
                slots.append(user_slot - garment_index)
        return slots

    @apply_lora_scale("attention_kwargs")
    def forward(  # type: ignore[override]
        self,
        hidden_states: torch.Tensor | None,
        timestep: torch.Tensor | None,
        encoder_hidden_states: torch.Tensor,
        conditions: list[Condition] | None = None,
        motion_latents: torch.Tensor | None = None,
        frame_offset: int = 0,
        user_slot: int = 0,
        return_dict: bool = True,
        attention_kwargs: dict | None = None,
        **_: object,
    ) -> torch.Tensor | Transformer2DModelOutput:
        """Predict the flow for noisy video latents `hidden_states` (B, C, F, H, W).

        `timestep` is (B,) or per latent frame (B, F); condition tokens always get timestep 0.
        Video frame f sits at RoPE slot `frame_offset + f`, the user image at `user_slot`.
        `attention_kwargs` `{"scale": s}` scales the LoRA layers for this call, as in diffusers.

        With `hidden_states` None this is the condition pass: the condition tokens alone through
        every block, for a KV cache to record (`attend_to`); no sample. Conditions attend only
        among themselves, so it computes exactly their keys and values in any pass that also
        holds video (engine.model.kv_cache). It is a `forward` so that every wrapper of the model
        (DDP, FSDP, offload hooks) sees it.
        """
        if hidden_states is None:
            self._condition_pass(conditions or [], encoder_hidden_states, user_slot)
            return (None,) if not return_dict else Transformer2DModelOutput(sample=None)
        batch, _, frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.config.patch_size
        f, h, w = frames // p_t, height // p_h, width // p_w
        tokens_per_frame = h * w

        video = self.patch_embedding(hidden_states).flatten(2).transpose(1, 2)
        attended_motion = None
        if motion_latents is not None:
            if self.motion_role is not None:
                attended_motion = self.embed_motion(motion_latents, frame_offset)
            else:
                video = video + self.motion_embedding(motion_latents.to(video.dtype)).flatten(2).transpose(1, 2)
        positions = torch.arange(frame_offset, frame_offset + f, device=video.device)
        rotary = self.rotary(positions, h, w)

        if timestep.ndim == 1:
            timestep = timestep[:, None].expand(batch, f)
        per_token_t = timestep.repeat_interleave(tokens_per_frame, dim=1)

        # The sequence: [conditions | motion | video]; conditions and motion are clean (t = 0).
        clean = []
        embedded = self.embed_conditions(conditions or [], user_slot)
        if embedded is not None:
            clean.append((embedded[0].expand(batch, -1, -1), embedded[1]))
        if attended_motion is not None:
            clean.append(attended_motion)
        num_condition_tokens = embedded[0].shape[1] if embedded is not None else 0
        num_motion_tokens = attended_motion[0].shape[1] if attended_motion is not None else 0
        num_clean = num_condition_tokens + num_motion_tokens
        sequence = torch.cat([tokens.to(video.dtype) for tokens, _ in clean] + [video], dim=1)
        rotary = tuple(torch.cat([r[i] for _, r in clean] + [rotary[i]], dim=1) for i in range(2))
        zeros = torch.zeros(batch, num_clean, dtype=per_token_t.dtype, device=per_token_t.device)
        per_token_t = torch.cat([zeros, per_token_t], dim=1)

        sequence, temb = self._run_blocks(sequence, per_token_t, encoder_hidden_states, rotary, num_condition_tokens,
                                          num_motion_tokens)

        video_out = sequence[:, num_clean:]
        temb = temb[:, num_clean:]
        shift, scale = (self.scale_shift_table.unsqueeze(0).to(temb.device) + temb.unsqueeze(2)).chunk(2, dim=2)
        video_out = (self.norm_out(video_out.float()) * (1 + scale.squeeze(2)) + shift.squeeze(2)).type_as(video_out)
        video_out = self.proj_out(video_out)
        video_out = video_out.reshape(batch, f, h, w, p_t, p_h, p_w, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        output = video_out.flatten(6, 7).flatten(4, 5).flatten(2, 3)
        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)

    def _condition_pass(self, conditions: list[Condition], encoder_hidden_states: torch.Tensor, user_slot: int) -> None:
        tokens, rotary = self.embed_conditions(conditions, user_slot)
        per_token_t = torch.zeros(1, tokens.shape[1], device=tokens.device)
        self._run_blocks(tokens, per_token_t, encoder_hidden_states, rotary, tokens.shape[1])

    def _run_blocks(
        self,
        sequence: torch.Tensor,
        per_token_t: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        num_condition_tokens: int,
        num_motion_tokens: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The transformer blocks over `[conditions | motion | video]`: the final hidden states and temb."""
        temb, timestep_proj, text, _ = self.condition_embedder(
            per_token_t.flatten(), encoder_hidden_states, None, timestep_seq_len=per_token_t.shape[1]
        )
        timestep_proj = timestep_proj.unflatten(2, (6, -1))

        shards = _ContextShards.of(self, num_condition_tokens)
        if shards is not None and num_motion_tokens:
            raise InputError("context parallelism does not split attended motion tokens: run it on one process")
        if shards is not None:
            sequence, timestep_proj, rotary = (shards.split(sequence), shards.split(timestep_proj),
                                               tuple(shards.split(r) for r in rotary))
            num_condition_tokens = shards.local_condition_tokens
        self.layout.num_condition_tokens = num_condition_tokens
        self.layout.num_motion_tokens = num_motion_tokens
        embedder = self.condition_embedder.text_embedder
        self.layout.text = (encoder_hidden_states, encoder_hidden_states._version,
                            *(parameter._version for parameter in embedder.parameters()))
        sequence = sequence.contiguous()
        for block in self.blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                sequence = self._gradient_checkpointing_func(_Recomputable(block, self.layout), sequence, text,
                                                             timestep_proj, rotary)
            else:
                sequence = block(sequence, text, timestep_proj, rotary)
        if shards is not None:
            sequence = shards.gather(sequence)
        return sequence, temb


class _Recomputable:
    """A block call that activation checkpointing may run again in the backward pass.

    The layout is shared by every processor and changes with each pass, and the KV cache fills
    up as a stream goes on, so the call pins both as they are now: a re-run sees the same token
    counts and the same cache entries, and writes nothing to the cache (the first run did).
    """

    def __init__(self, block: torch.nn.Module, layout: SequenceLayout) -> None:
        self.block, self.layout = block, layout
        self.first = layout.pinned()
        self.again = replace(self.first, write_region=None)
        self.runs = 0

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        pinned = self.again if self.runs else self.first
        self.runs += 1
        with self.layout.set_to(pinned):
            return self.block(*args)


def _pooled_positions(positions: torch.Tensor, pool: int) -> torch.Tensor:
    """The mean position of each group of `pool` (the last group may be shorter), as avg_pool does."""
    return torch.stack([group.float().mean() for group in positions.split(pool)])


@dataclass
class _ContextShards:
    """How one `[conditions | video]` sequence is split across context-parallel processes.

    Each process keeps the same share of the condition tokens and of the video tokens (not one
    share of the whole sequence, as diffusers' `_cp_plan` would), so every attention call still
    sees only conditions or only video in its queries; Ulysses attention gathers the keys and
    values of all processes, in whatever order, which attention does not depend on.
    """

    condition_tokens: int
    world_size: int
    rank: int
    group: object

    @classmethod
    def of(cls, model: CondNetTransformer, condition_tokens: int) -> _ContextShards | None:
        config = getattr(model, "_parallel_config", None)
        context = getattr(config, "context_parallel_config", None)
        if context is None:
            return None
        if model.layout.cache is not None:
            raise ValueError("context parallelism splits the teacher's sequence; a KV-cached stream cannot use it")
        mesh = context._ulysses_mesh
        return cls(condition_tokens, context.ulysses_degree, mesh.get_local_rank(), mesh.get_group())

    @property
    def local_condition_tokens(self) -> int:
        return self.condition_tokens // self.world_size

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """This process's share of a per-token tensor (tokens on dim 1)."""
        parts = x[:, : self.condition_tokens], x[:, self.condition_tokens :]
        for part in parts:
            if part.shape[1] % self.world_size:
                raise InputError(f"gives {part.shape[1]} condition or video tokens; context parallelism over "
                                 f"{self.world_size} processes needs a count divisible by it: try another size",
                                 option="size")
        return torch.cat([part.chunk(self.world_size, dim=1)[self.rank] for part in parts], dim=1)

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        """The whole sequence back from every process's share."""
        shares = [torch.empty_like(local) for _ in range(self.world_size)]
        torch.distributed.all_gather(shares, local.contiguous(), group=self.group)
        n = self.local_condition_tokens
        return torch.cat([share[:, :n] for share in shares] + [share[:, n:] for share in shares], dim=1)
