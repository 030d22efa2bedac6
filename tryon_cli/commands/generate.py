"""`tryon dress` and `tryon dance`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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


def build_request(user: Path, garments: list[GarmentSpec], output: Path | None, command: str, **fields) -> api.GenerateRequest:
    from engine import api
    from engine.media import parse_size

    size = fields.pop("size")
    size = parse_size(size) if size else None  # before the request class loads torch
    return api.GenerateRequest(
        user=user, garments=garments, output=output or default_output(user, garments, command), size=size, **fields,
    )


@options.run_options(context_parallel=True)
def dress(
    user: Annotated[Path, typer.Argument(help="Photo of the person.")],
    garments: Annotated[list[str], typer.Argument(help="Garment photos: PATH or PATH:top|bottom|dress (up to 4).")],
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
    run: RunOptions = RunOptions(),
    json_output: options.Json = False,
    quiet: options.Quiet = False,
) -> None:
    """Dress the person in the garments, moving like the --motion video and/or as --prompt says.

    Example: tryon dress user.png shirt.png:top pants.png:bottom --motion dance.mp4 -o out.mp4
    """
    from engine.api.inputs import check_input_files
    from engine.api.specs import parse_garment

    specs = [parse_garment(text) for text in garments]
    check_input_files(user, *(spec.path for spec in specs), motion)  # before torch loads
    request = build_request(
        user, specs, output, "dress", motion=motion, prompt=prompt, size=size, seconds=seconds, fps=fps,
        seed=seed, steps=steps, guidance=guidance, overwrite=overwrite, run=run,
    )
    from engine import api

    run_generation(request, api.dress, json_output, quiet)


@options.run_options(context_parallel=True)
def dance(
    user: Annotated[Path, typer.Argument(help="Photo of the person.")],
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
    run: RunOptions = RunOptions(),
    json_output: options.Json = False,
    quiet: options.Quiet = False,
) -> None:
    """Animate the person in their own clothes; the first frame is their photo.

    Example: tryon dance user.png --motion dance.mp4 -o moves.mp4
    """
    from engine.api.inputs import check_input_files

    check_input_files(user, motion)  # before torch loads
    request = build_request(
        user, [], output, "dance", motion=motion, prompt=prompt, size=size, seconds=seconds, fps=fps,
        seed=seed, steps=steps, guidance=guidance, overwrite=overwrite, run=run,
    )
    from engine import api

    run_generation(request, api.dance, json_output, quiet)
