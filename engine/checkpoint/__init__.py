"""Checkpoints: presets, building, saving, finding and loading.

Each name loads its module when first used: the presets (and `engine.checkpoint.public`'s)
need no torch, so `tryon models list` answers before the model's libraries load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "presets": ["PRESETS", "Preset", "get_preset"],
    "store": ["CheckpointInfo", "CondNetUntrainedWarning", "LoadedModel", "build_random",
              "check_checkpoint_target", "is_checkpoint_folder", "load_model", "resolve_source", "save_checkpoint",
              "validate_checkpoint"],
})

if TYPE_CHECKING:
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
