"""FashionChameleon's Table 3 in miniature: naive DMD vs GR-DMD (τ 0.2, 0.3, 0.5) at the same budget.

    python examples/compare_grdmd.py --teacher weights/demo --tf 300 --dmd 150 --count 6 --work /tmp/grdmd
    python examples/compare_grdmd.py --teacher weights/demo --tf 300 --dmd 400 --dmd-lr 5e-5 --work /tmp/grdmd-long

All variants share one teacher-forcing phase (the built-in `student` recipe, `--tf` steps from
`--teacher`), then each runs `--dmd` DMD steps of that recipe from the same checkpoint, with
`reweight` off (naive DMD) or on at its τ. Each student then streams held-out samples
(dataset seed 8, never trained on) to 4x the clip length it was trained on (2 s → 8 s at
8 fps), and per second of video we report: motion amplitude (mean absolute change between
neighbouring frames, as `tryon eval`'s motion_magnitude), smoothness (`tryon eval`'s) and PSNR
against the ground truth.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
from prove_it_learns import garments_of, samples, tryon
from prove_streaming import CLIP_FRAMES, FPS, LONG_FRAMES, SIZE, render

from engine.api import load_student_config
from engine.media import read_video
from engine.metrics import motion_magnitude, psnr_per_frame, smoothness
from engine.train.student import train_student

VARIANTS = {"naive-dmd": dict(reweight=False), "gr-dmd-0.2": dict(tau=0.2), "gr-dmd-0.3": dict(tau=0.3),
            "gr-dmd-0.5": dict(tau=0.5)}


class TeacherForcingDone(Exception):
    """Raised by the progress callback once the shared teacher-forcing checkpoint is written."""


def recipe(tf_steps: int, dmd_steps: int, dmd_lr: float | None = None, **changes: object):
    base = load_student_config("student")
    tf, dmd = base.stages
    stages = (dataclasses.replace(tf, steps=tf_steps),
              dataclasses.replace(dmd, steps=dmd_steps, lr=dmd.lr if dmd_lr is None else dmd_lr))
    return dataclasses.replace(base, stages=stages, checkpoint_every=tf_steps, **changes)


def shared_teacher_forcing(teacher: str, folder: Path, config) -> None:
    """Train the teacher-forcing phase once; its checkpoint (at the phase's last step) starts every variant."""
    if (folder / "training_state/state.json").is_file():
        return
    tf_steps = config.stages[0].steps

    def stop_after_tf(stage: str, done: int, total: int) -> None:
        if done == tf_steps + 1:
            raise TeacherForcingDone

    try:
        train_student(teacher, "synthetic", folder, config, progress=stop_after_tf)
    except TeacherForcingDone:
        pass


def per_second(video: np.ndarray, target: np.ndarray) -> list[tuple[float, float, float]]:
    psnrs = psnr_per_frame(video, target[: len(video)])
    rows = []
    for second in range(len(video) // FPS):
        window = slice(second * FPS, (second + 1) * FPS + 1)  # one frame of overlap: FPS steps per second
        rows.append((motion_magnitude(video[window]), smoothness(video[window]), float(psnrs[window].mean())))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="weights/demo")
    parser.add_argument("--tf", type=int, default=300, help="teacher-forcing steps (shared)")
    parser.add_argument("--dmd", type=int, default=150, help="DMD steps per variant")
    parser.add_argument("--dmd-lr", type=float, default=None, help="the student's DMD learning rate "
                        "(default: the recipe's)")
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--work", type=Path, default=Path("/tmp/grdmd"))
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    data = work / "heldout-long"
    if not data.exists():
        tryon("data", "synth", data, "--count", args.count, "--seed", 8, "--size", SIZE, "--frames", LONG_FRAMES,
              "--fps", FPS, "-q")
    shared = work / "teacher-forcing"
    shared_teacher_forcing(str(Path(args.teacher).resolve()), shared, recipe(args.tf, args.dmd))

    results = {}
    for name in args.variants.split(","):
        model = work / name
        if not (model / "tryon.json").is_file() or json.loads((model / "tryon.json").read_text()
                                                               )["training"]["steps"] < args.tf + args.dmd:
            shutil.rmtree(model, ignore_errors=True)
            shutil.copytree(shared, model)
            train_student(str(Path(args.teacher).resolve()), "synthetic", model,
                          recipe(args.tf, args.dmd, args.dmd_lr, **VARIANTS[name]), resume=True)
        rows = []
        for sample in samples(data):
            out = work / f"long-{name}" / f"{sample.name}.mp4"
            out.parent.mkdir(exist_ok=True)
            render("swap", str(model), sample, garments_of(sample), out, LONG_FRAMES)
            rows.append(per_second(read_video(out), read_video(sample / "target.mp4")))
        curve = np.mean(np.array(rows), axis=0)  # (seconds, 3)
        results[name] = [{"second": s, "amplitude": float(a), "smoothness": float(m), "psnr": float(p)}
                         for s, (a, m, p) in enumerate(curve)]
        print(name, json.dumps(results[name]), flush=True)
    (work / "results.json").write_text(json.dumps(results, indent=1))
    trained = (CLIP_FRAMES - 1) // FPS
    for key, label in (("amplitude", "motion amplitude"), ("smoothness", "smoothness"), ("psnr", "PSNR (dB)")):
        seconds = range(len(next(iter(results.values()))))
        print(f"\n{label} per second (trained on {trained} s)\n| variant | "
              + " | ".join(f"{s}-{s + 1} s" for s in seconds) + " |\n|---|" + "---|" * len(seconds))
        for name, curve in results.items():
            print(f"| {name} | " + " | ".join(f"{row[key]:.3f}" for row in curve) + " |")


if __name__ == "__main__":
    main()
