"""The demo presets (the shipped demo and its candidate successors) build, and their parts fit together."""

import numpy as np
import pytest
import torch

from engine.checkpoint.presets import PRESETS
from engine.checkpoint.store import build_random

DEMO_PRESETS = [name for name in PRESETS if name.startswith("demo")]


def test_the_demo_and_its_candidates_run_on_any_cpu():
    assert {"demo", "demo-z48", "demo-4x"} <= set(DEMO_PRESETS)
    assert all(PRESETS[name].hardware == "any CPU" for name in DEMO_PRESETS)


@pytest.mark.parametrize("name", DEMO_PRESETS)
def test_a_demo_preset_encodes_its_default_size_into_tokens_its_transformer_reads(name):
    preset = PRESETS[name]
    pipeline = build_random(preset)
    height, width = preset.default_size
    frames = np.random.default_rng(0).integers(0, 256, (5, height, width, 3), dtype=np.uint8)
    with torch.no_grad():
        latents = pipeline.encode_frames(frames)
    factor = preset.vae["scale_factor_spatial"]
    assert latents.shape == (1, preset.vae["z_dim"], 2, height // factor, width // factor)
    assert pipeline.transformer.config.in_channels == preset.vae["z_dim"]
    # the transformer sees 6x10 tokens per latent frame at 96x160, whichever the VAE's factor
    patch = preset.transformer["patch_size"]
    assert (height // factor // patch[1], width // factor // patch[2]) == (10, 6)
    assert pipeline.decode(latents).shape == frames.shape
