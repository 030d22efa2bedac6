"""The shared training loop's rules that need no model (engine.train.loop)."""

import pytest
import torch

from engine.train import loop


@pytest.mark.parametrize("wanted, device, native, expected", [
    ("auto", "cuda", False, True), ("bf16", "cuda", False, True), ("no", "cuda", True, False),
    ("auto", "cpu", True, False),  # CPU runs stay fp32 unless bf16 is asked for
    ("bf16", "cpu", True, True), ("no", "cpu", True, False),
])
def test_bf16_autocast_follows_the_choice_and_the_device(monkeypatch, wanted, device, native, expected):
    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: native)
    assert loop.resolve_bf16(wanted, torch.device(device)) == (expected, None)


def test_bf16_asked_for_on_a_cpu_without_it_trains_in_fp32_and_says_so(monkeypatch):
    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: False)
    bf16, notice = loop.resolve_bf16("bf16", torch.device("cpu"))
    assert not bf16 and "no native bf16" in notice and "fp32" in notice
