"""Generation speed of synthetic samples: `python -m engine.synth.speed [--count N] [--size W H]`.

Measures in-memory `make_sample` (no disk, no video encoding) on one thread and prints
samples per second. Pin to one core for the single-core figure, e.g.
`taskset -c 0 python -m engine.synth.speed`.
"""

from __future__ import annotations

import argparse
import time

from engine.synth.sample import make_sample


def measure(
    count: int = 200, size: tuple[int, int] = (64, 112), num_frames: int = 17, batches: int = 10
) -> dict[str, float]:
    """Samples per second over seeds 0..count-1, split into `batches` equal batches.

    Returns the overall wall-clock rate, the overall CPU-time rate, and the CPU-time rate
    of the fastest batch (the least disturbed by other processes on a shared machine).
    """
    make_sample(count, size, num_frames)  # warm-up: imports, caches
    per = max(count // batches, 1)
    wall0, cpu0, best = time.perf_counter(), time.process_time(), 0.0
    for b in range(0, count, per):
        t = time.process_time()
        for seed in range(b, min(b + per, count)):
            make_sample(seed, size, num_frames)
        best = max(best, (min(b + per, count) - b) / max(time.process_time() - t, 1e-9))
    return {
        "wall": count / (time.perf_counter() - wall0),
        "cpu": count / (time.process_time() - cpu0),
        "best_batch_cpu": best,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", type=int, nargs=2, default=(64, 112), metavar=("W", "H"))
    parser.add_argument("--frames", type=int, default=17)
    args = parser.parse_args(argv)
    rates = measure(args.count, tuple(args.size), args.frames)
    w, h = args.size
    print(
        f"make_sample, {w}x{h}, {args.frames} frames, {args.count} samples, one thread: "
        f"{rates['wall']:.1f} samples/s wall clock, {rates['cpu']:.1f} per CPU second, "
        f"{rates['best_batch_cpu']:.1f} per CPU second in the fastest batch"
    )


if __name__ == "__main__":
    main()
