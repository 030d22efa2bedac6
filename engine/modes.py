"""The run options, as plain data: no torch here, so the CLI can describe them instantly.

`RunOptions` (which model, where, how) is nested in every request; its speed and memory modes
(`Acceleration`) are applied to a loaded pipeline by `engine.pipelines.runtime.apply_runtime`,
and the rest resolved by `engine.api.options.resolve_run`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.errors import InputError

OFFLOAD_CHOICES = ("none", "model", "group")
# The stream's decoder: "auto" (the checkpoint's tiny decoder when it ships one, else the VAE's),
# "full" (the VAE's), "tiny" (the checkpoint's), or else a TAEHV weights file or Hub file.
DECODER_CHOICES = ("auto", "full", "tiny")


@dataclass(frozen=True)
class Acceleration:
    """Speed and memory modes; all off by default (what each does: engine.pipelines.runtime's docstring)."""

    offload: str = "none"  # none | model | group
    fp8: bool = False  # float8 matmuls (torchao, row-wise dynamic): CUDA, compute capability 8.9+
    fp8_weights: bool = False  # float8 weight storage, computed in the dtype: a memory mode, any device
    compile: bool = False
    fuse_qkv: bool = False
    vae_bf16: bool = False  # the full VAE's decoder in bf16: a quality mode (docs/stream-speed.md)
    context_parallel: bool = False  # the teacher's sequence split across torchrun's processes (engine.model.distributed)
    decoder: str = "auto"  # the stream's decoder: DECODER_CHOICES or a TAEHV weights source

    def __post_init__(self) -> None:
        if self.offload not in OFFLOAD_CHOICES:
            raise InputError(f"must be one of {', '.join(OFFLOAD_CHOICES)}, not '{self.offload}'", option="offload")
        if self.fp8 and self.fp8_weights:
            raise InputError("give --fp8 (float8 matmuls) or --fp8-weights (float8 storage), not both", option="fp8")
        if not self.decoder.strip():
            raise InputError(f"must be one of {', '.join(DECODER_CHOICES)} or a TAEHV weights file", option="decoder")

    def describe(self) -> str:
        """The modes that are on, e.g. 'fp8, offload group' ('' when none is)."""
        named = [name.replace("_", " ") for name in ("fuse_qkv", "fp8", "fp8_weights", "compile", "vae_bf16",
                                                     "context_parallel") if getattr(self, name)]
        if self.offload != "none":
            named.append(f"offload {self.offload}")
        return ", ".join(named)


@dataclass(frozen=True)
class RunOptions:
    """Which model (None: the default one), on which device, in which dtype, with which attention
    backend and speed and memory modes. Nested in every request."""

    model: str | None = None  # a checkpoint folder, a Hub repo id or a preset name
    revision: str | None = None  # a Hub branch, tag or commit
    device: str = "auto"
    dtype: str = "auto"
    attention: str = "auto"
    threads: int | None = None  # torch's intra-op CPU threads (None: torch's default, one per core)
    acceleration: Acceleration = field(default_factory=Acceleration)

    def __post_init__(self) -> None:
        for name in ("model", "revision"):  # an empty value is a mistake, not a wish for the default
            value = getattr(self, name)
            if value is not None and not value.strip():
                raise InputError("is empty (leave the option out for the default)", option=name)


# `--compare` names -> the change each makes to the request's modes (`attention`: to its attention backend).
COMPARABLE: dict[str, dict[str, Any]] = {
    "fuse-qkv": {"fuse_qkv": True},
    "fp8": {"fp8": True},
    "fp8-weights": {"fp8_weights": True},
    "compile": {"compile": True},
    "vae-bf16": {"vae_bf16": True},
    "cudnn": {"attention": "cudnn"},
    "flash3": {"attention": "flash3"},
    "offload-model": {"offload": "model"},
    "offload-group": {"offload": "group"},
    "tiny-decoder": {"decoder": "tiny"},
    "full-decoder": {"decoder": "full"},
}
