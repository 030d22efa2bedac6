"""Training curves: metrics.jsonl as panels (a line per stage), a PNG, and TensorBoard scalars."""

import json

from engine.train.curves import CURVES_FILE, curve_panels, log_to_tensorboard, read_metrics, write_curves

LINES = [
    {"step": 10, "stage": "teacher_forcing", "loss": 0.5, "lr": 1e-4, "seconds": 3.0},
    {"step": 20, "stage": "teacher_forcing", "loss": 0.4, "lr": 1e-4, "seconds": 6.0},
    {"step": 30, "stage": "dmd", "dmd_loss": 0.9, "lr": 1e-5, "seconds": 9.0},
]


def write_metrics(folder, lines, tail=""):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines) + tail)


def test_each_metric_is_a_panel_with_a_line_per_stage_in_one_colour_per_stage():
    panels = {panel.title: panel for panel in curve_panels(LINES)}
    assert list(panels) == ["loss", "lr", "dmd_loss"]  # not step, stage or seconds
    assert [(s.name, s.points, s.colour) for s in panels["lr"].series] == [
        ("teacher_forcing", [(10.0, 1e-4), (20.0, 1e-4)], 0), ("dmd", [(30.0, 1e-5)], 1)]
    assert [(s.name, s.colour) for s in panels["dmd_loss"].series] == [("dmd", 1)]


def test_the_png_is_written_beside_the_metrics_and_a_cut_line_is_skipped(tmp_path):
    write_metrics(tmp_path / "run", LINES, tail='{"step": 40, "lo')
    assert len(read_metrics(tmp_path / "run" / "metrics.jsonl")) == 3
    assert write_curves(tmp_path / "run") == tmp_path / "run" / CURVES_FILE
    assert (tmp_path / "run" / CURVES_FILE).stat().st_size > 1000
    write_metrics(tmp_path / "empty", [])
    assert write_curves(tmp_path / "empty") is None and not (tmp_path / "empty" / CURVES_FILE).exists()


def test_tensorboard_gets_every_metric_at_its_step(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for line in LINES:
        assert log_to_tensorboard(tmp_path, line)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == ["dmd_loss", "loss", "lr"]
    assert [(e.step, round(e.value, 6)) for e in events.Scalars("loss")] == [(10, 0.5), (20, 0.4)]
