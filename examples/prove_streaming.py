"""Measure the streaming student against its teacher, over long videos, and across switches.

    python examples/prove_streaming.py --teacher weights/demo --student weights/demo-student --count 12 --work /tmp/stream

On held-out synthetic samples (dataset seeds 7 and 8, never used in training):

1. Student vs teacher, in one run: each sample rendered by `tryon dress` (teacher) and by
   `tryon swap` (student, the same garments from the start), scored by `tryon eval`; speed is
   the mean `seconds_taken` each command reports (model loading included, one process each).
2. Long videos: the student runs to 4x the clip length it was trained on (2 s → 8 s) on
   samples whose ground truth is that long; PSNR, SSIM and garment colour error per second.
3. Switches: garment A from the start, another sample's garment B of the same category at
   half time, with all three operations and with each one turned off; compared with a run
   wearing B throughout. After the switch: garment-region colour error (CIELAB ΔE76) to B.
   Motion continuity: the mean absolute change from the frame before the switch to the frame
   at it, divided by the mean change between neighbouring frames over the whole video
   (1 means the switch is no jump at all; the same ratio of the B-throughout run at the
   same frame is given beside it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from prove_it_learns import garment_colour, garments_of, samples, tryon

from engine.media import read_video
from engine.metrics import delta_e76, psnr_per_frame, rgb_to_lab, ssim_per_frame

SIZE, FPS, CLIP_FRAMES = "96x160", 8, 17
LONG_FRAMES = 4 * (CLIP_FRAMES - 1) + 1  # 4x the training clip's length
COMMON = ("--size", SIZE, "--fps", FPS, "--seed", 0, "-q", "--json", "--overwrite")


def garment_args(garments: list[tuple[str, Path]], at: float | None = None) -> list[str]:
    suffix = "" if at is None else f"@{at:g}"
    return [arg for category, path in garments for arg in ("-g", f"{path}:{category}{suffix}")]


def render(command: str, model: str, sample: Path, garments: list[tuple[str, Path]], output: Path,
           frames: int, *extra: str) -> float:
    """Run `tryon dress` or `tryon swap` on a sample's own user, motion and prompt; seconds taken."""
    if command == "dress":
        inputs = [str(path) + f":{category}" for category, path in garments]
    else:
        inputs = garment_args(garments)
    report = tryon(command, sample / "user.png", *inputs, "--motion", sample / "motion.mp4",
                   "--prompt", (sample / "caption.txt").read_text().strip(), "--model", model,
                   "--seconds", frames / FPS, "-o", output, *COMMON, *extra)
    return json.loads(report)["seconds_taken"]


def region_lab(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    return rgb_to_lab(frames.astype(np.float64)[masks].mean(axis=0))


def garment_error(frames: np.ndarray, masks: np.ndarray, garment: Path) -> float:
    return float(delta_e76(region_lab(frames, masks), garment_colour(garment)))


def student_vs_teacher(args: argparse.Namespace, data: Path, work: Path) -> dict:
    results = {}
    for name, command, model in (("teacher", "dress", args.teacher), ("student", "swap", args.student)):
        out = work / name
        out.mkdir(exist_ok=True)
        seconds = [render(command, model, s, garments_of(s), out / f"{s.name}.mp4", CLIP_FRAMES)
                   for s in samples(data)]
        report = json.loads(tryon("eval", out, "--reference", data, "--json"))
        results[name] = {**{k: report["mean"][k] for k in ("psnr", "ssim", "garment_color_error", "smoothness")},
                         "seconds_per_video": float(np.mean(seconds))}
    results["student_speedup"] = results["teacher"]["seconds_per_video"] / results["student"]["seconds_per_video"]
    return results


def long_curve(args: argparse.Namespace, data: Path, work: Path) -> list[dict]:
    out = work / "long"
    out.mkdir(exist_ok=True)
    per_second: dict[int, list[tuple[float, float, float]]] = {}
    for sample in samples(data):
        garments = garments_of(sample)
        render("swap", args.student, sample, garments, out / f"{sample.name}.mp4", LONG_FRAMES)
        pred, target = read_video(out / f"{sample.name}.mp4"), read_video(sample / "target.mp4")
        masks = np.load(sample / "masks.npz")
        psnrs, ssims = psnr_per_frame(pred, target), ssim_per_frame(pred, target)
        for second in range(len(pred) // FPS):
            window = slice(second * FPS, (second + 1) * FPS)
            errors = [garment_error(pred[window], masks[c][window], path) for c, path in garments
                      if masks[c][window].any()]
            per_second.setdefault(second, []).append(
                (float(psnrs[window].mean()), float(ssims[window].mean()), float(np.mean(errors))))
    return [{"second": s, "psnr": float(np.mean([v[0] for v in values])), "ssim": float(np.mean([v[1] for v in values])),
             "garment_color_error": float(np.mean([v[2] for v in values]))} for s, values in sorted(per_second.items())]


def continuity(frames: np.ndarray, at: int) -> float:
    steps = np.abs(np.diff(frames.astype(np.float64), axis=0)).mean(axis=(1, 2, 3))
    return float(steps[at - 1] / steps.mean())


def switches(args: argparse.Namespace, data: Path, work: Path) -> dict:
    frames = 2 * (CLIP_FRAMES - 1) + 1
    at_frame = frames // 2
    operations = ("refresh", "withdraw", "disentangle")  # all on, or all but one (whatever the checkpoint says)
    variants = {"all": tuple(f"--{op}" for op in operations)}
    variants |= {f"no-{off}": tuple(f"--{'no-' if op == off else ''}{op}" for op in operations) for off in operations}
    singles = [s for s in samples(data) if len(garments_of(s)) == 1]
    scores: dict[str, list[tuple[float, float]]] = {name: [] for name in [*variants, "b-throughout"]}
    for i, sample in enumerate(singles):
        category, own = garments_of(sample)[0]
        donor = next((d for d in singles[i + 1:] + singles[:i] if garments_of(d)[0][0] == category), None)
        if donor is None:
            continue
        new = donor / f"garment_{category}.png"
        masks = np.load(sample / "masks.npz")[category][at_frame:frames]
        for name, flags in variants.items():
            out = work / "switch" / name / f"{sample.name}.mp4"
            out.parent.mkdir(parents=True, exist_ok=True)
            report = json.loads(tryon("swap", sample / "user.png", *garment_args([(category, own)]),
                                      *garment_args([(category, new)], at=at_frame / FPS),
                                      "--motion", sample / "motion.mp4", "--model", args.student,
                                      "--seconds", frames / FPS, "-o", out, *COMMON, *flags))
            switched_at = report["switches"][0]["frame"]
            pred = read_video(out)
            after = pred[switched_at:frames]
            scores[name].append((garment_error(after, masks[switched_at - at_frame:], new), continuity(pred, switched_at)))
        out = work / "switch" / "b-throughout" / f"{sample.name}.mp4"
        out.parent.mkdir(parents=True, exist_ok=True)
        render("swap", args.student, sample, [(category, new)], out, frames)
        pred = read_video(out)
        scores["b-throughout"].append((garment_error(pred[at_frame:frames], masks, new), continuity(pred, at_frame)))
    return {name: {"pairs": len(values), "garment_color_error_after": float(np.mean([v[0] for v in values])),
                   "continuity_ratio": float(np.mean([v[1] for v in values]))}
            for name, values in scores.items() if values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="weights/demo")
    parser.add_argument("--student", default="weights/demo-student")
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--work", type=Path, default=Path("/tmp/stream"))
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    clips, long = work / "heldout", work / "heldout-long"
    tryon("data", "synth", clips, "--count", args.count, "--seed", 7, "--size", SIZE, "--frames", CLIP_FRAMES,
          "--fps", FPS, "-q")
    tryon("data", "synth", long, "--count", args.count, "--seed", 8, "--size", SIZE, "--frames", LONG_FRAMES,
          "--fps", FPS, "-q")
    results = {"student_vs_teacher": student_vs_teacher(args, clips, work),
               "long_video_per_second": long_curve(args, long, work),
               "switch": switches(args, long, work)}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
