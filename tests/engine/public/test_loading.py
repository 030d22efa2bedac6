"""The route's folder layout, its tryon.json, and the one loader for a folder and the Hub."""

import json

import pytest
import torch

from engine.errors import InputError
from engine.checkpoint.public.loading import check_part, is_route_source, load_part, resolve_route
from engine.checkpoint.public.presets import LIVE_PARTS, PART_NAMES, PUBLIC_PARTS, overridden


def test_init_writes_one_folder_per_part_and_names_the_hub_repo_each_stands_for(tiny_route):
    info = json.loads((tiny_route / "tryon.json").read_text())
    assert info["kind"] == "route" and info["preset"] == "public-tiny"
    assert set(info["parts"]) == set(PART_NAMES) | {"stream", "lightning"}
    for name, entry in info["parts"].items():
        assert (tiny_route / entry["folder"]).is_dir()
        part = (PUBLIC_PARTS | LIVE_PARTS)[name]
        assert entry["repo"] == part.repo and entry["revision"] == part.revision
        assert entry["licence"] == "Apache-2.0"
    index = json.loads((tiny_route / "edit" / "model_index.json").read_text())
    assert index["_class_name"] == "QwenImageEditPlusPipeline"
    assert index["processor"] == ["transformers", "Qwen2VLProcessor"]  # the Hub repo's layout
    assert not [p for p in tiny_route.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".ckpt"}]


def test_a_route_folder_loads_each_part_as_its_own_class(tiny_route):
    from diffusers import QwenImageEditPlusPipeline, WanAnimatePipeline, WanImageToVideoPipeline
    from transformers import RTDetrForObjectDetection, VitPoseForPoseEstimation

    assert is_route_source(str(tiny_route)) and is_route_source("public")
    found = resolve_route(str(tiny_route))
    expected = {"edit": QwenImageEditPlusPipeline, "i2v": WanImageToVideoPipeline, "animate": WanAnimatePipeline}
    for name, cls in expected.items():
        assert isinstance(load_part(name, found.parts[name], found.folders[name], torch.float32), cls)
    detector, _ = load_part("detector", found.parts["detector"], found.folders["detector"], torch.float32)
    keypoints, _ = load_part("keypoints", found.parts["keypoints"], found.folders["keypoints"], torch.float32)
    assert isinstance(detector, RTDetrForObjectDetection) and isinstance(keypoints, VitPoseForPoseEstimation)
    i2v = load_part("i2v", found.parts["i2v"], found.folders["i2v"], torch.bfloat16)
    assert i2v.config.expand_timesteps  # how Wan2.2-TI2V-5B does image-to-video
    assert i2v.vae.dtype == torch.float32 and i2v.transformer.dtype == torch.bfloat16


def test_public_offline_names_the_repo_and_the_way_out(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(InputError) as error:
        resolve_route("public")
    message = str(error.value)
    assert "Qwen/Qwen-Image-Edit-2509" in message and "HF_HUB_OFFLINE" in message and "--model" in message
    assert "\n" not in message


def test_each_repo_and_revision_can_be_overridden_from_the_environment():
    parts = overridden(PUBLIC_PARTS, {"TRYON_PUBLIC_EDIT_REVISION": "abc123",
                                      "TRYON_PUBLIC_ANIMATE_REPO": "me/my-animate"})
    assert parts["edit"].repo == PUBLIC_PARTS["edit"].repo and parts["edit"].revision == "abc123"
    assert parts["animate"].repo == "me/my-animate" and parts["animate"].revision == "main"
    assert parts["i2v"] == PUBLIC_PARTS["i2v"]


def test_pickled_weights_and_unknown_classes_are_refused(tmp_path):
    folder = tmp_path / "detector"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(InputError, match="pickled"):
        check_part("detector", PUBLIC_PARTS["detector"], folder)
    edit = tmp_path / "edit"
    edit.mkdir()
    (edit / "model_index.json").write_text(json.dumps({"transformer": ["evil", "RunMe"]}))
    with pytest.raises(InputError, match="unknown class 'RunMe'"):
        check_part("edit", PUBLIC_PARTS["edit"], edit)


def test_a_route_folder_missing_a_part_fails_in_one_line(tiny_route, tmp_path):
    info = json.loads((tiny_route / "tryon.json").read_text())
    del info["parts"]["keypoints"]
    (tmp_path / "tryon.json").write_text(json.dumps(info))
    for entry in info["parts"].values():
        (tmp_path / entry["folder"]).mkdir()
    with pytest.raises(InputError, match="no 'keypoints' part"):
        resolve_route(str(tmp_path))
