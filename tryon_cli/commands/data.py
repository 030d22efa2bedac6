"""`tryon data`: the synthetic try-on world, and curation of real videos into training samples."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tryon_cli import options
from tryon_cli.console import StageProgress, notice, print_json

app = typer.Typer(help="Make training and test data.", no_args_is_help=True)


@app.command("synth")
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write sample folders into.")],
    count: Annotated[int, typer.Option(help="How many samples, 1 to 100003.")] = 100,
    seed: Annotated[int, typer.Option(help="Dataset seed, 0 to 4294967295; sample i uses seed*100003+i.")] = 0,
    size: Annotated[str, typer.Option(help="WIDTHxHEIGHT of every image and video: even sides, 32 to 2048.")] = "64x112",
    frames: Annotated[int, typer.Option(help="Frames per video, 1 to 1000.")] = 17,
    fps: Annotated[float, typer.Option(help="Frames per second of the videos, above 0 and up to 1000.")] = 8.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Write synthetic try-on samples: user.png, garment_<category>.png, motion.mp4, target.mp4, ...

    Example: tryon data synth ./data --count 200 --seed 1
    """
    from engine import api
    from engine.media import parse_size

    with StageProgress(enabled=not quiet) as progress:
        folders = api.synthesize(out, count, seed, size=parse_size(size), num_frames=frames, fps=fps,
                                 progress=progress)
    notice(f"{len(folders)} samples in {out}")


@app.command("curate")
def curate(
    videos: Annotated[Path, typer.Argument(help="A folder of raw videos (any depth).")],
    out: Annotated[Path, typer.Argument(help="Where samples/, curation.jsonl and the resumable state go.")],
    detector: Annotated[Path, typer.Option(help="A person detector folder (transformers RT-DETR).")],
    vlm: Annotated[Path, typer.Option(help="A Qwen2.5-VL-class model folder: captions and validation.")],
    editor: Annotated[Path, typer.Option(help="The edit model: a public route folder (its edit stage) "
                                              "or a QwenImageEditPlus folder.")],
    config: Annotated[Optional[Path], typer.Option(help="A JSON file of curation thresholds (see engine/curate/config.py).")] = None,
    shard: Annotated[Optional[str], typer.Option(help="K/N: every N-th video from the K-th, as tryon batch.")] = None,
    edit_steps: Annotated[int, typer.Option(help="Denoising steps of each edit.")] = 40,
    device: Annotated[str, typer.Option(help="cpu or cuda[:N] for every model.")] = "cpu",
    ray: options.RayAddress = None,
    workers: options.Workers = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print a summary as JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Curate raw videos into training samples: filter, caption, extract garments, build references.

    Example: tryon data curate ./raw ./curated --detector ./rtdetr --vlm ./qwen2.5-vl --editor ./qwen-image-edit

    On a Ray cluster: tryon data curate /shared/raw /shared/curated ... --ray auto
    """
    from engine import api
    from engine.errors import InputError, RuntimeFailure

    if workers is not None and ray is None:
        raise InputError("--workers needs --ray (without it the videos are curated one at a time)")
    with StageProgress(enabled=not quiet) as progress:  # on stderr: --json owns stdout alone
        summary = api.curate(videos, out, detector, vlm, editor, config=config, shard=shard, device=device,
                             edit_steps=edit_steps, ray=ray, workers=workers, progress=progress, notice=notice)
    if json_output:
        print_json(summary.to_dict())
    else:
        for stage, counts in summary.decisions.items():
            notice(f"{stage}: {counts['kept']} kept, {counts['dropped']} dropped")
        notice(f"{len(summary.samples)} samples in {summary.samples_dir}; every decision in {summary.log}")
    for failure in summary.failed:
        notice(f"failed: {failure}")
    if summary.failed:
        raise RuntimeFailure(f"{len(summary.failed)} of the items failed (listed above); a re-run retries them")
