"""`tryon train`: the teacher (flow matching), the streaming student (distillation) and the VAE."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tryon_cli.console import StageProgress, notice

app = typer.Typer(help="Train models.", no_args_is_help=True)


@app.command("teacher")
def teacher(
    data: Annotated[str, typer.Option(help="A folder of sample folders (see README), or 'synthetic'.")],
    base: Annotated[str, typer.Option(help="The checkpoint to start from (folder or Hub id).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Checkpoint folder to write (and resume).")],
    config: Annotated[Optional[str], typer.Option(help="A JSON config file, or a built-in: default, demo.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run saved in --output.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Train the CondNet teacher; runs as is or under torchrun (DDP).

    Example: tryon train teacher --data ./data --base ./ck --output ./teacher --config demo
    """
    from tryon import api

    with StageProgress(enabled=not quiet) as progress:
        path = api.train_teacher(data, base, output, config=config, resume=resume, progress=progress, notice=notice)
    notice(f"wrote the trained teacher to {path} (metrics in {path / 'metrics.jsonl'})")


@app.command("vae")
def vae(
    base: Annotated[str, typer.Option(help="The checkpoint whose VAE to fine-tune.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the whole checkpoint.")],
    steps: Annotated[int, typer.Option(help="Optimizer steps (batch-size clips and stills each).")] = 1500,
    batch_size: Annotated[int, typer.Option(help="Clips (and as many stills) per step.")] = 4,
    size: Annotated[str, typer.Option(help="WIDTHxHEIGHT of the synthetic frames.")] = "96x160",
    frames: Annotated[int, typer.Option(help="Frames per clip (4k+1).")] = 9,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 1e-3,
    examples: Annotated[int, typer.Option(help="Synthetic samples to cycle through.")] = 1000,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Fine-tune the VAE on synthetic frames (needed before training a small teacher from scratch).

    Example: tryon train vae --base ./ck --output ./ck-vae --steps 1500
    """
    from tryon import api
    from tryon.media import parse_size

    with StageProgress(enabled=not quiet) as progress:
        path = api.train_vae(base, output, steps, parse_size(size), frames, lr, examples, batch_size,
                             progress=progress)
    notice(f"wrote {path}")


@app.command("student")
def student(
    teacher: Annotated[str, typer.Option(help="The trained teacher checkpoint to distill (folder or Hub id).")],
    data: Annotated[str, typer.Option(help="A folder of sample folders (see README), or 'synthetic'.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Student checkpoint folder to write (and resume).")],
    config: Annotated[Optional[str], typer.Option(help="A JSON config file, or the built-in: student.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run saved in --output.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Distill the teacher into the streaming few-step student: teacher forcing, then GR-DMD.

    Example: tryon train student --teacher ./teacher --data synthetic --output ./student --config student
    """
    from tryon import api

    with StageProgress(enabled=not quiet) as progress:
        path = api.train_student(teacher, data, output, config=config, resume=resume, progress=progress,
                                 notice=notice)
    notice(f"wrote the streaming student to {path} (metrics in {path / 'metrics.jsonl'})")
