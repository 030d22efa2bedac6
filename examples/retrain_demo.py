"""Issue 29's demo retraining as one resumable chain: a background job on a CPU, or one lent GPU run.

    python examples/retrain_demo.py --work /work/demo-train/chain --minutes 60      # again and again
    python examples/retrain_demo.py --work /tmp/chain --minutes 3 --smoke           # the chain at toy size

Each stage is a `tryon` command given the minutes that are left (`--minutes`: it stops
checkpointed) and resumed by the next run; a finished stage is skipped. The stages:

    init      tryon models init PRESET WORK/init                      (preset demo-4x by default)
    vae       tryon train vae --base WORK/init -o WORK/vae (5,100 steps) then measure_vae.py -> WORK/vae.json
    decoder   tryon train decoder --vae WORK/vae -o WORK/decoder (the streaming tiny decoder)
    teacher   tryon train teacher --config demo, demo-continue, demo-anneal (the shipped demo's three runs)
    student   tryon train student --config student, from the last teacher; then the tiny decoder is shipped
              into the last teacher and the student (so a decoder trained beside the teacher serves as well)
    measure   prove_it_learns.py on teacher and student, check_demo_student.py -> WORK/results.json

Measured in session 14: on the demo-4x VAE the teacher's first run is no better than the same
recipe on the shipped demo VAE (each token carries 512 latent values for a 192-wide transformer;
docs/demo-quality.md), so the chain stopped after it; it waits for a wider transformer or a GPU.

`--vae DIR` adopts a VAE run made elsewhere (moved into WORK/vae, the run going on from its
own step). Nothing replaces `weights/`: shipping is decided from WORK/results.json against the
shipped demo's numbers (docs/demo-quality.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from engine.api import load_student_config, load_train_config
from engine.train.decoder import ship_decoder
from engine.train.state import saved_step

EXAMPLES = Path(__file__).resolve().parent
TEACHER_RECIPES = ("demo", "demo-continue", "demo-anneal")
# The VAE, the tiny decoder and the teacher train in bf16 where the CPU has it (1.6x, 2.3x and, for
# the teacher's encodes, 2.5x faster here; tryon falls back to fp32 and says so elsewhere).
# The VAE's lr: 1e-3 plateaus at about 20 dB from step 1500 on; 2e-4 went on learning.
# 17-frame clips, one a step: the measures and the demo are 17 frames, and a VAE trained on 9
# fell apart after its 9th (docs/demo-quality.md).
VAE_SETTINGS = ("--batch-size", 1, "--frames", 17, "--size", "96x160", "--lr", 2e-4, "--examples", 2000,
                "--checkpoint-every", 100, "--mixed-precision", "bf16")
DECODER_CHANNELS = "64,32,16,16"  # the shipped demo's tiny decoder widths
SMOKE_VAE_SETTINGS = ("--batch-size", 1, "--frames", 1, "--size", "32x32", "--examples", 2, "--checkpoint-every", 1)


class Clock:
    def __init__(self, minutes: float) -> None:
        self.deadline = time.monotonic() + minutes * 60

    def left(self) -> float:
        """Minutes left, never below zero (a command given 0 still takes one step and saves it)."""
        return max(0.0, (self.deadline - time.monotonic()) / 60)

    def out(self) -> bool:
        return self.left() <= 0


def run(*args: object) -> str:
    """Run a command (a `tryon` command when the first word is not a script); its stdout, or exit with its stderr."""
    words = [str(arg) for arg in args]
    command = [sys.executable, *words] if words[0].endswith(".py") else ["tryon", *words]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr}")
    for line in done.stderr.splitlines():  # tryon's notices: where a run stopped, what it wrote
        if line.startswith(("stopped", "resuming", "mixed_precision")):
            print(f"  {line}", flush=True)
    return done.stdout


def train(kind: str, output: Path, total: int, start: list[object], settings: list[object], clock: Clock) -> bool:
    """Train `output` on (resuming when it has a saved run) for the minutes left; True once finished."""
    if saved_step(output) >= total:
        return True
    if clock.out():
        return False
    begin = ["--resume"] if saved_step(output) else start
    print(f"{kind}: {output.name} from step {saved_step(output)} of {total}, {clock.left():.1f} minutes left", flush=True)
    run("train", kind, *settings, *begin, "-o", output, "--minutes", f"{clock.left():.2f}", "-q")
    return saved_step(output) >= total


def teacher_stages(work: Path, clock: Clock, smoke: bool) -> Path | None:
    """The three teacher runs in turn; the last one's folder once all have finished."""
    base = work / "vae"
    for recipe in TEACHER_RECIPES:
        config = smoke_recipe(work, recipe, "teacher") if smoke else recipe
        output = work / f"teacher-{recipe}"
        if not train("teacher", output, load_train_config(config).total_steps, ["--base", base],
                     ["--data", "synthetic", "--config", config, "--mixed-precision", "bf16"], clock):
            return None
        base = output
    return base


def smoke_recipe(work: Path, recipe: str, kind: str) -> Path:
    """`recipe` shrunk to two steps per stage at 32x32 (the chain's rehearsal)."""
    load = load_student_config if kind == "student" else load_train_config
    document = load(recipe).to_dict()
    for stage in document["stages"]:
        stage.update(steps=2, size=[32, 32], num_frames=min(stage["num_frames"], 5), batch_size=1)
    document.update(checkpoint_every=1, log_every=1, synthetic_examples=2)
    path = work / f"smoke-{recipe}.json"
    path.write_text(json.dumps(document))
    return path


def measure(work: Path, teacher: Path, student: Path, count: int) -> dict:
    results = {"vae": json.loads((work / "vae.json").read_text())}
    for name, model in (("teacher", teacher), ("student", student)):
        results[name] = json.loads(run(EXAMPLES / "prove_it_learns.py", "--model", model, "--count", count,
                                       "--work", work / f"prove-{name}"))
    run(EXAMPLES / "check_demo_student.py", "--students", student, "--count", max(1, count // 3), "--no-disentangle",
        "--work", work / "check-student")
    results["student_stream"] = json.loads((work / "check-student" / "results.json").read_text())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--minutes", type=float, required=True, help="this run's time; run again to go on")
    parser.add_argument("--preset", default="demo-4x")
    parser.add_argument("--vae", type=Path, help="adopt this VAE run (a `tryon train vae` output) as WORK/vae")
    # The demo's VAE was ended at step 5,100 (planned 8,000): resumed at step 4,806 with --steps 5100, its last
    # 300 steps ran at the cosine schedule's floor, a tenth of the lr (docs/demo-quality.md).
    parser.add_argument("--vae-steps", type=int, default=5100)
    parser.add_argument("--count", type=int, default=8, help="held-out samples to measure on")
    parser.add_argument("--smoke", action="store_true", help="every stage at toy size: the chain rehearsed")
    args = parser.parse_args()
    clock, work = Clock(args.minutes), args.work
    work.mkdir(parents=True, exist_ok=True)

    if args.vae and not (work / "vae").exists():
        shutil.move(str(args.vae), work / "vae")
    if not (work / "init" / "tryon.json").is_file() and not (work / "vae").exists():
        run("models", "init", "tiny" if args.smoke else args.preset, work / "init", "--overwrite")
    vae_steps = 2 if args.smoke else args.vae_steps
    settings = [*(SMOKE_VAE_SETTINGS if args.smoke else VAE_SETTINGS), "--steps", vae_steps]
    if not train("vae", work / "vae", vae_steps, ["--base", work / "init"], settings, clock):
        return print(f"stopped in the VAE's training at step {saved_step(work / 'vae')}: run again to go on")
    if not (work / "vae.json").is_file():
        (work / "vae.json").write_text(run(EXAMPLES / "measure_vae.py", "--model", work / "vae",
                                           "--count", args.count, "--sheet", work / "vae.png"))
    decoder_config = smoke_recipe(work, "decoder", "decoder") if args.smoke else "decoder"
    if not train("decoder", work / "decoder", load_train_config(decoder_config).total_steps, [],
                 ["--vae", work / "vae", "--data", "synthetic", "--config", decoder_config, "--channels",
                  DECODER_CHANNELS, "--mixed-precision", "bf16"], clock):
        return print("stopped in the tiny decoder's training: run again to go on")
    teacher = teacher_stages(work, clock, args.smoke)
    if teacher is None:
        return print("stopped in the teacher's training: run again to go on")
    student_config = smoke_recipe(work, "student", "student") if args.smoke else "student"
    if not train("student", work / "student", load_student_config(student_config).total_steps, [],
                 ["--teacher", teacher, "--data", "synthetic", "--config", student_config], clock):
        return print("stopped in the student's training: run again to go on")
    for model in (teacher, work / "student"):
        ship_decoder(work / "decoder", model)
    if clock.out():
        return print("trained; the measures are left: run again")
    results = measure(work, teacher, work / "student", 2 if args.smoke else args.count)
    (work / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps({name: results[name]["trained"]["figure_whole"] for name in ("teacher", "student")}))


if __name__ == "__main__":
    main()
