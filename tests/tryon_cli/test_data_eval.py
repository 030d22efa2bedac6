import json
import shutil


def test_synth_then_eval_round_trip(tmp_path, tryon):
    data = tmp_path / "data"
    run = tryon("data", "synth", data, "--count", "3", "--seed", "1", "--size", "64x64", "--frames", "5", "-q")
    assert run.code == 0, run.stderr
    samples = sorted(p.name for p in data.iterdir())
    assert samples == ["sample_00000", "sample_00001", "sample_00002"]
    stamp = (data / "sample_00001" / "target.mp4").stat().st_mtime_ns
    assert tryon("data", "synth", data, "--count", "3", "--seed", "1", "--size", "64x64", "--frames", "5", "-q").code == 0
    assert (data / "sample_00001" / "target.mp4").stat().st_mtime_ns == stamp  # resumed, not rewritten

    predictions = tmp_path / "pred"
    predictions.mkdir()
    shutil.copy(data / "sample_00000" / "target.mp4", predictions / "sample_00000.mp4")  # perfect
    shutil.copy(data / "sample_00001" / "motion.mp4", predictions / "sample_00001.mp4")  # another person
    run = tryon("eval", predictions, "--reference", data, "--json")
    assert run.code == 0, run.stderr
    report = json.loads(run.stdout)
    scores = {s["name"]: s for s in report["samples"]}
    assert scores["sample_00000"]["psnr"] == 100.0 and scores["sample_00000"]["garment_color_error"] == 0.0
    assert scores["sample_00001"]["psnr"] < 30 and scores["sample_00001"]["garment_color_error"] > 1.0
    assert scores["sample_00000"]["figure_iou_worst"] == scores["sample_00000"]["garment_ssim"] == 1.0
    assert scores["sample_00001"]["figure_iou_worst"] < 0.9  # another person, on another backdrop
    assert len(scores["sample_00001"]["figure_iou_frames"]) == 5
    assert any("sample_00002" in n for n in report["notices"])  # a reference with no prediction


def test_eval_of_a_missing_prediction_is_exit_2(tmp_path, tryon):
    run = tryon("eval", tmp_path / "nothing.mp4", "--reference", tmp_path / "gt.mp4")
    assert run.code == 2 and "nothing.mp4" in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_synth_rejects_a_bad_count(tmp_path, tryon):
    run = tryon("data", "synth", tmp_path / "d", "--count", "0")
    assert run.code == 2 and "count" in run.stderr


def test_eval_table_shows_whole_sample_names(tmp_path, tryon):
    import numpy as np

    from engine.media import write_video

    name = "catalogue_2026_summer_collection_model_0042_linen_shirt_and_wide_trousers"
    frames = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    write_video(tmp_path / f"{name}.mp4", frames, 8)
    write_video(tmp_path / "reference.mp4", frames, 8)
    run = tryon("eval", tmp_path / f"{name}.mp4", "--reference", tmp_path / "reference.mp4")
    assert run.code == 0, run.stderr
    assert name in run.stdout
    # A plain video has PSNR, SSIM, smoothness and motion; no columns of dashes (garment, figure, LPIPS off).
    assert run.stdout.splitlines()[0].count("┳") == 4


def test_eval_sheet_is_written_and_a_bad_one_is_exit_2(tmp_path, tryon):
    import numpy as np

    from engine.media import write_video

    frames = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    write_video(tmp_path / "pred.mp4", frames, 8)
    assert tryon("eval", tmp_path / "pred.mp4", "-r", tmp_path / "pred.mp4", "--sheet", tmp_path / "s.png").code == 0
    assert (tmp_path / "s.png").stat().st_size > 0
    run = tryon("eval", tmp_path / "pred.mp4", "-r", tmp_path / "pred.mp4", "--sheet", tmp_path / "s.gif")
    assert run.code == 2 and "s.gif" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    run = tryon("eval", "--bench", "hgc", tmp_path, "--predictions", tmp_path, "--sheet", tmp_path / "b.png")
    assert run.code == 2 and "--sheet" in run.stderr and not (tmp_path / "b.png").exists()
