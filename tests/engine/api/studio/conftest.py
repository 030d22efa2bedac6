"""Studio fixtures: small pictures on disk, and the app in-process on the tiny checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from engine.api.studio.app import Studio, create_app  # noqa: E402
from engine.api.studio.live import StudioModel  # noqa: E402
from engine.modes import RunOptions  # noqa: E402

ROOT = Path(__file__).resolve().parents[4]


@pytest.fixture(scope="session")
def pictures(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (96, 64, 3), dtype=np.uint8)).save(folder / "person.png")
    for name, colour in (("red", (220, 30, 30)), ("green", (30, 200, 60))):
        shirt = np.full((80, 80, 3), 255, dtype=np.uint8)
        shirt[16:64, 16:64] = colour
        Image.fromarray(shirt).save(folder / f"{name}.png")
    (folder / "notes.png").write_text("this is text, not a picture")
    return folder


def make_studio(tmp_path: Path, model: str = "unused", token: str | None = None, loopback: bool = True) -> Studio:
    root = tmp_path / "studio"
    root.mkdir()
    served = StudioModel(RunOptions(model=model), fps=24, size=(64, 64), steps=1)
    return Studio(served, token=token, loopback=loopback, max_seconds=5, root=root)


@pytest.fixture
def studio(tmp_path) -> Studio:
    return make_studio(tmp_path)


@pytest.fixture
def client(studio):
    with TestClient(create_app(studio), base_url="http://127.0.0.1") as test_client:
        yield test_client
