"""Notices about the model's reach: its training size, and modes that do nothing on a CPU."""

from dataclasses import replace
from pathlib import Path

import torch

from engine.api.generate import GenerateRequest, plan_output
from engine.checkpoint import CheckpointInfo
from engine.pipelines.runtime import Acceleration, Runtime, runtime_notices


def trained_at(model, size):
    info = CheckpointInfo(preset="tiny", condnet_trained=True,
                          training={"config": {"stages": [{"name": "clips", "size": list(size)}]}})
    return replace(model, info=info)


def request(size):
    return GenerateRequest(user=Path("u.png"), output=Path("o.mp4"), size=size, seconds=0.5, fps=8)


def test_a_size_other_than_the_training_size_gets_a_notice(tiny_model):
    model = trained_at(tiny_model, (64, 96))
    assert plan_output(request((64, 96)), model, (200, 300)).reach_notice is None
    notice = plan_output(request((256, 448)), model, (200, 300)).reach_notice
    assert "trained at 64x96" in notice and "256x448" in notice
    assert plan_output(request((256, 448)), tiny_model, (200, 300)).reach_notice is None  # no training recorded


def test_offload_and_fp8_weights_say_they_change_nothing_on_a_cpu():
    cpu = Runtime(torch.device("cpu"), torch.float32, "sdpa", Acceleration(offload="model", fp8_weights=True))
    notices = runtime_notices(cpu)
    assert any("--offload changes nothing on a CPU" in n for n in notices)
    assert any("--fp8-weights on a CPU" in n for n in notices)
    assert runtime_notices(Runtime(torch.device("cpu"), torch.float32, "sdpa")) == []
