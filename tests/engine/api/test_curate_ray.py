"""`tryon data curate --ray`: the same samples and decisions as the local run, on a Ray cluster started here."""

import json
import sys
from functools import partial

import numpy as np
import pytest
from PIL import Image

from engine.api.data import curation_worker
from engine.curate import curate
from engine.curate.pipeline import LOG_FILE
from engine.media import read_video, write_video
from engine.synth import make_sample

ray = pytest.importorskip("ray")
from engine.api.curate_ray import ray_items  # noqa: E402 - needs Ray

pytestmark = pytest.mark.slow


def clip(seed: int) -> np.ndarray:
    return make_sample(seed, size=(96, 160), num_frames=17, fps=8).target


@pytest.fixture
def videos(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for seed in (1, 2, 3):
        write_video(folder / f"v{seed}.mp4", clip(seed), 8)
    write_video(folder / "two_people.mp4", np.concatenate([clip(4), clip(5)], axis=2), 8)
    (folder / "corrupt.mp4").write_bytes(b"not a video" * 20)
    return folder


def decisions(out) -> list[dict]:
    """The log's lines in a fixed order (workers append them as they finish)."""
    lines = [json.loads(line) for line in (out / LOG_FILE).read_text().splitlines()]
    return sorted(lines, key=lambda line: json.dumps(line, sort_keys=True))


def test_curation_on_ray_gives_the_local_samples_and_decisions(ray_cluster, videos, curation_models,
                                                              curation_models_factory, toy_curation, tmp_path):
    local = curate(videos, tmp_path / "local", curation_models, toy_curation)
    out = tmp_path / "ray"
    make_worker = partial(curation_worker, videos, out, curation_models_factory, toy_curation)
    with ray_items("auto", out, make_worker, workers=2, use_gpus=False) as map_items:
        remote = curate(videos, out, None, toy_curation, map_items=map_items)

    assert remote.decisions == local.decisions and not remote.failed
    assert decisions(out) == decisions(tmp_path / "local")
    assert [path.name for path in remote.samples] == [path.name for path in local.samples]
    assert len(local.samples) >= 2
    for ours, theirs in zip(remote.samples, local.samples):
        assert np.array_equal(np.asarray(Image.open(ours / "user.png")), np.asarray(Image.open(theirs / "user.png")))
        assert np.array_equal(read_video(ours / "target.mp4"), read_video(theirs / "target.mp4"))
        assert json.loads((ours / "meta.json").read_text()) == json.loads((theirs / "meta.json").read_text())
    again = curate(videos, out, curation_models, toy_curation)  # locally: the Ray run left nothing to do
    assert again.decisions == {} and again.samples == remote.samples


class Failing:
    """A worker whose every video item raises: the item fails, is listed, and leaves no state."""

    def __call__(self, item):
        raise RuntimeError(f"cannot read {item.name}")


def test_an_item_whose_worker_fails_is_listed_and_left_for_the_next_run(ray_cluster, videos, toy_curation, tmp_path):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with ray_items("auto", tmp_path / "out", Failing, workers=1, use_gpus=False) as map_items:
        summary = curate(videos, tmp_path / "out", None, toy_curation, map_items=map_items)
    assert sorted(summary.failed) == sorted(f"video {name}: cannot read {name}" for name in
                                            ("corrupt.mp4", "two_people.mp4", "v1.mp4", "v2.mp4", "v3.mp4"))
    assert summary.samples == [] and summary.decisions == {}
