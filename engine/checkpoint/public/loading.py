"""Find, check, save and load the public route: one code path for the Hub and a folder.

A route folder (what `tryon models init public-tiny DIR` writes) holds one sub-folder per
part, each in the layout of the Hub repo it stands for, and `tryon.json`:

    tryon.json      {"kind": "route", "preset": ..., "parts": {part: {folder, repo, revision, licence, loader}}}
    edit/           QwenImageEditPlusPipeline (diffusers layout; processor/ holds tokenizer + image processor)
    i2v/            WanImageToVideoPipeline
    animate/        WanAnimatePipeline
    detector/       RTDetrForObjectDetection + its image processor
    keypoints/      VitPoseForPoseEstimation + its image processor
    stream/         (live streaming) LongLive's student as a tryon checkpoint (`models convert --from longlive`)
    lightning/      (live streaming) the editor's Lightning LoRA, in diffusers' LoRA format

`--model public` downloads each part's Hub repo (configs, tokenizer files, `.safetensors`)
into the standard Hub cache with `snapshot_download` and then loads those folders exactly
as it loads a route folder. Only `.safetensors` weights are loaded; classes come from the
allow-list below, never from a name in a file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.errors import InputError
from engine.jsonfiles import read_json_object
from engine.checkpoint.public.presets import (LIGHTNING_WEIGHTS, LIVE_PARTS, PART_NAMES, PUBLIC_PARTS, ROUTE_KIND,
                                              ROUTE_PRESETS, STREAM_DIR_ENV, Part, RoutePreset, get_route_preset,
                                              overridden)

INFO_FILE = "tryon.json"
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}
HUB_ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model"]
PIPELINE_LOADERS = {"QwenImageEditPlusPipeline", "WanImageToVideoPipeline", "WanAnimatePipeline"}
# The classes a pipeline part's model_index.json may name, and nothing else.
ALLOWED_COMPONENTS = {
    "QwenImageTransformer2DModel", "AutoencoderKLQwenImage", "Qwen2_5_VLForConditionalGeneration",
    "Qwen2Tokenizer", "Qwen2TokenizerFast", "Qwen2VLProcessor", "FlowMatchEulerDiscreteScheduler",
    "WanTransformer3DModel", "WanAnimateTransformer3DModel", "AutoencoderKLWan", "UMT5EncoderModel", "T5Tokenizer",
    "T5TokenizerFast", "AutoTokenizer", "UniPCMultistepScheduler", "CLIPVisionModel", "CLIPVisionModelWithProjection",
    "CLIPImageProcessor", "CLIPImageProcessorPil",
}


@dataclass(frozen=True)
class RouteSource:
    """Where each part of a route lives on disk, and what it stands for."""

    preset: RoutePreset
    parts: dict[str, Part]
    folders: dict[str, Path]
    source: str
    root: Path | None = None  # the route folder; None for the Hub's `public`


def is_route_source(source: str) -> bool:
    """A route preset name, or a folder whose tryon.json says it is a route."""
    if source in ROUTE_PRESETS and not Path(source).exists():
        return True
    info = Path(source).expanduser() / INFO_FILE
    if not info.is_file():
        return False
    try:
        return read_json_object(info).get("kind") == ROUTE_KIND
    except InputError:  # not readable as a route: the checkpoint loader names the problem
        return False


def resolve_route(source: str, environ: dict[str, str] | None = None) -> RouteSource:
    """The route's part folders: downloaded from the Hub for `public`, or a route folder's sub-folders.

    Every part is found before anything is loaded, so a missing one fails in one line.
    """
    if source in ROUTE_PRESETS and not Path(source).exists():
        preset = get_route_preset(source)
        if preset.name != "public":
            raise InputError(f"'{source}' is random weights built locally: make it with "
                             f"`tryon models init {source} DIR`, then use --model DIR")
        parts = overridden(PUBLIC_PARTS, environ)
        return RouteSource(preset, parts, {name: download_part(part) for name, part in parts.items()}, source)
    folder = Path(source).expanduser()
    info = read_route_info(folder)
    preset = get_route_preset(info["preset"])
    parts, folders = {}, {}
    for name in PART_NAMES:
        entry = info["parts"].get(name)
        if not isinstance(entry, dict) or not entry.get("folder"):
            raise InputError(f"tryon.json names no '{name}' part", folder / INFO_FILE)
        default = PUBLIC_PARTS[name]
        parts[name] = Part(name, entry.get("repo", default.repo), default.loader, entry.get("licence", default.licence),
                           entry.get("revision", default.revision))
        folders[name] = folder / entry["folder"]
        if not folders[name].is_dir():
            raise InputError(f"the {name} part's folder is missing", folders[name])
    return RouteSource(preset, parts, folders, source, folder)


def live_part(source: RouteSource, name: str, environ: dict[str, str] | None = None) -> tuple[Part, Path]:
    """A live-streaming part (`stream` or `lightning`) and its folder, found when a stream needs it."""
    environ = os.environ if environ is None else environ
    part = overridden({name: LIVE_PARTS[name]}, environ)[name]
    if source.root is not None:
        entry = read_route_info(source.root)["parts"].get(name)
        if not isinstance(entry, dict) or not entry.get("folder"):
            raise InputError(f"this route folder has no '{name}' part for live streaming (swap, extend, studio): "
                             "make it again with `tryon models init public-tiny DIR`", source.root)
        part = Part(name, entry.get("repo", part.repo), part.loader, entry.get("licence", part.licence),
                    entry.get("revision", part.revision))
        folder = source.root / entry["folder"]
        if not folder.is_dir():
            raise InputError(f"the {name} part's folder is missing", folder)
        return part, folder
    if name == "lightning":
        return part, download_part(part, [LIGHTNING_WEIGHTS])
    folder = environ.get(STREAM_DIR_ENV)
    if not folder or not Path(folder).expanduser().is_dir():
        raise InputError(f"the public route streams with LongLive-2.0-5B, converted once on this machine: "
                         f"hf download {part.repo} model_bf16.pt --local-dir longlive && tryon models convert "
                         f"longlive/model_bf16.pt ./longlive-tryon --from longlive, then set {STREAM_DIR_ENV}="
                         "./longlive-tryon" + (f" ({folder} is not a folder)" if folder else ""))
    return part, Path(folder).expanduser()


def read_route_info(folder: Path) -> dict:
    path = folder / INFO_FILE
    if not path.is_file():
        raise InputError("not a route folder: tryon.json is missing", folder)
    info = read_json_object(path)
    if info.get("kind") != ROUTE_KIND or info.get("preset") not in ROUTE_PRESETS or not isinstance(
            info.get("parts"), dict):
        raise InputError(f"not a route's tryon.json (kind 'route', a preset of {', '.join(ROUTE_PRESETS)}, parts)",
                         path)
    return info


def download_part(part: Part, allow_patterns: list[str] | None = None) -> Path:
    """A part's Hub repo (or the files of `allow_patterns`) in the local Hub cache (downloaded when
    missing, unless HF_HUB_OFFLINE)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    way_out = ("set HF_HUB_OFFLINE=0 on a machine that reaches huggingface.co, or pass a local route folder "
               "with --model DIR")
    env = f"TRYON_PUBLIC_{part.name.upper()}_REPO"
    try:
        return Path(snapshot_download(part.repo, revision=part.revision,
                                      allow_patterns=allow_patterns or HUB_ALLOW_PATTERNS))
    except GatedRepoError:
        raise InputError(f"the {part.name} part's repo needs access on the Hub: accept its terms and log in "
                         f"(huggingface-cli login), or point {env} at another repo", part.repo) from None
    except RepositoryNotFoundError:
        raise InputError(f"the {part.name} part's repo is not on the Hub (override it with {env})", part.repo) from None
    except LocalEntryNotFoundError:
        raise InputError(f"the {part.name} part is not in the local Hub cache and the Hub cannot be reached: "
                         f"{way_out}", f"{part.repo}@{part.revision}") from None
    except (HfHubHTTPError, OSError) as error:
        raise InputError(f"could not download the {part.name} part ({type(error).__name__}): {way_out}",
                         part.repo) from None


def check_part(name: str, part: Part, folder: Path) -> None:
    """Safetensors only, and (for pipelines) only allow-listed component classes."""
    for file in sorted(folder.rglob("*")):
        if file.suffix in PICKLE_SUFFIXES:
            raise InputError("pickled weights are refused; only .safetensors are loaded", file)
    if part.loader in PIPELINE_LOADERS:
        index_path = folder / "model_index.json"
        if not index_path.is_file():
            raise InputError(f"the {name} part has no model_index.json", folder)
        index = read_json_object(index_path)
        for component, entry in index.items():
            if isinstance(entry, list) and len(entry) == 2 and entry[1] and entry[1] not in ALLOWED_COMPONENTS:
                raise InputError(f"unknown class '{entry[1]}' for {component}", index_path)
    elif not (folder / "config.json").is_file():
        raise InputError(f"the {name} part's config.json is missing", folder)


def load_part(name: str, part: Part, folder: Path, dtype: torch.dtype):
    """Load one part with its allow-listed class; pipelines keep their Wan VAE in float32."""
    check_part(name, part, folder)
    try:
        with quiet_loading():
            return _load(part.loader, folder, dtype)
    except (OSError, ValueError, RuntimeError, json.JSONDecodeError, KeyError, TypeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"cannot load the {name} part: {first_line[:300]}", folder) from None


@contextmanager
def quiet_loading():
    """No progress bars, warnings or info logs from diffusers and transformers while loading or saving;
    afterwards each library is as it was (bars a command turned off stay off)."""
    import diffusers
    import transformers

    libraries = (diffusers.utils.logging, transformers.utils.logging)
    levels = [library.get_verbosity() for library in libraries]
    bars = [library.is_progress_bar_enabled() for library in libraries]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for library in libraries:
            library.set_verbosity_error()
            library.disable_progress_bar()
        try:
            yield
        finally:
            for library, level, bar in zip(libraries, levels, bars):
                library.set_verbosity(level)
                if bar:
                    library.enable_progress_bar()


def _load(loader: str, folder: Path, dtype: torch.dtype):
    import diffusers
    import transformers

    from engine.pipelines.public.processor import EditProcessor

    if loader == "QwenImageEditPlusPipeline":
        processor = EditProcessor.from_pretrained(folder / "processor")
        return diffusers.QwenImageEditPlusPipeline.from_pretrained(folder, processor=processor, torch_dtype=dtype,
                                                                   use_safetensors=True)
    if loader in ("WanImageToVideoPipeline", "WanAnimatePipeline"):
        kwargs = {"expand_timesteps": True} if loader == "WanImageToVideoPipeline" else {}  # how TI2V-5B animates
        # Wan's VAE is unstable in half precision: it stays in float32.
        return getattr(diffusers, loader).from_pretrained(folder, torch_dtype={"vae": torch.float32, "default": dtype},
                                                          use_safetensors=True, **kwargs)
    if loader in ("RTDetrForObjectDetection", "VitPoseForPoseEstimation"):
        model = getattr(transformers, loader).from_pretrained(folder, dtype=dtype, use_safetensors=True)
        processor = transformers.AutoImageProcessor.from_pretrained(folder)
        return model.eval(), processor
    raise InputError(f"no loader for class '{loader}'")


# -- writing a tiny route ---------------------------------------------------------------------


def save_tiny_route(folder: Path, seed: int = 0, overwrite: bool = False) -> Path:
    """Write `public-tiny`: every part at toy size with random weights, atomically."""
    from engine.checkpoint.public import tiny

    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())) and not overwrite:
        raise InputError("already exists and is not empty (use --overwrite to replace it)", folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        with quiet_loading():
            edit = tiny.build_edit(seed)
            processor, edit.processor = edit.processor, None
            edit.save_pretrained(staging / "edit", safe_serialization=True)
            processor.save_pretrained(staging / "edit" / "processor")
            _name_component(staging / "edit" / "model_index.json", "processor", ["transformers", "Qwen2VLProcessor"])
            tiny.build_i2v(seed).save_pretrained(staging / "i2v", safe_serialization=True)
            tiny.build_animate(seed).save_pretrained(staging / "animate", safe_serialization=True)
            for name, (model, processor) in (("detector", tiny.build_detector(seed)),
                                             ("keypoints", tiny.build_keypoints(seed))):
                model.save_pretrained(staging / name, safe_serialization=True)
                processor.save_pretrained(staging / name)
            tiny.save_stream_student(staging / "stream", seed)
            tiny.save_lightning_lora(staging / "lightning", edit.transformer, seed)
            info = {"kind": ROUTE_KIND, "preset": "public-tiny", "format": 1,
                    "note": f"random weights (seed {seed}): the public route's classes at toy size, for tests only",
                    "parts": {name: {"folder": name, **part.as_dict()}
                              for name, part in (PUBLIC_PARTS | LIVE_PARTS).items()}}
            (staging / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
            if folder.exists():
                shutil.rmtree(folder) if folder.is_dir() else folder.unlink()
            os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _name_component(index_path: Path, component: str, entry: list[str]) -> None:
    """Record a component saved beside the pipeline (the Hub repo's layout) in model_index.json."""
    index = json.loads(index_path.read_text())
    index[component] = entry
    index_path.write_text(json.dumps(index, indent=2) + "\n")
