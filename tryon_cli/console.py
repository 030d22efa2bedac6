"""Terminal output: progress and notices on stderr, results on stdout."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

# Everything printed holds user text (paths, prompts, reasons naming files): never markup or
# emoji codes, so `x:dress:.png` and `[ray]` print as written.
stderr = Console(stderr=True, highlight=False, markup=False, emoji=False)
stdout = Console(highlight=False, markup=False, emoji=False)


def notice(message: str) -> None:
    stderr.print(message, markup=False, soft_wrap=True)


def print_json(data: dict) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


class StageProgress:
    """A rich progress display fed by the engine's `progress(stage, done, total)` callback."""

    def __init__(self, enabled: bool = True) -> None:
        self.display = Progress(
            TextColumn("{task.description:<10}", markup=False),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}", markup=False),
            TimeElapsedColumn(),
            console=stderr,
            disable=not enabled,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}
        self.started = False

    def __enter__(self) -> "StageProgress":
        return self  # the display starts with the first stage: an error before it is one line, no blank one

    def __exit__(self, *exc) -> None:
        if self.started:
            self.display.__exit__(*exc)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.started:
            self.display.__enter__()
            self.started = True
        if stage not in self.tasks:
            self.tasks[stage] = self.display.add_task(stage, total=total)
        self.display.update(self.tasks[stage], completed=done, total=total)
