"""Options shared by the commands, declared once.

The runtime options (which model, device, dtype, attention backend, speed and memory modes)
are added to a command by `run_options` and reach it as one `RunOptions`; `--help` shows
them in their own panel.
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
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")]


MODEL_HELP = ("Checkpoint folder, Hub repo id, or preset name. "
              "Default: the demo model in weights/ (its student for swap and extend).")


def _runtime_option(*names: str, help: str, **settings: Any) -> Any:
    return typer.Option(*names, help=help, rich_help_panel=RUNTIME_PANEL, **settings)


def _runtime_parameters(model_help: str, context_parallel: bool) -> list[inspect.Parameter]:
    """The runtime options as Typer reads them: (name, type with its typer.Option, default)."""
    shared = [
        ("model", Annotated[Optional[str], _runtime_option("--model", "-m", help=model_help)], None),
        ("revision", Annotated[Optional[str], _runtime_option("--revision", help="Hub branch, tag or commit to pin.")],
         None),
        ("device", Annotated[str, _runtime_option(
            "--device", metavar="<auto|cpu|cuda|cuda:N>", help="Where to run.")], "auto"),
        ("dtype", Annotated[Literal["auto", "bf16", "fp16", "fp32"], _runtime_option(
            "--dtype", help="auto: bf16 on CUDA, fp32 on CPU.")], "auto"),
        ("attention", Annotated[Literal["auto", "sdpa", "flash", "xformers"], _runtime_option(
            "--attention", help="auto: the fastest installed on CUDA.")], "auto"),
        ("offload", Annotated[Literal[OFFLOAD_CHOICES], _runtime_option(
            "--offload", help="Keep the weights in CPU memory and move them to the GPU as they run (less GPU "
            "memory, slower); group overlaps the moves with compute.")], "none"),
        ("threads", Annotated[Optional[int], _runtime_option(
            "--threads", min=1, metavar="<int>", help="CPU threads for torch's operations (default: torch's, one per core; on a "
            "busy machine fewer can be much faster).")], None),
        ("fp8", Annotated[bool, _runtime_option(
            "--fp8", help="Store the transformer's and text encoder's weights in float8: half the memory of bf16, "
            "computed in --dtype.")], False),
        ("compile_", Annotated[bool, _runtime_option(
            "--compile", help="torch.compile the transformer's blocks (the first call is slow).")], False),
        ("fuse_qkv", Annotated[bool, _runtime_option(
            "--fuse-qkv", help="One matmul for attention queries, keys and values.")], False),
    ]
    if context_parallel:
        shared.append(("context_parallel", Annotated[bool, _runtime_option(
            "--context-parallel", help="Split the render's token sequence across the processes of a torchrun "
            "launch (Ulysses): torchrun --nproc-per-node N -m tryon_cli dress ... --context-parallel")], False))
    return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
            for name, annotation, default in shared]


def build_run_options(model: str | None, revision: str | None, device: str, dtype: str, attention: str,
                      offload: str, threads: int | None, fp8: bool, compile_: bool, fuse_qkv: bool,
                      context_parallel: bool = False) -> RunOptions:
    """The one place the runtime options become a `RunOptions`."""
    acceleration = Acceleration(offload=offload, fp8=fp8, compile=compile_, fuse_qkv=fuse_qkv,
                                context_parallel=context_parallel)
    return RunOptions(model=model, revision=revision, device=device, dtype=dtype, attention=attention,
                      threads=threads, acceleration=acceleration)


def run_options(model_help: str = MODEL_HELP, context_parallel: bool = False) -> Callable[[Callable], Callable]:
    """Give a Typer command the runtime options in place of its `run: RunOptions` parameter.

    Typer builds a command from its signature, and an option's default must sit in the
    signature; this writes the runtime options into it once, for every command, and hands the
    command one `RunOptions` built from them.
    """

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command, eval_str=True)
        added = _runtime_parameters(model_help, context_parallel)
        names = [parameter.name for parameter in added]
        parameters = []
        for parameter in signature.parameters.values():
            if parameter.name == "run":
                parameters += added
            else:
                parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY))

        @functools.wraps(command)
        def with_run_options(**values: Any) -> Any:
            shared = {name: values.pop(name) for name in names}
            return command(**values, run=build_run_options(**shared))

        with_run_options.__signature__ = signature.replace(parameters=parameters)
        with_run_options.__annotations__ = {p.name: p.annotation for p in parameters}
        return with_run_options

    return decorate

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
