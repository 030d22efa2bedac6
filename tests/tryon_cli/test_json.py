"""`--json` across commands: every key holds one kind of number, whichever command or path wrote it."""

import json
import shutil
from collections import defaultdict

import numpy as np

from engine.media import write_video

FAST = ("--steps", "1", "--size", "64x64", "--seconds", "1", "--fps", "8")


def number_kinds(data, kinds: dict, path: str = "") -> dict:
    """Every numeric leaf's dotted key path (a list's items under the list's path), mapped to the kinds seen."""
    if isinstance(data, dict):
        for key, value in data.items():
            number_kinds(value, kinds, f"{path}.{key}" if path else key)
    elif isinstance(data, list):
        for value in data:
            number_kinds(value, kinds, path)
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        kinds[path].add(type(data).__name__)
    return kinds


def test_each_json_key_holds_one_kind_of_number(tiny_checkpoint, inputs, tmp_path, tryon):
    clip = tmp_path / "clip.mp4"
    write_video(clip, np.random.default_rng(0).integers(0, 255, (9, 64, 64, 3), dtype=np.uint8), 8)
    model = ("--model", tiny_checkpoint)
    commands = [
        ("dress", inputs / "user.png", inputs / "shirt.png", *model, *FAST, "-o", tmp_path / "a.mp4"),
        ("dress", inputs / "user.png", inputs / "shirt.png", *model, "--steps", "1", "--size", "64x64",
         "-o", tmp_path / "b.mp4"),  # the preset's own fps and seconds
        ("dance", inputs / "user.png", *model, *FAST, "--motion", inputs / "dance.mp4", "-o", tmp_path / "c.mp4"),
        ("swap", inputs / "user.png", "-g", inputs / "shirt.png", "-g", f"{inputs / 'pants.png'}@0.5", *model, *FAST,
         "-o", tmp_path / "d.mp4"),
        ("extend", clip, "--seconds", "1", "--steps", "1", *model, "-o", tmp_path / "e.mp4"),
        ("bench", "--preset", "tiny", "--random-weights", "--size", "64x64", "--seconds", "0.5", "--steps", "1",
         "--mode", "stream", "--chunk-frames", "1"),
        ("models", "list"),
    ]
    assert tryon("data", "synth", tmp_path / "synth", "--count", "1", "--size", "64x64", "--frames", "9",
                 "--fps", "8").code == 0
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(f"user,garments,output\n{inputs / 'user.png'},{inputs / 'shirt.png'}:top,f.mp4\n")
    commands.append(("batch", manifest, "-o", tmp_path / "batch", *model, *FAST))
    kinds: dict = defaultdict(set)
    for command in commands:
        run = tryon(*command, "--json")
        assert run.code == 0, (command[0], run.stderr)
        number_kinds(json.loads(run.stdout), kinds)
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    for sample in (tmp_path / "synth").iterdir():
        shutil.copy(sample / "target.mp4", predictions / f"{sample.name}.mp4")
    for line in (tmp_path / "batch" / "report.jsonl").read_text().splitlines():
        number_kinds(json.loads(line), kinds)
    run = tryon("eval", predictions, "--reference", tmp_path / "synth", "--json")
    assert run.code == 0, run.stderr
    number_kinds(json.loads(run.stdout), kinds)

    mixed = {key: sorted(seen) for key, seen in kinds.items() if len(seen) > 1}
    assert not mixed, json.dumps(mixed)
    assert kinds["fps"] == {"float"} and kinds["frames"] == {"int"}
