"""Session fixtures: one tiny checkpoint built once, and the real cases when present."""

from __future__ import annotations

import os
import signal
import warnings
from pathlib import Path

import pytest



def real_cases_folder(environ=os.environ) -> Path:
    """$TRYON_REAL_CASES when set (a checkout anywhere), else ../shared/real-cases beside the checkout."""
    chosen = environ.get("TRYON_REAL_CASES")
    return Path(chosen) if chosen else Path(__file__).resolve().parents[2] / "shared" / "real-cases"


REAL_CASES = real_cases_folder()


def pytest_configure(config) -> None:
    # A shell starts background jobs with SIGINT ignored, and children inherit that: the Ctrl-C
    # tests (here and in the `tryon` processes they start) need it delivered as Python does.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random-weight tiny checkpoint, saved through the project's own writer."""
    from engine.api import init_model

    return init_model("tiny", tmp_path_factory.mktemp("models") / "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    from engine.checkpoint import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(str(tiny_checkpoint))


@pytest.fixture(scope="session")
def tiny_route(tmp_path_factory) -> Path:
    """The public route at toy size (`tryon models init public-tiny`), written once per session."""
    from engine.api import init_model

    return init_model("public-tiny", tmp_path_factory.mktemp("models") / "public-tiny", seed=0)


@pytest.fixture
def real_cases() -> Path:
    if not REAL_CASES.is_dir():
        pytest.skip(f"{REAL_CASES} is not present (set TRYON_REAL_CASES to the real cases' folder)")
    return REAL_CASES


@pytest.fixture(scope="session")
def real_cases_root() -> Path:
    """Where the real cases are looked for (they may be absent)."""
    return REAL_CASES
