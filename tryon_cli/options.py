"""Options shared by the generating commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tryon.modes import Acceleration

Model = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help="Checkpoint folder, Hub repo id, or preset name. "
                 "Default: the demo model in weights/ (its student for swap and extend)."),
]
Revision = Annotated[Optional[str], typer.Option(help="Hub branch, tag or commit to pin.")]
Motion = Annotated[Optional[Path], typer.Option("--motion", help="Reference video whose motion to follow.")]
Prompt = Annotated[str, typer.Option("--prompt", "-p", help="Text describing the motion and the scene.")]
Output = Annotated[Optional[Path], typer.Option("--output", "-o", help="Output .mp4 (default: named after the inputs).")]
Size = Annotated[Optional[str], typer.Option(help="WIDTHxHEIGHT (even sides), delivered exactly. Default: the model's, in the photo's orientation.")]
Seconds = Annotated[Optional[float], typer.Option(help="Video length in seconds (default: the model's).")]
Fps = Annotated[Optional[float], typer.Option(help="Frames per second (default: the model's).")]
Seed = Annotated[int, typer.Option(help="Random seed; the same seed on the same device gives the same video.")]
Steps = Annotated[Optional[int], typer.Option(help="Denoising steps (default: the model's).")]
Guidance = Annotated[Optional[float], typer.Option(help="Classifier-free guidance scale; 1 turns it off.")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
Dtype = Annotated[str, typer.Option(help="auto, bf16, fp16 or fp32 (auto: bf16 on CUDA, fp32 on CPU).")]
Attention = Annotated[str, typer.Option(help="auto, sdpa, flash or xformers (auto: the fastest installed on CUDA).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output file.")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON summary on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")]
Offload = Annotated[str, typer.Option(help="none, model or group: keep the weights in CPU memory and move them to the GPU "
                                      "as they run (less GPU memory, slower); group overlaps the moves with compute.")]
Fp8 = Annotated[bool, typer.Option("--fp8", help="Store the transformer's and text encoder's weights in float8: "
                                   "half the memory of bf16, computed in --dtype.")]
Compile = Annotated[bool, typer.Option("--compile", help="torch.compile the transformer's blocks (the first call is slow).")]
FuseQkv = Annotated[bool, typer.Option("--fuse-qkv", help="One matmul for attention queries, keys and values.")]


ContextParallel = Annotated[bool, typer.Option(
    "--context-parallel", help="Split the render's token sequence across the processes of a torchrun launch "
    "(Ulysses): torchrun --nproc-per-node N -m tryon_cli dress ... --context-parallel")]


def acceleration(offload: str, fp8: bool, compile_: bool, fuse_qkv: bool, context_parallel: bool = False) -> Acceleration:
    """The speed and memory modes, from their options."""
    return Acceleration(offload=offload, fp8=fp8, compile=compile_, fuse_qkv=fuse_qkv,
                        context_parallel=context_parallel)
