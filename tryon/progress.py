"""The callbacks every entry point takes: progress by stage, and notices for the user."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int], None]  # (stage, done, total)
Notice = Callable[[str], None]
