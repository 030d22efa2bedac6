"""`tryon train`: the teacher, the streaming student, the VAE and the tiny decoder, from a config file or a
built-in recipe."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import InputError
from engine.limits import check_int
from engine.progress import Notice, Progress

if TYPE_CHECKING:
    from engine.train.vae import VaeTraining

TRAIN_CONFIGS = Path(__file__).resolve().parents[1] / "train" / "configs"


def builtin_recipes(kind: str) -> list[str]:
    """The names of the built-in recipes for `kind` ("teacher", "student" or "decoder"), `default` first."""
    names = sorted(path.stem for path in TRAIN_CONFIGS.glob("*.json"))
    if kind == "decoder":
        return [name for name in names if name == "decoder"]
    if kind == "student":
        return [name for name in names if "student" in name]
    return sorted((name for name in names if name != "decoder" and "student" not in name), key=lambda n: n != "default")


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
    minutes: float | None = None,
    mixed_precision: str | None = None,
) -> Path:
    """Flow-matching training of the CondNet teacher on sample folders or the synthetic world; `minutes`
    stops it early, checkpointed, and `resume` goes on; `mixed_precision` replaces the config's."""
    from engine.train import train_teacher as run

    settings = _with_overrides(load_train_config(config), mixed_precision=mixed_precision)
    return run(_data_source(data), base, output, settings, resume=resume, progress=progress, log=notice,
               minutes=minutes)


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
    minutes: float | None = None,
    mixed_precision: str | None = None,
) -> Path:
    """Distill a teacher checkpoint into the streaming student: teacher forcing, then (GR-)DMD. `scorer`,
    `aesthetic_weights` (GR-DMD's frame reward, engine.train.scorer) and `mixed_precision` replace the config's."""
    from engine.train.scorer import check_scorer_weights
    from engine.train.student import train_student as run

    settings = _with_overrides(load_student_config(config), scorer=scorer, aesthetic_weights=aesthetic_weights,
                               mixed_precision=mixed_precision)
    if settings.has_dmd and settings.reweight:
        check_scorer_weights(settings.scorer, settings.aesthetic_weights)  # before the teacher loads
    return run(teacher, _data_source(data), output, settings, resume=resume, progress=progress, log=notice,
               minutes=minutes)


def _with_overrides(settings, **overrides):
    """`settings` (a frozen config) with the `overrides` that are not None."""
    from dataclasses import replace

    from engine.train.config import check_mixed_precision

    if overrides.get("mixed_precision") is not None:
        check_mixed_precision(overrides["mixed_precision"])
    given = {key: value for key, value in overrides.items() if value is not None}
    return replace(settings, **given) if given else settings


def _data_source(data: str) -> str | Path:
    """The training data argument: "synthetic", or a folder of sample folders."""
    return "synthetic" if data == "synthetic" else Path(data)


def train_vae(base: str, output: Path, settings: VaeTraining, progress: Progress | None = None,
              resume: bool = False, minutes: float | None = None, notice: Notice | None = None) -> Path:
    """Fine-tune a checkpoint's VAE as an autoencoder on synthetic frames and clips (`VaeTraining`
    from engine.train.vae says how long, on what and at which rate); resumable from `output` when
    it saved checkpoints (`checkpoint_every`, or a run `minutes` stopped)."""
    from engine.train.vae import train_vae as run

    return run(base, output, settings, progress=progress, resume=resume, minutes=minutes, log=notice)


def train_decoder(
    vae: str,
    data: str,
    output: Path,
    config: str | Path | None = None,
    channels: tuple[int, ...] | None = None,
    variant: str = "base",
    resume: bool = False,
    ship: tuple[Path, ...] = (),
    progress: Progress | None = None,
    notice: Notice | None = None,
    minutes: float | None = None,
    mixed_precision: str | None = None,
) -> Path:
    """Distil a tiny streaming decoder from checkpoint `vae`'s VAE (engine.train.decoder) into `output`,
    then copy it into each checkpoint of `ship` as its tiny_decoder/; `mixed_precision` replaces the config's."""
    from engine.train.decoder import check_ship_target, ship_decoder, train_decoder as run
    from engine.train.state import saved_step

    check_decoder_shape(channels, variant)
    for checkpoint in ship:
        check_ship_target(Path(checkpoint))
    settings = _with_overrides(load_train_config(config or "decoder"), mixed_precision=mixed_precision)
    path = run(vae, _data_source(data), output, settings, channels, variant,
               resume=resume, progress=progress, log=notice, minutes=minutes)
    done = saved_step(path)
    if ship and done < settings.total_steps:
        if notice:
            notice(f"not shipped: the run stopped at step {done} of {settings.total_steps}; "
                   "finish it with --resume to ship it")
        return path
    for checkpoint in ship:
        target = ship_decoder(path, Path(checkpoint))
        if notice:
            notice(f"shipped the tiny decoder as {target}")
    return path


def check_decoder_shape(channels: tuple[int, ...] | None, variant: str) -> None:
    from engine.model.tiny_decoder import STAGES, VARIANTS

    if variant not in VARIANTS:
        raise InputError(f"must be one of {', '.join(VARIANTS)}, not '{variant}'", option="variant")
    if channels is not None:
        if len(channels) != STAGES + 1:
            raise InputError(f"needs {STAGES + 1} widths (e.g. 64,32,16,16), not {len(channels)}", option="channels")
        for width in channels:
            check_int(width, "channels", 1, 4096)


def plan_training(config: str | Path | None, preset: str, gpus: int, gpu_memory: float, kind: str = "teacher",
                  channels: tuple[int, ...] | None = None, variant: str = "base"):
    """Per-GPU memory of each stage of a teacher, student or tiny decoder run (engine.train.plan), on
    the meta device."""
    from engine.train.plan import plan_decoder_training, plan_training as plan

    if kind == "decoder":
        check_decoder_shape(channels, variant)
        return plan_decoder_training(load_train_config(config or "decoder"), preset, gpus, gpu_memory, channels,
                                     variant)
    loaded = load_train_config(config) if kind == "teacher" else load_student_config(config)
    return plan(loaded, preset, gpus, gpu_memory, kind=kind)
