"""How long a restarted batch takes to find the jobs an earlier (killed) run finished.

    python examples/bench_resume.py --jobs 64 --done 57 --thousand --work /tmp/resume

Makes the state a batch killed after `--done` of `--jobs` jobs leaves: one job of the tiny
random-weight model is rendered (64x64, 0.25 s, one step) and the batch's other finished jobs
are copies of it, written through the batch itself (so whatever it records, it records).
Then it restarts the batch over all `--jobs` rows in the same process (the model already
loaded, so only finding finished work is timed) and prints:

- `first_new_job_s`: from the restart until the first unfinished job starts rendering;
- `restart_total_s`: the whole restart, the new jobs' rendering included;
- `per_thousand_s` and `per_thousand_cpu_s` (with `--thousand`): finding 1000 finished jobs
  (reading the manifest, planning outputs, the check before any rendering), from 1000
  completed outputs and their report; wall and CPU seconds, as a busy machine stretches the first.

It uses only `read_manifest`, `plan`, `run_batch` and the `dress` that the batch calls, so the
same script timed the code before completion records, from a checkout of it on PYTHONPATH
(where the batch module was `engine.batch` and called `engine.api.dress`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

try:  # the code before completion records, when it is on PYTHONPATH, for the "before" figure
    from engine import batch as eb
    from engine.api import init_model
except ImportError:
    from engine.api import batch as eb
    from engine.api.models import init_model

FAST = {"size": (64, 64), "seconds": 0.25, "fps": 24, "steps": 1}


def job_defaults(model: str):
    """The batch's command-line defaults, in this checkout's form (a request template; formerly `Defaults`)."""
    if hasattr(eb, "job_defaults"):
        from engine.modes import RunOptions

        return eb.job_defaults(run=RunOptions(model=model), **FAST)
    return eb.Defaults(model=model, **FAST)


def manifest(folder: Path, count: int, name: str) -> Path:
    path = folder / name
    path.write_text("user,garments,motion,prompt,seconds,seed,output\n"
                    + "".join(f"user.png,shirt.png:top,,,,{row},out_{row}.mp4\n" for row in range(1, count + 1)))
    return path


def run(path: Path, outdir: Path, defaults):
    return eb.run_batch(eb.plan(eb.read_manifest(path), outdir), outdir, defaults)


def dress_owner():
    """The module whose `dress` the batch calls (this checkout's batch module; formerly engine.api)."""
    return getattr(eb, "api", eb)


def first_render_time(path: Path, outdir: Path, defaults) -> tuple[float, float]:
    """(seconds until the first job renders, seconds for the whole run)."""
    owner, started, first = dress_owner(), time.perf_counter(), []
    real = owner.dress

    def dress(request, **kwargs):
        first.append(first[0] if first else time.perf_counter())
        return real(request, **kwargs)

    owner.dress = dress
    try:
        run(path, outdir, defaults)
    finally:
        owner.dress = real
    total = time.perf_counter() - started
    return (first[0] - started if first else total), total


def copy_jobs(path: Path, outdir: Path, defaults, video: Path) -> None:
    """Run the batch with a renderer that copies `video`: finished jobs, quickly."""
    owner = dress_owner()
    real = owner.dress
    owner.dress = lambda request, **kwargs: shutil.copyfile(video, request.output)
    try:
        run(path, outdir, defaults)
    finally:
        owner.dress = real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=64)
    parser.add_argument("--done", type=int, default=57)
    parser.add_argument("--thousand", action="store_true", help="also time finding 1000 finished jobs")
    parser.add_argument("--work", type=Path, default=Path("/tmp/tryon-bench-resume"))
    args = parser.parse_args()

    shutil.rmtree(args.work, ignore_errors=True)
    folder = args.work / "inputs"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (96, 64, 3), dtype=np.uint8)).save(folder / "user.png")
    Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(folder / "shirt.png")
    model = init_model("tiny", args.work / "tiny")
    defaults = job_defaults(str(model))

    outdir = args.work / "out"
    run(manifest(folder, 1, "one.csv"), outdir, defaults)  # one real render (and the model loaded)
    copy_jobs(manifest(folder, args.done, "done.csv"), outdir, defaults, outdir / "out_1.mp4")
    first_new_job, total = first_render_time(manifest(folder, args.jobs, "all.csv"), outdir, defaults)
    result = {"jobs": args.jobs, "done_before": args.done, "first_new_job_s": round(first_new_job, 3),
              "restart_total_s": round(total, 3)}

    if args.thousand:
        if not hasattr(eb, "check_jobs"):
            raise SystemExit("--thousand needs engine.api.batch.check_jobs (this checkout has none)")
        many = args.work / "many"
        copy_jobs(manifest(folder, 1000, "many.csv"), many, defaults, outdir / "out_1.mp4")
        started, cpu = time.perf_counter(), time.process_time()
        entries = eb.plan(eb.read_manifest(folder / "many.csv"), many)
        checked = eb.check_jobs(entries, defaults, eb.completion_records(many))
        result["per_thousand_s"] = round(time.perf_counter() - started, 3)
        result["per_thousand_cpu_s"] = round(time.process_time() - cpu, 3)
        result["per_thousand_finished"] = sum(getattr(entry, "finished", None) is not None for entry in checked)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
