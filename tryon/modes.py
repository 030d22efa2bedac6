"""The speed and memory modes, as plain data: no torch here, so the CLI can describe them instantly.

They are applied to a loaded pipeline by `tryon.pipelines.runtime.apply_runtime`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tryon.errors import InputError

OFFLOAD_CHOICES = ("none", "model", "group")


@dataclass(frozen=True)
class Acceleration:
    """Speed and memory modes; all off by default (what each does: tryon.pipelines.runtime's docstring)."""

    offload: str = "none"  # none | model | group
    fp8: bool = False
    compile: bool = False
    fuse_qkv: bool = False
    context_parallel: bool = False  # the teacher's sequence split across torchrun's processes (engine.distributed)

    def __post_init__(self) -> None:
        if self.offload not in OFFLOAD_CHOICES:
            raise InputError(f"--offload must be one of {', '.join(OFFLOAD_CHOICES)}, not '{self.offload}'")

    def describe(self) -> str:
        """The modes that are on, e.g. 'fp8, offload group' ('' when none is)."""
        named = [name.replace("_", " ") for name in ("fuse_qkv", "fp8", "compile", "context_parallel")
                 if getattr(self, name)]
        if self.offload != "none":
            named.append(f"offload {self.offload}")
        return ", ".join(named)


# `--compare` names -> the change each makes to the request's modes.
COMPARABLE: dict[str, dict[str, Any]] = {
    "fuse-qkv": {"fuse_qkv": True},
    "fp8": {"fp8": True},
    "compile": {"compile": True},
    "offload-model": {"offload": "model"},
    "offload-group": {"offload": "group"},
}
