"""The two kinds of failure the engine reports to its callers.

`InputError` is the user's to fix (a bad file, a bad option): the CLI prints its one-line
message and exits with code 2. `RuntimeFailure` is ours or the machine's (out of memory, a
broken install): exit code 1.
"""

from __future__ import annotations

import errno
from pathlib import Path


class TryonError(Exception):
    """Base class of every error the engine raises on purpose."""

    exit_code = 1


class InputError(TryonError):
    """Bad input. The message is one line: `<path>: <problem>` when a file is to blame,
    `<option> <problem>` when an option is.

    `option` is the request field at fault (`"size"`, `"switch_at"`): the engine names options
    by their field, and the CLI shows them as its flags (`describe("--size")`).
    """

    exit_code = 2

    def __init__(self, problem: str, path: str | Path | None = None, option: str | None = None) -> None:
        self.problem = problem
        self.path = None if path is None else Path(path)
        self.option = option
        super().__init__(self.describe())

    def describe(self, option_name: str | None = None) -> str:
        """The one-line message, the option called `option_name` (default: its field name)."""
        if self.path is not None:
            return f"{self.path}: {self.problem}"
        if self.option is not None:
            return f"{option_name or self.option} {self.problem}"
        return self.problem


class RuntimeFailure(TryonError):
    """The run could not finish for a reason that is not the input's fault."""

    exit_code = 1


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def from_os_error(error: OSError) -> TryonError | None:
    """What an OSError that reached the top means: a full disk (exit 1, naming the folder), a
    path the user gave that cannot be used (exit 2, naming it), or None when it names no path."""
    path = Path(error.filename) if error.filename else None
    reason = error.strerror or type(error).__name__
    if error.errno in DISK_FULL:
        return RuntimeFailure(f"{path.parent if path else 'the output folder'}: disk full ({reason})")
    if path is None:
        return None
    return InputError(reason[:1].lower() + reason[1:], path)


class DiskFull(RuntimeFailure):
    """The disk filled up while writing: one line naming the folder or file."""

    def __init__(self, path: str | Path, while_doing: str = "") -> None:
        self.path = Path(path)
        super().__init__(f"{path}: disk full{' while ' + while_doing if while_doing else ''}")
