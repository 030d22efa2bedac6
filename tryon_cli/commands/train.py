"""`tryon train`: the teacher (flow matching), the streaming student (distillation) and the VAE."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

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


@app.command("teacher")
def teacher(
    data: Annotated[Optional[str], typer.Option(help="A folder of sample folders (see README), or 'synthetic'.")] = None,
    base: Annotated[Optional[str], typer.Option(help="The checkpoint to start from (folder or Hub id).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Checkpoint folder to write (and resume).")] = None,
    config: Annotated[Optional[str], typer.Option(help="A JSON config file, or a built-in: default, demo, demo-continue, demo-anneal, wan5b-teacher.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run saved in --output.")] = False,
    plan: PlanOption = False,
    gpus: GpusOption = 8,
    gpu_memory: GpuMemoryOption = 80.0,
    preset: PresetOption = "wan2.2-ti2v-5b",
    json_output: JsonOption = False,
    quiet: options.Quiet = False,
) -> None:
    """Train the CondNet teacher; runs as is or under torchrun (DDP, or FSDP2 with "parallel": "fsdp").

    Example: tryon train teacher --data ./data --base ./ck --output ./teacher --config demo
    Plan:    tryon train teacher --config wan5b-teacher --plan --gpus 8 --gpu-memory 80
    """
    from engine import api

    if plan:
        show_plan(api.plan_training(config, preset, gpus, gpu_memory, kind="teacher"), json_output)
        return
    data, base, output = require_run_options(data=data, base=base, output=output)
    with StageProgress(enabled=not quiet) as progress:
        path = api.train_teacher(data, base, output, config=config, resume=resume, progress=progress, notice=notice)
    notice(f"wrote the trained teacher to {path} (metrics in {path / 'metrics.jsonl'})")


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
        console.print(f"transformer {plan.transformer_parameters / 1e9:.2f} B parameters, "
                     f"{plan.trained_parameters / 1e9:.2f} B trained; frozen: "
                     + ", ".join(f"{name} {count / 1e9:.2f} B" for name, count in plan.frozen_parameters.items()))
        for line in plan.notes:
            console.print(f"note: {line}")
        console.print("fits" if plan.fits else "does NOT fit: lower batch_size, turn on gradient_checkpointing, "
                     "use more GPUs or parallel fsdp")


@app.command("vae")
def vae(
    base: Annotated[str, typer.Option(help="The checkpoint whose VAE to fine-tune.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the whole checkpoint.")],
    steps: Annotated[int, typer.Option(help="Optimizer steps, 1 to 10^7 (batch-size clips and stills each).")] = 1500,
    batch_size: Annotated[int, typer.Option(help="Clips (and as many stills) per step, 1 to 1024.")] = 4,
    size: Annotated[str, typer.Option(help="WIDTHxHEIGHT of the synthetic frames.")] = "96x160",
    frames: Annotated[int, typer.Option(help="Frames per clip (4k+1), up to 257.")] = 9,
    lr: Annotated[float, typer.Option(help="AdamW learning rate, above 0 and up to 1.")] = 1e-3,
    examples: Annotated[int, typer.Option(help="Synthetic samples to cycle through, 1 to 100003.")] = 1000,
    quiet: options.Quiet = False,
) -> None:
    """Fine-tune the VAE on synthetic frames (needed before training a small teacher from scratch).

    Example: tryon train vae --base ./ck --output ./ck-vae --steps 1500
    """
    from engine import api
    from engine.media import parse_size

    with StageProgress(enabled=not quiet) as progress:
        path = api.train_vae(base, output, steps, parse_size(size), frames, lr, examples, batch_size,
                             progress=progress)
    notice(f"wrote {path}")


@app.command("student")
def student(
    teacher: Annotated[Optional[str], typer.Option(help="The trained teacher checkpoint to distill (folder or Hub id).")] = None,
    data: Annotated[Optional[str], typer.Option(help="A folder of sample folders (see README), or 'synthetic'.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Student checkpoint folder to write (and resume).")] = None,
    config: Annotated[Optional[str], typer.Option(help="A JSON config file, or a built-in: student, wan5b-student.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run saved in --output.")] = False,
    plan: PlanOption = False,
    gpus: GpusOption = 8,
    gpu_memory: GpuMemoryOption = 80.0,
    preset: PresetOption = "wan2.2-ti2v-5b",
    json_output: JsonOption = False,
    quiet: options.Quiet = False,
) -> None:
    """Distill the teacher into the streaming few-step student: teacher forcing, then GR-DMD.

    Example: tryon train student --teacher ./teacher --data synthetic --output ./student --config student
    Plan:    tryon train student --config wan5b-student --plan --gpus 8 --gpu-memory 80
    """
    from engine import api

    if plan:
        show_plan(api.plan_training(config, preset, gpus, gpu_memory, kind="student"), json_output)
        return
    teacher, data, output = require_run_options(teacher=teacher, data=data, output=output)
    with StageProgress(enabled=not quiet) as progress:
        path = api.train_student(teacher, data, output, config=config, resume=resume, progress=progress,
                                 notice=notice)
    notice(f"wrote the streaming student to {path} (metrics in {path / 'metrics.jsonl'})")
