"""FashionChameleon's and LongLive's checkpoints (Wan2.2's original key layout) turned into ours.

FashionChameleon trains Wan2.2-TI2V-5B with its authors' own module names (`blocks.0.self_attn.q`,
`head.head`, ...) and saves the generator, its EMA and the critic in one dict. Its weights
are a plain Wan transformer: the conditions (reference, garment) are latent frames in the
sequence, told apart only by their RoPE slots, so they load into a CondNet with the
`fashionchameleon` condition layout (engine.model.transformer_condnet) and zero role and motion embeddings.

LongLive-2.0-5B (`Efficient-Large-Model/LongLive-2.0-5B`, Apache-2.0) is a streaming student
distilled from Wan2.2-TI2V-5B with the same original names; it has no condition tokens at all
(it streams from a clean first frame and a prompt). It is released as one pickle,
`model_bf16.pt`: that file alone is read, with `torch.load(weights_only=True)` (tensors and
plain containers only, never code), and converted once into safetensors. Its streaming
configuration (`LONGLIVE_STREAM`, from its inference configs) goes into the checkpoint's
`stream` section, its Hub repo and revision into `training`.

FashionChameleon's files are read only as `.safetensors`: a `.pt` file from its trainer is
refused; its owner can export it once (`safetensors.torch.save_file(torch.load(pt)["generator_ema"], ...)`).
The text encoder, VAE, tokenizer and scheduler come from a base checkpoint (by default the
Wan2.2-TI2V-5B preset), since neither trains them.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file

from engine.checkpoint.store import PICKLE_SUFFIXES, LoadedModel, save_checkpoint
from engine.errors import InputError
from engine.model.transformer_condnet import CondNetTransformer

# Wan2.2 original name -> diffusers' WanTransformer3DModel name (the same tensors, renamed).
_BLOCK_RENAMES = {
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "self_attn.norm_q": "attn1.norm_q",
    "self_attn.norm_k": "attn1.norm_k",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "cross_attn.norm_q": "attn2.norm_q",
    "cross_attn.norm_k": "attn2.norm_k",
    "norm3": "norm2",  # Wan's affine cross-attention norm; diffusers calls it norm2
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}
_TOP_RENAMES = {
    "patch_embedding": "patch_embedding",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "head.head": "proj_out",
}
_PARAMETER_RENAMES = {"head.modulation": "scale_shift_table"}
_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(.+)\.(weight|bias)$")
_BLOCK_MODULATION = re.compile(r"^blocks\.(\d+)\.modulation$")
_OTHER_KEY = re.compile(r"^(.+)\.(weight|bias)$")
# The trainer's dict: the EMA generator is what its inference loads first.
_STATE_PREFERENCE = ("generator_ema.", "generator.")
_WRAPPERS = ("_fsdp_wrapped_module.", "_orig_mod.")  # FSDP's and torch.compile's, wherever they sit


def rename_key(key: str) -> str | None:
    """Our (diffusers') name for one Wan2.2 original key, or None when it has none."""
    if key in _PARAMETER_RENAMES:
        return _PARAMETER_RENAMES[key]
    if match := _BLOCK_MODULATION.match(key):
        return f"blocks.{match.group(1)}.scale_shift_table"
    if match := _BLOCK_KEY.match(key):
        index, name, kind = match.groups()
        return f"blocks.{index}.{_BLOCK_RENAMES[name]}.{kind}" if name in _BLOCK_RENAMES else None
    if match := _OTHER_KEY.match(key):
        name, kind = match.groups()
        return f"{_TOP_RENAMES[name]}.{kind}" if name in _TOP_RENAMES else None
    return None


SOURCE_LAYOUTS = ("fashionchameleon", "longlive")
LONGLIVE_REPO = "Efficient-Large-Model/LongLive-2.0-5B"
# LongLive-2.0-5B's streaming (configs/train_i2v_dmd.yaml and its inference configs): chunks of 8
# latent frames after the clean first frame, a 32-frame local attention window, 4 steps at
# 1000/750/500/250 warped by shift 5. The sink is that clean first frame.
LONGLIVE_STREAM = {"chunk_frames": 8, "sink_frames": 1, "local_window_frames": 32,
                   "timesteps": [1000, 750, 500, 250], "shift": 5.0}


def original_key(ours: str) -> str:
    """The Wan2.2 original name of one of our (diffusers') keys: `rename_key` inverted."""
    for original, renamed in _PARAMETER_RENAMES.items():
        if ours == renamed:
            return original
    if ours.startswith("blocks."):
        _, index, rest = ours.split(".", 2)
        if rest == "scale_shift_table":
            return f"blocks.{index}.modulation"
        module, kind = rest.rsplit(".", 1)
        return f"blocks.{index}.{_inverse(_BLOCK_RENAMES)[module]}.{kind}"
    module, kind = ours.rsplit(".", 1)
    return f"{_inverse(_TOP_RENAMES)[module]}.{kind}"


def _inverse(table: dict[str, str]) -> dict[str, str]:
    return {ours: original for original, ours in table.items()}


def read_original(path: Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The generator's tensors from a `.safetensors` file, or a folder of shards, in its layout;
    with `allow_pickle` (LongLive's `model_bf16.pt`), also from a pickle read as tensors only."""
    path = Path(path)
    if path.suffix in PICKLE_SUFFIXES:
        if allow_pickle and path.is_file():
            return _generator_state(read_tensor_pickle(path))
        if not allow_pickle:
            raise InputError("is a pickle; tryon reads .safetensors only (export it with "
                             "safetensors.torch.save_file)", path)
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise InputError("holds no .safetensors files", path)
    elif path.is_file():
        files = [path]
    else:
        raise InputError("no such file or folder", path)
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            tensors.update(load_file(file))
        except Exception as error:  # noqa: BLE001 - safetensors raises its own error types
            raise InputError(f"not a readable .safetensors file ({error})", file) from None
    if not tensors:
        raise InputError("holds no tensors", path)
    return _generator_state(tensors)


def read_tensor_pickle(path: Path) -> dict[str, torch.Tensor]:
    """A pickled state dict read with `torch.load(weights_only=True)`: nested dicts (e.g.
    {'generator': {...}}) flattened to dotted keys; anything but tensors is an InputError."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - the weights-only unpickler raises many kinds
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise InputError(f"not a tensors-only pickle that torch.load(weights_only=True) reads ({first})",
                         path) from None
    tensors = _flatten(loaded, "")
    if not tensors:
        raise InputError("holds no tensors", path)
    return tensors


def _flatten(value, prefix: str) -> dict[str, torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return {prefix.rstrip("."): value}
    if isinstance(value, dict):
        found = {}
        for key, item in value.items():
            found |= _flatten(item, f"{prefix}{key}.")
        return found
    return {}  # step counters, configs and the like: not weights


def _generator_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The generator's own keys: its EMA when the file holds the trainer's whole dict; wrapper
    prefixes (the trainer's `model.`, FSDP's, torch.compile's) removed."""
    for prefix in _STATE_PREFERENCE:
        chosen = {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}
        if chosen:
            tensors = chosen
            break
    cleaned = {}
    for key, value in tensors.items():
        for wrapper in _WRAPPERS:
            key = key.replace(wrapper, "")
        cleaned[key.removeprefix("model.")] = value
    return cleaned


def convert_state_dict(original: dict[str, torch.Tensor], model: CondNetTransformer) -> dict[str, torch.Tensor]:
    """`original` renamed to `model`'s keys; every key must map onto a parameter of the same
    shape, and every parameter of the Wan backbone must be given (role and motion embeddings,
    which FashionChameleon has not, stay as they are)."""
    expected = model.state_dict()
    converted, unmapped, mismatched = {}, [], []
    for key, tensor in original.items():
        ours = rename_key(key)
        if ours is None or ours not in expected:
            unmapped.append(key)
        elif tuple(expected[ours].shape) != tuple(tensor.shape):
            mismatched.append(f"{key} {tuple(tensor.shape)} vs {ours} {tuple(expected[ours].shape)}")
        else:
            converted[ours] = tensor
    if unmapped:
        raise InputError(f"{len(unmapped)} keys have no place in the model, e.g. {', '.join(unmapped[:3])}")
    if mismatched:
        raise InputError(f"{len(mismatched)} shapes differ from the base model's, e.g. {mismatched[0]}")
    own = tuple(f"{name}." for name in ("role_embedding", "motion_embedding", "motion_tokens"))
    missing = [key for key in expected if key not in converted and not key.startswith(own)]
    if missing:
        raise InputError(f"{len(missing)} weights of the base model are missing, e.g. {', '.join(missing[:3])}")
    return converted


def convert_checkpoint(original: dict[str, torch.Tensor], destination: Path, base: LoadedModel, kind: str,
                       source_name: str = "", layout: str = "fashionchameleon", revision: str = "main") -> Path:
    """Write a tryon checkpoint at `destination`: `base`'s VAE, text encoder, tokenizer and
    scheduler with the transformer `original` (`read_original`'s tensors).

    `layout` fashionchameleon: its condition layout; `kind` teacher (its SFT model) or student
    (its distilled streaming generator, chunks of 3 latent frames, 4 steps, 5 history chunks).
    `layout` longlive: a student with no conditions, streaming as `LONGLIVE_STREAM`; the
    Hub repo and `revision` it came from are recorded."""
    config = {k: v for k, v in base.pipeline.transformer.config.items() if not k.startswith("_")}
    if layout == "fashionchameleon":
        config["condition_layout"] = "fashionchameleon"
    model = CondNetTransformer(**config)
    state = convert_state_dict(original, model)
    model.load_state_dict(state, strict=False)
    model.to(next(iter(state.values())).dtype)
    pipeline = base.pipeline
    pipeline.register_modules(transformer=model)
    if layout == "longlive":
        training = {"converted_from": "LongLive-2.0 (Wan2.2 original key layout)", "source": source_name,
                    "repo": LONGLIVE_REPO, "revision": revision}
        info = replace(base.info, kind="student", condnet_trained=True, training=training, stream=dict(LONGLIVE_STREAM))
        return save_checkpoint(pipeline, destination, info)
    training = {"converted_from": "FashionChameleon (Wan2.2 original key layout)", "source": source_name}
    if kind == "student":
        training |= {"chunk_frames": 3, "steps_per_chunk": 4, "window": 5}
    info = replace(base.info, kind=kind, condnet_trained=True, training=training)
    return save_checkpoint(pipeline, destination, info)
