"""Fixtures the package's tests share: stand-ins for the curation models, and a local Ray cluster."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Thresholds for toy videos: the defaults are for real footage (480p and up, 2 s and up).
TOY_CURATION = dict(min_seconds=1.0, min_short_side=64, max_side=256, motion_band=(0.001, 1.0), min_quality=1.0,
                    min_validation=0.0, scorer="sharpness_colour")


class PortraitPeopleDetector:
    """Stands in for a trained detector (tiny random weights find nothing meaningful): one person in a
    portrait frame, two in a landscape one — the tests' two-person clip is two clips side by side."""

    name = "portrait-people (test)"

    def person_scores(self, frames):
        return [[0.9] * (1 if frame.shape[0] >= frame.shape[1] else 2) for frame in frames]


class TintEditor:
    """Stands in for the edit model: a product shot is the frame's centre on white; put_on tints the
    frame towards the garment's mean colour — deterministic, and never the frame itself."""

    name = "tint (test)"

    def take_off(self, frame, category):
        shot = Image.new("RGB", frame.size, "white")
        width, height = frame.size
        shot.paste(frame.crop((width // 4, height // 4, 3 * width // 4, 3 * height // 4)), (width // 4, height // 4))
        return shot

    def put_on(self, frame, garment, category):
        colour = np.asarray(garment).reshape(-1, 3).mean(axis=0)
        return Image.fromarray((0.6 * np.asarray(frame) + 0.4 * colour).astype(np.uint8))


def stand_in_models(vlm_folder: Path):
    """The curation models of the tests: the stand-ins above, the tiny VLM, the heuristic scorer."""
    from engine.curate import CurationModels
    from engine.train.scorer import SharpnessColourScorer
    from engine.vision.vlm import LocalVLM

    return CurationModels(PortraitPeopleDetector(), LocalVLM(vlm_folder), TintEditor(), SharpnessColourScorer())


@pytest.fixture(scope="session")
def tiny_vlm_folder(tmp_path_factory) -> Path:
    from engine.vision.vlm import build_tiny_vlm

    return build_tiny_vlm(tmp_path_factory.mktemp("vlm") / "vlm")


@pytest.fixture
def curation_models(tiny_vlm_folder):
    return stand_in_models(tiny_vlm_folder)


@pytest.fixture
def toy_curation():
    from engine.curate import CurateConfig

    return CurateConfig(**TOY_CURATION)


@pytest.fixture
def curation_models_factory(tiny_vlm_folder):
    """`stand_in_models` as a Ray worker can build it: this module travels by value, not by import."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return partial(stand_in_models, tiny_vlm_folder)


@pytest.fixture(scope="module")
def ray_cluster():
    """A Ray cluster of this one machine, two CPU slots, on loopback only."""
    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as patch:
        # Ray kills its workers first when the machine's memory runs short, whoever uses it (its
        # memory monitor; oom_score_adj 1000 for the kernel's): on a shared machine that would be
        # someone else's process deciding our test.
        patch.setenv("RAY_memory_monitor_refresh_ms", "0")
        patch.setenv("RAY_worker_oom_score_adjustment", "0")
        ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False, logging_level="ERROR")
        yield
        ray.shutdown()
