"""The speed issue's GPU measurements as one prepared run, for a short lease on a GPU machine.

    python examples/bench_gpu_session.py --out OUT --budget 500            # everything that fits
    python examples/bench_gpu_session.py --out OUT --only 4,5,6            # some items, by index
    python examples/bench_gpu_session.py --out /tmp/dry --dry --preset tiny  # rehearse on a CPU

Each item is a `tryon bench` run (`run_bench`, random weights of the 5 B preset built on the
GPU), all in this one process: the baseline and each mode alone, like with like. A result is
appended to OUT/results.jsonl as soon as it is measured, so a run cut short keeps what it
finished; an item whose estimate no longer fits the budget is skipped and said so.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import traceback
from pathlib import Path

import torch

from engine.api.bench import BenchRequest
from engine.api.bench.benchmark import run_bench
from engine.modes import Acceleration, RunOptions


def items(dry: bool) -> list[tuple[str, float, dict]]:
    """(name, estimated seconds on an H200, request fields) in priority order."""
    def size(width: int, height: int) -> tuple[int, int]:
        return (256, 160) if dry else (width, height)

    def seconds(value: float) -> float:
        return 1.0 if dry else value

    def modes(**chosen) -> RunOptions:
        return RunOptions(acceleration=Acceleration(**chosen))

    stream = dict(mode="stream", warmup=1)
    short = dict(stream, size=size(1280, 704), seconds=seconds(4))
    return [
        ("stream 1280x704 10s", 90, dict(stream, size=size(1280, 704), seconds=seconds(10))),
        ("stream 1152x720 10s", 85, dict(stream, size=size(1152, 720), seconds=seconds(10))),
        ("dress 1152x720 5s, 2 steps (teacher, guidance 5)", 50,
         dict(mode="dress", warmup=1, size=size(1152, 720), seconds=seconds(5), steps=2)),
        ("base: stream 1280x704 4s", 40, short),
        ("fuse-qkv: stream 1280x704 4s", 40, dict(short, run=modes(fuse_qkv=True))),
        ("fp8: stream 1280x704 4s", 45, dict(short, run=modes(fp8=True))),
        ("compile: stream 1280x704 4s", 150, dict(short, run=modes(compile=True))),
        ("offload-model: stream 1280x704 4s", 60, dict(short, run=modes(offload="model"))),
        ("offload-group: stream 1280x704 4s", 90, dict(short, run=modes(offload="group"))),
        ("24 GB: stream 1280x704 4s, fp8 + offload group", 120, dict(short, run=modes(fp8=True, offload="group"))),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=500, help="seconds for the whole run")
    parser.add_argument("--only", default="", help="comma-separated item indices")
    parser.add_argument("--preset", default="wan2.2-ti2v-5b")
    parser.add_argument("--dry", action="store_true", help="toy sizes and 1-s videos: a CPU rehearsal")
    args = parser.parse_args()
    start = time.monotonic()
    only = {int(i) for i in args.only.split(",") if i}

    def log(message: str) -> None:
        print(f"[{time.monotonic() - start:6.1f}s] {message}", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    log(f"torch {torch.__version__}, " + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"))
    with open(args.out / "results.jsonl", "a") as results:
        for index, (name, estimate, fields) in enumerate(items(args.dry)):
            left = args.budget - (time.monotonic() - start)
            if (only and index not in only) or left < estimate:
                if not only or index in only:
                    log(f"skipped {index} {name}: {left:.0f} s left, it needs about {estimate:.0f}")
                continue
            log(f"{index} {name}")
            began = time.monotonic()
            try:
                result = run_bench(BenchRequest(preset=args.preset, random_weights=True, **fields), notice=log)
                row = {"item": name, "wall_s": time.monotonic() - began, "result": result.to_dict()}
                log(f"  fps {result.fps:.2f}, first frame {result.first_frame_s:.2f} s, peak "
                    f"{result.peak_memory_mb:,.0f} MiB, " + ", ".join(f"{k} {v:.2f} s" for k, v in result.stages.items()))
            except Exception as error:  # one failed item must not lose the others
                row = {"item": name, "wall_s": time.monotonic() - began, "error": repr(error),
                       "traceback": traceback.format_exc()[-3000:]}
                log(f"  failed: {error!r}")
            results.write(json.dumps(row, default=str) + "\n")
            results.flush()
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    log("end")


if __name__ == "__main__":
    main()
