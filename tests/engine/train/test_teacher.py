import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from engine.errors import InputError
from engine.synth import make_sample, write_sample
from engine.train.loop import load_quietly
from engine.train.state import saved_step
from engine.train.teacher import train_teacher
from engine.train.trainable import LORA_TARGETS

from .conftest import Stop, stop_at

CONDNET = ("role_embedding.", "motion_embedding.")


def transformer_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "transformer" / "diffusion_pytorch_model.safetensors")


def metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def changed(before: dict, after: dict, atol: float = 0.0) -> set[str]:
    assert before.keys() == after.keys()
    return {name for name in before if not torch.allclose(before[name], after[name], rtol=0, atol=atol)}


def test_overfitting_two_examples_lowers_the_loss_and_checkpoints_load(unit_latent_checkpoint, tmp_path,
                                                                       config_factory):
    config = config_factory(steps=30, num_frames=5, batch_size=2, checkpoint_every=15)
    seen = {}

    def progress(stage: str, done: int, total: int) -> None:
        if done == 16:  # the step-15 checkpoint is in place
            seen["mid"] = load_quietly(tmp_path / "out").info

    output = train_teacher("synthetic", str(unit_latent_checkpoint), tmp_path / "out", config, progress=progress)

    losses = [line["loss"] for line in metrics(output)]
    assert len(losses) == 30 and metrics(output)[-1]["step"] == 30
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses
    assert seen["mid"].condnet_trained and seen["mid"].training["steps"] == 15
    final = load_quietly(output)
    assert final.info.kind == "teacher" and final.info.condnet_trained and final.info.preset == "tiny"
    assert final.info.training["steps"] == 30 and final.info.training["data"] == "synthetic"
    assert not final.pipeline.transformer.condnet_is_zero()


def test_a_killed_run_resumes_at_its_checkpoint_and_ends_as_an_uninterrupted_one(tiny_checkpoint, tmp_path,
                                                                                 config_factory):
    stages = [{"name": "images", "steps": 2, "size": [32, 32], "num_frames": 1, "lr": 3e-3},
              {"name": "clips", "steps": 2, "size": [32, 32], "num_frames": 5, "lr": 1e-3}]
    config = config_factory(checkpoint_every=2, p_dance=0.5)
    config = type(config).from_dict({**config.to_dict(), "stages": stages})
    whole = train_teacher("synthetic", str(tiny_checkpoint), tmp_path / "whole", config)

    with pytest.raises(Stop):
        train_teacher("synthetic", str(tiny_checkpoint), tmp_path / "parts", config, progress=stop_at(3))
    assert json.loads((tmp_path / "parts" / "training_state" / "state.json").read_text())["step"] == 2
    notes = []
    parts = train_teacher("synthetic", str(tiny_checkpoint), tmp_path / "parts", config, resume=True, log=notes.append)

    assert notes[0] == "resuming at step 2 of 4"
    assert changed(transformer_weights(tiny_checkpoint), transformer_weights(whole))
    assert changed(transformer_weights(whole), transformer_weights(parts)) == set()
    assert [(m["step"], m["stage"], m["loss"], m["lr"]) for m in metrics(parts)] == \
           [(m["step"], m["stage"], m["loss"], m["lr"]) for m in metrics(whole)]


def test_a_time_budget_stops_the_run_checkpointed_and_resume_finishes_it(tiny_checkpoint, tmp_path, config_factory):
    config = config_factory(steps=3, num_frames=1, checkpoint_every=3, log_every=3)
    whole = train_teacher("synthetic", str(tiny_checkpoint), tmp_path / "whole", config)

    notes = []
    train_teacher("synthetic", str(tiny_checkpoint), tmp_path / "parts", config, minutes=0, log=notes.append)
    assert notes[-1] == "stopped after 0 minutes at step 1 of 3: --resume goes on"
    assert saved_step(tmp_path / "parts") == 1 and [m["step"] for m in metrics(tmp_path / "parts")] == [1]
    train_teacher("synthetic", str(tiny_checkpoint), tmp_path / "parts", config, resume=True, minutes=0)
    assert saved_step(tmp_path / "parts") == 2
    parts = train_teacher("synthetic", str(tiny_checkpoint), tmp_path / "parts", config, resume=True, minutes=0)

    assert saved_step(parts) == 3 and [m["step"] for m in metrics(parts)] == [1, 2, 3]  # the last step ends it
    assert changed(transformer_weights(whole), transformer_weights(parts)) == set()


def test_resuming_with_other_trainable_weights_is_an_input_error(tiny_checkpoint, tmp_path, config_factory):
    config = config_factory(steps=2, num_frames=1)
    train_teacher("synthetic", str(tiny_checkpoint), tmp_path / "parts", config, minutes=0)
    with pytest.raises(InputError, match="saved run trained other weights \\('all', .* than this config does "
                                         "\\('attention'"):
        train_teacher("synthetic", str(tiny_checkpoint), tmp_path / "parts", config_factory(
            steps=2, num_frames=1, trainable="attention"), resume=True)
    assert saved_step(tmp_path / "parts") == 1


def test_lora_learns_only_adapters_and_condnet_and_saves_a_plain_transformer(tiny_checkpoint, tmp_path,
                                                                             config_factory):
    config = config_factory(steps=3, trainable="lora", lora_rank=4, lr=1e-2)
    output = train_teacher("synthetic", str(tiny_checkpoint), tmp_path / "out", config)

    before, after = transformer_weights(tiny_checkpoint), transformer_weights(output)
    assert not any("lora" in name or "base_layer" in name for name in after)
    moved = changed(before, after)
    lora_targets = {name for name in before if any(f".{t}.weight" in name for t in LORA_TARGETS)}
    assert moved - lora_targets == {"role_embedding.weight", "motion_embedding.weight", "motion_embedding.bias"}
    assert moved & lora_targets
    assert type(load_quietly(output).pipeline.transformer).__name__ == "CondNetTransformer"


def test_a_resumed_lora_run_ends_close_to_an_uninterrupted_one(tiny_checkpoint, tmp_path, config_factory):
    config = config_factory(steps=3, trainable="lora", lora_rank=4, lr=1e-2, checkpoint_every=1)
    whole = train_teacher("synthetic", str(tiny_checkpoint), tmp_path / "whole", config)
    with pytest.raises(Stop):
        train_teacher("synthetic", str(tiny_checkpoint), tmp_path / "parts", config, progress=stop_at(2))
    parts = train_teacher("synthetic", str(tiny_checkpoint), tmp_path / "parts", config, resume=True)
    assert changed(transformer_weights(whole), transformer_weights(parts), atol=1e-5) == set()


def test_attention_mode_leaves_the_rest_of_the_transformer_alone(tiny_checkpoint, tmp_path, config_factory):
    output = train_teacher("synthetic", str(tiny_checkpoint), tmp_path / "out",
                           config_factory(steps=1, trainable="attention"))
    moved = changed(transformer_weights(tiny_checkpoint), transformer_weights(output))
    assert all(".attn1." in name or ".attn2." in name or name.startswith(CONDNET) for name in moved)
    assert any(".attn2." in name for name in moved)


def test_training_reads_sample_folders(tiny_checkpoint, tmp_path, config_factory):
    for seed in range(2):
        write_sample(make_sample(seed, size=(32, 32), num_frames=5), tmp_path / "data" / f"s{seed}")
    output = train_teacher(tmp_path / "data", str(tiny_checkpoint), tmp_path / "out",
                           config_factory(steps=2, num_frames=5))
    assert load_quietly(output).info.training["data"] == str(tmp_path / "data")


def test_bad_runs_fail_before_training(tiny_checkpoint, tmp_path, config_factory):
    config = config_factory(steps=1)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="already holds files"):
        train_teacher("synthetic", str(tiny_checkpoint), busy, config)
    with pytest.raises(InputError, match="nothing to resume"):
        train_teacher("synthetic", str(tiny_checkpoint), tmp_path / "new", config, resume=True)
    with pytest.raises(InputError, match="folder of sample folders"):
        train_teacher(tmp_path / "absent", str(tiny_checkpoint), tmp_path / "new", config)
    odd_size = type(config).from_dict({**config.to_dict(), "stages": [
        {"name": "odd", "steps": 1, "size": [48, 32], "num_frames": 1}]})
    with pytest.raises(InputError, match="not a multiple of 32"):
        train_teacher("synthetic", str(tiny_checkpoint), tmp_path / "new", odd_size)


def test_the_output_is_never_the_current_folder_nor_a_resumed_folder_holding_other_things(
        tiny_checkpoint, tmp_path, config_factory, monkeypatch):
    config = config_factory(steps=1)
    monkeypatch.chdir(tmp_path)
    for output in (Path("."), Path(".."), Path(tmp_path)):
        with pytest.raises(InputError, match="replaced at every checkpoint"):
            train_teacher("synthetic", str(tiny_checkpoint), output, config)
    resumed = tmp_path / "resumed"
    (resumed / "training_state").mkdir(parents=True)
    (resumed / "training_state" / "state.json").write_text("{}")
    (resumed / "model_index.json").write_text("{}")
    (resumed / "tryon.json").write_text("{}")
    (resumed / "holiday.jpg").write_text("mine")
    with pytest.raises(InputError, match="not a tryon checkpoint's"):
        train_teacher("synthetic", str(tiny_checkpoint), resumed, config, resume=True)
    assert (resumed / "holiday.jpg").read_text() == "mine"


def test_a_run_killed_before_its_first_checkpoint_can_start_again(tiny_checkpoint, tmp_path, config_factory):
    config = config_factory(steps=2, checkpoint_every=2)
    with pytest.raises(Stop):
        train_teacher("synthetic", str(tiny_checkpoint), tmp_path / "out", config, progress=stop_at(2))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["curves.png", "metrics.jsonl", "tensorboard"]
    train_teacher("synthetic", str(tiny_checkpoint), tmp_path / "out", config)
    assert [m["step"] for m in metrics(tmp_path / "out")] == [1, 2]
    assert (tmp_path / "out" / "curves.png").is_file() and any((tmp_path / "out" / "tensorboard").iterdir())


def test_another_motion_form_keeps_the_shared_weights_and_starts_the_new_form_at_zero(tiny_checkpoint):
    from engine.train.teacher import in_recipe_form

    transformer = load_quietly(tiny_checkpoint).pipeline.transformer
    assert in_recipe_form(transformer, {"motion_conditioning": "additive", "motion_pool": None}) is transformer
    converted = in_recipe_form(transformer, {"motion_conditioning": "attention", "motion_pool": 2})
    assert (converted.config.motion_conditioning, converted.config.motion_pool) == ("attention", 2)
    before, after = transformer.state_dict(), converted.state_dict()
    assert set(after) - set(before) == {"motion_role"} and not after["motion_role"].any()
    assert set(before) - set(after) == {"motion_embedding.weight", "motion_embedding.bias"}  # additive's own
    assert all(torch.equal(before[name], after[name]) for name in after if name in before)
    back = in_recipe_form(converted, {"motion_conditioning": "additive", "motion_pool": 1})
    assert set(back.state_dict()) == set(before)


def test_a_grown_transformer_starts_close_to_its_base_and_its_new_blocks_share_their_model_blocks_output(
        tiny_checkpoint):
    from engine.model.transformer_condnet import Condition
    from engine.train.teacher import BLOCK_OUTPUTS, in_recipe_form

    transformer = load_quietly(tiny_checkpoint).pipeline.transformer.eval()
    layers = transformer.config.num_layers
    grown = in_recipe_form(transformer, {"num_layers": 2 * layers}).eval()
    assert grown.config.num_layers == 2 * layers
    before, after = transformer.state_dict(), grown.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before if not name.startswith("blocks."))
    for old in range(layers):  # each block is followed by its copy; the two share its output
        for name, value in before.items():
            if name.startswith(f"blocks.{old}."):
                local = name.removeprefix(f"blocks.{old}.")
                expected = value / 2 if local.startswith(BLOCK_OUTPUTS) else value
                assert torch.equal(after[f"blocks.{2 * old}.{local}"], expected)
                assert torch.equal(after[f"blocks.{2 * old + 1}.{local}"], expected)
    generator = torch.Generator().manual_seed(0)
    channels, text_dim = transformer.config.in_channels, transformer.config.text_dim
    inputs = dict(hidden_states=torch.randn(1, channels, 2, 4, 4, generator=generator), timestep=torch.tensor([500.0]),
                  encoder_hidden_states=torch.randn(1, 3, text_dim, generator=generator),
                  conditions=[Condition("user", torch.randn(1, channels, 1, 4, 4, generator=generator))],
                  return_dict=False)
    config = {key: value for key, value in grown.config.items() if not key.startswith("_")}
    fresh = type(grown)(**config).eval()  # the same depth, its blocks drawn at random
    fresh.load_state_dict({k: v for k, v in after.items() if not k.startswith("blocks.")}, strict=False)
    with torch.no_grad():
        base = transformer(**inputs)[0]
        off = (grown(**inputs)[0] - base).norm() / base.norm()
        off_fresh = (fresh(**inputs)[0] - base).norm() / base.norm()
    assert off < 0.2 and off < off_fresh / 3
    with pytest.raises(InputError, match="fewer than the base's"):
        in_recipe_form(transformer, {"num_layers": layers - 1})


@pytest.mark.slow
def test_a_recipe_sets_the_motion_form_and_depth_and_a_resumed_run_keeps_them(tiny_checkpoint, tmp_path,
                                                                             config_factory):
    layers = json.loads((tiny_checkpoint / "transformer" / "config.json").read_text())["num_layers"] + 1
    config = config_factory(steps=2, num_frames=5, checkpoint_every=1, motion_conditioning="attention", motion_pool=1,
                            motion_dropout=0.0, p_dance=0.0, num_layers=layers)
    with pytest.raises(Stop):
        train_teacher("synthetic", str(tiny_checkpoint), tmp_path / "out", config, progress=stop_at(2))
    output = train_teacher("synthetic", str(tiny_checkpoint), tmp_path / "out", config, resume=True)
    transformer = load_quietly(output).pipeline.transformer
    assert (transformer.config.motion_conditioning, transformer.config.motion_pool) == ("attention", 1)
    assert transformer.config.num_layers == layers
    assert transformer.motion_role.abs().sum() > 0  # it learned
    assert transformer.blocks[layers - 1].attn1.to_out[0].weight.abs().sum() > 0  # the new (last) block learned
    additive_only = {"motion_embedding.weight", "motion_embedding.bias"}
    new_block = {name.replace("blocks.0.", f"blocks.{layers - 1}.") for name in transformer_weights(tiny_checkpoint)
                 if name.startswith("blocks.0.")}
    assert set(transformer_weights(output)) == (set(transformer_weights(tiny_checkpoint)) - additive_only
                                                | {"motion_role"} | new_block)
