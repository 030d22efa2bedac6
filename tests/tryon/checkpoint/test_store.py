import json
import shutil
import warnings

import pytest
import torch

from tryon.checkpoint import (
    CondNetUntrainedWarning,
    load_model,
    resolve_source,
    validate_checkpoint,
)
from tryon.errors import InputError


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
    with pytest.raises(InputError, match="cannot load the transformer") as error:
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
