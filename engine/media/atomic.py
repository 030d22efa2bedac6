"""Hidden temporary files that become outputs by a rename, and the clean-up of those a killed run left.

Every output (video, image, batch report) is written to `.<name>.<pid>-<random><suffix>` in
its own folder and renamed into place when complete. The writing process holds an exclusive
`flock` on that file for as long as it writes, and the kernel drops the lock when the process
dies, however it dies. So a later run tells a stale temp file (no one holds its lock) from
one that another live process is writing, even when process ids have been reused; where
`flock` does not exist, the pid in the name is checked instead.

`deferred_interrupt` holds Ctrl-C back during the few steps that must not be cut in two
(creating a temp file and taking its lock, renaming it into place, deleting it).
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.errors import DISK_FULL, DiskFull, InputError

try:
    import fcntl
except ImportError:  # Windows: the pid in the name is the only ownership record
    fcntl = None

# .<name>.<pid>-<8 hex><suffix>, where suffix starts with ".tmp"
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}(?P<suffix>\.tmp(\.[A-Za-z0-9]+)?)$")

_owned: dict[Path, int] = {}  # temp file -> the descriptor holding its lock, in this process


def create_temp_beside(path: Path, suffix: str) -> Path:
    """Create an empty hidden file `.<name>.<pid>-<random><suffix>` in `path`'s folder, owned by us.

    `suffix` starts with `.tmp`. The file is created (not just named) so that a missing or
    read-only folder is reported now, as an InputError naming the folder; a full disk is
    `DiskFull`. Unlike tempfile.mkstemp, it gets the usual permissions (0666 minus umask),
    which the final file keeps after the rename. Call `release_temp` when it is renamed or deleted.
    """
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise InputError("is a folder; give a file name", path)
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "folder does not exist"
        raise InputError(problem, folder)
    with deferred_interrupt():  # a Ctrl-C here must not leave a file that nobody tracks
        while True:
            temp = folder / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{suffix}"
            try:
                descriptor = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                continue
            except OSError as err:
                if err.errno in DISK_FULL:
                    raise DiskFull(folder) from err
                raise InputError(f"cannot write to this folder ({err.strerror})", folder) from err
            if fcntl is not None:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _owned[temp] = descriptor
            return temp


def release_temp(temp: Path, delete: bool) -> None:
    """Stop owning `temp` (renamed into place, or to be deleted: `delete=True`)."""
    with deferred_interrupt():
        if delete:
            temp.unlink(missing_ok=True)
        descriptor = _owned.pop(temp, None)
        if descriptor is not None:
            os.close(descriptor)


def remove_stale_temps(folder: Path, name: str | None = None, recursive: bool = False) -> list[Path]:
    """Delete the temp files in `folder` that no live process is writing; return them.

    `name`: only the temp files of that output name. `recursive`: in subfolders too.
    Files that cannot be deleted (permissions) are left alone.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for candidate in _temp_candidates(folder, recursive):
        match = _TEMP_NAME.match(candidate.name)
        if match is None or (name is not None and match["name"] != name):
            continue
        if candidate in _owned or _has_live_owner(candidate, int(match["pid"])):
            continue
        try:
            candidate.unlink()
        except FileNotFoundError:
            continue
        except OSError:
            continue
        removed.append(candidate)
    return removed


def _temp_candidates(folder: Path, recursive: bool) -> Iterator[Path]:
    if not recursive:
        yield from (entry for entry in folder.glob(".*.tmp*") if entry.is_file())
        return
    for root, _dirs, files in os.walk(folder):
        for file in files:
            if file.startswith(".") and ".tmp" in file:
                yield Path(root) / file


def _has_live_owner(temp: Path, pid: int) -> bool:
    if fcntl is None:
        return _pid_alive(pid)
    try:
        descriptor = os.open(temp, os.O_RDONLY)
    except OSError:
        return True  # cannot look: leave it
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return True
    finally:
        os.close(descriptor)  # also drops the lock we may have just taken
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def disk_is_full(folder: Path, margin: int = 16 * 2**20) -> bool:
    """True when `folder` is on a real file system with less than `margin` bytes free.

    Pseudo file systems (/proc, /sys) report no blocks at all: they are not full, just unwritable.
    """
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):  # no statvfs on Windows
        return False
    return stats.f_blocks > 0 and stats.f_bavail * stats.f_frsize < margin


class Interrupt:
    """Whether a Ctrl-C arrived while it was held back (see `deferred_interrupt`)."""

    def __init__(self) -> None:
        self.pending = False

    def __call__(self, number, frame) -> None:
        self.pending = True


@contextmanager
def deferred_interrupt() -> Iterator[Interrupt]:
    """Hold a Ctrl-C (SIGINT) back until the block ends, then deliver it (KeyboardInterrupt).

    The block can look at `.pending` to give up early. Only the main thread can change
    signal handlers; elsewhere the block runs as it is.
    """
    interrupt = Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield interrupt
        return
    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        yield interrupt
    finally:
        signal.signal(signal.SIGINT, previous)
        if interrupt.pending and callable(previous):
            previous(signal.SIGINT, None)  # the default handler raises KeyboardInterrupt
