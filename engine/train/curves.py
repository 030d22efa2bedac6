"""Training curves: `metrics.jsonl` drawn as `curves.png` beside it, and the same numbers to
TensorBoard when it is installed.

Each numeric metric gets a panel against the step; a run of several stages (the teacher's
image and clip stages, the student's teacher forcing and DMD) draws each stage as its own
line, so a jump at a stage change reads as one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.media.chart import LinePanel, Series, draw_chart

CURVES_FILE = "curves.png"
TENSORBOARD_FOLDER = "tensorboard"
# Fields of a metrics line that are not curves: where it is, not how it goes.
NOT_CURVES = {"step", "stage", "phase", "seconds", "size", "frames", "num_frames", "fps", "batch_size"}


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The lines of a metrics.jsonl (a line cut short by a kill is skipped)."""
    lines = []
    for text in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError:
            continue
    return lines


def curve_panels(lines: list[dict[str, Any]]) -> list[LinePanel]:
    """One panel per numeric metric, a line per stage (in the same colour in every panel), x the step."""
    names = [key for key in dict.fromkeys(k for line in lines for k in line)
             if key not in NOT_CURVES and any(_number(line.get(key)) for line in lines)]
    stages = list(dict.fromkeys(str(line.get("stage", "")) for line in lines))
    panels = []
    for name in names:
        series = [Series(stage or name, [(float(line["step"]), float(line[name])) for line in lines
                                         if str(line.get("stage", "")) == stage and _number(line.get(name))],
                         colour=index)
                  for index, stage in enumerate(stages)]
        panels.append(LinePanel(name, [s for s in series if s.points], x_label="step"))
    return panels


def write_curves(folder: Path) -> Path | None:
    """Draw `folder/metrics.jsonl` as `folder/curves.png`; None when there is nothing to draw yet."""
    path = Path(folder) / "metrics.jsonl"
    lines = [line for line in read_metrics(path) if _number(line.get("step"))] if path.is_file() else []
    panels = curve_panels(lines)
    if not panels:
        return None
    return draw_chart(panels, Path(folder) / CURVES_FILE, title=f"{Path(folder).name}: training curves")


def log_to_tensorboard(folder: Path, line: dict[str, Any]) -> bool:
    """Add a metrics line's numbers as TensorBoard scalars in `folder/tensorboard/`; False when
    `tensorboard` is not installed. The writer is closed at once: the training loop replaces its
    output folder at every checkpoint, and an open event file would stay behind in the old one."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional: pip install "tryon[tensorboard]"
        return False
    with SummaryWriter(log_dir=str(Path(folder) / TENSORBOARD_FOLDER)) as writer:
        for key, value in line.items():
            if key not in NOT_CURVES and _number(value):
                writer.add_scalar(key, value, global_step=int(line["step"]))
    return True


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
