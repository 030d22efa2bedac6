"""`tryon train`: the teacher, the streaming student and the VAE, from a config file or a built-in recipe."""

from __future__ import annotations

from pathlib import Path

from engine.progress import Notice, Progress
from engine.limits import check_frames_fit_in_memory, check_int, check_number

MAX_TRAIN_STEPS = 10**7
MAX_BATCH_SIZE = 1024
MAX_CLIP_FRAMES = 257
MAX_EXAMPLES = 100_003  # the synthetic world's samples per seed

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
    scorer: str | None = None,
    aesthetic_weights: str | None = None,
) -> Path:
    """Distill a teacher checkpoint into the streaming student: teacher forcing, then (GR-)DMD. `scorer` and
    `aesthetic_weights` replace the config's (GR-DMD's frame reward, engine.train.scorer)."""
    from dataclasses import replace

    from engine.train.scorer import check_scorer_weights
    from engine.train.student import train_student as run

    settings = load_student_config(config)
    overrides = {key: value for key, value in (("scorer", scorer), ("aesthetic_weights", aesthetic_weights))
                 if value is not None}
    settings = replace(settings, **overrides) if overrides else settings
    if settings.has_dmd and settings.reweight:
        check_scorer_weights(settings.scorer, settings.aesthetic_weights)  # before the teacher loads
    return run(teacher, _data_source(data), output, settings, resume=resume, progress=progress, log=notice)


def _data_source(data: str) -> str | Path:
    """The training data argument: "synthetic", or a folder of sample folders."""
    return "synthetic" if data == "synthetic" else Path(data)


def train_vae(
    base: str,
    output: Path,
    steps: int,
    size: tuple[int, int],
    num_frames: int,
    lr: float,
    examples: int,
    batch_size: int = 1,
    progress: Progress | None = None,
) -> Path:
    """Fine-tune a checkpoint's VAE as an autoencoder on synthetic frames and clips."""
    from engine.train import train_vae as run

    check_int(steps, "steps", 1, MAX_TRAIN_STEPS)
    check_int(batch_size, "batch_size", 1, MAX_BATCH_SIZE)
    check_int(num_frames, "frames", 1, MAX_CLIP_FRAMES)
    check_int(examples, "examples", 1, MAX_EXAMPLES)
    check_number(lr, "lr", 1e-12, 1.0)
    check_frames_fit_in_memory(2 * batch_size * num_frames, size[0], size[1], "train vae")

    return run(base, output, steps=steps, size=size, num_frames=num_frames, lr=lr, seeds=range(examples),
               batch_size=batch_size, progress=progress)


def plan_training(config: str | Path | None, preset: str, gpus: int, gpu_memory: float, kind: str = "teacher"):
    """Per-GPU memory of each stage of a teacher or student run (engine.train.plan), on the meta device."""
    from engine.train.plan import plan_training as plan

    loaded = load_train_config(config) if kind == "teacher" else load_student_config(config)
    return plan(loaded, preset, gpus, gpu_memory, kind=kind)
