"""Options shared by the commands, declared once.

The runtime options (which model, device, dtype, attention backend, speed and memory modes)
are added to a command by `run_options` and reach it as one `RunOptions`; `--help` shows
them in their own panel. Other options that several commands share are declared once in a
template signature and added by `parameters_of`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer

from engine.modes import OFFLOAD_CHOICES, Acceleration, RunOptions

RUNTIME_PANEL = "Runtime"

Motion = Annotated[Optional[Path], typer.Option("--motion", help="Reference video whose motion to follow.")]
Prompt = Annotated[str, typer.Option("--prompt", "-p", help="Text describing the motion and the scene.")]
Output = Annotated[Optional[Path], typer.Option("--output", "-o", help="Output .mp4 (default: named after the inputs).")]
Size = Annotated[Optional[str], typer.Option(help="WIDTHxHEIGHT (even sides), delivered exactly. Default: the model's, in the photo's orientation.")]
Seconds = Annotated[Optional[float], typer.Option(help="Video length in seconds, up to 600 (default: the model's).")]
Fps = Annotated[Optional[float], typer.Option(help="Frames per second, 1 to 120 (default: the model's).")]
Seed = Annotated[int, typer.Option(help="Random seed, 0 to 4294967295; the same seed on the same device gives the same video.")]
Steps = Annotated[Optional[int], typer.Option(help="Denoising steps, 1 to 1000 (default: the model's).")]
Guidance = Annotated[Optional[float], typer.Option(help="Classifier-free guidance scale, 0 to 100; 1 turns it off.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output file.")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON summary on stdout.")]
Chart = Annotated[
    Optional[Path],
    typer.Option("--chart", metavar="PNG", help="Also draw what is printed as a chart, into this .png file."),
]
KeepIntermediates = Annotated[Optional[Path], typer.Option(
    "--keep-intermediates", metavar="DIR",
    help="Public route only: keep what its stages hand on in DIR (dressed.png, pose.mp4, faces.mp4).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")]


MODEL_HELP = ("Checkpoint folder, Hub repo id, or preset name. "
              "Default: the demo model in weights/ (its student for swap and extend).")


def _runtime_option(*names: str, help: str, **settings: Any) -> Any:
    return typer.Option(*names, help=help, rich_help_panel=RUNTIME_PANEL, **settings)


def _runtime_parameters(model_help: str, context_parallel: bool, decoder: bool) -> list[inspect.Parameter]:
    """The runtime options as Typer reads them: (name, type with its typer.Option, default)."""
    shared = [
        ("model", Annotated[Optional[str], _runtime_option("--model", "-m", help=model_help)], None),
        ("revision", Annotated[Optional[str], _runtime_option("--revision", help="Hub branch, tag or commit to pin.")],
         None),
        ("device", Annotated[str, _runtime_option(
            "--device", metavar="<auto|cpu|cuda|cuda:N>", help="Where to run.")], "auto"),
        ("dtype", Annotated[Literal["auto", "bf16", "fp16", "fp32"], _runtime_option(
            "--dtype", help="auto: bf16 on CUDA, fp32 on CPU.")], "auto"),
        ("attention", Annotated[Literal["auto", "sdpa", "cudnn", "flash", "xformers"], _runtime_option(
            "--attention", help="auto: the fastest installed on CUDA; flash is FlashAttention-3 where installed.")],
         "auto"),
        ("offload", Annotated[Literal[OFFLOAD_CHOICES], _runtime_option(
            "--offload", help="Keep the weights in CPU memory and move them to the GPU as they run (less GPU "
            "memory, slower); group overlaps the moves with compute.")], "none"),
        ("threads", Annotated[Optional[int], _runtime_option(
            "--threads", min=1, metavar="<int>", help="CPU threads for torch's operations (default: torch's, one per core; on a "
            "busy machine fewer can be much faster).")], None),
        ("fp8", Annotated[bool, _runtime_option(
            "--fp8", help="Float8 matmuls in the transformer (torchao, row-wise dynamic scaling): faster, on GPUs "
            "with float8 tensor cores (H100, H200, L4, RTX 4090); needs pip install 'tryon[fp8]'.")], False),
        ("fp8_weights", Annotated[bool, _runtime_option(
            "--fp8-weights", help="Store the transformer's and text encoder's weights in float8: half the memory "
            "of bf16, computed in --dtype (any device; a little slower).")], False),
        ("vae_bf16", Annotated[bool, _runtime_option(
            "--vae-bf16", help="Decode with the full VAE in bf16: faster on GPUs, within a step or two of float32 "
            "per pixel (docs/stream-speed.md).")], False),
        ("compile_", Annotated[bool, _runtime_option(
            "--compile", help="torch.compile the transformer's blocks (the first call is slow).")], False),
        ("fuse_qkv", Annotated[bool, _runtime_option(
            "--fuse-qkv", help="One matmul for attention queries, keys and values.")], False),
    ]
    if context_parallel:
        shared.append(("context_parallel", Annotated[bool, _runtime_option(
            "--context-parallel", help="Split the render's token sequence across the processes of a torchrun "
            "launch (Ulysses): torchrun --nproc-per-node N -m tryon_cli dress ... --context-parallel")], False))
    if decoder:
        shared.append(("decoder", Annotated[str, _runtime_option(
            "--decoder", help="The stream's decoder: auto (the model's tiny decoder when it ships one, else full), "
            "full (the VAE's), tiny (the model's), or TAEHV weights (FILE.safetensors|.pth, or owner/repo/FILE on "
            "the Hub).")], "auto"))
    return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
            for name, annotation, default in shared]


def build_run_options(model: str | None, revision: str | None, device: str, dtype: str, attention: str,
                      offload: str, threads: int | None, fp8: bool, compile_: bool, fuse_qkv: bool,
                      context_parallel: bool = False, fp8_weights: bool = False,
                      vae_bf16: bool = False, decoder: str = "auto") -> RunOptions:
    """The one place the runtime options become a `RunOptions`."""
    acceleration = Acceleration(offload=offload, fp8=fp8, fp8_weights=fp8_weights, compile=compile_,
                                fuse_qkv=fuse_qkv, vae_bf16=vae_bf16, context_parallel=context_parallel,
                                decoder=decoder)
    return RunOptions(model=model, revision=revision, device=device, dtype=dtype, attention=attention,
                      threads=threads, acceleration=acceleration)


def run_options(model_help: str = MODEL_HELP, context_parallel: bool = False,
                decoder: bool = False) -> Callable[[Callable], Callable]:
    """Give a Typer command the runtime options in place of its `run: RunOptions` parameter,
    handed to it as one `RunOptions`."""
    return lambda command: _splice(command, "run", _runtime_parameters(model_help, context_parallel, decoder),
                                   build_run_options)


def parameters_of(template: Callable, into: str) -> Callable[[Callable], Callable]:
    """Give a Typer command `template`'s parameters (options several commands share, declared
    once in a signature that is never called) in place of its parameter `into`, handed to it as
    one dict of their values."""
    added = list(inspect.signature(template, eval_str=True).parameters.values())
    return lambda command: _splice(command, into, added, dict)


def _splice(command: Callable, name: str, added: list[inspect.Parameter], build: Callable[..., Any]) -> Callable:
    """`command` with the parameters `added` in place of its parameter `name`, which receives
    `build(**their values)`.

    Typer builds a command from its signature, and an option's default must sit in the
    signature; this writes shared options into it once, for every command that has them.
    """
    signature = inspect.signature(command, eval_str=True)
    parameters = []
    for parameter in signature.parameters.values():
        replaced = added if parameter.name == name else [parameter]
        parameters += [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in replaced]

    @functools.wraps(command)
    def spliced(**values: Any) -> Any:
        shared = {p.name: values.pop(p.name, p.default) for p in added}
        return command(**values, **{name: build(**shared)})

    spliced.__signature__ = signature.replace(parameters=parameters)
    spliced.__annotations__ = {p.name: p.annotation for p in parameters}
    return spliced


RayAddress = Annotated[
    Optional[str],
    typer.Option("--ray", metavar="ADDRESS", help="Run the work on Ray: auto (the running cluster), local (a new one "
                 "on this machine) or a cluster address. OUT must be storage every node sees. "
                 "Needs Ray: pip install 'tryon\\[ray]'."),
]
Workers = Annotated[
    Optional[int],
    typer.Option("--workers", min=1, help="With --ray: at most this many workers (default: one per GPU, or per CPU "
                 "without GPUs), each loading the models once."),
]
