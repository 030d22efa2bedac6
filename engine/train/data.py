"""Training data: try-on examples from sample folders on disk or from the synthetic world.

A sample folder (the triplet layout that `engine.synth.write_sample` writes):

    user.png               the person, in OTHER clothes than in the target (mismatched reference)
    garment_<category>.png one per garment; category is top, bottom, dress or unknown
    target.mp4             the person wearing the garments (the ground truth)
    motion.mp4             optional: someone else doing the same motion
    caption.txt            optional: the prompt

Every example comes out at the training size: `num_frames` frames resampled to `fps`,
frames and the user photo fitted by "cover", garments by "contain" (on white). With
`num_frames=1` an example is a single frame: the images-only stage of progressive training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import InputError
from engine.media import fit_image, load_image, read_video
from engine.model.roles import MAX_GARMENTS, ROLES
from engine.synth import SEED_STRIDE, make_sample
from engine.train.config import Stage, TrainConfig

GARMENT_ROLES = tuple(role for role in ROLES if role != "user")


@dataclass
class TrainingExample:
    """One example at the training size; arrays are uint8 RGB.

    user (H, W, 3); garments [(role, (H, W, 3))]; motion (T, H, W, 3) or None;
    target (T, H, W, 3); caption: the prompt ("" for none).
    """

    user: np.ndarray
    garments: list[tuple[str, np.ndarray]]
    motion: np.ndarray | None
    target: np.ndarray
    caption: str


def check_example(example: TrainingExample, source: str | Path) -> TrainingExample:
    """Refuse an example whose user photo is the target's first frame, or too many garments.

    Try-on training needs a mismatched reference (the user photo shows other clothes), else
    the model learns to copy the photo. Only an exact copy can be caught here: a lossy video
    never decodes to its source pixels.
    """
    if np.array_equal(example.user, example.target[0]):
        raise InputError("the user photo is the target's first frame; it must show the person in other clothes", source)
    if len(example.garments) > MAX_GARMENTS:
        raise InputError(f"{len(example.garments)} garments; at most {MAX_GARMENTS}", source)
    return example


def visible_files(root: Path, pattern: str) -> list[Path]:
    """The paths under `root` (at any depth) matching `pattern`, sorted, none inside a hidden folder."""
    return sorted(path for path in root.rglob(pattern)
                  if not any(part.startswith(".") for part in path.relative_to(root).parts))


class FolderDataset(Sequence):
    """Every folder under `root` (at any depth, hidden ones skipped) holding a target.mp4."""

    def __init__(self, root: Path, size: tuple[int, int], num_frames: int, fps: float) -> None:
        self.root = Path(root)
        self.size, self.num_frames, self.fps = size, num_frames, fps
        if not self.root.is_dir():
            raise InputError("the training data must be a folder of sample folders", self.root)
        self.folders = [path.parent for path in visible_files(self.root, "target.mp4")]
        if not self.folders:
            raise InputError("no sample folders (folders holding target.mp4 and user.png)", self.root)

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, index: int) -> TrainingExample:
        folder = self.folders[index]
        try:
            return check_example(self._read(folder), folder)
        except InputError as error:
            if error.path == folder:
                raise
            file = error.path.name if error.path is not None else "sample"
            raise InputError(f"bad training sample: {file}: {error.problem}", folder) from None

    def _read(self, folder: Path) -> TrainingExample:
        if not (folder / "user.png").is_file():
            raise InputError("bad training sample: user.png is missing", folder)
        motion = None
        if (folder / "motion.mp4").is_file():
            motion = self._video(folder / "motion.mp4")
        caption = folder / "caption.txt"
        return TrainingExample(
            user=np.asarray(fit_image(load_image(folder / "user.png"), self.size, "cover")),
            garments=[(role, np.asarray(fit_image(load_image(path), self.size, "contain")))
                      for role, path in garment_files(folder)],
            motion=motion,
            target=self._video(folder / "target.mp4"),
            caption=caption.read_text(encoding="utf-8").strip() if caption.is_file() else "",
        )

    def _video(self, path: Path) -> np.ndarray:
        return read_video(path, fps=self.fps, num_frames=self.num_frames, size=self.size, fit="cover")


def garment_files(folder: Path) -> list[tuple[str, Path]]:
    """(role, path) of each `garment_<category>.png`, in role order; an unknown category is an InputError."""
    found = []
    for path in folder.glob("garment_*.png"):
        role = path.stem.removeprefix("garment_")
        if role not in GARMENT_ROLES:
            known = ", ".join(GARMENT_ROLES)
            raise InputError(f"bad training sample: {path.name}: category must be one of {known}", folder)
        found.append((role, path))
    return sorted(found, key=lambda item: GARMENT_ROLES.index(item[0]))


class SyntheticDataset(Sequence):
    """Examples made on the fly by `engine.synth.make_sample(seed)`, one per seed; nothing on disk."""

    def __init__(self, seeds: range, size: tuple[int, int], num_frames: int, fps: float) -> None:
        if len(seeds) == 0:
            raise InputError("a synthetic dataset needs at least one seed")
        self.seeds = seeds
        self.size, self.num_frames, self.fps = size, num_frames, fps

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, index: int) -> TrainingExample:
        seed = self.seeds[index]
        sample = make_sample(seed, size=self.size, num_frames=self.num_frames, fps=self.fps)
        example = TrainingExample(
            user=sample.user,
            garments=list(sample.garments.items()),
            motion=sample.motion,
            target=sample.target,
            caption=sample.caption,
        )
        return check_example(example, f"synthetic sample {seed}")


VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm")


class VideoFolderDataset(Sequence):
    """Every video under `root` (at any depth, hidden ones skipped; sample folders' target and
    motion videos too), each one clip (T, H, W, 3) at the training size, length and fps."""

    def __init__(self, root: Path, size: tuple[int, int], num_frames: int, fps: float) -> None:
        self.root = Path(root)
        self.size, self.num_frames, self.fps = size, num_frames, fps
        if not self.root.is_dir():
            raise InputError("the training data must be a folder of videos", self.root)
        self.videos = [path for path in visible_files(self.root, "*") if path.suffix.lower() in VIDEO_SUFFIXES]
        if not self.videos:
            raise InputError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in this folder", self.root)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> np.ndarray:
        return read_video(self.videos[index], fps=self.fps, num_frames=self.num_frames, size=self.size, fit="cover")


def open_clips(data: Path | str, stage: Stage, config: TrainConfig) -> Sequence[np.ndarray]:
    """Clips (T, H, W, 3) of one stage: the synthetic samples' targets (as `open_dataset`), or
    every video in a folder (`VideoFolderDataset`)."""
    if data == "synthetic":
        examples = open_dataset(data, stage, config)
        return _Targets(examples)
    return VideoFolderDataset(Path(data), stage.size, stage.num_frames, stage.fps)


class _Targets(Sequence):
    def __init__(self, examples: Sequence[TrainingExample]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.examples[index].target


def open_dataset(data: Path | str, stage: Stage, config: TrainConfig) -> Sequence[TrainingExample]:
    """The examples of one stage, at its size, length and frame rate.

    `data` "synthetic" gives make_sample seeds seed·SEED_STRIDE + 0..synthetic_examples−1,
    the samples `engine.synth.write_dataset(count, seed)` would write; anything else is a folder.
    """
    if data == "synthetic":
        first = config.seed * SEED_STRIDE
        seeds = range(first, first + config.synthetic_examples)
        return SyntheticDataset(seeds, stage.size, stage.num_frames, stage.fps)
    return FolderDataset(Path(data), stage.size, stage.num_frames, stage.fps)
