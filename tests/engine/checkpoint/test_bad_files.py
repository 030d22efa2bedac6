"""A checkpoint folder with a broken file is an InputError naming the file, never a crash."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from engine.checkpoint import load_model
from engine.checkpoint.public.loading import is_route_source
from engine.checkpoint.store import CheckpointInfo
from engine.errors import InputError

INFO = {"kind": "teacher", "preset": "tiny", "format": 1}


def folder_with_info(tmp_path: Path, content: bytes) -> Path:
    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / "tryon.json").write_bytes(content)
    return folder


@pytest.mark.parametrize(("content", "problem"), [
    (json.dumps(INFO).encode().replace(b'"kind"', b'"k\xffind"'), "not UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (json.dumps({**INFO, "format": 999}).encode(), "'format' is 999"),
])
def test_a_bad_tryon_json_is_one_line_naming_it(tmp_path, content, problem):
    folder = folder_with_info(tmp_path, content)
    assert is_route_source(str(folder)) is False  # the route check does not crash on it either
    with pytest.raises(InputError) as caught:
        CheckpointInfo.read(folder)
    assert str(caught.value).startswith(f"{folder / 'tryon.json'}: ") and problem in str(caught.value)


def test_a_transformer_file_missing_tensors_names_the_folder(tiny_checkpoint, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    weights = next((broken / "transformer").glob("*.safetensors"))
    tensors = load_file(weights)
    dropped = sorted(tensors)[0]
    del tensors[dropped]
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(InputError) as caught:
        load_model(str(broken))
    message = str(caught.value)
    assert message.startswith(f"{broken / 'transformer'}: the weights lack 1 tensors") and dropped in message
