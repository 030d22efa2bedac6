"""A catalog-scale run of `tryon batch`: planted bad rows, a kill and resume, two shards.

    python examples/catalog_run.py --model weights/demo --jobs 200 --bad 10 --work /tmp/catalog

Prints one JSON object: wall times, outputs and failures of each phase, and the per-job
cost of `tryon batch` against the same jobs run as separate `tryon dress` calls.
"""

from __future__ import annotations

import argparse
import csv
import json
import signal
import subprocess
import time
from pathlib import Path

BAD_ROWS = [  # (user, garments, seconds, output): each is refused with its own reason
    ("missing.png", "", "", ""),
    ("{user}", "{garment}:hat", "", ""),
    ("{user}", "{caption}:top", "", ""),  # a text file named as a garment
    ("{user}", "", "-1", ""),
    ("{user}", "", "", "../escape.mp4"),
    ("{user}", ";".join(["{garment}"] * 5), "", ""),
    ("{user}", "{garment}:dress;{garment}:top", "", ""),
    ("{user}", "", "abc", ""),
    ("{caption}", "", "", ""),  # a text file as the user photo
    ("{user}", "", "", "/tmp/absolute.mp4"),
]


def tryon(*args: object, timeout: float | None = None) -> tuple[int, float, str]:
    started = time.perf_counter()
    process = subprocess.Popen(["tryon", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)  # Ctrl-C, as a user would
        out, _ = process.communicate()
    return process.returncode, time.perf_counter() - started, out


def write_manifest(data: Path, jobs: int, bad: int, path: Path) -> list[dict]:
    samples = sorted(p for p in data.iterdir() if (p / "meta.json").is_file())
    rows, every = [], max(1, jobs // max(bad, 1))
    for i in range(jobs):
        sample = samples[i % len(samples)]
        meta = json.loads((sample / "meta.json").read_text())
        garments = ";".join(f"{sample / name}:{category}" for category, name in sorted(meta["garments"].items()))
        good = {"user": sample / "user.png", "garments": garments, "motion": sample / "motion.mp4",
                "prompt": (sample / "caption.txt").read_text().strip(), "seconds": "", "seed": i,
                "output": f"job_{i:04d}.mp4"}
        if bad and i % every == every // 2 and i // every < bad:
            user, garments, seconds, output = BAD_ROWS[(i // every) % len(BAD_ROWS)]
            fill = {"user": sample / "user.png", "garment": next(iter(sorted(sample.glob("garment_*.png")))),
                    "caption": sample / "caption.txt"}
            good.update(user=user.format(**fill), garments=garments.format(**fill), seconds=seconds,
                        output=output or good["output"])
        rows.append(good)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["user", "garments", "motion", "prompt", "seconds", "seed", "output"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def report(folder: Path, name: str = "report.jsonl") -> list[dict]:
    return [json.loads(line) for line in (folder / name).read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="weights/demo")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--bad", type=int, default=10)
    parser.add_argument("--separate", type=int, default=10, help="jobs to time as separate tryon dress calls")
    parser.add_argument("--work", type=Path, default=Path("/tmp/catalog"))
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    tryon("data", "synth", data, "--count", min(args.jobs, 50), "--seed", 11, "--size", "96x160",
          "--frames", 17, "--fps", 8, "-q")
    manifest = work / "catalog.csv"
    rows = write_manifest(data, args.jobs, args.bad, manifest)
    options = ("--model", args.model, "--json", "-q")
    result: dict = {"jobs": args.jobs, "planted_bad_rows": args.bad}

    # 1. The whole catalog in one run.
    code, seconds, out = tryon("batch", manifest, "-o", work / "full", *options)
    outputs = sorted((work / "full").glob("*.mp4"))
    failed = [r for r in report(work / "full") if r["status"] == "failed"]
    result["full"] = {"exit_code": code, "seconds": round(seconds, 1), "outputs": len(outputs),
                      "failed_rows": [r["row"] for r in failed], "summary": json.loads(out) if out else None}

    # 2. Killed halfway (Ctrl-C), then run again.
    _, first_seconds, _ = tryon("batch", manifest, "-o", work / "resumed", *options, timeout=seconds / 2)
    before = {p.name: p.stat().st_mtime_ns for p in (work / "resumed").glob("*.mp4")}
    code, again_seconds, out = tryon("batch", manifest, "-o", work / "resumed", *options)
    untouched = sum(p.stat().st_mtime_ns == before[p.name] for p in (work / "resumed").glob("*.mp4")
                    if p.name in before)
    statuses = [r["status"] for r in report(work / "resumed")]
    result["killed_and_resumed"] = {
        "finished_before_kill": len(before), "untouched_on_rerun": untouched,
        "rerun_rendered": statuses[-args.jobs:].count("ok"), "rerun_skipped": statuses[-args.jobs:].count("skipped"),
        "outputs": len(list((work / "resumed").glob("*.mp4"))), "exit_code": code,
        "seconds": [round(first_seconds, 1), round(again_seconds, 1)],
    }

    # 3. Two shards in two processes at once.
    started = time.perf_counter()
    shards = [subprocess.Popen(["tryon", "batch", str(manifest), "-o", str(work / "sharded"), "--shard", f"{k}/2",
                                *map(str, options)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
              for k in (1, 2)]
    for shard in shards:
        shard.wait()
    rendered = [r["row"] for k in (1, 2) for r in report(work / "sharded", f"report.{k}of2.jsonl")
                if r["status"] == "ok"]
    result["two_shards"] = {"seconds": round(time.perf_counter() - started, 1), "rendered": len(rendered),
                            "rendered_twice": len(rendered) - len(set(rendered)),
                            "outputs": len(list((work / "sharded").glob("*.mp4")))}

    # 4. The same jobs as separate `tryon dress` calls, against the batch's per-job time.
    good = [r for r in rows if Path(r["user"]).name == "user.png" and r["seconds"] == ""][: args.separate]
    started = time.perf_counter()
    for i, row in enumerate(good):
        garments = [g for g in row["garments"].split(";") if g]
        tryon("dress", row["user"], *garments, "--motion", row["motion"], "--prompt", row["prompt"],
              "--seed", row["seed"], "--model", args.model, "-o", work / f"separate_{i}.mp4", "-q", "--overwrite")
    separate = (time.perf_counter() - started) / len(good)
    batch_per_job = result["full"]["seconds"] / max(1, result["full"]["outputs"])
    result["per_job_seconds"] = {"batch": round(batch_per_job, 2), "separate_dress_calls": round(separate, 2),
                                 "overhead_saved_per_job": round(separate - batch_per_job, 2)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
