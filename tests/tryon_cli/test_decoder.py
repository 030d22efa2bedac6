"""`--decoder full|tiny|TAEHV weights` on swap, extend and bench, and `tryon train decoder`."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from engine.media import read_video, write_video
from engine.model.tiny_decoder import TinyVideoDecoder

FAST = ("--steps", "1", "--seconds", "1", "--fps", "8", "--size", "64x64")


def error_lines(run):
    return [line for line in run.stderr.splitlines() if not line.startswith("warning:")]


@pytest.fixture(scope="module")
def checkpoint_with_tiny_decoder(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint shipping a (random) tiny_decoder/."""
    from engine.checkpoint import load_model

    folder = tmp_path_factory.mktemp("models") / "with-tiny"
    shutil.copytree(tiny_checkpoint, folder)
    torch.manual_seed(0)
    vae_config = load_model(str(tiny_checkpoint)).pipeline.vae.config
    TinyVideoDecoder.for_vae(vae_config, channels=(8, 8, 8, 8)).save_pretrained(folder / "tiny_decoder")
    return folder


def test_swap_streams_with_the_shipped_tiny_decoder_unless_told_full(checkpoint_with_tiny_decoder, inputs, tmp_path,
                                                                      tryon):
    runs = {}
    for choice in ("auto", "full", "tiny"):
        out = tmp_path / f"{choice}.mp4"
        run = tryon("swap", inputs / "user.png", "-g", inputs / "shirt.png", "--model", checkpoint_with_tiny_decoder,
                    *FAST, "--decoder", choice, "-o", out, "--json")
        assert run.code == 0, run.stderr
        runs[choice] = (json.loads(run.stdout)["decoder"], read_video(out))
    assert [runs[choice][0] for choice in ("auto", "full", "tiny")] == ["tiny", "full", "tiny"]
    assert len(runs["tiny"][1]) == len(runs["full"][1]) == 8
    assert np.array_equal(runs["auto"][1], runs["tiny"][1])
    assert not np.array_equal(runs["tiny"][1], runs["full"][1])


def test_extend_records_the_decoder_it_ran(checkpoint_with_tiny_decoder, tmp_path, tryon):
    clip = tmp_path / "clip.mp4"
    write_video(clip, np.random.default_rng(0).integers(0, 255, (9, 64, 64, 3), dtype=np.uint8), 8)
    run = tryon("extend", clip, "--seconds", "1", "--steps", "1", "--model", checkpoint_with_tiny_decoder,
                "-o", tmp_path / "longer.mp4", "--json")
    assert run.code == 0, run.stderr
    assert json.loads(run.stdout)["decoder"] == "tiny"


def test_swap_with_taehv_weights_of_other_latents_is_one_line(tiny_checkpoint, inputs, tmp_path, tryon):
    weights = tmp_path / "taew_other.safetensors"
    save_file(TinyVideoDecoder(latent_channels=16, channels=(8, 8, 8, 8)).state_dict(), weights)
    run = tryon("swap", inputs / "user.png", "-g", inputs / "shirt.png", "--model", tiny_checkpoint, *FAST,
                "--decoder", weights, "-o", tmp_path / "out.mp4")
    assert run.code == 2 and error_lines(run) == [error_lines(run)[0]]
    assert "--decoder" in error_lines(run)[0] and "16-channel" in run.stderr
    assert not (tmp_path / "out.mp4").exists()


def test_decoder_tiny_on_a_checkpoint_without_one_is_one_line_and_exit_2(tiny_checkpoint, inputs, tmp_path, tryon):
    run = tryon("swap", inputs / "user.png", "-g", inputs / "shirt.png", "--model", tiny_checkpoint, *FAST,
                "--decoder", "tiny", "-o", tmp_path / "out.mp4")
    assert run.code == 2 and run.stdout == ""
    (line,) = error_lines(run)  # after the tiny checkpoint's untrained-CondNet warning
    assert "no tiny decoder" in line and "--decoder" in line and "Traceback" not in run.stderr
    assert list(tmp_path.iterdir()) == []


def test_bench_compares_the_tiny_decoder_with_the_full_one(checkpoint_with_tiny_decoder, tryon):
    run = tryon("bench", "--model", checkpoint_with_tiny_decoder, "--mode", "stream", "--size", "64x64",
                "--seconds", "0.5", "--steps", "1", "--decoder", "full", "--compare", "tiny-decoder", "--json")
    assert run.code == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["decoder"] == "full" and result["stages"]["vae_decode"] > 0
    (entry,) = result["compare"]
    assert entry["mode"] == "tiny-decoder" and entry["decoder"] == "tiny"
    assert entry["vae_decode_ratio"] == pytest.approx(entry["vae_decode_s"] / result["stages"]["vae_decode"])


def test_bench_random_weights_stream_with_a_random_tiny_decoder(tryon):
    run = tryon("bench", "--preset", "tiny", "--random-weights", "--mode", "stream", "--size", "64x64",
                "--seconds", "0.5", "--steps", "1", "--decoder", "tiny", "--json")
    assert run.code == 0, run.stderr
    assert json.loads(run.stdout)["decoder"] == "tiny (random weights)"


def test_train_decoder_plan_prints_its_memory(tryon):
    run = tryon("train", "decoder", "--plan", "--preset", "wan2.2-ti2v-5b", "--gpus", "1", "--json")
    assert run.code == 0, run.stderr
    plan = json.loads(run.stdout)
    assert plan["kind"] == "decoder" and plan["fits"]
    assert 9e6 < plan["trained_parameters"] < 11e6  # taew2_2's decoder: 9.9 M
    assert plan["stages"][0]["activations"] > 0


@pytest.mark.parametrize("args", [
    ["train", "decoder", "--data", "synthetic", "--output", "out"],
    ["train", "decoder", "--plan", "--channels", "64,32"],
    ["train", "decoder", "--plan", "--channels", "a,b,c,d"],
    ["train", "decoder", "--plan", "--variant", "huge"],
])
def test_train_decoder_bad_arguments_exit_2_with_one_line(tryon, args):
    run = tryon(*args)
    assert run.code == 2 and run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1 and run.stderr.startswith("tryon: error")
