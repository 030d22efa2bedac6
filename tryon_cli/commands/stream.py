"""`tryon swap` and `tryon extend`: streaming generation, written to the MP4 as it is made."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from engine.modes import RunOptions
from tryon_cli import options
from tryon_cli.commands.generate import default_output, run_generation
from tryon_cli.console import notice

Garments = Annotated[
    list[str],
    typer.Option("--garment", "-g", help="PATH or PATH:top|bottom|dress, @SECONDS to start later (b.png:top@2.5). "
                 "Repeat it; garments with the same time are worn together."),
]
StreamSteps = Annotated[Optional[int], typer.Option(help="Denoising steps per chunk (default: 4).")]
# The switch operations: unset, as the checkpoint's tryon.json says (its `stream`), else on.
Refresh = Annotated[Optional[bool], typer.Option(
    "--refresh/--no-refresh", help="At a switch, replace the garments' K/V (off: keep the old ones).")]
Withdraw = Annotated[Optional[bool], typer.Option(
    "--withdraw/--no-withdraw", help="At a switch, clear the history K/V (off: keep it).")]
Disentangle = Annotated[Optional[bool], typer.Option(
    "--disentangle/--no-disentangle", help="At a switch, take the last frame as the reference (off: keep the "
    "photo). Default for all three: the checkpoint's choice, else on.")]


def run_stream(request, command, json_output: bool, quiet: bool) -> None:
    """Run like any generation; on Ctrl-C say what was kept and exit 130."""
    from engine import api

    try:
        run_generation(request, command, json_output, quiet)
    except api.StreamInterrupted as stop:
        notice(f"tryon: interrupted; {_kept(stop)}")
        sys.exit(130)


def _kept(stop) -> str:
    """What an interrupted stream left: the frames generated, apart from those copied (extend)."""
    if not stop.frames:
        return "nothing was written"
    if not stop.copied:
        return f"kept the {stop.frames} frames made so far in {stop.output}"
    return (f"kept {stop.frames} frames in {stop.output}: the input's {stop.copied} and "
            f"{stop.generated} generated")


@options.run_options(decoder=True)
def swap(
    user: Annotated[Path, typer.Argument(help="Photo of the person.")],
    garment: Garments,
    motion: options.Motion = None,
    prompt: options.Prompt = "",
    output: options.Output = None,
    size: options.Size = None,
    seconds: options.Seconds = None,
    fps: options.Fps = None,
    seed: options.Seed = 0,
    steps: StreamSteps = None,
    overwrite: options.Overwrite = False,
    refresh: Refresh = None,
    withdraw: Withdraw = None,
    disentangle: Disentangle = None,
    live: Annotated[bool, typer.Option("--live", help="Also read garment lines from stdin while generating; "
                                       "without --seconds, run until stdin closes.")] = False,
    json_output: options.Json = False,
    quiet: options.Quiet = False,
    run: RunOptions = RunOptions(),
) -> None:
    """Dress the person and switch garments mid-video; frames are written as they are made.

    The first garment is worn from the start; `@SECONDS` switches at that time (at the first
    chunk starting then or later). With --live, each line typed on stdin (one or more garment
    specs) is put on at the next chunk, and the latency of each switch is reported; without
    --seconds the video goes on until stdin closes and every line has been put on.
    Ctrl-C keeps a playable video of everything made so far (exit code 130).

    Example: tryon swap user.png -g shirt.png:top -g dress.png:dress@2.5 --motion dance.mp4 -o out.mp4
    """
    from engine import api
    from engine.api.inputs import check_input_files
    from engine.api.specs import parse_garment
    from engine.media import parse_size

    specs = [parse_garment(text, allow_time=True) for text in garment]
    check_input_files(user, *(spec.path for spec in specs), motion)  # before torch loads
    size = parse_size(size) if size else None
    request = api.SwapRequest(
        user=user, garments=specs, output=output or default_output(user, specs, "swap"), motion=motion,
        prompt=prompt, size=size, seconds=seconds, fps=fps, seed=seed, steps=steps,
        overwrite=overwrite, refresh=refresh, withdraw=withdraw, disentangle=disentangle,
        live=sys.stdin if live else None, run=run,
    )
    run_stream(request, api.swap, json_output, quiet)


@options.run_options(decoder=True)
def extend(
    video: Annotated[Path, typer.Argument(help="The video to continue.")],
    seconds: Annotated[float, typer.Option(help="Seconds to add.")],
    garment: Annotated[
        Optional[list[str]],
        typer.Option("--garment", "-g", help="PATH or PATH:top|bottom|dress to put on at once, or @SECONDS later."),
    ] = None,
    prompt: options.Prompt = "",
    output: options.Output = None,
    seed: options.Seed = 0,
    steps: StreamSteps = None,
    overwrite: options.Overwrite = False,
    refresh: Refresh = None,
    withdraw: Withdraw = None,
    disentangle: Disentangle = None,
    json_output: options.Json = False,
    quiet: options.Quiet = False,
    run: RunOptions = RunOptions(),
) -> None:
    """Continue a video: the output is the video followed by --seconds more, at its fps and size.

    Example: tryon extend clip.mp4 --seconds 3 --prompt "she keeps dancing" -o longer.mp4
    """
    from engine import api
    from engine.api.inputs import check_input_files
    from engine.api.specs import parse_garment

    specs = [parse_garment(text, allow_time=True) for text in garment or []]
    check_input_files(video, *(spec.path for spec in specs))  # before torch loads
    request = api.ExtendRequest(
        video=video, output=output or Path(f"{video.stem}_extended.mp4"), seconds=seconds,
        garments=specs, prompt=prompt, seed=seed,
        steps=steps, overwrite=overwrite, refresh=refresh, withdraw=withdraw, disentangle=disentangle, run=run,
    )
    run_stream(request, api.extend, json_output, quiet)
