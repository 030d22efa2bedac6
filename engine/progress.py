"""The callbacks every entry point takes: progress by stage, and notices for the user."""

from __future__ import annotations

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
