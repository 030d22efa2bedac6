"""`tryon models`: presets, cached checkpoints, random-weight checkpoints for smoke tests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tryon_cli import options
from tryon_cli.console import notice, print_json, stdout

app = typer.Typer(help="List and create model checkpoints.", no_args_is_help=True)


@app.command("list")
def list_models(json_output: options.Json = False) -> None:
    """Presets, the default model, and checkpoints in the local Hub cache.

    Example: tryon models list
    """
    from engine import api

    entries = api.list_models()
    if json_output:
        print_json({"models": [vars(e) for e in entries]})
        return
    table = Table("name", "kind", "description")
    for entry in entries:
        table.add_row(entry.name, entry.kind, entry.description)
    stdout.print(table)


@app.command("init")
def init(
    preset: Annotated[str, typer.Argument(help="Preset name (see `tryon models list`).")],
    folder: Annotated[Path, typer.Argument(help="Where to write the checkpoint.")],
    seed: Annotated[int, typer.Option(help="Seed of the random weights, 0 to 4294967295.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing folder.")] = False,
) -> None:
    """Write a random-weight checkpoint (marked untrained), for smoke tests and speed tests.

    Example: tryon models init tiny ./ck
    """
    from engine import api

    path = api.init_model(preset, folder, seed=seed, overwrite=overwrite)
    notice(f"wrote a random-weight '{preset}' checkpoint to {path} (untrained: for smoke and speed tests)")


@app.command("convert")
def convert(
    source: Annotated[Path, typer.Argument(help="The generator: FashionChameleon's .safetensors file or folder of "
                                          "shards, or LongLive's model_bf16.pt.")],
    folder: Annotated[Path, typer.Argument(help="Where to write the tryon checkpoint.")],
    base: Annotated[str, typer.Option(help="Checkpoint or preset giving the VAE, text encoder and tokenizer.")] = "wan2.2-ti2v-5b",
    kind: Annotated[str, typer.Option(help="teacher (its SFT model) or student (its streaming generator).")] = "student",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing folder.")] = False,
    source_layout: Annotated[str, typer.Option("--from", help="Whose checkpoint: fashionchameleon or longlive "
                                               "(LongLive-2.0-5B's model_bf16.pt, read as tensors only).")] = "fashionchameleon",
    revision: Annotated[str, typer.Option(help="The Hub revision the LongLive file was downloaded at (recorded).")] = "main",
) -> None:
    """Convert a FashionChameleon or LongLive checkpoint (Wan2.2's original key names) into a tryon
    checkpoint: FashionChameleon's generates with its conditions' RoPE slots and attention
    pattern; LongLive's is the public route's streaming student (swap, extend, studio).

    Example: tryon models convert fc_student.safetensors ./fc-student --kind student
    Example: tryon models convert model_bf16.pt ./longlive --from longlive
    """
    from engine import api

    path = api.convert_model(source, folder, base=base, kind=kind, overwrite=overwrite, layout=source_layout,
                             revision=revision)
    if source_layout == "longlive":
        notice(f"wrote LongLive's streaming student to {path} (use it with the public route: "
               f"TRYON_PUBLIC_STREAM_DIR={path} tryon swap ... --model public)")
        return
    notice(f"wrote a FashionChameleon {kind} to {path} (conditions in its layout: reference, garment, then video)")
