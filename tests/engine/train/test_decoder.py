"""`tryon train decoder`: distilling the tiny decoder from a checkpoint's VAE on the shared training loop."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from engine.api import train_decoder
from engine.checkpoint import load_model
from engine.errors import InputError
from engine.media import write_video
from engine.model.tiny_decoder import TinyVideoDecoder
from engine.train import TrainConfig
from engine.train.loop import cpu_has_native_bf16

from .conftest import Stop, stop_at

CHANNELS = (8, 8, 8, 8)


def config(tmp_path: Path, steps: int = 4, **fields) -> Path:
    recipe = {"stages": [{"name": "decoder", "steps": steps, "size": [32, 32], "num_frames": 5, "fps": 8,
                          "batch_size": 2, "lr": 1e-2}],
              "checkpoint_every": 2, "log_every": 1, "synthetic_examples": 3, **fields}
    path = tmp_path / "decoder.json"
    path.write_text(json.dumps(recipe))
    return path


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "diffusion_pytorch_model.safetensors")


def metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_a_killed_run_resumes_and_ends_as_an_uninterrupted_one(tiny_checkpoint, tmp_path):
    recipe = config(tmp_path)
    whole = train_decoder(str(tiny_checkpoint), "synthetic", tmp_path / "whole", recipe, channels=CHANNELS)
    with pytest.raises(Stop):
        train_decoder(str(tiny_checkpoint), "synthetic", tmp_path / "parts", recipe, channels=CHANNELS,
                      progress=stop_at(3))
    assert json.loads((tmp_path / "parts" / "training_state" / "state.json").read_text())["step"] == 2
    notes = []
    parts = train_decoder(str(tiny_checkpoint), "synthetic", tmp_path / "parts", recipe, resume=True,
                          notice=notes.append)

    assert notes[0] == "resuming at step 2 of 4"
    first, final = weights(whole), weights(parts)
    assert all(torch.equal(first[name], final[name]) for name in first)
    assert [(m["step"], m["l1"]) for m in metrics(whole)] == [(m["step"], m["l1"]) for m in metrics(parts)]
    decoder = TinyVideoDecoder.from_pretrained(whole)
    assert tuple(decoder.config.channels) == CHANNELS and decoder.config.latent_channels == 48


def test_learns_the_full_decoders_output_from_a_folder_of_raw_videos_and_ships(tiny_checkpoint, tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a/one.mp4", "two.mov"):  # any depth, any common container
        (tmp_path / "videos" / name).parent.mkdir(parents=True, exist_ok=True)
        write_video(tmp_path / "videos" / name, rng.integers(0, 255, (9, 48, 40, 3), dtype=np.uint8), 8)
    shipped = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, shipped)

    recipe = config(tmp_path, steps=12, log_every=4, checkpoint_every=12)
    output = train_decoder(str(tiny_checkpoint), str(tmp_path / "videos"), tmp_path / "out", recipe,
                           channels=CHANNELS, ship=(shipped,))
    lines = metrics(output)
    assert [m["step"] for m in lines] == [4, 8, 12] and lines[-1]["l1"] < lines[0]["l1"]
    assert sorted(p.name for p in (shipped / "tiny_decoder").iterdir()) == \
           ["config.json", "diffusion_pytorch_model.safetensors"]
    loaded = load_model(str(shipped))
    assert loaded.tiny_decoder is not None
    assert all(torch.equal(loaded.tiny_decoder.state_dict()[name], tensor) for name, tensor in weights(output).items())


def test_a_run_stopped_by_its_time_budget_is_not_shipped(tiny_checkpoint, tmp_path):
    shipped = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, shipped, ignore=shutil.ignore_patterns("tiny_decoder"))
    notes = []
    output = train_decoder(str(tiny_checkpoint), "synthetic", tmp_path / "out", config(tmp_path), channels=CHANNELS,
                           ship=(shipped,), minutes=0, notice=notes.append)
    assert "not shipped: the run stopped at step 1 of 4; finish it with --resume to ship it" in notes
    assert (output / "diffusion_pytorch_model.safetensors").is_file() and not (shipped / "tiny_decoder").exists()


def test_bad_outputs_data_and_ship_targets_are_input_errors_before_training(tiny_checkpoint, tmp_path):
    recipe = config(tmp_path)
    with pytest.raises(InputError, match="--ship: not a tryon checkpoint"):
        train_decoder(str(tiny_checkpoint), "synthetic", tmp_path / "out", recipe, ship=(tmp_path,))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no videos"):
        train_decoder(str(tiny_checkpoint), str(tmp_path / "empty"), tmp_path / "out2", recipe)
    with pytest.raises(InputError, match="nothing to resume"):
        train_decoder(str(tiny_checkpoint), "synthetic", tmp_path / "out3", recipe, resume=True)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out3").exists()


def test_the_builtin_recipe_parses():
    from engine.api import load_train_config

    recipe = load_train_config("decoder")
    assert isinstance(recipe, TrainConfig) and recipe.total_steps > 0


def test_training_the_teacher_keeps_the_checkpoints_tiny_decoder(tiny_checkpoint, tmp_path, config_factory):
    from engine.train import train_teacher

    source = tmp_path / "with-tiny"
    shutil.copytree(tiny_checkpoint, source)
    torch.manual_seed(0)
    TinyVideoDecoder(latent_channels=48, channels=CHANNELS).save_pretrained(source / "tiny_decoder")
    output = train_teacher("synthetic", str(source), tmp_path / "teacher", config_factory(steps=1))
    assert weights(output / "tiny_decoder").keys() == weights(source / "tiny_decoder").keys()
    assert all(torch.equal(tensor, weights(source / "tiny_decoder")[name])
               for name, tensor in weights(output / "tiny_decoder").items())


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16")
def test_a_bf16_run_differs_from_fp32_only_by_rounding(tiny_checkpoint, tmp_path):
    recipe = config(tmp_path, steps=1)
    runs = {precision: metrics(train_decoder(str(tiny_checkpoint), "synthetic", tmp_path / precision, recipe,
                                             channels=CHANNELS, mixed_precision=precision))[0]
            for precision in ("no", "bf16")}
    assert runs["no"]["l1"] != runs["bf16"]["l1"]  # the VAE's targets and the decoder ran in bf16
    assert runs["bf16"]["l1"] == pytest.approx(runs["no"]["l1"], rel=0.02)
