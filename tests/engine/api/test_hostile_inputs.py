"""Values and files that were accepted silently, or failed with a crash, are one InputError each."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from engine.api.batch import BadRow, Job, read_manifest
from engine.api.inputs import check_input_files, check_output, load_photo
from engine.api.loading import get_model
from engine.api.options import resolve_run
from engine.errors import InputError
from engine.media import parse_size
from engine.modes import RunOptions


def picture(path, size=(60, 90)):
    Image.fromarray(np.zeros((size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def test_a_fifo_or_a_device_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero"):
        with pytest.raises(InputError, match="not a regular file"):
            check_input_files(picture(tmp_path / "ok.png"), path)
        with pytest.raises(InputError, match="not a regular file"):
            load_photo(path)


def test_a_one_pixel_person_photo_is_refused(tmp_path):
    with pytest.raises(InputError, match="1x1 pixels"):
        load_photo(picture(tmp_path / "dot.png", (1, 1)))
    assert load_photo(picture(tmp_path / "small.png", (16, 16))).size == (16, 16)


def test_a_two_pixel_size_is_refused():
    with pytest.raises(InputError, match="at least 16"):
        parse_size("2x2")


def test_an_output_onto_a_dangling_link_needs_overwrite(tmp_path):
    link = tmp_path / "out.mp4"
    link.symlink_to(tmp_path / "nowhere" / "x.mp4")
    with pytest.raises(InputError, match="symbolic link to a missing file"):
        check_output(link, overwrite=False)
    check_output(link, overwrite=True)


@pytest.mark.parametrize("field", ["model", "revision"])
def test_an_empty_model_or_revision_is_refused(field):
    with pytest.raises(InputError) as caught:
        RunOptions(**{field: " "})
    assert caught.value.option == field and "is empty" in str(caught.value)


def test_a_revision_on_a_local_folder_is_refused(tmp_path):
    with pytest.raises(InputError) as caught:
        get_model(str(tmp_path), "main", resolve_run(RunOptions()), notice=lambda message: None)
    assert caught.value.option == "revision" and str(tmp_path) in str(caught.value)


def test_threads_set_torchs_intra_op_threads():
    before = torch.get_num_threads()
    try:
        resolve_run(RunOptions(threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(InputError):
        resolve_run(RunOptions(threads=0))


def test_a_nul_byte_or_a_huge_prompt_fails_its_row_alone(tmp_path):
    picture(tmp_path / "user.png")
    huge = "p" * 5_000_000
    (tmp_path / "jobs.csv").write_text(
        f"user,prompt\nuser.png,fine\nuser.png,a\x00b\nus\x00er.png,\nuser.png,{huge}\nuser.png,also fine\n")
    rows = read_manifest(tmp_path / "jobs.csv")
    assert [type(row) for row in rows] == [Job, BadRow, BadRow, BadRow, Job]
    assert "'prompt' cell holds a NUL byte" in rows[1].reason and "NUL byte" in rows[2].reason
    assert "5,000,000 characters" in rows[3].reason
    (tmp_path / "jobs.jsonl").write_text('{"user": "user.png", "garments": ["a\\u0000.png"]}\n{"user": "user.png"}\n')
    rows = read_manifest(tmp_path / "jobs.jsonl")
    assert isinstance(rows[0], BadRow) and "NUL" in rows[0].reason and isinstance(rows[1], Job)
