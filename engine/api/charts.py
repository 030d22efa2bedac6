"""`--chart PNG`: what `tryon eval` and `tryon bench` print, as a picture (engine.media.chart)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import InputError
from engine.media.chart import BarPanel, draw_chart

if TYPE_CHECKING:
    from engine.api.bench.summary import BenchResult
    from engine.metrics.evaluation import EvalReport


def check_chart_path(path: Path | None) -> None:
    """Refuse, before any work, a chart that could not be written: not .png, or no such folder."""
    if path is None:
        return
    if Path(path).suffix.lower() != ".png":
        raise InputError(f"must be a .png file, not '{Path(path).name}'", option="chart")
    if not Path(path).parent.resolve().is_dir():
        raise InputError("folder does not exist", Path(path).parent)


def eval_chart(report: EvalReport, path: Path, labels: dict[str, str]) -> Path:
    """A panel per metric in `labels` (metric name → title) that any sample has: a bar per sample, and the mean."""
    panels = []
    for metric, title in labels.items():
        bars = [(sample.name, getattr(sample, metric)) for sample in report.samples]
        bars = [(name, value) for name, value in bars if value is not None]
        if bars:
            panels.append(BarPanel(title, bars + [("mean", report.mean[metric])]))
    if not panels:
        raise InputError("there is nothing to chart: no sample has a score", path)
    return draw_chart(panels, path, title=f"tryon eval: {len(report.samples)} sample{'s' * (len(report.samples) != 1)}")


def bench_chart(result: BenchResult, path: Path, stage_labels: dict[str, str]) -> Path:
    """Seconds per stage of the baseline run; with --compare, each mode's FPS, its ratio to the
    baseline (the line at 1), its time to the first frame and its peak memory."""
    stages = [(label, result.stages[stage]) for stage, label in stage_labels.items()] + [("other", result.other_s)]
    panels = [BarPanel("seconds per stage (baseline)", stages, unit=" s")]
    if result.compare:
        runs = [("baseline", result.fps, result.first_frame_s, result.peak_memory_mb)] + [
            (entry["mode"], entry["fps"], entry["first_frame_s"], entry["peak_memory_mb"]) for entry in result.compare]
        panels += [
            BarPanel("FPS (video frames / wall second)", [(mode, fps) for mode, fps, _, _ in runs]),
            BarPanel("× FPS against the baseline", [(e["mode"], e["fps_ratio"]) for e in result.compare], reference=1.0),
            BarPanel("time to first frame", [(mode, first) for mode, _, first, _ in runs], unit=" s"),
            BarPanel("peak memory (MiB)", [(mode, memory) for mode, _, _, memory in runs]),
        ]
    title = f"tryon bench: {result.mode}, {result.model}, {result.size[0]}x{result.size[1]}, {result.device}"
    return draw_chart(panels, path, title=title)
