"""The callbacks every entry point takes: progress by stage, and notices for the user."""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from collections.abc import Callable

Progress = Callable[[str, int, int], None]  # (stage, done, total)
Notice = Callable[[str], None]


def no_progress(stage: str, done: int, total: int) -> None:
    """A `Progress` that shows nothing."""


class Notices(list):
    """The notices of one run: kept for its result, and passed on to `notice` as they come."""

    def __init__(self, notice: Notice | None = None) -> None:
        super().__init__()
        self.notice = notice

    def __call__(self, message: str) -> None:
        self.append(message)
        if self.notice:
            self.notice(message)


def quiet_libraries() -> None:
    """Library progress bars and chatter (diffusers, transformers, huggingface_hub) would garble ours;
    errors still surface. For this process from now on: the CLI calls it as a command starts, a Ray
    worker as it loads its models.

    Said through the environment, which the libraries read when they load, so that calling this
    imports none of them (--help and usage errors answer before they load); a library already
    loaded is told through its own logging switches.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # diffusers' loading and sampling bars are tqdm's
    warnings.filterwarnings("ignore", module="diffusers")
    warnings.filterwarnings("ignore", module="transformers")
    # torch's notice that bf16 autocast on a CPU takes the unfused RMSNorm (fp32 weights): a fact, not a fault
    warnings.filterwarnings("ignore", message="Mismatch dtype between input and weight")
    for library in ("diffusers", "transformers"):  # transformers' switch covers huggingface_hub's
        if library in sys.modules:
            logging = importlib.import_module(f"{library}.utils.logging")
            logging.set_verbosity_error()
            logging.disable_progress_bar()
