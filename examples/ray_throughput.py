"""Jobs per minute of one catalog under the local `tryon batch` and on Ray with 1 and 2 workers.

    python examples/ray_throughput.py --jobs 16 --work /tmp/ray-throughput
    python examples/ray_throughput.py --jobs 16 --work /tmp/ray-throughput -- --model ./ck --size 64x64

Each run renders the same manifest (the example samples, one seed per job) into a fresh
folder with the demo model (or the options after `--`), as a separate `tryon batch`
process; the figures count the whole command, start-up and model loading included
(Ray adds starting a local cluster and loading the model once per worker). Prints one JSON
object: per run, the wall seconds, the batch's own seconds (from `--json`), jobs per minute
over the wall time, the mean seconds of one job (from the report) and the steady rate that
implies once the workers are up (workers × 60 / mean job seconds).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent
RUNS = {"local": [], "ray-1-worker": ["--ray", "local", "--workers", "1"],
        "ray-2-workers": ["--ray", "local", "--workers", "2"]}
WORKERS = {"local": 1, "ray-1-worker": 1, "ray-2-workers": 2}


def write_manifest(jobs: int, path: Path) -> None:
    samples = sorted(p for p in EXAMPLES.glob("sample_*") if (p / "user.png").is_file())
    lines = ["user,garments,motion,prompt,seconds,seed,output"]
    for job in range(jobs):
        sample = samples[job % len(samples)]
        garments = ";".join(f"{p}:{p.stem.removeprefix('garment_')}" for p in sorted(sample.glob("garment_*.png")))
        lines.append(f"{sample / 'user.png'},{garments},{sample / 'motion.mp4'},,,{job},job_{job:03d}.mp4")
    path.write_text("\n".join(lines) + "\n")


def run(name: str, manifest: Path, outdir: Path, extra: list[str]) -> dict:
    shutil.rmtree(outdir, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run(["tryon", "batch", str(manifest), "-o", str(outdir), "--json", *RUNS[name], *extra],
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{name}: exit {done.returncode}: {done.stderr.strip()[-500:]}")
    summary = json.loads(done.stdout)
    report = [json.loads(line) for line in (outdir / "report.jsonl").read_text().splitlines()]
    job_s = sum(line["seconds"] for line in report) / len(report)
    return {"wall_s": round(wall, 1), "batch_s": summary["seconds"], "jobs": summary["succeeded"],
            "jobs_per_minute": round(summary["succeeded"] / wall * 60, 2), "job_s_mean": round(job_s, 2),
            "steady_jobs_per_minute": round(WORKERS[name] * 60 / job_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ray-throughput"))
    parser.add_argument("--runs", default=",".join(RUNS), help="which of " + ", ".join(RUNS))
    parser.add_argument("extra", nargs="*", help="options for every `tryon batch` (after --)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    manifest = args.work / "catalog.csv"
    write_manifest(args.jobs, manifest)
    results = {name: run(name, manifest, args.work / name, args.extra) for name in args.runs.split(",")}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
