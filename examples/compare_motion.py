"""Motion conditioning compared at the same training budget: additive vs attention (pooled or not).

    python examples/compare_motion.py --base weights/demo --steps 100 --count 8 --work /tmp/motion-cmp

Each variant starts from the same trained demo teacher (`--base`) with its motion input reset
(the additive `motion_embedding` zeroed; the attention variants start with a zero `motion_role`),
is fine-tuned for `--steps` steps on synthetic clips (the same data, seed and learning rate),
then renders held-out samples (dataset seed 7, never trained on) and is scored by `tryon eval`:
PSNR, SSIM, garment ΔE, motion_leakage (0: the given garment's colour, 1: the motion
performer's) and seconds per video (from `tryon batch`'s report).
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import torch

from engine.checkpoint import load_model, save_checkpoint
from engine.model.transformer_condnet import CondNetTransformer

from prove_it_learns import HELD_OUT_SEED, garments_of, row, samples, tryon, write_manifest

VARIANTS = {"additive": dict(motion_conditioning="additive"),
            "attention": dict(motion_conditioning="attention", motion_pool=1),
            "attention-pool2": dict(motion_conditioning="attention", motion_pool=2)}


def variant_base(base: str, options: dict, folder: Path) -> Path:
    """`base` with the given motion conditioning and its motion input reset."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = load_model(base)
    transformer = CondNetTransformer.from_base(loaded.pipeline.transformer, **options)
    with torch.no_grad():
        for param in transformer.motion_embedding.parameters():
            param.zero_()
    loaded.pipeline.register_modules(transformer=transformer)
    return save_checkpoint(loaded.pipeline, folder, loaded.info)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="weights/demo")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--work", type=Path, default=Path("/tmp/motion-cmp"))
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)

    data = work / "heldout"
    if not data.exists():
        tryon("data", "synth", data, "--count", args.count, "--seed", HELD_OUT_SEED, "--size", "96x160",
              "--frames", 17, "--fps", 8, "-q")
    write_manifest(work / "own.csv", [row(s, garments_of(s), f"{s.name}.mp4") for s in samples(data)])
    config = {"stages": [{"name": "clips", "steps": args.steps, "size": [96, 160], "num_frames": 17, "fps": 8,
                          "batch_size": args.batch_size, "lr": args.lr}],
              "trainable": "all", "condition_dropout": 0.1, "checkpoint_every": args.steps, "log_every": 10,
              "synthetic_examples": 1000, "seed": 0}
    (work / "config.json").write_text(json.dumps(config, indent=1))

    results = {}
    for name in args.variants.split(","):
        model = work / f"model-{name}"
        if not (model / "tryon.json").is_file():
            base = variant_base(args.base, VARIANTS[name], work / f"base-{name}")
            tryon("train", "teacher", "--data", "synthetic", "--base", base, "--config", work / "config.json",
                  "-o", model, "-q")
        predictions = work / f"pred-{name}"
        tryon("batch", work / "own.csv", "-o", predictions, "--model", model, "--size", "96x160",
              "--seconds", 17 / 8, "--fps", 8, "--seed", 0, "-q")
        report = [json.loads(line) for line in (predictions / "report.jsonl").read_text().splitlines()]
        scores = json.loads(tryon("eval", predictions, "--reference", data, "--json"))["mean"]
        seconds = [job["seconds"] for job in report if job.get("status") == "ok"]
        results[name] = {key: scores[key] for key in ("psnr", "ssim", "garment_color_error", "motion_leakage")}
        results[name]["seconds_per_video"] = sum(seconds) / len(seconds) if seconds else None
        print(name, json.dumps(results[name]), flush=True)
    (work / "results.json").write_text(json.dumps(results, indent=1))
    print("\n| variant | PSNR | SSIM | garment ΔE | motion_leakage | s/video |\n|---|---|---|---|---|---|")
    for name, r in results.items():
        cells = [f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k])
                 for k in ("psnr", "ssim", "garment_color_error", "motion_leakage", "seconds_per_video")]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
