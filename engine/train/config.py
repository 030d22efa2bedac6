"""Training configuration: a JSON file, read into `TrainConfig`.

Example (`train.json`)::

    {
      "stages": [
        {"name": "images", "steps": 2000, "size": [256, 448], "num_frames": 1, "batch_size": 8, "lr": 1e-4},
        {"name": "clips", "steps": 4000, "size": "256x448", "num_frames": 17, "fps": 24, "lr": 5e-5},
        {"name": "long", "steps": 2000, "size": [448, 768], "num_frames": 49, "fps": 24, "lr": 2e-5}
      ],
      "trainable": "all",
      "grad_accum": 2,
      "condition_dropout": 0.1,
      "checkpoint_every": 500,
      "seed": 0
    }

Every key but `stages` may be left out (its default is below). An unknown key or a bad
value is an InputError naming the file.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from engine.errors import InputError
from engine.jsonfiles import read_config
from engine.media import parse_size
from engine.model.transformer_condnet import MOTION_CONDITIONING

TRAINABLE = ("all", "attention", "lora")
MIXED_PRECISION = ("auto", "bf16", "no")
PARALLEL = ("ddp", "fsdp")


@dataclass(frozen=True)
class Stage:
    """One stage of progressive training (Dress&Dance: images first, then ever longer clips).

    name: shown in progress and metrics. steps: optimizer steps in this stage.
    size: (width, height) of every example; a multiple of the model's size multiple (32 for
    the Wan presets). num_frames: frames per example; 1 makes it an images-only stage.
    fps: frame rate the videos are resampled to. batch_size: examples per micro-batch on each
    process. lr: AdamW learning rate for the whole stage.
    """

    name: str
    steps: int
    size: tuple[int, int]
    num_frames: int
    fps: float = 24.0
    batch_size: int = 1
    lr: float = 1e-4

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"a stage name must be a non-empty string, not {self.name!r}")
        where = f"stage '{self.name}'"
        for key in ("steps", "num_frames", "batch_size"):
            _require_int(getattr(self, key), f"{where}: {key}", minimum=1)
        for key in ("fps", "lr"):
            _require_positive(getattr(self, key), f"{where}: {key}")
        width, height = self.size
        if width < 32 or height < 32:
            raise InputError(f"{where}: size must be at least 32x32, not {width}x{height}")


# The fields by which a teacher recipe reshapes its base's transformer (engine.train.teacher.in_recipe_form).
RESHAPING = ("motion_conditioning", "motion_pool", "num_layers")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a teacher training run is told; see each field's comment.

    Rules: probabilities lie in [0, 1]; counts are positive integers; `timestep_shift` None
    means the loaded model's scheduler shift.
    """

    stages: list[Stage]
    # Which transformer weights learn: "all"; "attention" (self- and cross-attention);
    # "lora" (low-rank adapters on to_q/to_k/to_v/to_out.0, merged into the saved checkpoint).
    # CondNet's own parameters (role and motion embeddings) always learn.
    trainable: str = "all"
    lora_rank: int = 16  # rank of the LoRA adapters (trainable="lora" only)
    grad_accum: int = 1  # micro-batches per optimizer step
    condition_dropout: float = 0.1  # p of dropping garments + prompt together: the guidance branch
    motion_dropout: float = 0.2  # p of dropping the motion video: prompt-only motion
    p_dance: float = 0.15  # p of an anchored "dance" example (first frame = user photo, no garments)
    category_dropout: float = 0.1  # p of labelling a garment "unknown": garments given without a category
    checkpoint_every: int = 500  # optimizer steps between checkpoints (one more at the end)
    log_every: int = 10  # optimizer steps between metrics lines
    seed: int = 0  # all randomness (data order, noise, dropouts) follows from it
    timestep_shift: float | None = None  # flow-matching shift of training sigmas; None: the model's
    mixed_precision: str = "auto"  # "auto" | "bf16" | "no" (engine.train.loop.resolve_bf16)
    weight_decay: float = 0.01  # AdamW weight decay
    adam_beta1: float = 0.9  # AdamW betas (FashionChameleon's DMD: 0.0 and 0.999)
    adam_beta2: float = 0.999
    max_grad_norm: float = 1.0  # gradients are clipped to this norm (FashionChameleon's DMD: 10)
    synthetic_examples: int = 1000  # data "synthetic": make_sample seeds seed*SEED_STRIDE + 0..n-1
    cache_latents: bool = True  # keep each example's VAE/text encodings in CPU memory (off for huge datasets)
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% slower
    # Under torchrun: "ddp" replicates the transformer on every process; "fsdp" shards its weights,
    # gradients and optimizer state over them (FSDP2; engine.train.fsdp), as a 5B full fine-tune needs.
    parallel: str = "ddp"
    # Dress&Dance's motion input (engine.model.transformer_condnet): "additive" (motion latents
    # added to the patch embedding) or "attention" (motion tokens the video attends to); None
    # keeps the base model's. A new run converts the base's transformer (its other weights kept).
    motion_conditioning: str | None = None
    motion_pool: int | None = None  # attention: k x k motion patches pooled into one token; None: the base's
    # Grow the base's transformer to this many blocks (None: keep its depth). A new run inserts the
    # new blocks among the old ones, each a copy of the block before it sharing that block's output
    # (engine.train.teacher.grown_blocks), so the grown model starts out close to its base.
    num_layers: int | None = None

    def __post_init__(self) -> None:
        if not self.stages:
            raise InputError("stages must list at least one stage")
        names = [stage.name for stage in self.stages]
        if len(set(names)) != len(names):
            raise InputError(f"stage names must be distinct, got {names}")
        _require_choice(self.trainable, "trainable", TRAINABLE)
        _require_choice(self.mixed_precision, "mixed_precision", MIXED_PRECISION)
        _require_choice(self.parallel, "parallel", PARALLEL)
        if self.motion_conditioning is not None:
            _require_choice(self.motion_conditioning, "motion_conditioning", MOTION_CONDITIONING)
        if self.motion_pool is not None:
            _require_int(self.motion_pool, "motion_pool", minimum=1)
        if self.num_layers is not None:
            _require_int(self.num_layers, "num_layers", minimum=1)
        if self.parallel == "fsdp" and self.trainable == "lora":
            raise InputError("parallel fsdp is for full or attention fine-tuning, not trainable lora")
        for key in ("lora_rank", "grad_accum", "checkpoint_every", "log_every", "synthetic_examples"):
            _require_int(getattr(self, key), key, minimum=1)
        _require_int(self.seed, "seed", minimum=0)
        for key in ("condition_dropout", "motion_dropout", "p_dance", "category_dropout"):
            value = getattr(self, key)
            if not _is_number(value) or not 0.0 <= value <= 1.0:
                raise InputError(f"{key} must be a probability between 0 and 1, not {value!r}")
        if self.timestep_shift is not None:
            _require_positive(self.timestep_shift, "timestep_shift")
        _require_positive(self.weight_decay, "weight_decay", allow_zero=True)
        for key in ("adam_beta1", "adam_beta2"):
            value = getattr(self, key)
            if not _is_number(value) or not 0.0 <= value < 1.0:
                raise InputError(f"{key} must be at least 0 and below 1, not {value!r}")
        _require_positive(self.max_grad_norm, "max_grad_norm")
        for key in ("cache_latents", "gradient_checkpointing"):
            _require_bool(getattr(self, key), key)

    @property
    def total_steps(self) -> int:
        return sum(stage.steps for stage in self.stages)

    def stage_at(self, step: int) -> tuple[int, Stage]:
        """The stage (index, Stage) that optimizer step `step` (0-based) belongs to."""
        end = 0
        for index, stage in enumerate(self.stages):
            end += stage.steps
            if step < end:
                return index, stage
        raise ValueError(f"step {step} is past the last stage ({self.total_steps} steps)")

    def stage_start(self, index: int) -> int:
        """The first optimizer step of stage `index`."""
        return sum(stage.steps for stage in self.stages[:index])

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; `from_dict(to_dict())` gives back an equal config."""
        data = asdict(self)
        for stage in data["stages"]:
            stage["size"] = list(stage["size"])
        return data

    @classmethod
    def from_dict(cls, data: Any) -> "TrainConfig":
        """Build from parsed JSON; unknown keys and bad values are InputErrors."""
        if not isinstance(data, dict):
            raise InputError("the config must be a JSON object")
        _reject_unknown(data, {f.name for f in fields(cls)}, "config")
        if "stages" not in data:
            raise InputError("the config needs 'stages' (a list of stages)")
        if not isinstance(data["stages"], list):
            raise InputError("'stages' must be a list")
        stages = [_stage_from_dict(item, index) for index, item in enumerate(data["stages"])]
        return cls(**{**data, "stages": stages})

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainConfig":
        """Read a JSON config file; every problem is an InputError naming the file."""
        return read_config(path, cls.from_dict)


def _stage_from_dict(item: Any, index: int) -> Stage:
    if not isinstance(item, dict):
        raise InputError(f"stage {index + 1} must be a JSON object")
    _reject_unknown(item, {f.name for f in fields(Stage)}, f"stage {index + 1}")
    missing = [key for key in ("name", "steps", "size", "num_frames") if key not in item]
    if missing:
        raise InputError(f"stage {index + 1} is missing {', '.join(missing)}")
    return Stage(**{**item, "size": _parse_stage_size(item["size"], index)})


def _parse_stage_size(value: Any, index: int) -> tuple[int, int]:
    """A stage size is [width, height] or "WxH"."""
    where = f"stage {index + 1}: size"
    if isinstance(value, str):
        try:
            return parse_size(value)
        except InputError as error:
            raise InputError(f"{where}: {error}") from None
    if isinstance(value, list) and len(value) == 2 and all(_is_int(v) for v in value):
        return int(value[0]), int(value[1])
    raise InputError(f"{where} must be [width, height] or \"WxH\", not {value!r}")


def _reject_unknown(data: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"unknown key(s) in {where}: {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _require_int(value: Any, name: str, minimum: int) -> None:
    if not _is_int(value) or value < minimum:
        raise InputError(f"{name} must be an integer of at least {minimum}, not {value!r}")


def _require_bool(value: Any, name: str) -> None:
    if not isinstance(value, bool):
        raise InputError(f"{name} must be true or false, not {value!r}")


def _require_positive(value: Any, name: str, allow_zero: bool = False) -> None:
    if not _is_number(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "a positive number"
        raise InputError(f"{name} must be {bound}, not {value!r}")


def check_mixed_precision(value: str) -> None:
    """An explicit mixed_precision choice (an option that replaces a config's)."""
    if value not in MIXED_PRECISION:
        raise InputError(f"must be one of {', '.join(MIXED_PRECISION)}, not {value!r}", option="mixed_precision")


def _require_choice(value: Any, name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
