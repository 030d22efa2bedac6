"""write_sample / write_dataset: files, formats, atomicity and resuming."""

from __future__ import annotations

import json
import os
import shutil

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from engine.errors import InputError
from engine.synth import SEED_STRIDE, make_sample, write_dataset, write_sample
from engine.synth import sample as sample_module

SMALL = (32, 56)


def _read_video(path) -> tuple[dict, np.ndarray]:
    reader = imageio_ffmpeg.read_frames(str(path))
    info = next(reader)
    width, height = info["size"]
    frames = [np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader]
    return info, np.stack(frames)


def test_write_sample_writes_every_file_in_its_format(tmp_path, sample_at):
    s = sample_at(4)  # top and bottom
    T, H, W = s.target.shape[:3]
    folder = write_sample(s, tmp_path / "one")
    assert folder == tmp_path / "one"
    expected = {"user.png", "motion.mp4", "target.mp4", "caption.txt", "masks.npz", "meta.json"}
    expected |= {f"garment_{c}.png" for c in s.garments}
    assert {p.name for p in folder.iterdir()} == expected
    assert os.listdir(tmp_path) == ["one"]  # no temporary leftovers

    assert np.array_equal(np.asarray(Image.open(folder / "user.png")), s.user)
    for cat, img in s.garments.items():
        assert np.array_equal(np.asarray(Image.open(folder / f"garment_{cat}.png")), img)
    for name, frames in (("target.mp4", s.target), ("motion.mp4", s.motion)):
        info, video = _read_video(folder / name)
        assert tuple(info["size"]) == (W, H)
        assert video.shape == (T, H, W, 3)
        assert np.mean(np.abs(video.astype(int) - frames.astype(int))) < 6  # crf 12, 4:2:0
    with np.load(folder / "masks.npz") as masks:
        assert set(masks.files) == set(s.masks)
        for cat in s.masks:
            assert masks[cat].dtype == bool and masks[cat].shape == (T, H, W)
            assert np.array_equal(masks[cat], s.masks[cat])
    assert (folder / "caption.txt").read_text().strip() == s.caption
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["masks"] == "masks.npz"
    assert meta["garments"] == {c: f"garment_{c}.png" for c in s.garments}
    assert meta["frames"] == T and meta["size"] == [W, H] and meta["fps"] == 8.0
    assert meta["seed"] == 4 and meta["motion"] == s.meta["motion"]


def test_write_sample_replaces_an_existing_folder(tmp_path, sample_at):
    folder = tmp_path / "s"
    write_sample(sample_at(1, SMALL, 3), folder)
    write_sample(sample_at(2, SMALL, 3), folder)  # a sample folder of ours is replaced (a stray file is refused: below)
    assert json.loads((folder / "meta.json").read_text())["seed"] == 2
    assert os.listdir(tmp_path) == ["s"]


def test_a_failed_write_leaves_nothing_behind(tmp_path, sample_at, monkeypatch):
    def broken(videos, fps):
        next(iter(videos)).write_bytes(b"half a video")
        raise OSError("disk full")

    monkeypatch.setattr(sample_module, "_write_videos", broken)
    with pytest.raises(OSError):
        write_sample(sample_at(1, SMALL, 3), tmp_path / "s")
    assert os.listdir(tmp_path) == []


def test_write_dataset_names_seeds_and_resumes(tmp_path):
    seen = []
    paths = write_dataset(tmp_path / "ds", 3, seed=2, size=SMALL, num_frames=3, progress=seen.append)
    assert paths == [tmp_path / "ds" / f"sample_{i:05d}" for i in range(3)]
    assert seen == [1, 2, 3]
    for i, path in enumerate(paths):
        meta = json.loads((path / "meta.json").read_text())
        assert meta["seed"] == 2 * SEED_STRIDE + i
        assert meta["caption"] == make_sample(2 * SEED_STRIDE + i, SMALL, 3).caption
    stamps = {p: (p / "target.mp4").stat().st_mtime_ns for p in paths}

    (tmp_path / "ds" / ".sample_00001.tmp-stale").mkdir()  # as left by a killed run
    shutil.rmtree(paths[1])
    again = write_dataset(tmp_path / "ds", 3, seed=2, size=SMALL, num_frames=3)
    assert again == paths
    assert (paths[0] / "target.mp4").stat().st_mtime_ns == stamps[paths[0]]
    assert (paths[2] / "target.mp4").stat().st_mtime_ns == stamps[paths[2]]
    assert (paths[1] / "meta.json").is_file()
    assert sorted(os.listdir(tmp_path / "ds")) == ["sample_00000", "sample_00001", "sample_00002"]


def test_datasets_with_different_seeds_do_not_share_samples():
    assert {0 * SEED_STRIDE + i for i in range(1000)}.isdisjoint({1 * SEED_STRIDE + i for i in range(1000)})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"count": 0},
        {"count": -3},
        {"count": 1.5},
        {"size": (63, 112)},
        {"size": (64, 113)},
        {"size": (8, 8)},
        {"num_frames": 0},
        {"fps": -1.0},
    ],
)
def test_write_dataset_rejects_bad_arguments(tmp_path, kwargs):
    args = {"count": 1, "seed": 0, "size": SMALL, "num_frames": 2} | kwargs
    with pytest.raises(InputError):
        write_dataset(tmp_path / "ds", **args)
    assert not (tmp_path / "ds").exists() or not any((tmp_path / "ds").iterdir())


def test_write_sample_never_replaces_a_folder_holding_other_things(tmp_path, sample_at):
    folder = tmp_path / "sample_00000"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a synthetic sample's"):
        write_sample(sample_at(4), folder)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample_00000"]
