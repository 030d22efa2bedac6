"""What tryon may delete or replace: only what it wrote itself.

Every path that removes or replaces a folder (a checkpoint, a training output, a synthetic
sample) asks `check_replaceable` first, so `--overwrite .` or a typo never empties a folder
of the user's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from engine.errors import InputError

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"  # the models shipped with tryon
DEMO_MODEL = WEIGHTS_DIR / "demo"
DEMO_STUDENT = WEIGHTS_DIR / "demo-student"


def protected_reason(path: Path) -> str | None:
    """Why `path` may never be replaced (it is /, home, the current folder or one above it), or None."""
    if str(path) in ("", "."):
        return "is the current folder"
    resolved = Path(path).expanduser().resolve()
    here = Path.cwd().resolve()
    if resolved == Path(resolved.anchor):
        return "is the root folder"
    if resolved == Path.home().resolve():
        return "is your home folder"
    if resolved == here:
        return "is the current folder"
    if resolved in here.parents:
        return "holds the current folder"
    return None


def check_replaceable(path: Path, is_ours: Callable[[Path], bool], what: str) -> None:
    """Refuse to replace `path` unless it is absent, a file, an empty folder, or a folder `is_ours` accepts.

    `what` names what tryon writes there ("tryon checkpoint", "synthetic sample") for the message.
    """
    path = Path(path)
    reason = protected_reason(path)
    if reason:
        raise InputError(f"{reason}; refusing to replace it (give a new folder)", path)
    if path.is_symlink() or not path.exists():
        return
    if not path.is_dir():
        if not path.is_file():
            raise InputError("is neither a file nor a folder; refusing to replace it", path)
        return
    try:
        empty = not any(path.iterdir())
    except OSError as error:
        raise InputError(f"cannot read the folder ({error.strerror})", path) from None
    if not empty and not is_ours(path):
        raise InputError(f"holds files that are not a {what}'s; refusing to replace it (give a new folder)", path)


def holds_only(folder: Path, names: Callable[[str], bool]) -> bool:
    """Whether every entry of `folder` is one `names` accepts (hidden leftovers of ours included)."""
    try:
        return all(names(entry.name) for entry in folder.iterdir())
    except OSError:
        return False


def make_folder(folder: Path) -> Path:
    """Create `folder` (and its parents) for writing, or say in one line why it cannot be."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError("is not a folder", folder) from None
    except OSError as error:
        from engine.errors import from_os_error

        raise (from_os_error(error) or InputError(f"cannot create the folder ({error.strerror})", folder)) from None
    if not os.access(folder, os.W_OK):
        raise InputError("the folder is not writable", folder)
    return folder


def remove(path: Path) -> None:
    """Remove a file or a symlink, or a folder with its contents (after `check_replaceable`)."""
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
