"""`tryon dress` and `tryon dance`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from engine.modes import RunOptions
from tryon_cli import options
from tryon_cli.console import StageProgress, notice, print_json

if TYPE_CHECKING:
    from engine import api
    from engine.api.specs import GarmentSpec

# The engine (torch, diffusers) is imported when a command runs, so that --help and usage
# errors answer at once.


def default_output(user: Path, garments: list[GarmentSpec], command: str) -> Path:
    """`<user>_<garment>+<garment>.mp4`, or `<user>_<command>.mp4`, in the current folder."""
    suffix = "+".join(g.path.stem for g in garments) or command
    return Path(f"{user.stem}_{suffix}.mp4")


def run_generation(request: api.GenerateRequest, command, json_output: bool, quiet: bool) -> None:
    from engine.model.distributed import is_main_process

    if request.run.acceleration.context_parallel and not is_main_process():
        command(request)  # one render split across torchrun's processes: the first speaks for all
        return
    with StageProgress(enabled=not quiet) as progress:  # on stderr: --json owns stdout alone
        result = command(request, progress=progress, notice=notice)
    if json_output:
        print_json(result.to_dict())
    else:
        notice(f"wrote {result.output}: {result.frames} frames, {result.size[0]}x{result.size[1]} "
               f"at {result.fps:g} fps, in {result.seconds_taken:.1f} s")


def render(user: Path, garments: list[GarmentSpec], command: str, output: Path | None, size: str | None,
           json_output: bool, quiet: bool, **fields) -> None:
    """Build the request from the command line and run it through the engine's `command` (api.dress or api.dance)."""
    from engine.api.inputs import check_input_files
    from engine.media import parse_size

    check_input_files(user, *(spec.path for spec in garments), fields["motion"])  # before torch loads
    size = parse_size(size) if size else None  # before the request class loads torch
    from engine import api

    request = api.GenerateRequest(
        user=user,
        garments=garments,
        output=output or default_output(user, garments, command),
        size=size,
        **fields,
    )
    run_generation(request, getattr(api, command), json_output, quiet)


def generation_options(
    motion: options.Motion = None,
    prompt: options.Prompt = "",
    output: options.Output = None,
    size: options.Size = None,
    seconds: options.Seconds = None,
    fps: options.Fps = None,
    seed: options.Seed = 0,
    steps: options.Steps = None,
    guidance: options.Guidance = None,
    overwrite: options.Overwrite = False,
    keep_intermediates: options.KeepIntermediates = None,
    run: RunOptions = RunOptions(),
    json_output: options.Json = False,
    quiet: options.Quiet = False,
) -> None:
    """The options dress and dance share, in their --help order: a signature for `options.parameters_of`."""


@options.run_options(context_parallel=True)
@options.parameters_of(generation_options, into="shared")
def dress(
    user: Annotated[Path, typer.Argument(help="Photo of the person.")],
    garments: Annotated[list[str], typer.Argument(help="Garment photos: PATH or PATH:top|bottom|dress (up to 4).")],
    shared: dict[str, Any],
) -> None:
    """Dress the person in the garments, moving like the --motion video and/or as --prompt says.

    Example: tryon dress user.png shirt.png:top pants.png:bottom --motion dance.mp4 -o out.mp4
    """
    from engine.api.specs import parse_garment

    render(user, [parse_garment(text) for text in garments], "dress", **shared)


@options.run_options(context_parallel=True)
@options.parameters_of(generation_options, into="shared")
def dance(
    user: Annotated[Path, typer.Argument(help="Photo of the person.")],
    shared: dict[str, Any],
) -> None:
    """Animate the person in their own clothes; the first frame is their photo.

    Example: tryon dance user.png --motion dance.mp4 -o moves.mp4
    """
    render(user, [], "dance", **shared)
