"""A batch SIGKILLed at random moments, restarted until it ends, finishes every job once and leaves no temp file.

Each run is the real `tryon batch` command, forked from a server process that has already
imported the libraries (so a restart costs milliseconds, not the seconds of `import torch`;
the kill can land anywhere: loading the model, checking rows, rendering, encoding, renaming,
writing the report).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.media import probe_video

SERVER = r"""
import json, os, sys
import engine.api  # the heavy imports (torch, diffusers), once, before any fork
from tryon_cli.main import app

for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        sys.argv = ["tryon", *json.loads(line)]
        try:
            app()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        os._exit(code)
    print(pid, flush=True)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""

JOBS = 4


def _stray_encoders(folder: Path) -> list[int]:
    """ffmpeg processes still writing into `folder`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if "ffmpeg" in command and str(folder) in command and state != "Z":
                found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork") or not Path("/proc").is_dir(), reason="needs fork and /proc")
def test_a_batch_killed_at_random_moments_finishes_every_job_once(tiny_checkpoint, inputs, tmp_path):
    (tmp_path / "jobs.csv").write_text("user,garments,motion,prompt,seconds,seed,output\n" + "".join(
        f"{inputs / 'user.png'},{inputs / 'shirt.png'}:top,,,,{row},clip_{row}.mp4\n" for row in range(JOBS)))
    outdir = tmp_path / "out"
    argv = ["batch", str(tmp_path / "jobs.csv"), "-o", str(outdir), "--model", str(tiny_checkpoint), "--size",
            "64x64", "--seconds", "0.25", "--fps", "24", "--steps", "1", "--quiet"]
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    rng = random.Random(15)
    first_written: dict[str, int] = {}  # output -> its mtime when first seen: a finished job is never redone
    kills, code, window, runs = 0, None, 1.0, []
    try:
        for attempt in range(40):
            server.stdin.write(json.dumps(argv) + "\n")
            server.stdin.flush()
            pid = int(server.stdout.readline())
            time.sleep(rng.uniform(0.0, window))
            window *= 1.3  # kills land anywhere, and a run gets the time to end, however slow this machine
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            code = int(server.stdout.readline())
            kills += code == -signal.SIGKILL
            runs.append((round(window, 2), code, sorted(p.name for p in outdir.rglob("*")) if outdir.is_dir() else []))
            for video in outdir.glob("*.mp4"):
                assert first_written.setdefault(video.name, video.stat().st_mtime_ns) == video.stat().st_mtime_ns, runs
            if code == 0:
                break
    finally:
        server.kill()  # its runs are over and reaped; its own exit (unloading torch) is not under test
        server.wait()
    assert code == 0, runs
    assert kills >= 2, runs  # it was killed on the way

    deadline = time.monotonic() + 5
    while _stray_encoders(outdir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _stray_encoders(outdir) == []
    assert sorted(p.name for p in outdir.rglob("*")) == sorted([f"clip_{row}.mp4" for row in range(JOBS)]
                                                              + ["report.jsonl"]), runs
    for row in range(JOBS):
        assert probe_video(outdir / f"clip_{row}.mp4").frame_count == 6
    report = [json.loads(line) for line in (outdir / "report.jsonl").read_text().splitlines()]
    assert [line["row"] for line in report] == list(range(1, JOBS + 1))
    assert all(line["status"] in ("ok", "skipped") for line in report)
