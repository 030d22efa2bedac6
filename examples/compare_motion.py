"""Motion conditioning compared at the same training budget: additive vs attention (pooled or not).

    python examples/compare_motion.py --base weights/demo --steps 100 --count 8 --work /tmp/motion-cmp
    python examples/compare_motion.py --from-scratch weights/demo --count 8 --work /tmp/motion-scratch

With --from-scratch VAE_CHECKPOINT (issue 29: the form decided by training both from nothing):
both forms start from the same freshly initialised transformer on that checkpoint's VAE and
text encoder, and train by the built-in recipes `demo` (additive) and `demo-attention`
(attention, 2x2 pooled): the same stages, steps, data and seed. Interrupted, a re-run resumes
each training where its last checkpoint left it (`tryon train teacher --resume`). With
--evaluate-only the trainings are scored where their last checkpoints stopped (the same step for
both: the same budget, shorter than the recipes'). The table
adds the figure's silhouette IoU (mean and worst frame), its height ratio and the garment
pattern's SSIM.

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

from engine.api import load_train_config
from engine.checkpoint import load_model, save_checkpoint
from engine.model.transformer_condnet import CondNetTransformer
from engine.train.state import saved_step

from prove_it_learns import HELD_OUT_SEED, garments_of, row, samples, tryon, write_manifest

VARIANTS = {"additive": dict(motion_conditioning="additive"),
            "attention": dict(motion_conditioning="attention", motion_pool=1),
            "attention-pool2": dict(motion_conditioning="attention", motion_pool=2)}
RECIPES = {"additive": "demo", "attention-pool2": "demo-attention"}  # --from-scratch: the built-in recipe of each
SCORES = ("psnr", "ssim", "garment_color_error", "garment_ssim", "figure_iou", "figure_iou_worst",
          "figure_height_ratio", "motion_leakage")


def variant_base(base: str, options: dict, folder: Path) -> Path:
    """`base` with the given motion conditioning and its motion input reset."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = load_model(base)
    transformer = CondNetTransformer.from_base(loaded.pipeline.transformer, **options)
    if transformer.motion_embedding is not None:  # the additive form's own input (the attention form has none)
        with torch.no_grad():
            for param in transformer.motion_embedding.parameters():
                param.zero_()
    loaded.pipeline.register_modules(transformer=transformer)
    return save_checkpoint(loaded.pipeline, folder, loaded.info)


def fresh_base(source: str, folder: Path) -> Path:
    """`source`'s VAE, text encoder and tokenizer with a freshly initialised transformer (seed 0)."""
    if (folder / "tryon.json").is_file():
        return folder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = load_model(source)
    config = {k: v for k, v in loaded.pipeline.transformer.config.items() if not k.startswith("_")}
    torch.manual_seed(0)
    loaded.pipeline.register_modules(transformer=CondNetTransformer(**config))
    loaded.info.condnet_trained = False
    loaded.info.training = {key: value for key, value in loaded.info.training.items() if key == "vae"}
    return save_checkpoint(loaded.pipeline, folder, loaded.info)


def train_from_scratch(base: Path, recipe: str, model: Path) -> None:
    """Train (or resume, or leave alone when finished) `model` by the built-in `recipe`."""
    state = model / "training_state" / "state.json"
    if state.is_file() and json.loads(state.read_text())["step"] >= load_train_config(recipe).total_steps:
        return
    tryon("train", "teacher", "--data", "synthetic", "--base", base, "--config", recipe, "-o", model, "-q",
          *(["--resume"] if state.is_file() else []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="weights/demo")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--work", type=Path, default=Path("/tmp/motion-cmp"))
    parser.add_argument("--from-scratch", metavar="CHECKPOINT",
                        help="train each form from a fresh transformer on this checkpoint's VAE, by its recipe")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="with --from-scratch: score the trainings as their last checkpoints left them (stopped "
                             "early, at the same step: the same budget, shorter)")
    args = parser.parse_args()
    variants = list(RECIPES) if args.from_scratch else args.variants.split(",")
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

    if args.evaluate_only:
        steps = {name: saved_step(work / f"model-{name}") for name in variants}
        if len(set(steps.values())) != 1 or 0 in steps.values():
            raise SystemExit(f"--evaluate-only: the trainings are not at one step: {steps}")
    results = {}
    for name in variants:
        model = work / f"model-{name}"
        if args.from_scratch and not args.evaluate_only:
            train_from_scratch(fresh_base(args.from_scratch, work / "base-fresh"), RECIPES[name], model)
        elif not (model / "tryon.json").is_file():
            base = variant_base(args.base, VARIANTS[name], work / f"base-{name}")
            tryon("train", "teacher", "--data", "synthetic", "--base", base, "--config", work / "config.json",
                  "-o", model, "-q")
        predictions = work / f"pred-{name}"
        tryon("batch", work / "own.csv", "-o", predictions, "--model", model, "--size", "96x160",
              "--seconds", 17 / 8, "--fps", 8, "--seed", 0, "-q")
        report = [json.loads(line) for line in (predictions / "report.jsonl").read_text().splitlines()]
        scores = json.loads(tryon("eval", predictions, "--reference", data, "--json"))["mean"]
        seconds = [job["seconds"] for job in report if job.get("status") == "ok"]
        results[name] = {key: scores[key] for key in SCORES}
        results[name]["seconds_per_video"] = sum(seconds) / len(seconds) if seconds else None
        results[name]["training_steps"] = saved_step(model)
        print(name, json.dumps(results[name]), flush=True)
    (work / "results.json").write_text(json.dumps(results, indent=1))
    print("\n| variant | PSNR | SSIM | garment ΔE | garment SSIM | figure IoU | worst-frame IoU | height ratio | "
          "motion_leakage | s/video | steps |\n|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        cells = [f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k])
                 for k in (*SCORES, "seconds_per_video", "training_steps")]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
