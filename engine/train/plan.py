"""`tryon train ... --plan`: per-GPU memory of a training run, stage by stage, before renting GPUs.

The real model is built on the meta device (shapes only: no weights, no memory, no download)
and a training forward pass is traced there at each stage's shape; nothing runs on a GPU.
Per GPU, for N processes:

- parameters: the transformer's float32 weights, sharded over N under FSDP (replicated
  under DDP), plus under FSDP the bf16 copies gathered for the root and two blocks at a
  time (the one running and the one prefetched).
- gradients: float32 gradients of the trained weights, sharded (FSDP) or whole (DDP), plus
  one block's unsharded gradients before its reduce-scatter (FSDP).
- optimizer: AdamW's two float32 moments of the trained weights, sharded or whole.
- activations: the bytes autograd keeps for the backward pass of `batch_size` examples,
  measured by tracing the forward pass on the meta device at the stage's token count (a
  two-block copy of the model is traced: every block keeps the same, so it scales), with
  attention keeping what FlashAttention keeps (q, k, v, output, log-sum-exp; never the
  S×S probabilities). With activation checkpointing: what stays outside the blocks, each
  block's input, and one block's activations while it is recomputed. Data parallelism does
  not divide activations.
- frozen: the models that run but do not learn: the VAE (float32) and the text encoder
  (bf16) that encode each example (replicated), and in a student's DMD stages the teacher
  (float32, sharded as the trained transformers are).

A student (engine.train.student) runs its examples one after the other, each back-propagated
before the next, so its activations are one example's, over its passes on the KV cache
(engine.train.causal): in teacher forcing the condition pass, each chunk's prediction and
each clean chunk's write (all with gradients), in DMD each chunk's exit step; per pass,
the traced bytes per token times its tokens, and what attention keeps of the cached keys
and values it reads (all of it without checkpointing); plus the KV cache itself (twice in
teacher forcing: its gradient). In DMD the critic's flow matching runs after the student's
update, so the larger of the two counts. A student sharded without activation checkpointing
keeps its whole bf16 weights gathered through a step (engine.train.fsdp).

A stage fits when the sum is at most `usable` (90%) of the GPU's memory: the rest is left
for the CUDA context, NCCL buffers and allocator fragmentation. These are estimates of
what the tensors need, not a measurement of a run; a run's own peak is in its metrics.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from engine.checkpoint.presets import PRESETS, Preset, get_preset
from engine.errors import InputError
from engine.train.config import Stage, TrainConfig

if TYPE_CHECKING:
    from engine.train.student_config import StudentConfig

GIB = 1024**3
USABLE = 0.9  # share of GPU memory a plan may fill (see the module docstring)
FP32, BF16 = 4, 2
ADAM_MOMENTS = 2
TEXT_TOKENS = 512  # UMT5 sequence length the pipeline pads prompts to


@dataclass(frozen=True)
class StageMemory:
    """One stage's memory per GPU, in GiB, and whether it fits."""

    stage: str
    size: tuple[int, int]
    num_frames: int
    batch_size: int
    tokens: int  # per example: condition + video tokens
    parameters: float
    gradients: float
    optimizer: float
    activations: float
    frozen: float
    total: float
    fits: bool


@dataclass(frozen=True)
class TrainingPlan:
    preset: str
    kind: str  # teacher | student
    gpus: int
    gpu_memory: float  # GiB per GPU
    parallel: str  # fsdp | ddp
    gradient_checkpointing: bool
    transformer_parameters: int
    trained_parameters: int
    frozen_parameters: dict[str, int]
    stages: list[StageMemory]
    notes: list[str]

    @property
    def fits(self) -> bool:
        return all(stage.fits for stage in self.stages)

    def to_dict(self) -> dict:
        return {**asdict(self), "fits": self.fits}


def plan_training(config: TrainConfig, preset: str | Preset, gpus: int, gpu_memory: float, kind: str = "teacher",
                  conditions: int = 3) -> TrainingPlan:
    """The per-GPU memory of training `preset` with `config` on `gpus` GPUs of `gpu_memory` GiB.

    `conditions`: condition images per example (the user photo and the garments; 3 = a top and
    a bottom). A student's DMD stages train two transformers (the student and its critic) beside
    the frozen teacher, all of the preset's size; its teacher-forcing stages train the student alone.
    """
    if gpus < 1:
        raise InputError(f"--gpus must be at least 1, not {gpus}")
    if not gpu_memory > 0:
        raise InputError(f"--gpu-memory must be a positive number of GB, not {gpu_memory}")
    preset = get_preset(preset) if isinstance(preset, str) else preset
    transformer, probe, frozen = _meta_models(preset.name) if PRESETS.get(preset.name) is preset else _build(preset)
    total = _count(transformer)
    trained = _count(transformer, _trained_names(transformer, config.trainable))
    sharded = config.parallel == "fsdp" and gpus > 1
    phases = getattr(config, "phases", ()) or ("teacher_forcing",) * len(config.stages)
    notes = _notes(config, gpus)
    layers = len(transformer.blocks)
    stages = []
    for stage, phase in zip(config.stages, phases):
        dmd = kind == "student" and phase == "dmd"
        copies = 2 if dmd else 1  # in DMD the student and its critic learn, beside the frozen teacher
        one_copy = _parameter_bytes(transformer, total, gpus, sharded)
        frozen_bytes = frozen["vae"] * FP32 + frozen["text_encoder"] * BF16 + (one_copy if dmd else 0)
        tokens = _tokens(preset, stage, conditions)
        traced = _Traced(probe, preset, stage, conditions)
        whole_pass = _activation_bytes(traced, layers, config.gradient_checkpointing)
        if kind == "student":
            student = _student_activation_bytes(traced, layers, config, phase)
            activations = max(student, whole_pass) if dmd else student
            kept_gathered = sharded and not config.gradient_checkpointing
            parameters = copies * one_copy + (total * BF16 if kept_gathered else 0)
        else:
            activations = stage.batch_size * whole_pass
            parameters = one_copy
        gradients = copies * _gradient_bytes(transformer, trained, gpus, sharded)
        optimizer = copies * trained * FP32 * ADAM_MOMENTS / (gpus if sharded else 1)
        parts = [parameters, gradients, optimizer, activations, frozen_bytes]
        used = sum(parts) / GIB
        stages.append(StageMemory(
            stage.name, stage.size, stage.num_frames, stage.batch_size, tokens,
            *(round(part / GIB, 2) for part in parts), total=round(used, 2), fits=used <= USABLE * gpu_memory,
        ))
    return TrainingPlan(preset.name, kind, gpus, gpu_memory, "fsdp" if sharded else "ddp",
                        config.gradient_checkpointing, total, trained, frozen, stages, notes)


# -- the models, on the meta device -------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _meta_models(name: str) -> tuple[torch.nn.Module, torch.nn.Module, dict[str, int]]:
    """`_build` of a named preset, once per process."""
    return _build(get_preset(name))


def _build(preset: Preset) -> tuple[torch.nn.Module, torch.nn.Module, dict[str, int]]:
    """The preset's transformer, a two-block copy of it to trace (bf16, as FSDP gathers it), and the
    frozen models' parameter counts."""
    from diffusers import AutoencoderKLWan
    from transformers import UMT5Config, UMT5EncoderModel

    from engine.model.transformer_condnet import CondNetTransformer

    with torch.device("meta"):
        transformer = CondNetTransformer(**preset.transformer)
        probe = CondNetTransformer(**{**preset.transformer, "num_layers": 2}).to(torch.bfloat16)
        vae = AutoencoderKLWan(**preset.vae)
        text_encoder = UMT5EncoderModel(UMT5Config(**preset.text_encoder))
    return transformer, probe, {"vae": _count(vae), "text_encoder": _count(text_encoder)}


def _count(module: torch.nn.Module, names: set[str] | None = None) -> int:
    return sum(p.numel() for name, p in module.named_parameters() if names is None or name in names)


def _trained_names(transformer: torch.nn.Module, trainable: str) -> set[str]:
    """Which weights a config trains (engine.train.trainable's rule; LoRA counts as its targets' size,
    an upper bound)."""
    from engine.train.trainable import _learns_in

    condnet = {id(p) for p in transformer.condnet_parameters()}
    mode = "attention" if trainable == "lora" else trainable
    return {name for name, p in transformer.named_parameters() if id(p) in condnet or _learns_in(mode, name)}


def _parameter_bytes(transformer: torch.nn.Module, total: int, gpus: int, sharded: bool) -> float:
    if not sharded:
        return total * FP32
    block = max(_count(b) for b in transformer.blocks)
    root = total - sum(_count(b) for b in transformer.blocks)
    return total * FP32 / gpus + (root + 2 * block) * BF16


def _gradient_bytes(transformer: torch.nn.Module, trained: int, gpus: int, sharded: bool) -> float:
    if not sharded:
        return trained * FP32
    return trained * FP32 / gpus + max(_count(b) for b in transformer.blocks) * FP32


def _tokens(preset: Preset, stage: Stage, conditions: int) -> int:
    """Condition + video tokens of one example at the stage's size and length."""
    return (_latent_frames(preset, stage) + conditions) * _frame_tokens(preset, stage)


def _notes(config: TrainConfig, gpus: int) -> list[str]:
    notes = []
    if config.parallel == "fsdp" and gpus == 1:
        notes.append("one GPU: FSDP shards nothing, so this is the unsharded (DDP) memory")
    if config.trainable == "lora":
        notes.append("trainable lora: counted as training its target weights (an upper bound)")
    return notes


# -- activations: a traced forward pass on the meta device --------------------------------------


def _activation_bytes(traced: "_Traced", layers: int, checkpointing: bool) -> int:
    """Bytes kept for backward by one example's whole-sequence forward pass through `layers` blocks."""
    if not checkpointing:
        return traced.outside + layers * traced.block
    return traced.outside + layers * traced.tokens * traced.inner * BF16 + traced.block


def _student_activation_bytes(traced: "_Traced", layers: int, config: StudentConfig, phase: str) -> int:
    """One example's bytes kept for backward over the student's passes of `phase` (see the module docstring)."""
    from engine.train.causal import chunk_spans

    preset, stage, conditions = traced.preset, traced.stage, traced.conditions
    outside, block, whole, inner = traced.outside, traced.block, traced.tokens, traced.inner
    frame = _frame_tokens(preset, stage)
    teacher_forcing = phase == "teacher_forcing"
    passes = [(conditions * frame, 0)] if teacher_forcing else []  # (own tokens, cached tokens read)
    written: list[int] = []  # the chunks in the cache: the sink, then the history window
    spans = chunk_spans(_latent_frames(preset, stage), config.chunk_frames)
    for number, span in enumerate(spans):
        own = (span.stop - span.start) * frame
        read = conditions * frame + sum(written[:1]) + sum(written[1:][-config.window:])
        passes.append((own, read))
        if teacher_forcing and number < len(spans) - 1:
            passes.append((own, read))  # the clean chunk's write pass
        written.append(own)
    cache = layers * (conditions * frame + config.chunk_frames * frame * (1 + config.window)) * inner * 2 * BF16
    cache *= 2 if teacher_forcing else 1

    def pass_bytes(own: int, read: int) -> float:  # one block of one pass
        return block * own / whole + read * inner * 2 * BF16

    around = sum(outside * own / whole for own, _ in passes)
    if config.gradient_checkpointing:
        inputs = sum(layers * own * inner * BF16 for own, _ in passes)
        return int(around + inputs + max(pass_bytes(*p) for p in passes) + cache)
    return int(around + sum(layers * pass_bytes(*p) for p in passes) + cache)


def _latent_frames(preset: Preset, stage: Stage) -> int:
    return (stage.num_frames - 1) // preset.vae["scale_factor_temporal"] + 1


def _frame_tokens(preset: Preset, stage: Stage) -> int:
    spatial = preset.vae["scale_factor_spatial"] * preset.transformer["patch_size"][1]
    width, height = stage.size
    return (width // spatial) * (height // spatial)


class _Traced:
    """One example's whole-sequence training forward pass at a stage's shape, traced on `probe` (meta
    device): the bytes kept for backward outside the blocks, and by the largest block."""

    def __init__(self, probe: torch.nn.Module, preset: Preset, stage: Stage, conditions: int) -> None:
        self.preset, self.stage, self.conditions = preset, stage, conditions
        self.tokens = _tokens(preset, stage, conditions)
        self.inner = probe.config.num_attention_heads * probe.config.attention_head_dim
        self.outside, self.block = _trace(probe, preset, stage, conditions)


def _trace(probe: torch.nn.Module, preset: Preset, stage: Stage, conditions: int) -> tuple[int, int]:
    from engine.model.transformer_condnet import Condition

    channels = preset.transformer["in_channels"]
    spatial = preset.vae["scale_factor_spatial"]
    width, height = stage.size
    shape = (1, channels, _latent_frames(preset, stage), height // spatial, width // spatial)
    with torch.device("meta"):
        noisy = torch.empty(shape, dtype=torch.bfloat16)
        text = torch.empty(1, TEXT_TOKENS, preset.transformer["text_dim"], dtype=torch.bfloat16)
        timestep = torch.empty(1, dtype=torch.float32)
        roles = ["user", "top", "bottom", "dress"]
        conds = [Condition(roles[i % len(roles)], torch.empty(1, channels, 1, *shape[3:], dtype=torch.bfloat16))
                 for i in range(conditions)]
        motion = torch.empty(shape, dtype=torch.bfloat16)
    probe.train()
    saved = _SavedBytes(probe.blocks)
    with saved, _flash_like_attention():
        output = probe(noisy, timestep, text, conditions=conds, motion_latents=motion, return_dict=False)[0]
    del output
    return saved.outside, max(saved.per_block)


class _SavedBytes:
    """Counts the bytes autograd saves for backward, inside each block and outside all of them."""

    def __init__(self, blocks: torch.nn.ModuleList) -> None:
        self.blocks = blocks
        self.per_block = [0] * len(blocks)
        self.outside = 0
        self.current: int | None = None
        self.seen: set[int] = set()
        self.handles: list = []
        self.hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda tensor: tensor)

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        # Views count as the tensor they view (once); weights and their views belong to `parameters`.
        base = tensor._base if tensor._base is not None else tensor
        if id(base) not in self.seen and not isinstance(base, torch.nn.Parameter):
            self.seen.add(id(base))
            size = base.numel() * base.element_size()
            if self.current is None:
                self.outside += size
            else:
                self.per_block[self.current] += size
        return tensor

    def __enter__(self) -> "_SavedBytes":
        for index, block in enumerate(self.blocks):
            self.handles.append(block.register_forward_pre_hook(lambda *_, i=index: setattr(self, "current", i)))
            self.handles.append(block.register_forward_hook(lambda *_: setattr(self, "current", None)))
        self.hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.hooks.__exit__(*exc)
        for handle in self.handles:
            handle.remove()


class _FlashLikeAttention(torch.autograd.Function):
    """Attention that saves what FlashAttention saves: q, k, v, the output and the log-sum-exp."""

    @staticmethod
    def forward(ctx, query, key, value):  # (B, H, S, D)
        output = torch.empty_like(query)
        lse = query.new_empty(query.shape[:-1], dtype=torch.float32)
        ctx.save_for_backward(query, key, value, output, lse)
        return output

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - the plan never runs backward
        query, key, value, _, _ = ctx.saved_tensors
        return torch.empty_like(query), torch.empty_like(key), torch.empty_like(value)


@contextlib.contextmanager
def _flash_like_attention() -> Iterator[None]:
    """Route torch's SDPA through `_FlashLikeAttention` while tracing."""
    original = F.scaled_dot_product_attention

    def attention(query, key, value, *args, **kwargs):
        return _FlashLikeAttention.apply(query, key, value)

    F.scaled_dot_product_attention = attention
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


def plan_decoder_training(config: TrainConfig, preset: str | Preset, gpus: int, gpu_memory: float,
                          channels: tuple[int, ...] | None = None, variant: str = "base") -> TrainingPlan:
    """The per-GPU memory of distilling a tiny decoder (engine.train.decoder) for `preset`'s VAE.

    parameters, gradients and AdamW's moments: the tiny decoder's, float32, replicated (DDP);
    activations: what autograd saves in its forward pass at each stage's shape, traced on the
    meta device; frozen: the float32 VAE that makes the latents and the teacher's frames.
    """
    from diffusers import AutoencoderKLWan

    from engine.model.tiny_decoder import TinyVideoDecoder

    if gpus < 1:
        raise InputError(f"--gpus must be at least 1, not {gpus}")
    if not gpu_memory > 0:
        raise InputError(f"--gpu-memory must be a positive number of GB, not {gpu_memory}")
    preset = get_preset(preset) if isinstance(preset, str) else preset
    with torch.device("meta"):
        vae = AutoencoderKLWan(**preset.vae)
        overrides = {"variant": variant} | ({"channels": channels} if channels else {})
        decoder = TinyVideoDecoder.for_vae(vae.config, **overrides)
    trained = _count(decoder)
    stages = []
    for stage in config.stages:
        width, height = stage.size
        spatial, temporal = vae.config.scale_factor_spatial, vae.config.scale_factor_temporal
        shape = (stage.batch_size, vae.config.z_dim, (stage.num_frames - 1) // temporal + 1,
                 height // spatial, width // spatial)
        with _SavedBytes(torch.nn.ModuleList()) as saved:
            decoder(torch.zeros(shape, device="meta"))
        parts = [trained * FP32, trained * FP32, trained * FP32 * ADAM_MOMENTS, saved.outside, _count(vae) * FP32]
        used = sum(parts) / GIB
        stages.append(StageMemory(
            stage.name, stage.size, stage.num_frames, stage.batch_size, shape[2] * shape[3] * shape[4],
            *(round(part / GIB, 2) for part in parts), total=round(used, 2), fits=used <= USABLE * gpu_memory,
        ))
    return TrainingPlan(preset.name, "decoder", gpus, gpu_memory, "ddp", False, trained, trained,
                        {"vae": _count(vae)}, stages, [])
