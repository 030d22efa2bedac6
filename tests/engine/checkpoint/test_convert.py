"""FashionChameleon's checkpoints (Wan2.2 original key names) into ours: `tryon models convert`."""

from __future__ import annotations

import warnings

import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import save_file

from engine.api import convert_model
from engine.checkpoint import load_model
from engine.checkpoint.presets import TINY
from engine.checkpoint.convert import original_key, rename_key
from engine.errors import InputError
from engine.model.transformer_condnet import Condition

# The Wan2.2 original name of each diffusers name, written out here (not derived from the code
# under test), so a wrong entry in the converter's table fails the test.
_ORIGINAL_BLOCK_NAMES = {
    "attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k", "attn1.to_v": "self_attn.v",
    "attn1.to_out.0": "self_attn.o", "attn1.norm_q": "self_attn.norm_q", "attn1.norm_k": "self_attn.norm_k",
    "attn2.to_q": "cross_attn.q", "attn2.to_k": "cross_attn.k", "attn2.to_v": "cross_attn.v",
    "attn2.to_out.0": "cross_attn.o", "attn2.norm_q": "cross_attn.norm_q", "attn2.norm_k": "cross_attn.norm_k",
    "norm2": "norm3", "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2",
}
_ORIGINAL_TOP_NAMES = {
    "patch_embedding": "patch_embedding",
    "condition_embedder.text_embedder.linear_1": "text_embedding.0",
    "condition_embedder.text_embedder.linear_2": "text_embedding.2",
    "condition_embedder.time_embedder.linear_1": "time_embedding.0",
    "condition_embedder.time_embedder.linear_2": "time_embedding.2",
    "condition_embedder.time_proj": "time_projection.1",
    "proj_out": "head.head",
}


def original_name(ours: str) -> str:
    if ours == "scale_shift_table":
        return "head.modulation"
    if ours.startswith("blocks."):
        _, index, rest = ours.split(".", 2)
        if rest == "scale_shift_table":
            return f"blocks.{index}.modulation"
        module, kind = rest.rsplit(".", 1)
        return f"blocks.{index}.{_ORIGINAL_BLOCK_NAMES[module]}.{kind}"
    module, kind = ours.rsplit(".", 1)
    return f"{_ORIGINAL_TOP_NAMES[module]}.{kind}"


@pytest.fixture(scope="module")
def wan():
    """A plain Wan transformer with random weights: what FashionChameleon trains and saves."""
    torch.manual_seed(3)
    model = WanTransformer3DModel(**TINY.transformer).eval()  # the tiny checkpoint's transformer shape
    with torch.no_grad():
        for param in model.parameters():  # norms start at one: make every tensor tell apart
            param.add_(torch.randn_like(param) * 0.02)
    return model


@pytest.fixture(scope="module")
def original_file(wan, tmp_path_factory):
    """The trainer's dict in its layout (generator under `model.`, its EMA, a critic), as safetensors."""
    folder = tmp_path_factory.mktemp("fc")
    state = {original_name(k): v.contiguous() for k, v in wan.state_dict().items()}
    whole = {f"generator_ema.model.{k}": v for k, v in state.items()}
    whole |= {f"generator.model.{k}": torch.zeros_like(v) for k, v in state.items()}
    whole |= {f"critic.model.{k}": torch.ones_like(v) for k, v in state.items()}
    save_file(whole, folder / "fc.safetensors")
    return folder / "fc.safetensors"


@pytest.fixture(scope="module")
def converted(original_file, tiny_checkpoint, tmp_path_factory):
    folder = convert_model(original_file, tmp_path_factory.mktemp("out") / "fc", base=str(tiny_checkpoint))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a converted model is trained: no untrained warning
        return load_model(str(folder))


def test_every_original_key_maps_to_a_parameter_of_the_same_shape(wan):
    ours = wan.state_dict()
    for key, tensor in ours.items():
        assert rename_key(original_name(key)) == key
        assert original_key(key) == original_name(key)  # the inverse, which the tiny route's LongLive layout uses
    assert rename_key("blocks.0.self_attn.lora_A.weight") is None and rename_key("head.extra") is None


def test_converted_model_has_the_ema_generator_weights_and_the_fashionchameleon_layout(converted, wan):
    transformer = converted.pipeline.transformer
    assert transformer.config.condition_layout == "fashionchameleon"
    assert converted.info.kind == "student" and converted.info.training["window"] == 5
    ours = transformer.state_dict()
    for key, tensor in wan.state_dict().items():
        torch.testing.assert_close(ours[key], tensor, rtol=0, atol=0)
    assert transformer.condnet_is_zero()  # no role or motion embeddings in FashionChameleon


@torch.no_grad()
def test_converted_model_generates_as_the_original_code_does(converted, wan):
    """FashionChameleon's teacher: [reference, garment, noisy video] as consecutive latent frames,
    conditions at t=0, full attention. The converted model, given the same as conditions, must
    predict the same flow for the video."""
    g = torch.Generator().manual_seed(0)
    reference, garment = torch.randn(1, 48, 1, 4, 6, generator=g), torch.randn(1, 48, 1, 4, 6, generator=g)
    video = torch.randn(1, 48, 3, 4, 6, generator=g)
    text = torch.randn(1, 5, wan.config.text_dim, generator=g)
    tokens_per_frame = 2 * 3
    timestep = torch.cat([torch.zeros(2 * tokens_per_frame), torch.full((3 * tokens_per_frame,), 600.0)])[None]
    expected = wan(torch.cat([reference, garment, video], dim=2), timestep, text).sample[:, :, 2:]
    model = converted.pipeline.transformer
    got = model(video, torch.tensor([600.0]), text, conditions=[Condition("user", reference),
                                                                  Condition("top", garment)]).sample
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_a_pickle_an_unknown_key_or_a_wrong_shape_is_an_input_error(wan, tiny_checkpoint, tmp_path):
    (tmp_path / "fc.pt").write_bytes(b"not read")
    with pytest.raises(InputError, match="pickle"):
        convert_model(tmp_path / "fc.pt", tmp_path / "a", base=str(tiny_checkpoint))
    state = {original_name(k): v.contiguous() for k, v in wan.state_dict().items()}
    save_file({**state, "blocks.0.self_attn.lora_A.weight": torch.zeros(2, 2)}, tmp_path / "extra.safetensors")
    with pytest.raises(InputError, match="no place in the model.*lora_A"):
        convert_model(tmp_path / "extra.safetensors", tmp_path / "b", base=str(tiny_checkpoint))
    state["head.head.weight"] = torch.zeros(3, 3)
    save_file(state, tmp_path / "shape.safetensors")
    with pytest.raises(InputError, match="shapes differ.*head.head.weight"):
        convert_model(tmp_path / "shape.safetensors", tmp_path / "c", base=str(tiny_checkpoint))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


# -- LongLive-2.0-5B: the same original names, released as a pickle -----------------------------


@pytest.fixture(scope="module")
def longlive_pickle(wan, tmp_path_factory):
    """LongLive's release in its layout: `model.`-prefixed original names under `generator`, pickled."""
    path = tmp_path_factory.mktemp("longlive") / "model_bf16.pt"
    torch.save({"generator": {f"model.{original_name(k)}": v for k, v in wan.state_dict().items()}, "step": 5000},
               path)
    return path


def test_longlive_pickle_converts_records_its_repo_and_stream_and_round_trips(longlive_pickle, wan, tiny_checkpoint,
                                                                             tmp_path):
    import json

    folder = convert_model(longlive_pickle, tmp_path / "ll", base=str(tiny_checkpoint), layout="longlive",
                           revision="abc123")
    assert not list(folder.rglob("*.pt")) and list(folder.rglob("*.safetensors"))
    info = json.loads((folder / "tryon.json").read_text())
    assert info["kind"] == "student" and info["training"]["repo"] == "Efficient-Large-Model/LongLive-2.0-5B"
    assert info["training"]["revision"] == "abc123"
    assert info["stream"] == {"chunk_frames": 8, "sink_frames": 1, "local_window_frames": 32,
                              "timesteps": [1000, 750, 500, 250], "shift": 5.0}
    loaded = load_model(str(folder))
    ours = loaded.pipeline.transformer.state_dict()
    for key, tensor in wan.state_dict().items():
        torch.testing.assert_close(ours[key], tensor, rtol=0, atol=0)
    # no condition tokens: given the same video and per-frame timesteps, it is the Wan transformer
    g = torch.Generator().manual_seed(1)
    video, text = torch.randn(1, 48, 3, 4, 6, generator=g), torch.randn(1, 5, wan.config.text_dim, generator=g)
    timestep = torch.tensor([[0.0, 600.0, 600.0]])
    with torch.no_grad():
        expected = wan(video, timestep.repeat_interleave(2 * 3, dim=1), text).sample
        got = loaded.pipeline.transformer(video, timestep, text).sample
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


class NotAWeight:
    pass


def test_a_pickle_with_objects_is_refused_by_the_weights_only_reader(tiny_checkpoint, tmp_path):
    torch.save({"generator": NotAWeight()}, tmp_path / "model_bf16.pt")
    with pytest.raises(InputError, match="weights_only"):
        convert_model(tmp_path / "model_bf16.pt", tmp_path / "out", base=str(tiny_checkpoint), layout="longlive")
    assert not (tmp_path / "out").exists()
