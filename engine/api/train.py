"""`tryon train`: the teacher, the streaming student and the VAE, from a config file or a built-in recipe."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from engine.progress import Notice, Progress

if TYPE_CHECKING:
    from engine.train.vae import VaeTraining

TRAIN_CONFIGS = Path(__file__).resolve().parents[1] / "train" / "configs"


def _config_path(config: str | Path | None, default: str) -> Path:
    """A config file's path: `config` itself, or the built-in recipe of that name (or `default`)."""
    builtin = TRAIN_CONFIGS / f"{config or default}.json"
    if config is None or (not Path(config).exists() and builtin.is_file()):
        return builtin
    return Path(config)


def load_train_config(config: str | Path | None):
    """A training config file, or a built-in teacher recipe by name (a file of `TRAIN_CONFIGS`; `default` if None)."""
    from engine.train import TrainConfig

    return TrainConfig.from_file(_config_path(config, "default"))


def train_teacher(
    data: str,
    base: str,
    output: Path,
    config: str | Path | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    notice: Notice | None = None,
) -> Path:
    """Flow-matching training of the CondNet teacher on sample folders or the synthetic world."""
    from engine.train import train_teacher as run

    return run(_data_source(data), base, output, load_train_config(config), resume=resume, progress=progress,
               log=notice)


def load_student_config(config: str | Path | None):
    """A student distillation config file, or a built-in recipe by name (`student`)."""
    from engine.train.student_config import StudentConfig

    return StudentConfig.from_file(_config_path(config, "student"))


def train_student(
    teacher: str,
    data: str,
    output: Path,
    config: str | Path | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    notice: Notice | None = None,
) -> Path:
    """Distill a teacher checkpoint into the streaming student: teacher forcing, then (GR-)DMD."""
    from engine.train.student import train_student as run

    return run(teacher, _data_source(data), output, load_student_config(config), resume=resume, progress=progress,
               log=notice)


def _data_source(data: str) -> str | Path:
    """The training data argument: "synthetic", or a folder of sample folders."""
    return "synthetic" if data == "synthetic" else Path(data)


def train_vae(base: str, output: Path, settings: VaeTraining, progress: Progress | None = None) -> Path:
    """Fine-tune a checkpoint's VAE as an autoencoder on synthetic frames and clips (`VaeTraining`
    from engine.train.vae says how long, on what and at which rate)."""
    from engine.train.vae import train_vae as run

    return run(base, output, settings, progress=progress)


def plan_training(config: str | Path | None, preset: str, gpus: int, gpu_memory: float, kind: str = "teacher"):
    """Per-GPU memory of each stage of a teacher or student run (engine.train.plan), on the meta device."""
    from engine.train.plan import plan_training as plan

    loaded = load_train_config(config) if kind == "teacher" else load_student_config(config)
    return plan(loaded, preset, gpus, gpu_memory, kind=kind)
