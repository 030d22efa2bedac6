"""Does a streaming student hold up over a 10-s stream and across a switch? (The demo student's checks.)

    python examples/check_demo_student.py --students weights/demo-student,/tmp/grdmd/gr-dmd-0.2 --count 4 --work /tmp/check

On held-out synthetic samples (dataset seed 8, 10 s at 8 fps, never trained on), for each student:

1. A 10-s `tryon swap` wearing the sample's own garments: per second, PSNR against the ground
   truth, the figure's silhouette IoU (`tryon eval`'s, against the sample's backdrop) and the
   motion amplitude (mean absolute change between neighbouring frames; the ground truth's
   beside it). A figure that fades out shows as amplitude falling to 0; one that comes apart,
   as IoU falling. Over the whole stream: the worst frame's IoU, the height ratio and the
   garment pattern's SSIM (means over samples; `figure_whole` counts the samples whose worst
   frame keeps IoU >= 0.75 and height ratio >= 0.85).
2. Switches at 5 s to another sample's garment that takes the first one off, of two kinds:
   `same` (a garment of the same category) and `cross` (a dress for a top or a bottom, a top
   for a dress). From a second after the switch, the old garment's region's CIELAB ΔE76 to
   the new garment and to the old one (lower: closer), per kind, twice: against each garment's
   product shot (its mean colour), and against each garment as worn (its region in the ground
   truth of the sample it comes from: same shading, and the scale the model's own colours are
   on; the truth itself is 0 from the old one as worn), and `shows_new`, the pairs whose region
   is closer to the new garment as worn than to the old one as worn; beside them, the stream
   without the switch against the old garment as worn: the floor of how close this student
   renders any garment.
   Training shows a garment of another category only in place of the user photo's clothes
   (half the whole-body samples: a dress for a top and a bottom, or the reverse), never a
   switch mid-stream, so `cross` asks for more than training showed.
3. Frame sheets (one frame per second, a row per run) in WORK/sheets/ to look at.
4. With --example, the quickstart's example with the switch the issue tried (the person of
   `examples/sample_00002` in its top, then `sample_00001`'s striped dress at 2 s, 10 s): a
   row per student in WORK/sheets/example.png; and, in example-teacher.png, `--teacher`
   dressing the same person in that dress from the start (2 s, a frame every 0.25 s) under
   the dress's own sample worn: whether the teacher the students learn from can render it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image
from prove_it_learns import garment_colour, is_whole, garments_of, region_colour, samples, tryon

from engine.media import read_video
from engine.metrics import delta_e76, motion_magnitude, psnr_per_frame, rgb_to_lab, score_videos
from engine.synth.render import background

EXAMPLES = Path(__file__).resolve().parent
FPS, SECONDS, SWITCH_AT = 8, 10, 5
SWITCHES = {  # kind of switch -> does a garment of category `new` take one of category `old` off, as that kind
    "same": lambda old, new: new == old,
    "cross": lambda old, new: "dress" in (old, new) and new != old,
}
RENDER = ("--size", "96x160", "--fps", FPS, "--seed", 0, "-q")
COMMON = (*RENDER, "--seconds", SECONDS)


def swap(student: str, sample: Path, garments: list[str], output: Path, *flags: str) -> np.ndarray:
    """A render of WORK (kept: a re-run reuses it)."""
    if output.is_file():
        return read_video(output)
    tryon("swap", sample / "user.png", *[arg for g in garments for arg in ("-g", g)], "--motion", sample / "motion.mp4",
          "--prompt", (sample / "caption.txt").read_text().strip(), "--model", student, "-o", output, *COMMON, *flags)
    return read_video(output)


def per_second(video: np.ndarray, target: np.ndarray, ious: list[float]) -> list[tuple[float, float, float, float]]:
    """(PSNR, figure IoU, amplitude, ground-truth amplitude) per second."""
    psnrs = psnr_per_frame(video, target[: len(video)])
    rows = []
    for second in range(len(video) // FPS):
        window = slice(second * FPS, (second + 1) * FPS + 1)
        rows.append((float(psnrs[window].mean()), float(np.mean(ious[window])), motion_magnitude(video[window]),
                     motion_magnitude(target[window])))
    return rows


def figure_and_pattern(video: np.ndarray, target: np.ndarray, sample: Path):
    """`tryon eval`'s silhouette and garment-pattern scores of a stream against its sample."""
    meta = json.loads((sample / "meta.json").read_text())
    backdrop = background(meta["person"]["appearance"]["background"], tuple(meta["size"]))
    masks = dict(np.load(sample / "masks.npz"))
    return score_videos(video, target, masks, sample.name, backdrop=backdrop)


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 2) if values else None


def sheet(rows: list[np.ndarray], path: Path, step: int = FPS, count: int = SECONDS) -> None:
    """`count` frames, one every `step`, of each video, a row per video."""
    picked = [np.concatenate(list(video[::step][:count]), axis=1) for video in rows]
    Image.fromarray(np.concatenate(picked, axis=0)).save(path)


def example_sheets(students: list[str], teacher: str, work: Path) -> None:
    """The quickstart example switched to the striped dress, per student; the teacher's own try at that dress."""
    person, dress = EXAMPLES / "sample_00002", EXAMPLES / "sample_00001" / "garment_dress.png"
    rows = [swap(student, person, [f"{person / 'garment_top.png'}:top", f"{dress}:dress@2"],
                 work / f"s{number}-example.mp4") for number, student in enumerate(students)]
    sheet(rows, work / "sheets" / "example.png")
    dressed = work / "teacher-example.mp4"
    if not dressed.is_file():
        tryon("dress", person / "user.png", f"{dress}:dress", "--motion", person / "motion.mp4", "--prompt",
              (person / "caption.txt").read_text().strip(), "--model", teacher, "-o", dressed, *RENDER)
    sheet([read_video(dress.parent / "target.mp4"), read_video(dressed)], work / "sheets" / "example-teacher.png",
          step=2, count=8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", default="weights/demo-student")
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--work", type=Path, default=Path("/tmp/check-student"))
    parser.add_argument("--disentangle", action=argparse.BooleanOptionalAction,
                        help="at a switch, take the last frame as the reference (--no-disentangle: keep the user "
                        "photo); left out, what each student's tryon.json says")
    parser.add_argument("--example", action="store_true", help="also the quickstart example's switch to the "
                        "striped dress, and the teacher's own try at that dress (sheets/example*.png)")
    parser.add_argument("--teacher", default="weights/demo", help="with --example: the teacher to compare")
    args = parser.parse_args()
    work = args.work
    (work / "sheets").mkdir(parents=True, exist_ok=True)
    data = work / "heldout"
    if not data.exists():
        tryon("data", "synth", data, "--count", args.count, "--seed", 8, "--size", "96x160", "--frames",
              FPS * SECONDS + 1, "--fps", FPS, "-q")
    chosen = samples(data)[: args.count]
    results = {}
    for number, student in enumerate(args.students.split(",")):
        curves, shown, figures = [], [], []
        to_new: dict[str, list[float]] = {name: [] for name in SWITCHES}
        to_old: dict[str, list[float]] = {name: [] for name in SWITCHES}
        worn_new: dict[str, list[float]] = {name: [] for name in SWITCHES}
        worn_old: dict[str, list[float]] = {name: [] for name in SWITCHES}
        unswitched: dict[str, list[float]] = {name: [] for name in SWITCHES}
        for i, sample in enumerate(chosen):
            own = garments_of(sample)
            target = read_video(sample / "target.mp4")
            video = swap(student, sample, [f"{path}:{category}" for category, path in own],
                         work / f"s{number}-{sample.name}.mp4")
            figures.append(figure_and_pattern(video, target, sample))
            curves.append(per_second(video, target, figures[-1].figure_iou_frames))
            shown += [target, video]
            category, old = own[0]
            others = [(kind, path) for d in chosen[i + 1:] + chosen[:i] for kind, path in garments_of(d)]
            for name, takes_off in SWITCHES.items():
                replacement = next(((kind, path) for kind, path in others if takes_off(category, kind)), None)
                if replacement is None:  # no other sample's garment of this kind
                    continue
                kind, new = replacement
                switched = swap(student, sample, [f"{path}:{c}" for c, path in own] + [f"{new}:{kind}@{SWITCH_AT}"],
                                work / f"s{number}-{sample.name}-{name}.mp4",
                                *([] if args.disentangle is None else
                                  ["--disentangle" if args.disentangle else "--no-disentangle"]))
                masks = np.load(sample / "masks.npz")[category][SWITCH_AT * FPS + FPS: len(switched)]  # 1 s to settle
                after = switched[SWITCH_AT * FPS + FPS:][: len(masks)].astype(np.float64)
                if masks.any():
                    region = rgb_to_lab(after[masks].mean(axis=0))
                    to_new[name].append(float(delta_e76(region, garment_colour(new))))
                    to_old[name].append(float(delta_e76(region, garment_colour(old))))
                    new_masks = np.load(new.parent / "masks.npz")[kind]
                    worn_new[name].append(float(delta_e76(region, region_colour(new.parent / "target.mp4", new_masks))))
                    truth = target[SWITCH_AT * FPS + FPS:][: len(masks)].astype(np.float64)
                    worn_old[name].append(float(delta_e76(region, rgb_to_lab(truth[masks].mean(axis=0)))))
                    kept = video[SWITCH_AT * FPS + FPS:][: len(masks)].astype(np.float64)  # the same frames, no switch
                    unswitched[name].append(float(delta_e76(rgb_to_lab(kept[masks].mean(axis=0)),
                                                            rgb_to_lab(truth[masks].mean(axis=0)))))
                shown.append(switched)
        sheet(shown[:6], work / "sheets" / f"student-{number}.png")
        curve = np.mean(np.array(curves), axis=0)
        results[student] = {
            "per_second": [{"second": s, "psnr": round(p, 2), "figure_iou": round(f, 3), "amplitude": round(a, 4),
                            "truth_amplitude": round(t, 4)} for s, (p, f, a, t) in enumerate(curve)],
            "figure": {"worst_frame_iou": _mean([f.figure_iou_worst for f in figures]),
                       "height_ratio": _mean([f.figure_height_ratio for f in figures]),
                       "garment_ssim": _mean([f.garment_ssim for f in figures if f.garment_ssim is not None]),
                       "figure_whole": sum(is_whole(f.figure_iou_worst, f.figure_height_ratio) for f in figures),
                       "samples": len(figures)},
            "switch": {name: {"pairs": len(to_new[name]),
                              "shows_new": sum(n < o for n, o in zip(worn_new[name], worn_old[name])),
                              "delta_e_to_new": _mean(to_new[name]), "delta_e_to_old": _mean(to_old[name]),
                              "delta_e_to_new_worn": _mean(worn_new[name]), "delta_e_to_old_worn": _mean(worn_old[name]),
                              "unswitched_delta_e_to_old_worn": _mean(unswitched[name])}
                       for name in SWITCHES},
        }
        print(student, json.dumps(results[student]), flush=True)
    (work / "results.json").write_text(json.dumps(results, indent=1))
    if args.example:
        example_sheets(args.students.split(","), args.teacher, work)
    for student, result in results.items():
        print(f"\n{student}\n| second | " + " | ".join(str(r["second"]) for r in result["per_second"]) + " |")
        print("|---|" + "---|" * len(result["per_second"]))
        for key in ("psnr", "figure_iou", "amplitude", "truth_amplitude"):
            print(f"| {key} | " + " | ".join(str(r[key]) for r in result["per_second"]) + " |")
        print("whole stream:", json.dumps(result["figure"]))
        print("switch at 5 s:", json.dumps(result["switch"]))


if __name__ == "__main__":
    main()
