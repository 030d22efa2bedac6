"""`tryon data` and `tryon eval`: synthetic try-on samples, and scores against ground truth."""

from __future__ import annotations

from pathlib import Path

from tryon.progress import Progress


def synthesize(
    out_dir: Path,
    count: int,
    seed: int,
    size: tuple[int, int] = (64, 112),
    num_frames: int = 17,
    fps: float = 8.0,
    progress: Progress | None = None,
) -> list[Path]:
    """Write `count` synthetic try-on samples (the training-folder layout) to `out_dir`."""
    from tryon.synth import write_dataset

    report = progress or (lambda stage, done, total: None)
    return write_dataset(out_dir, count, seed, size=size, num_frames=num_frames, fps=fps,
                         progress=lambda done: report("samples", done, count))


def evaluate(prediction: Path, reference: Path):
    """Score a video (or a folder of videos) against ground truth: see tryon.metrics."""
    from tryon.metrics import evaluate as evaluate_videos

    return evaluate_videos(Path(prediction), Path(reference))
