"""`tryon data curate` on the command line: bad model folders are one line and exit 2, nothing written."""

import json

import pytest

from .conftest import run_program


def test_curate_names_a_missing_model_folder(tryon, tmp_path):
    (tmp_path / "videos").mkdir()
    run = tryon("data", "curate", tmp_path / "videos", tmp_path / "out", "--detector", tmp_path / "det",
                "--vlm", tmp_path / "vlm", "--editor", tmp_path / "edit")
    assert run.code == 2
    assert "edit" in run.stderr and "model_index.json" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists()


def test_workers_without_ray_is_one_line_and_exit_2(tryon, tmp_path):
    (tmp_path / "videos").mkdir()
    run = tryon("data", "curate", tmp_path / "videos", tmp_path / "out", "--detector", tmp_path / "det",
                "--vlm", tmp_path / "vlm", "--editor", tmp_path / "edit", "--workers", "2")
    assert run.code == 2 and "--workers needs --ray" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_every_model_folder_is_checked_before_any_model_loads(tryon, tmp_path, monkeypatch):
    import engine.api.data
    import engine.curate.models

    (tmp_path / "videos").mkdir()
    for folder, marker in (("det", "config.json"), ("edit", "model_index.json")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / marker).write_text("{}")
    loaded = []
    monkeypatch.setattr(engine.api.data, "load_editor", lambda *a, **k: loaded.append("editor"))
    monkeypatch.setattr(engine.curate.models, "RTDetrPersonDetector", lambda *a, **k: loaded.append("detector"))
    run = tryon("data", "curate", tmp_path / "videos", tmp_path / "out", "--detector", tmp_path / "det",
                "--vlm", tmp_path / "vlm", "--editor", tmp_path / "edit")
    assert run.code == 2 and "vlm" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert loaded == []
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_curate_shows_our_progress_and_no_library_bars(tiny_route, tmp_path):
    from engine.curate.models import build_tiny_detector
    from engine.media import write_video
    from engine.synth import make_sample
    from engine.vision.vlm import build_tiny_vlm

    (tmp_path / "videos").mkdir()
    write_video(tmp_path / "videos" / "a.mp4", make_sample(0, size=(96, 160), num_frames=17, fps=8).target, 8)
    (tmp_path / "curate.json").write_text(json.dumps({"min_seconds": 1.0, "min_short_side": 64}))
    run = run_program("data", "curate", tmp_path / "videos", tmp_path / "out", "--detector",
                      build_tiny_detector(tmp_path / "det"), "--vlm", build_tiny_vlm(tmp_path / "vlm"), "--editor",
                      tiny_route, "--config", tmp_path / "curate.json", "--edit-steps", "1", cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert "filter, caption, garments" in run.stderr  # ours
    assert "it/s" not in run.stderr and "Loading" not in run.stderr  # tqdm's, from transformers or diffusers
