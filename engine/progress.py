"""The callbacks every entry point takes: progress by stage, and notices for the user."""

from __future__ import annotations

import os
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
    worker as it loads its models."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", module="diffusers")
    warnings.filterwarnings("ignore", module="transformers")
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for logging in (diffusers_logging, transformers_logging):  # transformers' switch covers huggingface_hub's
        logging.set_verbosity_error()
        logging.disable_progress_bar()
