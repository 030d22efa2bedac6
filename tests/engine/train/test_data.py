import shutil

import numpy as np
import pytest

from engine.errors import InputError
from engine.synth import make_sample, write_sample
from engine.train.config import Stage, TrainConfig
from engine.train.data import (
    FolderDataset,
    SyntheticDataset,
    TrainingExample,
    check_example,
    open_dataset,
)

SIZE = (32, 64)


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory):
    """Two synthetic samples written in the triplet layout, one nested a level deeper."""
    root = tmp_path_factory.mktemp("samples")
    write_sample(make_sample(1, size=SIZE, num_frames=5, categories=("top", "bottom")), root / "a")
    write_sample(make_sample(2, size=SIZE, num_frames=5, categories=("dress",)), root / "more" / "b")
    return root


@pytest.fixture
def copy_of(sample_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(sample_root, root)
    return root


def test_every_folder_with_a_target_video_is_a_sample_at_the_training_size(sample_root):
    dataset = FolderDataset(sample_root, size=(64, 32), num_frames=3, fps=8.0)
    assert [f.relative_to(sample_root).as_posix() for f in dataset.folders] == ["a", "more/b"]
    first = dataset[0]
    assert first.user.shape == (32, 64, 3) and first.target.shape == (3, 32, 64, 3)
    assert first.motion.shape == (3, 32, 64, 3)
    assert [role for role, _ in first.garments] == ["top", "bottom"]
    assert all(image.shape == (32, 64, 3) for _, image in first.garments)
    assert first.caption == make_sample(1, size=SIZE, num_frames=5, categories=("top", "bottom")).caption
    assert [role for role, _ in dataset[1].garments] == ["dress"]


def test_one_frame_examples_make_an_images_only_stage(sample_root):
    example = FolderDataset(sample_root, size=SIZE, num_frames=1, fps=8.0)[0]
    assert example.target.shape == (1, 64, 32, 3) and example.motion.shape == (1, 64, 32, 3)


def test_motion_and_caption_are_optional(copy_of):
    (copy_of / "a" / "motion.mp4").unlink()
    (copy_of / "a" / "caption.txt").unlink()
    example = FolderDataset(copy_of, size=SIZE, num_frames=2, fps=8.0)[0]
    assert example.motion is None and example.caption == ""


def test_hidden_folders_are_not_samples(copy_of):
    shutil.copytree(copy_of / "a", copy_of / ".a.tmp-123")
    assert len(FolderDataset(copy_of, size=SIZE, num_frames=1, fps=8.0)) == 2


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda folder: (folder / "user.png").unlink(), "user.png is missing"),
        (lambda folder: (folder / "target.mp4").write_bytes(b"not a video"), "target.mp4"),
        (lambda folder: (folder / "garment_top.png").rename(folder / "garment_hat.png"), "garment_hat.png"),
        (lambda folder: (folder / "user.png").write_bytes(b"\x89PNG broken"), "user.png"),
    ],
)
def test_a_bad_sample_folder_is_an_input_error_naming_it(copy_of, damage, words):
    damage(copy_of / "a")
    dataset = FolderDataset(copy_of, size=SIZE, num_frames=1, fps=8.0)
    with pytest.raises(InputError) as caught:
        dataset[0]
    assert caught.value.path == copy_of / "a"
    assert words in str(caught.value)


def test_a_folder_without_samples_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no sample folders"):
        FolderDataset(tmp_path, size=SIZE, num_frames=1, fps=8.0)


def test_synthetic_examples_are_make_sample_without_disk():
    dataset = SyntheticDataset(range(5, 7), size=SIZE, num_frames=2, fps=8.0)
    sample = make_sample(6, size=SIZE, num_frames=2, fps=8.0)
    example = dataset[1]
    assert len(dataset) == 2
    assert np.array_equal(example.target, sample.target) and np.array_equal(example.user, sample.user)
    assert [role for role, _ in example.garments] == list(sample.garments)
    assert not np.array_equal(example.user, example.target[0])  # the mismatched reference


def test_the_synthetic_source_follows_the_config_seed():
    config = TrainConfig([Stage("s", 1, SIZE, 1)], seed=2, synthetic_examples=3)
    dataset = open_dataset("synthetic", config.stages[0], config)
    assert dataset.seeds == range(2 * 100_003, 2 * 100_003 + 3)


def test_a_user_photo_that_is_the_target_first_frame_is_refused():
    frames = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    example = TrainingExample(user=frames[0].copy(), garments=[], motion=None, target=frames, caption="")
    with pytest.raises(InputError, match="must show the person in other clothes"):
        check_example(example, "here")
