"""`tryon data curate` on the command line: bad model folders are one line and exit 2, nothing written."""


def test_curate_names_a_missing_model_folder(tryon, tmp_path):
    (tmp_path / "videos").mkdir()
    run = tryon("data", "curate", tmp_path / "videos", tmp_path / "out", "--detector", tmp_path / "det",
                "--vlm", tmp_path / "vlm", "--editor", tmp_path / "edit")
    assert run.code == 2
    assert "edit" in run.stderr and "model_index.json" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists()
