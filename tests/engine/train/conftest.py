"""Fixtures for the training tests: a tiny base whose latents are unit-scale, and configs."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from engine.train.config import TrainConfig


@pytest.fixture(scope="session")
def unit_latent_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint with its VAE's latent statistics measured, as `train_vae` leaves it.

    The random VAE's raw latents have a std near 0.1; normalised to 1 the clean video is a real
    part of the flow target, so learning shows in the loss (not only the noise).
    """
    from engine.checkpoint import load_model, save_checkpoint
    from engine.synth import make_sample
    from engine.train.vae import set_latent_statistics

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model(str(tiny_checkpoint))
    clips = [make_sample(seed, size=(32, 32), num_frames=5).target for seed in range(4)]
    set_latent_statistics(model.pipeline.vae, clips)
    return save_checkpoint(model.pipeline, tmp_path_factory.mktemp("models") / "unit", model.info)


def make_config(steps: int = 4, num_frames: int = 1, batch_size: int = 1, lr: float = 3e-3, **changes) -> TrainConfig:
    """A one-stage config at 32x32 over two synthetic examples, logging every step."""
    stage = {"name": "clips", "steps": steps, "size": [32, 32], "num_frames": num_frames, "fps": 8.0,
             "batch_size": batch_size, "lr": lr}
    return TrainConfig.from_dict({"stages": [stage], "synthetic_examples": 2, "log_every": 1,
                                  "checkpoint_every": 1000, **changes})


@pytest.fixture
def config_factory():
    return make_config


class Stop(Exception):
    """Raised from the progress callback: the run is killed."""


def stop_at(step: int):
    def progress(stage: str, done: int, total: int) -> None:
        if done == step:
            raise Stop
    return progress
