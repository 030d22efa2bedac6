"""`tryon models convert`: bad input is one line and exit 2 (conversion itself is tested in
tests/engine/checkpoint/test_convert.py)."""

import pytest


@pytest.mark.parametrize(("name", "content", "message"), [
    ("fc.pt", b"\x80\x04pickle", "is a pickle"),
    ("missing.safetensors", None, "no such file"),
    ("broken.safetensors", b"not safetensors", "not a readable .safetensors"),
])
def test_convert_refuses_bad_sources_with_one_line(name, content, message, tiny_checkpoint, tmp_path, tryon):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    run = tryon("models", "convert", tmp_path / name, tmp_path / "out", "--base", tiny_checkpoint)
    assert run.code == 2
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
