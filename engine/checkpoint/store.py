"""Checkpoints: build, save, find (local folder or Hub id) and load — one way for each.

Layout (diffusers' pipeline layout, plus `tryon.json`):

    model_index.json          which class each component folder holds
    tryon.json                kind (teacher|student), preset, condnet_trained, training summary
    transformer/              CondNetTransformer: config.json + *.safetensors
    vae/                      AutoencoderKLWan
    text_encoder/             UMT5EncoderModel
    tokenizer/                T5 tokenizer files
    scheduler/                FlowMatchEulerDiscreteScheduler config
    tiny_decoder/             optional: a TinyVideoDecoder (engine.model.tiny_decoder) for the stream

Only `.safetensors` weights are ever loaded; a checkpoint holding pickled weights is
refused. Component classes come from a fixed list, never from names in a downloaded file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    WanTransformer3DModel,
)
from safetensors import SafetensorError, safe_open
from transformers import AutoTokenizer, T5Tokenizer, UMT5Config, UMT5EncoderModel

from engine.checkpoint.presets import PRESETS, TINY_VOCABULARY, Preset, get_preset
from engine.errors import InputError
from engine.jsonfiles import check_int_field, json_type, read_json_object
from engine.model.tiny_decoder import TinyVideoDecoder
from engine.model.transformer_condnet import CondNetTransformer
from engine.paths import check_replaceable, holds_only, remove
from engine.pipelines.pipeline_tryon import TryOnPipeline

INFO_FILE = "tryon.json"
INFO_FORMAT = 1  # the layout of tryon.json this code reads and writes
COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}
HUB_ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "tokenizer/*"]
# Everything a checkpoint folder of ours may hold: only such a folder is ever replaced.
TINY_DECODER = "tiny_decoder"  # an optional component folder, outside model_index.json
# What a checkpoint folder may hold: the checkpoint, and what training writes beside it
# (engine.train.state.RUN_LOG).
CHECKPOINT_ENTRIES = {"model_index.json", INFO_FILE, *COMPONENTS, TINY_DECODER, "training_state", "metrics.jsonl",
                      "curves.png", "tensorboard"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# The classes a component folder may name in model_index.json, and nothing else.
ALLOWED_CLASSES = {
    "transformer": {"CondNetTransformer", "WanTransformer3DModel"},
    "vae": {"AutoencoderKLWan"},
    "text_encoder": {"UMT5EncoderModel"},
    "tokenizer": {"T5Tokenizer", "T5TokenizerFast", "AutoTokenizer"},
    "scheduler": {"FlowMatchEulerDiscreteScheduler", "UniPCMultistepScheduler"},
}


class CondNetUntrainedWarning(UserWarning):
    """Loaded a checkpoint whose CondNet was never trained: garments will not register."""


MAX_TEXT_TOKENS = 4096
_INFO_TYPES = {"kind": str, "preset": str, "condnet_trained": bool, "training": dict, "stream": dict,
               "max_text_tokens": int, "format": int}
SWITCH_OPERATIONS = ("refresh", "withdraw", "disentangle")  # FashionChameleon's three KV operations at a switch
# How a released streaming student streams (its `stream` section, e.g. LongLive's): latent frames
# per chunk, frames its sink keeps, frames its local attention window spans (the chunk included),
# the denoising timesteps of each chunk (1000 = pure noise) and the flow shift that warps them.
STREAM_SETTINGS = {"chunk_frames": int, "sink_frames": int, "local_window_frames": int, "timesteps": list,
                   "shift": float}
_INFO_TYPE_NAMES = {str: "a string", bool: "true or false", dict: "an object", int: "an integer"}


def _is_json_type(value: Any, expected: type) -> bool:
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _is_stream_value(name: str, value: Any) -> bool:
    if name in SWITCH_OPERATIONS:
        return isinstance(value, bool)
    expected = STREAM_SETTINGS.get(name)
    if expected is list:
        return isinstance(value, list) and bool(value) and all(_is_number(v) and 0 < v <= 1000 for v in value)
    if expected is int:
        return _is_json_type(value, int) and value > 0
    return expected is float and _is_number(value) and value > 0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class CheckpointInfo:
    """What `tryon.json` says about a checkpoint."""

    kind: str = "teacher"  # teacher | student
    preset: str = "tiny"
    condnet_trained: bool = False
    training: dict[str, Any] = field(default_factory=dict)
    # the switch operations a stream of this checkpoint uses unless asked otherwise, where its
    # maker measured that one hurts it (e.g. {"disentangle": false}); the others are on
    stream: dict[str, Any] = field(default_factory=dict)
    max_text_tokens: int = 512
    format: int = 1  # INFO_FORMAT

    @classmethod
    def read(cls, folder: Path) -> "CheckpointInfo":
        path = folder / INFO_FILE
        data = read_json_object(path)
        for key, expected in _INFO_TYPES.items():
            if key in data and not _is_json_type(data[key], expected):
                raise InputError(f"'{key}' must be {_INFO_TYPE_NAMES[expected]}, not {json_type(data[key])}", path)
        check_int_field(data, "max_text_tokens", 1, MAX_TEXT_TOKENS, path)
        if data.get("format", INFO_FORMAT) != INFO_FORMAT:
            raise InputError(f"'format' is {data['format']}; this tryon reads format {INFO_FORMAT} (a newer tryon "
                             "may read it)", path)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        info = cls(**known)
        if info.kind not in ("teacher", "student"):
            raise InputError(f"kind must be 'teacher' or 'student', not '{info.kind}'", path)
        if info.preset not in PRESETS:
            raise InputError(f"unknown preset '{info.preset}' (known: {', '.join(PRESETS)})", path)
        for name, value in info.stream.items():
            if not _is_stream_value(name, value):
                raise InputError(f"'stream' takes {', '.join(SWITCH_OPERATIONS)} as true or false, "
                                 f"{', '.join(STREAM_SETTINGS)} as positive numbers (timesteps a list of them up "
                                 f"to 1000), not {name!r}: {json.dumps(value)}", path)
        return info

    def switch_defaults(self) -> dict[str, bool]:
        """Each switch operation, on unless this checkpoint's `stream` turns it off."""
        return {name: self.stream.get(name, True) for name in SWITCH_OPERATIONS}

    @property
    def training_size(self) -> tuple[int, int] | None:
        """(width, height) of the last training stage with a size, as the training summary records it."""
        config = self.training.get("config") if isinstance(self.training, dict) else None
        stages = config.get("stages") if isinstance(config, dict) else None
        for stage in reversed(stages if isinstance(stages, list) else []):
            size = stage.get("size") if isinstance(stage, dict) else None
            if isinstance(size, list) and len(size) == 2 and all(isinstance(side, int) for side in size):
                return size[0], size[1]
        return None

    def write(self, folder: Path) -> None:
        (folder / INFO_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")


@dataclass
class LoadedModel:
    pipeline: TryOnPipeline
    info: CheckpointInfo
    source: str
    path: Path
    tiny_decoder: TinyVideoDecoder | None = None  # the checkpoint's tiny_decoder/, if it ships one

    @property
    def preset(self) -> Preset:
        """The preset the checkpoint was built from: its default size, fps, steps and so on."""
        return PRESETS[self.info.preset]


# -- building ---------------------------------------------------------------------------------


def build_tokenizer(preset: Preset):
    """A T5 tokenizer over the preset's word list, built offline (tiny models only)."""
    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    words = [(f"▁{word}", -float(i + 1)) for i, word in enumerate(preset.tokenizer_vocabulary)]
    return T5Tokenizer(vocab=specials + words, extra_ids=0, model_max_length=preset.max_text_tokens)


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_random(preset: Preset | str, seed: int = 0, device: torch.device = torch.device("cpu"),
                 dtype: torch.dtype = torch.float32, draw_on: torch.device | None = None) -> TryOnPipeline:
    """The preset's components at random (CondNet zero, i.e. untrained), made on `device` in `dtype`
    (the VAE in float32).

    A preset without an offline vocabulary gets the tiny preset's word tokenizer as a
    placeholder (enough for speed runs, not for a checkpoint); its text encoder keeps the
    preset's own vocabulary size. `draw_on` (default: `device`) is where the random numbers are
    drawn, a component at a time, before it moves to `device`: a GPU draws the 5 B preset's 11
    billion numbers in seconds, a CPU, whose random fills run on one core, in minutes (offloaded
    runs keep the weights on the CPU).
    """
    preset = get_preset(preset) if isinstance(preset, str) else preset
    text_config = dict(preset.text_encoder)
    if preset.tokenizer_vocabulary:
        tokenizer = build_tokenizer(preset)
        text_config["vocab_size"] = len(tokenizer)
    else:
        tokenizer = build_tokenizer(replace(preset, tokenizer_vocabulary=TINY_VOCABULARY))
        text_config.setdefault("vocab_size", len(tokenizer))
    draw_on = device if draw_on is None else draw_on

    def made(build: Callable[[], torch.nn.Module], in_dtype: torch.dtype) -> torch.nn.Module:
        with torch.device(draw_on), default_dtype(in_dtype):
            return build().to(device).eval()

    torch.manual_seed(seed)
    transformer = made(lambda: CondNetTransformer(**preset.transformer), dtype)
    vae = made(lambda: AutoencoderKLWan(**preset.vae), torch.float32)
    text_encoder = made(lambda: UMT5EncoderModel(UMT5Config(**text_config)), dtype)
    _keep_in_float32(transformer, dtype, when=(torch.float16, torch.bfloat16))  # as diffusers' loader does
    _keep_in_float32(text_encoder, dtype, when=(torch.float16,))  # as transformers' loader does
    return TryOnPipeline(transformer=transformer, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                         scheduler=FlowMatchEulerDiscreteScheduler(**preset.scheduler),
                         max_text_tokens=preset.max_text_tokens)


def _keep_in_float32(model: torch.nn.Module, dtype: torch.dtype, when: tuple[torch.dtype, ...]) -> None:
    """Parameters of the model's `_keep_in_fp32_modules` back in float32, as loading in `dtype` leaves them."""
    keep = getattr(model, "_keep_in_fp32_modules", None) or ()
    if dtype not in when:
        return
    for name, param in model.named_parameters():
        if any(module in name.split(".") for module in keep):
            param.data = param.data.float()


def is_checkpoint_folder(folder: Path) -> bool:
    """Whether `folder` is a checkpoint this tool wrote (or a training run's first metrics), holding nothing else."""
    return (((folder / INFO_FILE).is_file() or (folder / "metrics.jsonl").is_file())
            and holds_only(folder, lambda name: name in CHECKPOINT_ENTRIES))


def check_checkpoint_target(folder: Path) -> None:
    """`folder` may receive a checkpoint: absent, empty, a file, or a checkpoint of ours (never `.`, `~`, `/`)."""
    check_replaceable(folder, is_checkpoint_folder, "tryon checkpoint")


def save_checkpoint(pipeline: TryOnPipeline, folder: Path, info: CheckpointInfo,
                    tiny_decoder: TinyVideoDecoder | None = None) -> Path:
    """Write the whole checkpoint to `folder` atomically (built beside it, then renamed), with
    `tiny_decoder` as its tiny_decoder/ when given (it decodes this pipeline's VAE latents).

    What is there already is replaced only if `check_checkpoint_target` allows it.
    """
    info.max_text_tokens = pipeline.max_text_tokens

    def write(staging: Path) -> None:
        pipeline.save_pretrained(staging, safe_serialization=True)
        if tiny_decoder is not None:
            tiny_decoder.save_pretrained(staging / TINY_DECODER, safe_serialization=True)
        info.write(staging)

    return write_folder(Path(folder), write, check_checkpoint_target)


def write_folder(folder: Path, write: Callable[[Path], None], check: Callable[[Path], None]) -> Path:
    """`write` a folder's files into a staging folder beside `folder`, then rename it into place; `check(folder)`
    (may it be replaced?) runs before and again after the write, which can take minutes."""
    check(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        write(staging)
        check(folder)
        retired = staging.with_name(staging.name + ".old")
        replaced = folder.exists() or folder.is_symlink()
        if replaced:
            os.replace(folder, retired)
        os.replace(staging, folder)
        if replaced:
            remove(retired)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


# -- finding ----------------------------------------------------------------------------------


def resolve_source(source: str, revision: str | None = None) -> Path:
    """A local checkpoint folder, or a Hub repo id fetched into the standard Hub cache.

    Hub downloads take only configs, tokenizer files and `.safetensors` weights; they honour
    HF_HUB_OFFLINE (then only the cache is used) and `revision` (a branch, tag or commit).
    """
    local = Path(source).expanduser()
    if local.exists():
        if not local.is_dir():
            raise InputError("a checkpoint must be a folder (or a Hub repo id)", local)
        return local
    if not _HUB_ID.match(source):
        raise InputError("no such checkpoint folder (nor a Hub repo id like owner/name)", source)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return Path(snapshot_download(source, revision=revision, allow_patterns=HUB_ALLOW_PATTERNS))
    except RepositoryNotFoundError:
        raise InputError("no such model on the Hugging Face Hub", source) from None
    except LocalEntryNotFoundError:
        raise InputError(
            "not in the local Hub cache and the Hub cannot be reached (HF_HUB_OFFLINE or no network)", source
        ) from None
    except (HfHubHTTPError, OSError) as error:
        raise InputError(f"could not download from the Hub ({type(error).__name__}: {error})", source) from None


# -- validating and loading -------------------------------------------------------------------


def _read_index(folder: Path) -> dict[str, Any]:
    path = folder / "model_index.json"
    if not path.is_file():
        raise InputError("not a tryon checkpoint: model_index.json is missing", folder)
    return read_json_object(path)


# The largest value each size in a component's config.json may take (lists: each entry), about
# ten times the production model's: a corrupt or hostile config must not ask for a model that
# takes hours or all memory to build. Null is allowed where the classes accept it.
CONFIG_LIMITS: dict[str, dict[str, int]] = {
    "transformer": {"num_layers": 100, "num_attention_heads": 256, "attention_head_dim": 1024, "ffn_dim": 131072,
                    "in_channels": 1024, "out_channels": 1024, "text_dim": 16384, "freq_dim": 4096,
                    "rope_max_seq_len": 2**20, "num_roles": 64, "patch_size": 16, "motion_channels": 1024,
                    "image_dim": 16384, "added_kv_proj_dim": 16384, "pos_embed_seq_len": 2**20},
    "vae": {"base_dim": 1024, "decoder_base_dim": 1024, "z_dim": 1024, "num_res_blocks": 16, "dim_mult": 16,
            "in_channels": 64, "out_channels": 64, "patch_size": 16, "scale_factor_spatial": 64,
            "scale_factor_temporal": 64},
    TINY_DECODER: {"latent_channels": 1024, "patch_size": 16, "channels": 4096, "encoder_channels": 4096},
    "text_encoder": {"num_layers": 100, "num_decoder_layers": 100, "d_model": 16384, "d_ff": 131072,
                     "num_heads": 256, "d_kv": 1024, "vocab_size": 2**22, "relative_attention_num_buckets": 1024,
                     "relative_attention_max_distance": 2**16},
}
MAX_LIST_LENGTH = 8


def _check_config(path: Path, limits: dict[str, int]) -> None:
    """config.json: a UTF-8 JSON object whose sizes are integers within `limits`."""
    if not path.is_file():
        raise InputError("the config is missing", path)
    config = read_json_object(path)
    for key, high in limits.items():
        value = config.get(key)
        if isinstance(value, list):
            if len(value) > MAX_LIST_LENGTH:
                raise InputError(f"'{key}' has {len(value)} entries; at most {MAX_LIST_LENGTH}", path)
            for index, entry in enumerate(value):
                check_int_field({f"{key}[{index}]": entry}, f"{key}[{index}]", 0, high, path)
        else:
            check_int_field(config, key, 0, high, path, optional=True)


def _check_weights(file: Path) -> None:
    """A .safetensors file whose header parses and whose tensors all lie inside the file."""
    try:
        with safe_open(file, framework="pt") as weights:
            weights.keys()
    except (SafetensorError, OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"not a complete .safetensors file ({reason[:200]})", file) from None


def validate_checkpoint(folder: Path) -> dict[str, str]:
    """Check layout, class names and weight formats before anything is loaded.

    Returns component → class name. Raises InputError naming the offending file.
    """
    index = _read_index(folder)
    _refuse_pickles(folder)
    classes: dict[str, str] = {}
    for component in COMPONENTS:
        entry = index.get(component)
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], str) and entry[1]):
            raise InputError(f"model_index.json has no '{component}' component", folder / "model_index.json")
        class_name = entry[1]
        if class_name not in ALLOWED_CLASSES[component]:
            allowed = ", ".join(sorted(ALLOWED_CLASSES[component]))
            raise InputError(
                f"unknown class '{class_name}' for {component} (allowed: {allowed})", folder / "model_index.json"
            )
        sub = folder / component
        if not sub.is_dir():
            raise InputError(f"the {component}/ folder is missing", folder)
        if component in ("transformer", "vae", "text_encoder"):
            _check_config(sub / "config.json", CONFIG_LIMITS[component])
            weights = sorted(sub.glob("*.safetensors"))
            if not weights:
                raise InputError(f"no .safetensors weights for the {component}", sub)
            for file in weights:
                _check_weights(file)
        for file in sorted(sub.glob("*.json")):
            if file.name != "config.json":
                read_json_object(file)  # scheduler and tokenizer configs: JSON objects, UTF-8
        classes[component] = class_name
    if (folder / TINY_DECODER).is_dir():
        _validate_tiny_decoder(folder / TINY_DECODER)
    return classes


def _validate_tiny_decoder(sub: Path) -> None:
    _check_config(sub / "config.json", CONFIG_LIMITS[TINY_DECODER])
    class_name = read_json_object(sub / "config.json").get("_class_name")
    if class_name != TinyVideoDecoder.__name__:
        raise InputError(f"unknown class '{class_name}' for the tiny decoder (allowed: TinyVideoDecoder)",
                         sub / "config.json")
    weights = sorted(sub.glob("*.safetensors"))
    if not weights:
        raise InputError("no .safetensors weights for the tiny decoder", sub)
    for file in weights:
        _check_weights(file)


def _refuse_pickles(folder: Path) -> None:
    """A pickled file anywhere in the folder, not only in a component, is refused: nothing
    we load reads one, and a folder that holds one is not a checkpoint this tool made."""
    for file in sorted(folder.rglob("*")):
        if file.suffix.lower() in PICKLE_SUFFIXES:
            raise InputError("pickled weights are refused; only .safetensors checkpoints are loaded", file)


def _load_component(loader, folder: Path, component: str, **kwargs):
    """Call a from_pretrained, turning corrupt or incomplete files into one clear line."""
    try:
        loaded = loader(folder / component, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError, IndexError,
            ZeroDivisionError, OverflowError, AssertionError, SafetensorError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"cannot load the {component}: {first_line[:300]}", folder / component) from None
    _require_every_tensor(loaded, folder / component)
    return loaded


def _require_every_tensor(loaded: Any, folder: Path) -> None:
    """A weights file that lacks tensors leaves them unloaded ('meta'): name the first instead of
    failing later, when the model moves to its device, with "Cannot copy out of meta tensor"."""
    if not isinstance(loaded, torch.nn.Module):
        return
    missing = [name for name, tensor in [*loaded.named_parameters(), *loaded.named_buffers()] if tensor.is_meta]
    if missing:
        raise InputError(f"the weights lack {len(missing)} tensors (the first: '{missing[0]}'): an incomplete or "
                         "foreign .safetensors file", folder)



def _transformer(folder: Path, class_name: str, dtype: torch.dtype) -> CondNetTransformer:
    if class_name == "WanTransformer3DModel":  # a base Wan checkpoint: wrap it in a fresh CondNet
        base = _load_component(WanTransformer3DModel.from_pretrained, folder, "transformer",
                               torch_dtype=dtype, use_safetensors=True)
        return CondNetTransformer.from_base(base)
    return _load_component(CondNetTransformer.from_pretrained, folder, "transformer",
                           torch_dtype=dtype, use_safetensors=True)


def _scheduler(folder: Path, class_name: str, preset: Preset | None) -> FlowMatchEulerDiscreteScheduler:
    if class_name == "FlowMatchEulerDiscreteScheduler":
        return _load_component(FlowMatchEulerDiscreteScheduler.from_pretrained, folder, "scheduler")
    # Base Wan repos ship UniPC; our sampler is flow-matching Euler with the preset's shift.
    return FlowMatchEulerDiscreteScheduler(**(preset.scheduler if preset else {"shift": 5.0}))


def _info_for(folder: Path, classes: dict[str, str]) -> CheckpointInfo:
    if (folder / INFO_FILE).is_file():
        return CheckpointInfo.read(folder)
    # A plain Wan2.2-TI2V-5B repo: the production preset with a fresh (untrained) CondNet.
    if classes["transformer"] == "WanTransformer3DModel":
        return CheckpointInfo(kind="teacher", preset="wan2.2-ti2v-5b", condnet_trained=False)
    raise InputError(f"not a tryon checkpoint: {INFO_FILE} is missing", folder)


def load_model(
    source: str,
    *,
    revision: str | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> LoadedModel:
    """Load a checkpoint from a folder, a Hub repo id, or a preset name with Hub base weights.

    The VAE stays in float32 (Wan's VAE is unstable in fp16); the rest takes `dtype`.
    """
    if source in PRESETS and not Path(source).exists():
        preset = get_preset(source)
        if preset.base_repo is None:
            raise InputError(f"preset '{source}' has no Hub weights; make one with `tryon models init {source} DIR`")
        source = preset.base_repo
    folder = resolve_source(source, revision)
    classes = validate_checkpoint(folder)
    info = _info_for(folder, classes)
    preset = PRESETS.get(info.preset)

    transformer = _transformer(folder, classes["transformer"], dtype)
    vae = _load_component(AutoencoderKLWan.from_pretrained, folder, "vae",
                          torch_dtype=torch.float32, use_safetensors=True)
    text_encoder = _load_component(UMT5EncoderModel.from_pretrained, folder, "text_encoder",
                                   dtype=dtype, use_safetensors=True)
    tokenizer = _load_component(AutoTokenizer.from_pretrained, folder, "tokenizer")
    scheduler = _scheduler(folder, classes["scheduler"], preset)

    pipeline = TryOnPipeline(transformer=transformer, vae=vae, text_encoder=text_encoder,
                             tokenizer=tokenizer, scheduler=scheduler, max_text_tokens=info.max_text_tokens)
    pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)  # the engine reports progress through its own callbacks
    tiny_decoder = None
    if (folder / TINY_DECODER).is_dir():
        tiny_decoder = _load_component(TinyVideoDecoder.from_pretrained, folder, TINY_DECODER,
                                       torch_dtype=dtype, use_safetensors=True).to(device)
    if not info.condnet_trained:
        warnings.warn(
            f"{source}: CondNet in this checkpoint is untrained (random or zero weights): "
            "its output will not follow what it is given. Use it for smoke tests and speed only.",
            CondNetUntrainedWarning,
            stacklevel=2,
        )
    return LoadedModel(pipeline=pipeline, info=info, source=source, path=folder, tiny_decoder=tiny_decoder)
