"""Checkpoints: presets, building, saving, finding and loading."""

from engine.checkpoint.presets import PRESETS, Preset, get_preset
from engine.checkpoint.store import (
    CheckpointInfo,
    CondNetUntrainedWarning,
    LoadedModel,
    build_random,
    check_checkpoint_target,
    is_checkpoint_folder,
    load_model,
    resolve_source,
    save_checkpoint,
    validate_checkpoint,
)

__all__ = [
    "check_checkpoint_target",
    "is_checkpoint_folder",
    "PRESETS", "Preset", "get_preset", "CheckpointInfo", "CondNetUntrainedWarning", "LoadedModel",
    "build_random", "load_model", "resolve_source", "save_checkpoint", "validate_checkpoint",
]
