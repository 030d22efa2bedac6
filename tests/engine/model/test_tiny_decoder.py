"""The tiny streaming decoder: chunks equal the whole clip, the full decoder's frame layout, the
published TAEHV weights (key set and shapes of taew2_2 / taew2_2_super in taehv_keys.json, read
from the public madebyollin/taehv model definition), save and load."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from engine.errors import InputError
from engine.model.causal_vae import CausalDecoder
from engine.model.tiny_decoder import TinyStreamDecoder, TinyVideoDecoder

TAEHV_KEYS = json.loads(Path(__file__).with_name("taehv_keys.json").read_text())
SMALL = dict(latent_channels=4, patch_size=2, channels=(16, 8, 8, 8))


def small(variant="base"):
    torch.manual_seed(0)
    return TinyVideoDecoder(**SMALL, variant=variant).eval()


@pytest.mark.parametrize("variant", ["base", "super"])
def test_chunk_by_chunk_decode_equals_one_whole_clip_decode(variant):
    model = small(variant)
    latents = torch.randn(1, 4, 7, 3, 5, generator=torch.Generator().manual_seed(1))
    whole = model.decode(latents)
    assert whole.shape == (1, 3, 1 + 4 * 6, 48, 80)  # 16x in space: patch 2, three doublings

    stream = TinyStreamDecoder(model)
    chunks = [stream.decode(latents[:, :, a:b]) for a, b in ((0, 1), (1, 4), (4, 6), (6, 7))]
    assert [chunk.shape[2] for chunk in chunks] == [1, 12, 8, 4]
    torch.testing.assert_close(torch.cat(chunks, dim=2), whole, atol=1e-6, rtol=0)

    forgetful = TinyStreamDecoder(model)  # without the memory of the chunks before, a chunk decodes otherwise
    forgetful.decode(latents[:, :, :1])
    assert not torch.allclose(forgetful.decode(latents[:, :, 4:6]), chunks[2], atol=1e-4)
    stream.reset()
    torch.testing.assert_close(stream.decode(latents), whole, atol=1e-6, rtol=0)


def test_the_training_forward_is_the_decode_unclamped():
    model = small()
    latents = torch.randn(2, 4, 3, 2, 2, generator=torch.Generator().manual_seed(2)) * 3
    out = model(latents)
    assert out.requires_grad and out.shape == (2, 3, 9, 32, 32)
    torch.testing.assert_close(out[1:].detach().clamp(-1, 1), model.decode(latents[1:]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("latent_frames", [1, 2, 5])
def test_frames_and_size_as_the_full_decoder_gives(tiny_model, latent_frames):
    vae = tiny_model.pipeline.vae
    tiny = TinyVideoDecoder.for_vae(vae.config, channels=(8, 8, 8, 8)).eval()
    latents = torch.randn(1, vae.config.z_dim, latent_frames, 2, 3)
    assert tiny.decode(latents).shape == CausalDecoder(vae).decode(latents).shape


def random_taehv(name, generator_seed=0):
    generator = torch.Generator().manual_seed(generator_seed)
    return {key: torch.randn(shape, generator=generator) * 0.05 for key, shape in TAEHV_KEYS[name].items()}


@pytest.mark.parametrize("name", ["taew2_2", "taew2_2_super"])
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_published_taehv_weights_load_strictly_and_decode_wan22_latents(tmp_path, name, suffix):
    state = random_taehv(name)
    path = tmp_path / f"{name}{suffix}"
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)

    model = TinyVideoDecoder.from_taehv(path)
    loaded = model.state_dict()
    assert set(loaded) == set(state) and all(torch.equal(loaded[key], state[key]) for key in state)
    config = model.config
    assert (config.latent_channels, config.patch_size, config.variant) == \
           (48, 2, "super" if "super" in name else "base")
    assert model.frames_to_trim == 3

    pixels = model.decode(torch.randn(1, 48, 3, 2, 3))  # Wan2.2: 16x in space, 1 + 4(F-1) frames
    assert pixels.shape == (1, 3, 9, 32, 48) and pixels.min() >= -1 and pixels.max() <= 1
    assert model.encode(pixels).shape == (1, 48, 3, 2, 3)


def test_taehv_weights_come_from_the_hub_cache(tmp_path, monkeypatch):
    import huggingface_hub

    path = tmp_path / "taew2_2.safetensors"
    save_file(random_taehv("taew2_2"), path)
    asked = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, file: asked.append((repo, file)) or str(path))
    model = TinyVideoDecoder.from_taehv("someone/taehv/safetensors/taew2_2.safetensors")
    assert asked == [("someone/taehv", "safetensors/taew2_2.safetensors")]
    assert model.config.latent_channels == 48


def test_a_file_that_is_not_taehv_weights_is_an_input_error(tmp_path):
    other = tmp_path / "other.safetensors"
    save_file({"decoder.1.weight": torch.zeros(8, 4, 3, 3)}, other)
    with pytest.raises(InputError, match="not a TAEHV state dict"):
        TinyVideoDecoder.from_taehv(other)
    with pytest.raises(InputError, match="no such TAEHV weights file"):
        TinyVideoDecoder.from_taehv(tmp_path / "missing.safetensors")
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(InputError, match="cannot read TAEHV weights"):
        TinyVideoDecoder.from_taehv(tmp_path / "junk.pth")


def test_save_and_load_round_trip(tmp_path):
    model = small("super")
    model.save_pretrained(tmp_path / "tiny_decoder")
    assert sorted(p.name for p in (tmp_path / "tiny_decoder").iterdir()) == \
           ["config.json", "diffusion_pytorch_model.safetensors"]
    again = TinyVideoDecoder.from_pretrained(tmp_path / "tiny_decoder").eval()
    assert again.config.variant == "super" and tuple(again.config.channels) == SMALL["channels"]
    latents = torch.randn(1, 4, 3, 2, 2)
    torch.testing.assert_close(again.decode(latents), model.decode(latents), atol=0, rtol=0)
