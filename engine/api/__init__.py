"""The entry layer: what the CLI, batch jobs and scripts call, one module per command family.

Each call checks every input before loading a model (`inputs`), so bad input fails in
milliseconds with one clear line, and writes its output atomically, so a failure leaves
nothing behind. Models are loaded once per process (`loading`).
"""

from engine.api.batch import run_batch
from engine.api.bench import BenchRequest, BenchResult, bench_and_compare
from engine.api.data import curate, evaluate, evaluate_hgc, load_editor, synthesize
from engine.api.generate import GenerateRequest, GenerateResult, dance, dress
from engine.api.loading import default_model
from engine.api.models import ModelEntry, convert_model, init_model, list_models
from engine.api.stream import (
    ExtendRequest,
    StreamInterrupted,
    StreamResult,
    SwapRequest,
    extend,
    swap,
)
from engine.api.train import (
    load_student_config,
    load_train_config,
    plan_training,
    train_decoder,
    train_student,
    train_teacher,
    train_vae,
)

__all__ = [
    "BenchRequest", "BenchResult", "ExtendRequest", "GenerateRequest", "GenerateResult", "ModelEntry",
    "StreamInterrupted", "StreamResult", "SwapRequest", "bench_and_compare", "convert_model", "dance", "default_model", "dress",
    "curate", "evaluate", "evaluate_hgc", "extend", "init_model", "list_models", "load_editor", "load_student_config", "load_train_config", "plan_training", "run_batch",
    "swap", "synthesize", "train_decoder", "train_student", "train_teacher", "train_vae",
]
