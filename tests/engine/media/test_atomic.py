import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.media.atomic import create_temp_beside, deferred_interrupt, release_temp, remove_stale_temps

HOLD_A_TEMP = """
import sys, time
from pathlib import Path
from engine.media.atomic import create_temp_beside
print(create_temp_beside(Path(sys.argv[1]), ".tmp.mp4"), flush=True)
time.sleep(60)
"""


def test_temp_names_carry_our_pid_and_are_ours_until_released(tmp_path):
    temp = create_temp_beside(tmp_path / "out.mp4", ".tmp.mp4")
    assert temp.name.startswith(f".out.mp4.{os.getpid()}-") and temp.name.endswith(".tmp.mp4")
    assert remove_stale_temps(tmp_path) == [] and temp.exists()  # ours, in use
    release_temp(temp, delete=True)
    assert os.listdir(tmp_path) == []


def test_a_dead_writers_temp_is_removed_and_a_live_ones_kept(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_A_TEMP, str(tmp_path / "out.mp4")],
                              stdout=subprocess.PIPE, text=True)
    try:
        live = Path(holder.stdout.readline().strip())
        assert live.exists()
        assert remove_stale_temps(tmp_path, recursive=True) == [] and live.exists()
    finally:
        holder.kill()
        holder.wait()
    assert remove_stale_temps(tmp_path, name="other.mp4") == []  # only the named output's temps
    assert remove_stale_temps(tmp_path, name="out.mp4") == [live] and not live.exists()


def test_a_reused_pid_does_not_keep_a_stale_temp_and_other_files_are_never_touched(tmp_path):
    (tmp_path / "sub").mkdir()
    stale = tmp_path / "sub" / f".clip.mp4.{os.getppid()}-0123abcd.tmp.mp4"  # a live pid, but no lock
    stale.write_bytes(b"partial")
    kept = [tmp_path / "clip.mp4", tmp_path / ".clip.mp4.notes", tmp_path / ".hidden.tmp.mp4",
            tmp_path / f"clip.mp4.{os.getppid()}-0123abcd.tmp.mp4"]
    for path in kept:
        path.write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == []  # not recursive: the stale one is in a subfolder
    assert remove_stale_temps(tmp_path, recursive=True) == [stale]
    assert all(path.exists() for path in kept)


def test_deferred_interrupt_delivers_ctrl_c_when_the_block_ends():
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupt() as interrupt:
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.01)
            steps.append(interrupt.pending)
    assert steps == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_nested_deferral_passes_ctrl_c_outwards():
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupt() as outer:
            with deferred_interrupt():
                signal.raise_signal(signal.SIGINT)
            assert outer.pending
