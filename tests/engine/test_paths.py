"""Only what tryon wrote may be replaced: never `.`, `..`, `~`, `/`, nor a folder holding other things."""

from pathlib import Path

import pytest

from engine.errors import InputError
from engine.paths import check_replaceable, protected_reason


def never_ours(folder: Path) -> bool:
    return False


@pytest.mark.parametrize("name", ["", ".", "..", "~", "/"])
def test_the_current_folder_its_parents_home_and_root_are_never_replaced(name, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert protected_reason(Path(name)) is not None
    with pytest.raises(InputError):
        check_replaceable(Path(name), lambda folder: True, "tryon checkpoint")


def test_a_folder_holding_other_things_is_refused_and_left_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_text("mine")
    with pytest.raises(InputError, match="photos: holds files that are not a tryon checkpoint's"):
        check_replaceable(folder, never_ours, "tryon checkpoint")
    assert (folder / "holiday.jpg").read_text() == "mine"


def test_absent_paths_files_empty_folders_and_our_own_folders_may_be_replaced(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.bin").write_text("x")
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / "model_index.json").write_text("{}")
    for path in (tmp_path / "absent", tmp_path / "empty", tmp_path / "file.bin"):
        check_replaceable(path, never_ours, "tryon checkpoint")
    check_replaceable(ours, lambda folder: True, "tryon checkpoint")


def test_a_fifo_is_not_a_file_to_replace(tmp_path, monkeypatch):
    import os

    monkeypatch.chdir(tmp_path)
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(InputError, match="neither a file nor a folder"):
        check_replaceable(tmp_path / "pipe", never_ours, "tryon checkpoint")
