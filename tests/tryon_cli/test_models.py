"""`tryon models`: init never deletes what tryon did not write; list names both shipped defaults."""

import json
import shutil

import pytest


def error_lines(run):
    return [line for line in run.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("target", [".", ""])
def test_init_overwrite_refuses_the_current_folder_and_keeps_it(target, tmp_path, tryon):
    (tmp_path / "thesis.tex").write_text("years of work")
    run = tryon("models", "init", "tiny", target, "--overwrite", cwd=tmp_path)
    assert run.code == 2
    assert len(error_lines(run)) == 1 and "current folder" in run.stderr and "Traceback" not in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]


def test_init_overwrite_refuses_a_folder_holding_other_things(tmp_path, tryon):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_text("mine")
    run = tryon("models", "init", "tiny", photos, "--overwrite", cwd=tmp_path)
    assert run.code == 2 and len(error_lines(run)) == 1
    assert "not a tryon checkpoint's" in run.stderr
    assert [p.name for p in photos.iterdir()] == ["a.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


def test_init_over_a_file_without_overwrite_is_one_line(tmp_path, tryon):
    (tmp_path / "ck").write_text("a file")
    run = tryon("models", "init", "tiny", tmp_path / "ck", cwd=tmp_path)
    assert run.code == 2 and len(error_lines(run)) == 1 and "already exists" in run.stderr
    assert (tmp_path / "ck").read_text() == "a file"


def test_init_of_a_preset_without_an_offline_tokenizer_is_one_line(tmp_path, tryon):
    run = tryon("models", "init", "wan2.2-ti2v-5b", tmp_path / "ck", cwd=tmp_path)
    assert run.code == 2 and len(error_lines(run)) == 1 and "no offline tokenizer" in run.stderr
    assert not (tmp_path / "ck").exists()


def test_init_overwrite_replaces_a_checkpoint_it_wrote(tiny_checkpoint, tmp_path, tryon):
    ck = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, ck)
    run = tryon("models", "init", "tiny", ck, "--overwrite", "--seed", "3", cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert json.loads((ck / "tryon.json").read_text())["training"]["note"] == "random init, seed 3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


@pytest.mark.parametrize(("name", "content", "message"), [
    ("fc.pt", b"\x80\x04pickle", "is a pickle"),
    ("missing.safetensors", None, "no such file"),
    ("broken.safetensors", b"not safetensors", "not a readable .safetensors"),
])
def test_convert_refuses_bad_sources_with_one_line(name, content, message, tiny_checkpoint, tmp_path, tryon):
    """`tryon models convert` (the conversion itself: tests/engine/checkpoint/test_convert.py)."""
    if content is not None:
        (tmp_path / name).write_bytes(content)
    run = tryon("models", "convert", tmp_path / name, tmp_path / "out", "--base", tiny_checkpoint)
    assert run.code == 2
    assert message in run.stderr and len(error_lines(run)) == 1
    assert not (tmp_path / "out").exists()


def test_convert_writes_the_aesthetic_predictor_and_needs_its_clip(tryon, tmp_path):
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from engine.checkpoint.aesthetic import expected_head_shapes

    torch.save({key: torch.randn(shape) for key, shape in expected_head_shapes().items()}, tmp_path / "p.pth")
    clip = tmp_path / "clip-l14"
    CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                   num_attention_heads=2, image_size=32, patch_size=8,
                                                   projection_dim=768)).save_pretrained(clip)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(clip)
    run = tryon("models", "convert", tmp_path / "p.pth", tmp_path / "aesthetic", "--kind", "aesthetic")
    assert run.code == 2 and "--clip" in run.stderr and not (tmp_path / "aesthetic").exists()
    run = tryon("models", "convert", tmp_path / "p.pth", tmp_path / "aesthetic", "--kind", "aesthetic", "--clip", clip)
    assert run.code == 0, run.stderr
    assert sorted(p.name for p in (tmp_path / "aesthetic").iterdir()) == ["clip", "head.safetensors"]
