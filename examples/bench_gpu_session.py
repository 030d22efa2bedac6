"""Issue 27's GPU table in one prepared run of at most 8 minutes, printed in one go at the end.

    python examples/bench_gpu_session.py --out OUT              # on the GPU: the 5 B student, random weights
    python examples/bench_gpu_session.py --out /tmp/s --smoke   # rehearsal on a CPU: tiny preset, toy size

One model is built once (random weights of the preset, on the GPU) and the speed changes are
applied to it one after the other, a `tryon bench --mode stream` run after each: so each row
is the run before it plus one change, and the last row is all of them together:

    baseline (sdpa, fp32 VAE) → cuDNN attention → full VAE decode in bf16 → tiny decoder
    (`--decoder tiny`, where this build has it) → FP8 matmuls (torchao) → torch.compile (static)

Every row is timed end to end as the user gets it (`--sync end`: the motion video read from
an MP4 and resized, the output written to an MP4 on the writer thread, nothing synchronised),
at 1280x704 and 1152x720, with one garment switch: FPS, time to first frame and switch latency.
The first and last rows are also timed per stage at 1280x704 (where the time goes).
Each result is appended to OUT/results.jsonl as soon as it is measured; a step that fails or
no longer fits the budget is reported and skipped, the others go on.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch

from engine.api.bench import BenchRequest
from engine.api.bench.benchmark import bench_model
from engine.api.bench.runs import BenchModel, load_bench_model
from engine.model.attention import diffusers_backend, installed_backends
from engine.modes import Acceleration, RunOptions
from engine.pipelines.runtime import Runtime, bf16_decoder, compile_static, fp8_matmuls, resolve_runtime

SIZES = ((1280, 704), (1152, 720))
SMOKE_SIZES = ((64, 64), (96, 64))


@dataclass
class State:
    model: BenchModel
    runtime: Runtime


@dataclass
class Step:
    name: str
    seconds: float  # estimated, on an H100, for its runs at both sizes
    apply: Callable[[State], str | None]  # changes the model; a reason when it cannot


def _acceleration(state: State, **changes) -> None:
    state.runtime = replace(state.runtime, acceleration=replace(state.runtime.acceleration, **changes))


def cudnn(state: State) -> str | None:
    if state.runtime.device.type != "cuda" or "cudnn" not in installed_backends():
        return "cuDNN attention needs CUDA"
    config = state.model.pipeline.transformer.config
    try:  # a stream's shapes (more keys than queries, no mask), small: a refusal must not cost the later steps
        query = torch.randn(1, config.num_attention_heads, 64, config.attention_head_dim, device="cuda",
                            dtype=state.runtime.dtype)
        keys = torch.randn(1, config.num_attention_heads, 320, config.attention_head_dim, device="cuda",
                           dtype=state.runtime.dtype)
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.CUDNN_ATTENTION):
            torch.nn.functional.scaled_dot_product_attention(query, keys, keys)
    except RuntimeError as error:
        return f"cuDNN attention refused these shapes ({str(error).splitlines()[0][:80]})"
    state.model.pipeline.transformer.set_attention_backend(diffusers_backend("cudnn"))
    state.runtime = replace(state.runtime, attention="cudnn")
    return None


def vae_bf16(state: State) -> str | None:
    bf16_decoder(state.model.pipeline.vae)
    _acceleration(state, vae_bf16=True)
    return None


def tiny_decoder(state: State) -> str | None:
    """H-decoder's `--decoder tiny` (a random tiny decoder of the published layout), where this build has it."""
    from engine.api.bench import runs

    make = getattr(runs, "_random_tiny_decoder", None)
    if make is None or "decoder" not in {field.name for field in fields(Acceleration)}:
        return "this build has no tiny decoder (--decoder tiny)"
    _acceleration(state, decoder="tiny")
    tiny, decoder = make(state.model.pipeline, state.runtime)
    state.model = replace(state.model, tiny_decoder=tiny, decoder=decoder)
    return None


def fp8(state: State) -> str | None:
    if state.runtime.device.type != "cuda" or torch.cuda.get_device_capability() < (8, 9):
        return "float8 matmuls need CUDA compute capability 8.9+"
    try:
        fp8_matmuls(state.model.pipeline.transformer)
    except ImportError:
        return "torchao is not installed (pip install 'tryon[fp8]')"
    _acceleration(state, fp8=True)
    return None


def compiled(state: State) -> str | None:
    on_cpu = state.runtime.device.type == "cpu"  # the rehearsal checks the wiring, not inductor's C++ build
    compile_static(state.model.pipeline.transformer, **({"backend": "eager"} if on_cpu else {}))
    _acceleration(state, compile=True)
    return None


STEPS = [
    Step("baseline (sdpa, fp32 VAE)", 70, lambda state: None),
    Step("+ cuDNN attention", 55, cudnn),
    Step("+ VAE decode in bf16", 45, vae_bf16),
    Step("+ tiny decoder", 30, tiny_decoder),
    Step("+ FP8 matmuls", 30, fp8),
    Step("+ compile (static) = all together", 150, compiled),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=470, help="seconds for the whole run (at most 8 minutes)")
    parser.add_argument("--preset", default="wan2.2-ti2v-5b")
    parser.add_argument("--seconds", type=float, default=3.0, help="video length of each run (one switch half way)")
    parser.add_argument("--smoke", action="store_true", help="the tiny preset at toy sizes on the CPU: a rehearsal")
    args = parser.parse_args()
    began = time.monotonic()
    preset, sizes, seconds = ("tiny", SMOKE_SIZES, 0.5) if args.smoke else (args.preset, SIZES, args.seconds)
    device = "cpu" if args.smoke else "auto"

    def log(message: str) -> None:
        print(f"[{time.monotonic() - began:6.1f}s] {message}", flush=True)

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU (CPU)"
    log(f"torch {torch.__version__}, {gpu}")
    args.out.mkdir(parents=True, exist_ok=True)
    run = RunOptions(device=device, dtype="auto")
    base = BenchRequest(preset=preset, random_weights=True, mode="stream", seconds=seconds,
                        warmup=0 if args.smoke else 1, run=run,
                        steps=1 if args.smoke else None, sync="end")
    runtime = resolve_runtime(device, "auto", "sdpa")
    built = time.monotonic()
    state = State(load_bench_model(replace(base, size=sizes[0]), runtime, log), runtime)
    load_s = time.monotonic() - built
    log(f"built {state.model.name} in {load_s:.1f} s")
    rows: list[dict] = []
    with open(args.out / "results.jsonl", "a") as results:
        def bench(step: str, size: tuple[int, int], sync: str) -> None:
            request = replace(base, size=size, sync=sync)
            started = time.monotonic()
            try:
                result = bench_model(request, state.model, state.runtime, load_s, notice=log).to_dict()
                row = {"step": step, "size": size, "sync": sync, "result": result}
            except Exception as error:  # one failed run must not lose the others
                row = {"step": step, "size": size, "sync": sync, "error": repr(error),
                       "traceback": traceback.format_exc()[-3000:]}
                log(f"  failed: {error!r}")
            row["wall_s"] = time.monotonic() - started
            rows.append(row)
            results.write(json.dumps(row, default=str) + "\n")
            results.flush()

        for index, step in enumerate(STEPS):
            left = args.budget - (time.monotonic() - began)
            if not args.smoke and left < step.seconds:
                log(f"skipped {step.name} and after: {left:.0f} s left, it needs about {step.seconds:.0f}")
                break
            reason = step.apply(state)
            if reason is not None:
                log(f"skipped {step.name}: {reason}")
                rows.append({"step": step.name, "skipped": reason})
                continue
            log(step.name)
            for size in sizes:
                bench(step.name, size, "end")
            if index in (0, len(STEPS) - 1):
                bench(step.name, sizes[0], "stage")
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    print(table(rows, gpu, preset, seconds), flush=True)
    log("end")


def table(rows: list[dict], gpu: str, preset: str, seconds: float) -> str:
    """The issue's table (markdown): FPS, first frame and switch latency end to end, stage shares."""
    lines = [f"\n{gpu}, {preset} (random weights), {seconds:g} s streams with one switch, end to end "
             "(motion read from an MP4, output written to an MP4)\n",
             "| step | size | FPS | first frame (s) | switch latency (s) | peak GiB |",
             "|---|---|---:|---:|---:|---:|"]
    for row in rows:
        if "skipped" in row:
            lines.append(f"| {row['step']} | - | skipped: {row['skipped']} | | | |")
        elif "error" in row:
            lines.append(f"| {row['step']} | {row['size'][0]}x{row['size'][1]} | failed: {row['error'][:80]} | | | |")
        elif row["sync"] == "end":
            result = row["result"]
            latency = (result["stream"] or {}).get("switch_latency_s")
            lines.append(f"| {row['step']} | {result['size'][0]}x{result['size'][1]} | {result['fps']:.2f} | "
                         f"{result['first_frame_s']:.3f} | {'-' if latency is None else f'{latency:.3f}'} | "
                         f"{result['peak_memory_mb'] / 1024:.1f} |")
    staged = [row for row in rows if row.get("sync") == "stage" and "result" in row]
    if staged:
        lines += ["", "Per stage (synchronised around each), seconds per run:", "",
                  "| step | size | FPS | text | VAE encode | transformer | decode | writing | other |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for row in staged:
            result, stages = row["result"], row["result"]["stages"]
            lines.append(f"| {row['step']} | {result['size'][0]}x{result['size'][1]} | {result['fps']:.2f} | "
                         + " | ".join(f"{stages[name]:.2f}" for name in
                                      ("text_encoding", "vae_encode", "transformer", "vae_decode", "writing"))
                         + f" | {result['other_s']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
