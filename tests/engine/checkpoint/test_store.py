import json
import shutil
import warnings
from dataclasses import replace

import pytest
import torch

from engine.checkpoint import (
    CondNetUntrainedWarning,
    build_random_on,
    load_model,
    resolve_source,
    validate_checkpoint,
)
from engine.checkpoint.presets import TINY
from engine.errors import InputError


@pytest.fixture
def checkpoint_copy(tiny_checkpoint, tmp_path):
    copy = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, copy)
    return copy


def test_round_trip_keeps_weights_and_metadata(tiny_checkpoint, tiny_model):
    info = json.loads((tiny_checkpoint / "tryon.json").read_text())
    assert info["kind"] == "teacher" and info["preset"] == "tiny" and info["condnet_trained"] is False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = load_model(str(tiny_checkpoint))
    assert any(issubclass(w.category, CondNetUntrainedWarning) for w in caught)
    for (name, a), (_, b) in zip(tiny_model.pipeline.transformer.state_dict().items(),
                                 again.pipeline.transformer.state_dict().items()):
        assert torch.equal(a, b), name
    assert again.pipeline.max_text_tokens == 32
    assert validate_checkpoint(tiny_checkpoint)["transformer"] == "CondNetTransformer"


def test_trained_checkpoint_loads_without_warning(checkpoint_copy):
    info = json.loads((checkpoint_copy / "tryon.json").read_text())
    (checkpoint_copy / "tryon.json").write_text(json.dumps({**info, "condnet_trained": True}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CondNetUntrainedWarning)
        load_model(str(checkpoint_copy))


def test_pickled_weights_are_refused(checkpoint_copy):
    pickled = checkpoint_copy / "transformer" / "diffusion_pytorch_model.bin"
    torch.save({"x": torch.zeros(1)}, pickled)
    with pytest.raises(InputError, match="pickled weights are refused") as error:
        load_model(str(checkpoint_copy))
    assert "diffusion_pytorch_model.bin" in str(error.value)


@pytest.mark.parametrize("where", ["optimizer.pt", "training_state/EMA.PTH", "extra/weights.CKPT"])
def test_pickled_files_anywhere_in_the_folder_are_refused(checkpoint_copy, where):
    pickled = checkpoint_copy / where
    pickled.parent.mkdir(exist_ok=True)
    torch.save({"x": torch.zeros(1)}, pickled)
    with pytest.raises(InputError, match="pickled weights are refused") as error:
        validate_checkpoint(checkpoint_copy)
    assert str(error.value).startswith(f"{pickled}: ")


def test_missing_weights_are_named(checkpoint_copy):
    (checkpoint_copy / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(InputError, match="no .safetensors weights for the vae"):
        load_model(str(checkpoint_copy))


def test_corrupt_safetensors_is_one_clear_error(checkpoint_copy):
    weights = checkpoint_copy / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(InputError, match="diffusion_pytorch_model.safetensors: not a complete .safetensors file") as error:
        load_model(str(checkpoint_copy))
    assert "\n" not in str(error.value)


def test_config_naming_an_unknown_class_is_refused(checkpoint_copy):
    index = json.loads((checkpoint_copy / "model_index.json").read_text())
    index["transformer"] = ["evil_module", "Backdoor"]
    (checkpoint_copy / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(InputError, match="unknown class 'Backdoor'"):
        load_model(str(checkpoint_copy))


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(InputError, match="model_index.json is missing"):
        load_model(str(tmp_path))
    with pytest.raises(InputError, match="no such checkpoint folder"):
        resolve_source(str(tmp_path / "nope"))


def _put_in_hub_cache(checkpoint, cache, repo_id, commit="0123456789abcdef0123456789abcdef01234567"):
    """Lay a checkpoint out exactly as huggingface_hub's cache stores a downloaded snapshot."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(checkpoint, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return commit


def test_hub_ids_load_through_the_hub_cache_offline(tiny_checkpoint, tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    cache = tmp_path / "hub"
    commit = _put_in_hub_cache(tiny_checkpoint, cache, "tryon/tiny-test")
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    loaded = load_model("tryon/tiny-test")
    assert loaded.path == cache / "models--tryon--tiny-test" / "snapshots" / commit
    assert loaded.info.preset == "tiny"
    pinned = load_model("tryon/tiny-test", revision=commit)
    assert pinned.path == loaded.path
    with pytest.raises(InputError, match="not in the local Hub cache") as error:
        load_model("tryon/not-cached")
    assert "tryon/not-cached" in str(error.value)


def test_random_build_without_a_vocabulary_uses_a_placeholder_tokenizer():
    preset = replace(TINY, name="no-vocabulary", tokenizer_vocabulary=[], max_text_tokens=16,
                     text_encoder={**TINY.text_encoder, "vocab_size": 1000})
    pipeline = build_random_on(preset, torch.device("cpu"), torch.bfloat16)
    assert torch.get_default_dtype() == torch.float32
    assert pipeline.transformer.dtype == torch.bfloat16 and pipeline.text_encoder.dtype == torch.bfloat16
    assert pipeline.vae.dtype == torch.float32
    assert pipeline.text_encoder.config.vocab_size == 1000
    assert pipeline.encode_prompt("she dances").shape == (1, 16, TINY.text_encoder["d_model"])


def test_random_build_has_the_dtypes_of_a_loaded_checkpoint(tiny_checkpoint):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = load_model(str(tiny_checkpoint), dtype=torch.bfloat16).pipeline
    built = build_random_on(TINY, torch.device("cpu"), torch.bfloat16)
    for component in ("transformer", "text_encoder", "vae"):
        dtypes = [{n: p.dtype for n, p in getattr(pipe, component).named_parameters()} for pipe in (loaded, built)]
        assert dtypes[0] == dtypes[1], component
def _edit_json(path, **changes):
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


MALFORMED = {
    "index not an object": ("model_index.json", lambda p: p.write_text("[1, 2]"), "must hold a JSON object"),
    "index not UTF-8": ("model_index.json", lambda p: p.write_bytes(b"\xff\xfe{\x00"), "not UTF-8"),
    "index class not a string": ("model_index.json", lambda p: _edit_json(p, vae=["diffusers", ["x"]]),
                                 "no 'vae' component"),
    "config not an object": ("transformer/config.json", lambda p: p.write_text('"layers"'), "JSON object"),
    "config nested deep": ("transformer/config.json", lambda p: p.write_text("[" * 100_000), "nested too deeply"),
    "absurd layers": ("transformer/config.json", lambda p: _edit_json(p, num_layers=10**6), "between 0 and 100"),
    "layers as text": ("transformer/config.json", lambda p: _edit_json(p, num_layers="2"), "must be an integer"),
    "absurd vae list": ("vae/config.json", lambda p: _edit_json(p, dim_mult=[1, 2, 10**5]), "dim_mult[2]"),
    "absurd text width": ("text_encoder/config.json", lambda p: _edit_json(p, d_model=10**7), "'d_model' is"),
    "truncated weights": ("transformer/diffusion_pytorch_model.safetensors", _truncate,
                          "not a complete .safetensors"),
    "info not an object": ("tryon.json", lambda p: p.write_text("null"), "must hold a JSON object, not null"),
    "info not UTF-8": ("tryon.json", lambda p: p.write_bytes(b'{"kind": "\xff"}'), "not UTF-8"),
    "trained as text": ("tryon.json", lambda p: _edit_json(p, condnet_trained="no"),
                        "'condnet_trained' must be true or false, not a string"),
    "training as list": ("tryon.json", lambda p: _edit_json(p, training=[]), "'training' must be an object"),
    "tokens absurd": ("tryon.json", lambda p: _edit_json(p, max_text_tokens=10**9), "'max_text_tokens' is"),
    "stream as list": ("tryon.json", lambda p: _edit_json(p, stream=[]), "'stream' must be an object"),
    "stream value as text": ("tryon.json", lambda p: _edit_json(p, stream={"disentangle": "no"}),
                             "'stream' takes refresh, withdraw, disentangle as true or false, chunk_frames"),
    "stream unknown operation": ("tryon.json", lambda p: _edit_json(p, stream={"sideways": True}), "not 'sideways'"),
    "stream chunk as text": ("tryon.json", lambda p: _edit_json(p, stream={"chunk_frames": "8"}), "not 'chunk_frames'"),
    "stream timestep past 1000": ("tryon.json", lambda p: _edit_json(p, stream={"timesteps": [1500, 500]}),
                                  "not 'timesteps'"),
    "scheduler not an object": ("scheduler/scheduler_config.json", lambda p: p.write_text("3"), "JSON object"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_a_malformed_checkpoint_is_one_input_error_naming_the_file(checkpoint_copy, case):
    name, spoil, problem = MALFORMED[case]
    spoil(checkpoint_copy / name)
    with pytest.raises(InputError) as caught:
        load_model(str(checkpoint_copy))
    message = str(caught.value)
    assert problem in message and "\n" not in message
    assert str(checkpoint_copy / name) in message or str((checkpoint_copy / name).parent) in message
