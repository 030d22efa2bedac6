"""The first seconds: help and usage errors without the heavy libraries; Ctrl-C while they import."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import tryon_program

HEAVY = ("torch", "diffusers", "transformers", "numpy")

# Runs the entry point in a fresh interpreter and reports which heavy libraries it imported.
PROBE = """
import json, sys
sys.argv = ["tryon", *sys.argv[1:]]
from tryon_cli.main import app
try:
    app()
    code = 0
except SystemExit as exit_:
    code = exit_.code
sys.__stdout__.write("\\n" + json.dumps({"code": code, "loaded": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def probe(*args: str, cwd: Path) -> tuple[dict, str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    return json.loads(done.stdout.splitlines()[-1]), done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("args", [("--help",), ("dress", "--help"), ("dress",), ("swap", "u.png"),
                                  ("models", "init"), ("bench", "--help"), ("batch", "--nope")])
def test_help_and_usage_errors_import_no_heavy_library(args, tmp_path):
    result, stderr = probe(*args, cwd=tmp_path)
    assert result["loaded"] == []
    assert result["code"] in (0, 2)
    if result["code"] == 2:
        assert stderr.startswith("tryon: error:") and len(stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_ctrl_c_while_the_libraries_import_is_one_line_and_exit_130(tmp_path):
    (tmp_path / "user.png").write_bytes(b"not read: the files are only checked to exist before torch loads")
    process = subprocess.Popen(
        [tryon_program(), "dance", "user.png", "-o", "out.mp4"], cwd=tmp_path, stderr=subprocess.PIPE, text=True,
        # A shell's background job starts with SIGINT ignored, and so would the child: a user's Ctrl-C is not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    maps = Path(f"/proc/{process.pid}/maps")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None and "libtorch" not in maps.read_text():
        time.sleep(0.005)  # torch's shared libraries are mapped: it is importing, which takes seconds more
    assert process.poll() is None, "the command ended before torch was imported"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr == "tryon: interrupted; no partial output was left\n"
    assert [path.name for path in tmp_path.iterdir()] == ["user.png"]
