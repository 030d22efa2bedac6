"""Where and how to run: device, dtype, attention backend and the speed and memory modes.

The modes (`Acceleration`) are applied once to a loaded pipeline by `apply_runtime`, each with
the ecosystem's own tool:

- `fuse_qkv`: one projection for queries, keys and values (`WanAttention.fuse_projections`).
- `fp8`: float8 matmuls for the transformer blocks' linear layers: torchao's dynamic row-wise
  float8 (weights and activations scaled per row; `Float8DynamicActivationFloat8WeightConfig`
  with `PerRow`), on CUDA GPUs with float8 tensor cores (compute capability 8.9+). Faster;
  needs the `fp8` extra (torchao).
- `fp8_weights`: the transformer's and text encoder's weights stored in float8 and cast to the
  compute dtype layer by layer (diffusers' layerwise casting): half the weight memory of bf16,
  a little slower. A memory mode, on any device.
- `vae_bf16`: the full VAE's decoder (and its post-quant conv) in bf16, its encoder as it was: a
  quality mode, faster on GPUs (docs/stream-speed.md measures it against float32).
- `offload`: `model` keeps one whole model on the GPU at a time (diffusers' model CPU offload);
  `group` streams the transformer's and text encoder's blocks to the GPU as they run, overlapped
  with compute on a second CUDA stream (diffusers' group offloading). Both keep the weights in
  CPU memory; on the CPU they change nothing but the code path.
- `compile`: torch.compile of the transformer's repeated blocks with static shapes: a stream's
  context grows until its window is full, then every steady chunk has the same shapes, so the
  steady chunk runs code compiled for exactly its shapes (the few ramp-up shapes compile once
  each; the KV cache read stays outside the compiled code, engine.model.attention).

`context_parallel` is applied by the generation API instead, which starts the processes
(engine.model.distributed.enable_context_parallel).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import importlib.util

import torch

from engine.errors import InputError
from engine.model.attention import diffusers_backend, resolve_attention
from engine.modes import OFFLOAD_CHOICES, Acceleration  # noqa: F401 - the modes' home is engine.modes

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype
    attention: str  # sdpa | flash | flash3 | xformers
    acceleration: Acceleration = field(default_factory=Acceleration)

    @property
    def load_device(self) -> torch.device:
        """Where weights are loaded: the CPU when they are offloaded, else the device."""
        return torch.device("cpu") if self.acceleration.offload != "none" else self.device

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
        raise InputError(f"must be auto, cpu, cuda or cuda:N, not '{choice}'", option="device") from None
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"must be auto, cpu, cuda or cuda:N, not '{choice}'", option="device")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"{choice}: no CUDA GPU is available here (try cpu)", option="device")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"{choice}: only {torch.cuda.device_count()} CUDA device(s) here", option="device")
    return device


def resolve_dtype(choice: str, device: torch.device) -> torch.dtype:
    """`auto` → bf16 on CUDA, fp32 on the CPU (where bf16 matmuls are slow)."""
    if choice == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if choice not in DTYPES:
        raise InputError(f"must be auto, bf16, fp16 or fp32, not '{choice}'", option="dtype")
    return DTYPES[choice]


# Compiled block variants allowed: one per context length of a stream's ramp-up (window + 2 at
# most, for each pass kind), the condition pass and short chunks, with room to spare.
STATIC_RECOMPILE_LIMIT = 64


def resolve_runtime(
    device: str = "auto", dtype: str = "auto", attention: str = "auto", acceleration: Acceleration | None = None
) -> Runtime:
    resolved = resolve_device(device)
    acceleration = acceleration or Acceleration()
    if acceleration.fp8:
        check_fp8(resolved)
    resolved_dtype = resolve_dtype(dtype, resolved)
    return Runtime(resolved, resolved_dtype, resolve_attention(attention, resolved, resolved_dtype), acceleration)


def check_fp8(device: torch.device) -> None:
    """`--fp8` needs float8 tensor cores and torchao; InputError otherwise."""
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
        raise InputError("needs a CUDA GPU with float8 tensor cores (compute capability 8.9+: L4, RTX 4090, H100, "
                         "H200); --fp8-weights stores the weights in float8 on any device", option="fp8")
    if importlib.util.find_spec("torchao") is None:
        raise InputError("needs torchao: pip install 'tryon[fp8]'", option="fp8")


def runtime_notices(runtime: Runtime) -> list[str]:
    """What the user should know about modes that cannot help on this device."""
    notices = []
    if runtime.device.type == "cpu":
        if runtime.acceleration.offload != "none":
            notices.append("note: --offload changes nothing on a CPU: the weights are in CPU memory already")
        if runtime.acceleration.fp8_weights:
            notices.append("note: --fp8-weights on a CPU only stores the weights smaller; it makes nothing faster")
    return notices


def apply_runtime(pipeline, runtime: Runtime) -> None:
    """Set the attention backend and apply the speed and memory modes to a `TryOnPipeline`.

    The pipeline is on `runtime.load_device`; offloading moves what it needs from there.
    """
    backend = diffusers_backend(runtime.attention)
    transformer, text_encoder = pipeline.transformer, pipeline.text_encoder
    if backend != "native":
        transformer.set_attention_backend(backend)
    modes = runtime.acceleration
    if modes.fuse_qkv:
        for block in transformer.blocks:
            _fuse_qkv(block.attn1)
    if modes.fp8_weights:
        transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=runtime.dtype)
        _fp8_storage(text_encoder, runtime.dtype)
    if modes.fp8:
        fp8_matmuls(transformer)
    if modes.vae_bf16:
        bf16_decoder(pipeline.vae)
    if modes.offload == "model":
        pipeline.enable_model_cpu_offload(device=runtime.device)
    elif modes.offload == "group":
        _group_offload(transformer, runtime.device)
        _group_offload(text_encoder, runtime.device)
        pipeline.vae.to(runtime.device)  # small; decoding chunk by chunk would thrash it
    if modes.compile:
        compile_static(transformer)


def fp8_matmuls(transformer: torch.nn.Module) -> None:
    """torchao's row-wise dynamic float8 for the linear layers of the transformer's blocks (those
    whose sides float8 matmuls take: multiples of 16); the embedders and the output stay as they are."""
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    quantize_(transformer, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()), filter_fn=_fp8_linear)


def _fp8_linear(module: torch.nn.Module, name: str) -> bool:
    return (isinstance(module, torch.nn.Linear) and name.startswith("blocks.")
            and module.in_features % 16 == 0 and module.out_features % 16 == 0)


def bf16_decoder(vae: torch.nn.Module) -> None:
    """The VAE's decoder side in bf16; the causal decoder and `decode` cast the latents to it."""
    vae.post_quant_conv.to(torch.bfloat16)
    vae.decoder.to(torch.bfloat16)


def compile_static(transformer, **options) -> None:
    """torch.compile of the repeated blocks for static shapes (see the module docstring); `options`
    go to torch.compile (a rehearsal on a CPU may want backend="eager")."""
    import torch._dynamo  # its config is complete only once the package itself is imported

    dynamo = torch._dynamo.config
    dynamo.recompile_limit = max(dynamo.recompile_limit, STATIC_RECOMPILE_LIMIT)
    dynamo.accumulated_recompile_limit = max(dynamo.accumulated_recompile_limit, 16 * STATIC_RECOMPILE_LIMIT)
    transformer.compile_repeated_blocks(dynamic=False, **options)


def _fuse_qkv(attention: torch.nn.Module) -> None:
    attention.fuse_projections()
    # diffusers keeps the separate projections too, to unfuse later; we never do: free them.
    del attention.to_q, attention.to_k, attention.to_v


def _fp8_storage(text_encoder: torch.nn.Module, compute_dtype: torch.dtype) -> None:
    from diffusers.hooks import apply_layerwise_casting

    # Norms and the token embedding (a lookup) keep their dtype, and so does the feed-forward's
    # output projection `wo`: UMT5 casts its input to that layer's weight dtype.
    apply_layerwise_casting(text_encoder, storage_dtype=torch.float8_e4m3fn, compute_dtype=compute_dtype,
                            skip_modules_pattern=("norm", "shared", "embed_tokens", r"\.wo$"))


def _group_offload(model: torch.nn.Module, device: torch.device) -> None:
    from diffusers.hooks import apply_group_offloading

    apply_group_offloading(model, onload_device=device, offload_device=torch.device("cpu"),
                           offload_type="block_level", num_blocks_per_group=1,
                           use_stream=device.type == "cuda")
