"""`tryon train`: the teacher (flow matching), the streaming student (distillation), the VAE and the tiny
streaming decoder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from engine.api.train import builtin_recipes
from engine.errors import InputError
from tryon_cli import options
from tryon_cli.console import StageProgress, notice, print_json, stdout

app = typer.Typer(help="Train models.", no_args_is_help=True)


PlanOption = Annotated[bool, typer.Option("--plan", help="Print the per-GPU memory of each stage and "
                                         "whether it fits (model built on the meta device); train nothing.")]
GpusOption = Annotated[int, typer.Option("--gpus", help="With --plan: GPUs (processes) the run would use.")]
GpuMemoryOption = Annotated[float, typer.Option("--gpu-memory", help="With --plan: GB of memory per GPU.")]
PresetOption = Annotated[str, typer.Option("--preset", help="With --plan: the model preset to plan for.")]
JsonOption = Annotated[bool, typer.Option("--json", help="With --plan: print the plan as JSON on stdout.")]


DataOption = Annotated[Optional[str], typer.Option(help="A folder of sample folders (see docs/training.md), or 'synthetic'.")]


MinutesOption = Annotated[Optional[float], typer.Option(
    "--minutes", help="Stop after this many minutes of training, checkpointed: --resume goes on from there.")]
MixedPrecisionOption = Annotated[Optional[str], typer.Option(
    "--mixed-precision", help="bf16 autocast: auto (on CUDA), bf16 (also on CPUs with native bf16, ~1.5x faster "
                              "there) or no; replaces the config's.")]


def training_options(
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run saved in --output.")] = False,
    minutes: MinutesOption = None,
    mixed_precision: MixedPrecisionOption = None,
    plan: PlanOption = False,
    gpus: GpusOption = 8,
    gpu_memory: GpuMemoryOption = 80.0,
    preset: PresetOption = "wan2.2-ti2v-5b",
    json_output: JsonOption = False,
    quiet: options.Quiet = False,
) -> None:
    """The options train teacher, student and decoder share: a signature for `options.parameters_of`."""


def train_or_plan(kind: str, config: str | None, shared: dict[str, Any], required: dict[str, object],
                  train: Callable[..., Path], model: dict[str, Any] | None = None, **settings: Any) -> Path | None:
    """Print the memory plan (--plan) of the `model` settings, or check the `required` options and
    run `train(*their values, config=, resume=, progress=, notice=, **model, **settings)`."""
    from engine import api

    model = model or {}
    if shared["plan"]:
        show_plan(api.plan_training(config, shared["preset"], shared["gpus"], shared["gpu_memory"], kind=kind,
                                    **model), shared["json_output"])
        return None
    values = require_run_options(**required)
    with StageProgress(enabled=not shared["quiet"]) as progress:
        return train(*values, config=config, resume=shared["resume"], minutes=shared["minutes"], progress=progress,
                     notice=notice, mixed_precision=shared["mixed_precision"], **model, **settings)


@app.command("teacher")
@options.parameters_of(training_options, into="shared")
def teacher(
    data: DataOption = None,
    base: Annotated[Optional[str], typer.Option(help="The checkpoint to start from (folder or Hub id).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Checkpoint folder to write (and resume).")] = None,
    config: Annotated[Optional[str], typer.Option(help=f"A JSON config file, or a built-in: {', '.join(builtin_recipes('teacher'))}.")] = None,
    *,
    shared: dict[str, Any],
) -> None:
    """Train the CondNet teacher; runs as is or under torchrun (DDP, or FSDP2 with "parallel": "fsdp").

    Example: tryon train teacher --data ./data --base ./ck --output ./teacher --config demo
    Plan:    tryon train teacher --config wan5b-teacher --plan --gpus 8 --gpu-memory 80
    """
    from engine import api

    path = train_or_plan("teacher", config, shared, dict(data=data, base=base, output=output), api.train_teacher)
    if path is not None:
        notice(f"wrote the trained teacher to {path} (metrics and curves.png in {path})")


def require_run_options(**options: object) -> list:
    """A training run (not --plan) needs every one of `options`."""
    missing = [f"--{name}" for name, value in options.items() if value is None]
    if missing:
        raise InputError(f"training needs {', '.join(missing)} (or --plan to print its memory plan)")
    return list(options.values())


def show_plan(plan, json_output: bool) -> None:
    """The plan as a table (GiB per GPU) or JSON."""
    if json_output:
        print_json(plan.to_dict())
    else:
        from rich.console import Console
        from rich.table import Table

        console = Console(width=max(stdout.width, 150), highlight=False, markup=False, emoji=False)  # a table that never wraps
        table = Table(title=f"{plan.kind} {plan.preset} on {plan.gpus} x {plan.gpu_memory:g} GB GPUs "
                            f"({plan.parallel}, activation checkpointing {'on' if plan.gradient_checkpointing else 'off'}),"
                            f" GiB per GPU")
        for column in ("stage", "size", "frames", "batch", "tokens", "params", "grads", "optimizer",
                       "activations", "frozen", "total", "fits"):
            table.add_column(column, justify="left" if column in ("stage", "size") else "right", no_wrap=True)
        for stage in plan.stages:
            table.add_row(stage.stage, f"{stage.size[0]}x{stage.size[1]}", str(stage.num_frames),
                          str(stage.batch_size), str(stage.tokens), f"{stage.parameters:.1f}", f"{stage.gradients:.1f}",
                          f"{stage.optimizer:.1f}", f"{stage.activations:.1f}", f"{stage.frozen:.1f}",
                          f"{stage.total:.1f}", "yes" if stage.fits else "NO")
        console.print(table)
        trained_model = "tiny decoder" if plan.kind == "decoder" else "transformer"
        console.print(f"{trained_model} {plan.transformer_parameters / 1e9:.2f} B parameters, "
                     f"{plan.trained_parameters / 1e9:.2f} B trained; frozen: "
                     + ", ".join(f"{name} {count / 1e9:.2f} B" for name, count in plan.frozen_parameters.items()))
        for line in plan.notes:
            console.print(f"note: {line}")
        console.print("fits" if plan.fits else "does NOT fit: lower batch_size, turn on gradient_checkpointing, "
                     "use more GPUs or parallel fsdp")


@app.command("vae")
def vae(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the whole checkpoint.")],
    base: Annotated[Optional[str], typer.Option(help="The checkpoint whose VAE to fine-tune (not with --resume).")] = None,
    steps: Annotated[int, typer.Option(help="Optimizer steps, 1 to 10^7 (batch-size clips and stills each).")] = 1500,
    batch_size: Annotated[int, typer.Option(help="Clips (and as many stills) per step, 1 to 1024.")] = 4,
    size: Annotated[str, typer.Option(help="WIDTHxHEIGHT of the synthetic frames.")] = "96x160",
    frames: Annotated[int, typer.Option(help="Frames per clip (4k+1), up to 257.")] = 9,
    lr: Annotated[float, typer.Option(help="AdamW learning rate, above 0 and up to 1.")] = 1e-3,
    kl_weight: Annotated[float, typer.Option(help="Weight of the KL term (per element), 0 to 1: lower keeps "
                                                  "more detail in the latents.")] = 1e-4,
    decoder_only: Annotated[bool, typer.Option("--decoder-only", help="Train the decoder alone: the latents, and "
                                                "every model trained on them, stay valid.")] = False,
    examples: Annotated[int, typer.Option(help="Synthetic samples to cycle through, 1 to 100003.")] = 1000,
    checkpoint_every: Annotated[int, typer.Option(help="Save the checkpoint and its training state to --output "
                                                       "every this many steps (0: only at the end); --resume "
                                                       "continues from there.")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run saved in --output.")] = False,
    minutes: MinutesOption = None,
    mixed_precision: MixedPrecisionOption = None,
    quiet: options.Quiet = False,
) -> None:
    """Fine-tune the VAE on synthetic frames (needed before training a small teacher from scratch).

    Example: tryon train vae --base ./ck --output ./ck-vae --steps 1500
    Resumable: tryon train vae --base ./ck --output ./ck-vae --steps 20000 --checkpoint-every 250 [--minutes 60] [--resume]
    A trained model's sharper decoder: tryon train vae --base weights/demo --output ./demo-dec --frames 17 --decoder-only
    """
    from engine import api
    from engine.media import parse_size
    from engine.train.vae import VaeTraining

    if (base is None) != resume:
        raise InputError("give --base (a new run) or --resume (the run in --output), one of them")
    settings = VaeTraining(steps=steps, size=parse_size(size), num_frames=frames, lr=lr, examples=examples,
                           batch_size=batch_size, checkpoint_every=checkpoint_every,
                           mixed_precision=mixed_precision or "auto", kl_weight=kl_weight,
                           decoder_only=decoder_only)
    with StageProgress(enabled=not quiet) as progress:
        path = api.train_vae(base or "", output, settings, progress=progress, resume=resume, minutes=minutes,
                             notice=notice)
    notice(f"wrote {path}")


@app.command("student")
@options.parameters_of(training_options, into="shared")
def student(
    teacher: Annotated[Optional[str], typer.Option(help="The trained teacher checkpoint to distill (folder or Hub id).")] = None,
    data: DataOption = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Student checkpoint folder to write (and resume).")] = None,
    config: Annotated[Optional[str], typer.Option(help=f"A JSON config file, or a built-in: {', '.join(builtin_recipes('student'))}.")] = None,
    scorer: Annotated[Optional[str], typer.Option(
        help="GR-DMD's frame reward, replacing the config's: aesthetic (the LAION predictor; see --aesthetic-weights), "
             "sharpness_colour (a heuristic, no model) or auto.")] = None,
    aesthetic_weights: Annotated[Optional[str], typer.Option(
        help="The aesthetic predictor's folder (tryon models convert ... --kind aesthetic), replacing the config's.")] = None,
    *,
    shared: dict[str, Any],
) -> None:
    """Distill the teacher into the streaming few-step student: teacher forcing, then GR-DMD.

    Example: tryon train student --teacher ./teacher --data synthetic --output ./student --config student
    Plan:    tryon train student --config wan5b-student --plan --gpus 8 --gpu-memory 80
    """
    from engine import api

    path = train_or_plan("student", config, shared, dict(teacher=teacher, data=data, output=output),
                         api.train_student, scorer=scorer, aesthetic_weights=aesthetic_weights)
    if path is not None:
        notice(f"wrote the streaming student to {path} (metrics and curves.png in {path})")


@app.command("decoder")
@options.parameters_of(training_options, into="shared")
def decoder(
    vae: Annotated[Optional[str], typer.Option(help="The checkpoint (folder or Hub id) whose VAE to distil.")] = None,
    data: Annotated[Optional[str], typer.Option(help="A folder of videos (sample folders or raw .mp4), or 'synthetic'.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="The tiny decoder's folder to write (and resume).")] = None,
    config: Annotated[Optional[str], typer.Option(help=f"A JSON config file, or a built-in: {', '.join(builtin_recipes('decoder'))} (the default).")] = None,
    channels: Annotated[Optional[str], typer.Option(help="The decoder's four widths, e.g. 64,32,16,16 (default: "
                                                    "TAEHV's 256,128,64,64; super 512,256,128,64).")] = None,
    variant: Annotated[str, typer.Option(help="base, or super (about twice the weights).")] = "base",
    ship: Annotated[Optional[list[Path]], typer.Option("--ship", help="When done, copy it into this checkpoint as "
                                                        "its tiny_decoder/ (repeatable).")] = None,
    *,
    shared: dict[str, Any],
) -> None:
    """Distil a tiny streaming decoder from a checkpoint's VAE (what --decoder tiny streams with).

    Example: tryon train decoder --vae weights/demo --data synthetic --output ./td --channels 64,32,16,16 --ship weights/demo
    Plan:    tryon train decoder --plan --preset wan2.2-ti2v-5b --gpus 1 --gpu-memory 80
    """
    from engine import api

    widths = parse_channels(channels)
    path = train_or_plan("decoder", config, shared, dict(vae=vae, data=data, output=output), api.train_decoder,
                         model=dict(channels=widths, variant=variant), ship=tuple(ship or ()))
    if path is not None:
        notice(f"wrote the tiny decoder to {path} (metrics and curves.png in {path})")


def parse_channels(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise InputError(f"must be widths separated by commas (e.g. 64,32,16,16), not '{text}'", option="channels") from None
