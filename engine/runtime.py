"""Where and how to run: device, dtype and attention backend, resolved from user choices."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.errors import InputError
from engine.model.attention import diffusers_backend, resolve_attention

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype
    attention: str  # sdpa | flash | flash3 | xformers

    @property
    def dtype_name(self) -> str:
        return next(name for name, value in DTYPES.items() if value == self.dtype)


def resolve_device(choice: str) -> torch.device:
    """`auto` → the first CUDA GPU if there is one, else the CPU."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(choice)
    except RuntimeError:
        raise InputError(f"--device must be auto, cpu, cuda or cuda:N, not '{choice}'") from None
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"--device must be auto, cpu, cuda or cuda:N, not '{choice}'")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {choice}: no CUDA GPU is available here (try --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"--device {choice}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def resolve_dtype(choice: str, device: torch.device) -> torch.dtype:
    """`auto` → bf16 on CUDA, fp32 on the CPU (where bf16 matmuls are slow)."""
    if choice == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if choice not in DTYPES:
        raise InputError(f"--dtype must be auto, bf16, fp16 or fp32, not '{choice}'")
    return DTYPES[choice]


def resolve_runtime(device: str = "auto", dtype: str = "auto", attention: str = "auto") -> Runtime:
    resolved = resolve_device(device)
    return Runtime(resolved, resolve_dtype(dtype, resolved), resolve_attention(attention, resolved))


def apply_attention(model: torch.nn.Module, runtime: Runtime) -> None:
    """Point every attention layer of a diffusers model at the runtime's backend."""
    backend = diffusers_backend(runtime.attention)
    if backend != "native":
        model.set_attention_backend(backend)
