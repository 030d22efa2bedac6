"""CLI fixtures: sample inputs on disk, and a way to run `tryon` in-process or as a program."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.media import write_video


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (300, 200, 3), dtype=np.uint8)).save(folder / "user.png")  # portrait
    Image.fromarray(rng.integers(0, 255, (120, 100, 3), dtype=np.uint8)).save(folder / "shirt.png")
    Image.fromarray(rng.integers(0, 255, (120, 100, 4), dtype=np.uint8), "RGBA").save(folder / "pants.png")
    write_video(folder / "dance.mp4", rng.integers(0, 255, (20, 120, 160, 3), dtype=np.uint8), 25)
    write_video(folder / "still.mp4", rng.integers(0, 255, (1, 120, 160, 3), dtype=np.uint8), 25)
    (folder / "notes.png").write_text("this is text, not a picture")
    shutil.copy(folder / "user.png", folder / "image.mp4")
    return folder


@pytest.fixture
def tryon(monkeypatch, capsys):
    """Run the CLI's entry-point function in this process (fast: the model stays loaded)."""
    from tryon_cli.main import app

    def run(*args: str, cwd: Path | None = None) -> Run:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", ["tryon", *map(str, args)])
        capsys.readouterr()
        try:
            app()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        out = capsys.readouterr()
        return Run(code, out.out, out.err)

    return run


def tryon_program() -> str:
    program = shutil.which("tryon", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    if program is None:
        pytest.fail("the `tryon` entry point is not installed (pip install -e .)")
    return program


def run_program(*args: str, cwd: Path) -> Run:
    done = subprocess.run([tryon_program(), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)
    return Run(done.returncode, done.stdout, done.stderr)
