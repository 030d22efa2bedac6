"""`tryon data`: the synthetic try-on world."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tryon_cli.console import StageProgress, notice

app = typer.Typer(help="Make training and test data.", no_args_is_help=True)


@app.command("synth")
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write sample folders into.")],
    count: Annotated[int, typer.Option(help="How many samples.")] = 100,
    seed: Annotated[int, typer.Option(help="Dataset seed; sample i uses seed*100003+i.")] = 0,
    size: Annotated[str, typer.Option(help="WIDTHxHEIGHT of every image and video.")] = "64x112",
    frames: Annotated[int, typer.Option(help="Frames per video.")] = 17,
    fps: Annotated[float, typer.Option(help="Frames per second of the videos.")] = 8.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Write synthetic try-on samples: user.png, garment_<category>.png, motion.mp4, target.mp4, ...

    Example: tryon data synth ./data --count 200 --seed 1
    """
    from tryon import api
    from tryon.media import parse_size

    with StageProgress(enabled=not quiet) as progress:
        folders = api.synthesize(out, count, seed, size=parse_size(size), num_frames=frames, fps=fps,
                                 progress=progress)
    notice(f"{len(folders)} samples in {out}")
