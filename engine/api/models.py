"""`tryon models`: the models one can use, and random-weight checkpoints for smoke and speed tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.checkpoint.presets import PRESETS, get_preset
from engine.checkpoint.public.presets import ROUTE_PRESETS
from engine.errors import InputError
from engine.limits import check_seed
from engine.paths import DEMO_MODEL, DEMO_STUDENT, make_folder

# The checkpoint store (torch, diffusers) is imported by the functions that build or read
# weights: listing the models needs none of it.


@dataclass
class ModelEntry:
    name: str
    kind: str  # preset | route | route stage | cached | default
    description: str


def list_models() -> list[ModelEntry]:
    """The presets, the default model, and the checkpoints in the local Hub cache."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    entries = [ModelEntry(p.name, "preset", f"{p.description}; needs {p.hardware}") for p in PRESETS.values()]
    entries += route_entries()
    if DEMO_MODEL.is_dir():
        entries.append(ModelEntry(str(DEMO_MODEL), "default", "the demo model shipped with tryon "
                                  "(dress, dance, batch; trained at 96x160 on the synthetic world only: "
                                  "for real photos use --model public)"))
    if DEMO_STUDENT.is_dir():
        entries.append(ModelEntry(str(DEMO_STUDENT), "default", "the demo streaming student shipped with tryon "
                                  "(swap, extend; trained at 96x160 on the synthetic world)"))
    try:
        cache = scan_cache_dir()
    except CacheNotFound:
        return entries
    base_repos = {p.base_repo for p in PRESETS.values() if p.base_repo}
    for repo in sorted(cache.repos, key=lambda r: r.repo_id):
        snapshots = [r.snapshot_path for r in repo.revisions]
        is_tryon = any((s / "tryon.json").exists() for s in snapshots)
        if repo.repo_type == "model" and (is_tryon or repo.repo_id in base_repos):
            what = "tryon checkpoint" if is_tryon else "Wan base weights"
            entries.append(ModelEntry(repo.repo_id, "cached", f"{what}, {repo.size_on_disk_str} in the Hub cache"))
    return entries


def route_entries() -> list[ModelEntry]:
    """The public route and its stages: repos, licences, sizes computed from parameter counts."""
    from engine.checkpoint.public.presets import LIVE_PARTS, PART_STAGE, PUBLIC, PUBLIC_TINY, overridden
    from engine.checkpoint.public.sizes import live_plan, stage_sizes

    parts = overridden(PUBLIC.parts)
    entries = [ModelEntry(PUBLIC.name, "route", f"{PUBLIC.description}; needs {PUBLIC.hardware}; "
                          "sizes below are computed from parameter counts (weights only), not measured")]
    for size in stage_sizes():
        used = [p for name, p in parts.items() if PART_STAGE[name] == size.stage]
        repos = ", ".join(f"{p.repo}@{p.revision} ({p.licence})" for p in used)
        entries.append(ModelEntry(f"{PUBLIC.name}: {size.stage}", "route stage", f"{repos}; {size.describe()}"))
    live = overridden(LIVE_PARTS)
    repos = ", ".join(f"{p.repo}@{p.revision} ({p.licence})" for p in live.values())
    entries.append(ModelEntry(f"{PUBLIC.name}: live stream", "route stage",
                              f"swap, extend, studio: the editor re-dresses, LongLive streams; {repos}; editor and "
                              f"student on one GPU: {live_plan(False).describe()}; {live_plan(True).describe()} "
                              "at 1280x704, so one 80 GB GPU needs --fp8"))
    entries.append(ModelEntry(PUBLIC_TINY.name, "preset", f"{PUBLIC_TINY.description}; "
                              "make it with `tryon models init public-tiny DIR`"))
    return entries


def init_model(preset: str, folder: Path, seed: int = 0, overwrite: bool = False) -> Path:
    """Write a random-weight checkpoint of `preset` to `folder`, marked untrained."""
    from engine.checkpoint import CheckpointInfo, build_random, check_checkpoint_target, save_checkpoint
    from engine.checkpoint.public import save_tiny_route

    if preset in ROUTE_PRESETS:
        if preset != "public-tiny":
            raise InputError(f"'{preset}' is made of Hub weights: use it with --model {preset}; "
                             "`tryon models init public-tiny DIR` writes its tiny random-weight copy")
        return save_tiny_route(Path(folder), seed=seed, overwrite=overwrite)
    spec = get_preset(preset)
    if not spec.tokenizer_vocabulary:
        raise InputError(f"preset '{spec.name}' has no offline tokenizer: load its base weights from "
                         f"{spec.base_repo} instead of building it at random")
    check_seed(seed)
    folder = Path(folder)
    if folder.exists() and not overwrite and not (folder.is_dir() and not any(folder.iterdir())):
        raise InputError("already exists (use --overwrite to replace it)", folder)
    check_checkpoint_target(folder)
    make_folder(folder.parent)  # a missing parent is created; an unwritable one is refused before building
    pipeline = build_random(spec, seed=seed)
    return save_checkpoint(pipeline, folder, CheckpointInfo(kind="teacher", preset=spec.name, condnet_trained=False,
                                                            training={"note": f"random init, seed {seed}"}))


def convert_model(source: Path, folder: Path, base: str = "wan2.2-ti2v-5b", kind: str = "student",
                  overwrite: bool = False, layout: str = "fashionchameleon", revision: str = "main",
                  clip: Path | None = None) -> Path:
    """Write a tryon checkpoint from a FashionChameleon or LongLive checkpoint (Wan2.2's original
    key layout) to `folder`; the VAE, text encoder and tokenizer come from `base`. LongLive's
    `model_bf16.pt` (a pickle) is read as tensors only; `revision` is the Hub revision it came from.
    With kind "aesthetic": the LAION aesthetic predictor's state dict `source` and the CLIP folder
    `clip` as GR-DMD's aesthetic scorer folder."""
    import warnings

    from engine.checkpoint import CondNetUntrainedWarning, check_checkpoint_target, load_model
    from engine.checkpoint.convert import SOURCE_LAYOUTS, convert_checkpoint, read_original

    if layout not in SOURCE_LAYOUTS:
        raise InputError(f"--from must be one of {', '.join(SOURCE_LAYOUTS)}, not '{layout}'")
    if kind not in ("teacher", "student", "aesthetic"):
        raise InputError(f"--kind must be teacher, student or aesthetic, not '{kind}'")
    if (kind == "aesthetic") != (clip is not None):
        raise InputError("--clip (a CLIP ViT-L/14 folder) goes with --kind aesthetic, and only with it")
    folder = Path(folder)
    if folder.exists() and not overwrite and not (folder.is_dir() and not any(folder.iterdir())):
        raise InputError("already exists and is not empty (use --overwrite to replace it)", folder)
    if kind == "aesthetic":
        from engine.checkpoint.aesthetic import convert_aesthetic

        return convert_aesthetic(source, clip, folder)
    check_checkpoint_target(folder)
    original = read_original(source, allow_pickle=layout == "longlive")
    dtype = next(iter(original.values())).dtype
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CondNetUntrainedWarning)  # the base's CondNet is replaced
        model = load_model(base, dtype=dtype)
    return convert_checkpoint(original, folder, model, kind, source_name=Path(source).name, layout=layout,
                              revision=revision)
