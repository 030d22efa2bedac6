
import json

import pytest
import torch

from engine.errors import InputError
from engine.synth import make_sample
from engine.train.loop import cpu_has_native_bf16, load_quietly
from engine.train.vae import VaeTraining, autoencoder_loss, reconstruction_error, train_vae


@pytest.mark.slow
def test_fine_tuning_the_vae_lowers_its_reconstruction_error(tiny_checkpoint, tmp_path):
    held_out = make_sample(999, size=(32, 32), num_frames=5).target
    before = load_quietly(tiny_checkpoint)
    output = train_vae(str(tiny_checkpoint), tmp_path / "vae",
                       VaeTraining(steps=12, size=(32, 32), num_frames=5, lr=1e-3, examples=4, batch_size=2))
    after = load_quietly(output)
    error_before = reconstruction_error(before.pipeline.vae, held_out)
    assert reconstruction_error(after.pipeline.vae, held_out) < 0.8 * error_before
    # The rest of the checkpoint is unchanged; the latent statistics are measured anew.
    old, new = before.pipeline.transformer.state_dict(), after.pipeline.transformer.state_dict()
    assert all((old[name] == new[name]).all() for name in old)
    assert after.info.condnet_trained == before.info.condnet_trained
    assert after.info.training["vae"]["steps"] == 12
    assert after.info.training["vae"]["batch_size"] == 2
    assert after.pipeline.vae.config.latents_std != before.pipeline.vae.config.latents_std


@pytest.mark.parametrize("change, words", [({"num_frames": 4}, "4k\\+1"), ({"size": (40, 32)}, "multiple of 16"),
                                           ({"steps": 0}, "steps"), ({"batch_size": 0}, "batch_size"),
                                           ({"examples": 0}, "examples"), ({"lr": 0.0}, "lr"),
                                           ({"checkpoint_every": -1}, "checkpoint_every"),
                                           ({"mixed_precision": "fp16"}, "mixed_precision must be one of"),
                                           ({"kl_weight": -1.0}, "kl_weight")])
def test_bad_vae_arguments_are_input_errors_and_nothing_is_written(tiny_checkpoint, tmp_path, change, words):
    settings = VaeTraining(**{"steps": 1, "size": (32, 32), "num_frames": 1, "lr": 1e-3, "examples": 1, **change})
    with pytest.raises(InputError, match=words):
        train_vae(str(tiny_checkpoint), tmp_path / "vae", settings)
    assert not (tmp_path / "vae").exists()


@pytest.mark.slow
def test_a_resumed_vae_run_ends_with_the_weights_of_an_uninterrupted_one(tiny_checkpoint, tmp_path):
    settings = VaeTraining(steps=4, size=(32, 32), num_frames=1, lr=1e-3, examples=3, batch_size=1, checkpoint_every=2)
    whole = train_vae(str(tiny_checkpoint), tmp_path / "whole", settings)

    def stop_after_the_first_checkpoint(stage: str, done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_vae(str(tiny_checkpoint), tmp_path / "cut", settings, progress=stop_after_the_first_checkpoint)
    assert json.loads((tmp_path / "cut" / "training_state" / "state.json").read_text())["step"] == 2
    resumed = train_vae("", tmp_path / "cut", settings, resume=True)

    expected = load_quietly(whole).pipeline.vae.state_dict()
    got = load_quietly(resumed).pipeline.vae.state_dict()
    assert all(torch.equal(expected[name], got[name]) for name in expected)
    assert [json.loads(line)["step"] for line in (resumed / "metrics.jsonl").read_text().splitlines()] == [2]
    assert load_quietly(resumed).info.training["vae"]["steps"] == 4


def test_a_time_budget_stops_a_vae_run_checkpointed_and_resume_finishes_it(tiny_checkpoint, tmp_path):
    settings = VaeTraining(steps=2, size=(32, 32), num_frames=1, lr=1e-3, examples=2, batch_size=1)
    notes = []
    cut = train_vae(str(tiny_checkpoint), tmp_path / "cut", settings, minutes=0, log=notes.append)
    assert notes == ["stopped after 0 minutes at step 1 of 2: --resume goes on"]
    assert json.loads((cut / "training_state" / "state.json").read_text())["step"] == 1
    resumed = train_vae("", cut, settings, resume=True, minutes=0)  # the last step ends the run
    assert json.loads((resumed / "training_state" / "state.json").read_text())["step"] == 2
    assert load_quietly(resumed).info.training["vae"]["steps"] == 2
    with pytest.raises(InputError, match="minutes"):
        train_vae(str(tiny_checkpoint), tmp_path / "never", settings, minutes=-1)
    assert not (tmp_path / "never").exists()


def test_resuming_a_vae_run_needs_its_saved_state(tiny_checkpoint, tmp_path):
    with pytest.raises(InputError, match="nothing to resume"):
        train_vae("", tmp_path / "none", VaeTraining(steps=2, size=(32, 32), num_frames=1, examples=1), resume=True)


def vae_weights(checkpoint) -> dict[str, torch.Tensor]:
    return load_quietly(checkpoint).pipeline.vae.state_dict()


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16")
def test_a_bf16_vae_step_differs_from_fp32_only_by_rounding(tiny_checkpoint, tmp_path):
    def step(precision: str):
        settings = VaeTraining(steps=1, size=(32, 32), num_frames=1, lr=1e-3, examples=1, batch_size=1,
                               mixed_precision=precision)
        return vae_weights(train_vae(str(tiny_checkpoint), tmp_path / precision, settings))

    fp32, bf16, start = step("no"), step("bf16"), vae_weights(tiny_checkpoint)
    name = "decoder.conv_out.weight"
    assert not torch.equal(fp32[name], bf16[name])  # autocast was on
    assert fp32[name].dtype == bf16[name].dtype == torch.float32  # the weights stay fp32
    moved = (fp32[name] - start[name]).abs().sum()
    assert (bf16[name] - fp32[name]).abs().sum() < 0.1 * moved  # the same step, rounded


def test_the_kl_weight_adds_the_posteriors_kl_and_nothing_else(tiny_checkpoint):
    vae = load_quietly(tiny_checkpoint).pipeline.vae
    pixels = torch.rand(1, 3, 1, 32, 32) * 2 - 1

    def loss(weight: float) -> float:
        return autoencoder_loss(vae, pixels, torch.Generator().manual_seed(0), weight).item()

    plain, half, whole = loss(0.0), loss(0.5), loss(1.0)
    assert whole > plain  # a random encoder's posterior is far from N(0, 1)
    assert half - plain == pytest.approx((whole - plain) / 2, rel=1e-4)


def test_a_decoder_only_run_keeps_the_encoder_and_the_latent_statistics(tiny_checkpoint, tmp_path):
    settings = VaeTraining(steps=2, size=(32, 32), num_frames=1, lr=1e-2, examples=2, batch_size=1,
                           decoder_only=True)
    output = train_vae(str(tiny_checkpoint), tmp_path / "dec", settings)
    before, after = load_quietly(tiny_checkpoint).pipeline.vae, load_quietly(output).pipeline.vae
    old, new = before.state_dict(), after.state_dict()
    frozen = [name for name in old if name.startswith(("encoder.", "quant_conv."))]
    trained = [name for name in old if name.startswith(("decoder.", "post_quant_conv."))]
    assert frozen and all(torch.equal(old[name], new[name]) for name in frozen)
    assert any(not torch.equal(old[name], new[name]) for name in trained)
    assert after.config.latents_mean == before.config.latents_mean
    assert after.config.latents_std == before.config.latents_std
    assert load_quietly(output).info.training["vae"]["decoder_only"] is True


def test_a_decoder_only_loss_is_the_reconstruction_and_reaches_only_the_decoder(tiny_checkpoint):
    vae = load_quietly(tiny_checkpoint).pipeline.vae
    pixels = torch.rand(1, 3, 1, 32, 32) * 2 - 1
    loss = autoencoder_loss(vae, pixels, torch.Generator().manual_seed(0), 1.0, decoder_only=True)
    plain = autoencoder_loss(vae, pixels, torch.Generator().manual_seed(0), 0.0)
    assert loss.item() == pytest.approx(plain.item(), rel=1e-5)  # the KL weight counts for nothing
    loss.backward()
    assert vae.encoder.conv_in.weight.grad is None
    assert vae.decoder.conv_out.weight.grad is not None


def test_resuming_a_vae_run_with_the_other_decoder_only_setting_is_an_input_error(tiny_checkpoint, tmp_path):
    settings = VaeTraining(steps=2, size=(32, 32), num_frames=1, lr=1e-3, examples=1, batch_size=1)
    cut = train_vae(str(tiny_checkpoint), tmp_path / "cut", settings, minutes=0)
    with pytest.raises(InputError, match="--decoder-only must be as the run began"):
        train_vae("", cut, VaeTraining(**{**settings.__dict__, "decoder_only": True}), resume=True)
