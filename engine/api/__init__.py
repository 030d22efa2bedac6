"""The entry layer: what the CLI, batch jobs and scripts call, one module per command family.

Each call checks every input before loading a model (`inputs`), so bad input fails in
milliseconds with one clear line, and writes its output atomically, so a failure leaves
nothing behind. Models are loaded once per process (`loading`).

Importing the package is instant: each name below loads its module (torch, diffusers) when
first used, so a light submodule (`engine.api.specs`, `engine.api.batch.manifest`) imports
without them and a usage error answers before torch loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "batch": ["run_batch"],
    "bench": ["BenchRequest", "BenchResult", "bench_and_compare"],
    "data": ["curate", "evaluate", "evaluate_hgc", "load_editor", "synthesize"],
    "generate": ["GenerateResult", "dance", "dress"],
    "loading": ["default_model"],
    "specs": ["GenerateRequest"],
    "models": ["ModelEntry", "convert_model", "init_model", "list_models"],
    "stream": ["ExtendRequest", "StreamInterrupted", "StreamResult", "SwapRequest", "extend", "swap"],
    "train": ["load_student_config", "load_train_config", "plan_training", "train_decoder", "train_student",
              "train_teacher", "train_vae"],
})

if TYPE_CHECKING:
    from engine.api.batch import run_batch
    from engine.api.bench import BenchRequest, BenchResult, bench_and_compare
    from engine.api.data import curate, evaluate, evaluate_hgc, load_editor, synthesize
    from engine.api.generate import GenerateResult, dance, dress
    from engine.api.loading import default_model
    from engine.api.models import ModelEntry, convert_model, init_model, list_models
    from engine.api.specs import GenerateRequest
    from engine.api.stream import ExtendRequest, StreamInterrupted, StreamResult, SwapRequest, extend, swap
    from engine.api.train import (
        load_student_config,
        load_train_config,
        plan_training,
        train_decoder,
        train_student,
        train_teacher,
        train_vae,
    )
