"""Errors that come from what the user gave (a path, a permission, a name) are one line and exit 2;
a real full disk is exit 1, "disk full", naming the folder, with nothing left behind."""

import os
import subprocess

import pytest


def one_line(run) -> str:
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and not run.stderr.startswith("\n") and "Traceback" not in run.stderr, run.stderr
    return lines[0]


def test_a_fifo_or_a_device_where_a_video_or_folder_is_expected(inputs, tmp_path, tryon):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    run = tryon("eval", fifo, "--reference", inputs / "dance.mp4")
    assert run.code == 2 and f"{fifo}: is neither a video file nor a folder" in one_line(run)
    run = tryon("eval", "/dev/null", "--reference", "/dev/null")
    assert run.code == 2 and "/dev/null" in one_line(run)
    run = tryon("dance", inputs / "user.png", "--motion", fifo, "-o", tmp_path / "out.mp4")
    assert run.code == 2 and str(fifo) in one_line(run)


def test_an_output_folder_that_cannot_be_made(tmp_path, tryon):
    run = tryon("data", "synth", "/proc/d", "--count", "1", "--quiet")
    assert run.code == 2 and "/proc/d" in one_line(run)


def test_an_output_name_longer_than_the_file_system_allows(inputs, tmp_path, tryon):
    run = tryon("dance", inputs / "user.png", "-o", tmp_path / ("x" * 300 + ".mp4"), "--model", tmp_path / "absent")
    assert run.code == 2 and "x" * 100 in one_line(run)


def test_an_unwritable_pseudo_file_system_is_not_a_full_disk_and_is_found_before_loading(inputs, tmp_path, tryon):
    run = tryon("dance", inputs / "user.png", "-o", "/proc/x.mp4", "--model", tmp_path / "absent")
    assert run.code == 2 and "disk full" not in one_line(run) and "/proc" in one_line(run)


@pytest.fixture
def full_disk(tmp_path):
    """A 96 KiB tmpfs (needs root and mount; skipped elsewhere)."""
    folder = tmp_path / "small"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.slow
def test_a_real_full_disk_is_exit_1_naming_the_folder_and_leaves_nothing_behind(full_disk, tryon):
    out = full_disk / "data"
    run = tryon("data", "synth", out, "--count", "50", "--size", "64x112", "--frames", "17", "--quiet")
    assert run.code == 1 and f"{out}: disk full" in one_line(run)
    for sample in out.iterdir():  # what was finished stays whole; nothing partial or hidden is left
        assert not sample.name.startswith(".") and (sample / "meta.json").is_file()
