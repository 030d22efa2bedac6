"""Studio sessions: one per browser tab, each with its own folder for what the tab uploads.

A session lives as long as its tab's WebSocket. Uploads are written under names the server
chooses (`user-<random>.png`, `garment-<random>.jpg`, ..., the suffix kept only when it is
short and plain), so nothing a client sends names a path; the client's file name is kept only to
be shown in messages. Each upload is written through a size limit, then checked by the same
readers as the CLI (`load_photo`, `check_motion`); a file that fails is deleted and its
problem is an `UploadError` naming the client's file name.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import re
import secrets
import shutil
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from engine.api.inputs import check_motion, load_photo
from engine.errors import InputError
from engine.model.roles import GARMENT_CATEGORIES
from engine.api.specs import GarmentSpec

T = TypeVar("T")

MiB = 2**20
MAX_IMAGE_BYTES = 20 * MiB
MAX_VIDEO_BYTES = 100 * MiB
MAX_GARMENTS_ON_SHELF = 16
MAX_NAME_CHARS = 120


class UploadError(Exception):
    """An upload the session refuses; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Upload:
    path: Path  # inside the session folder
    name: str  # the client's file name, for messages only


@dataclass(frozen=True)
class Garment:
    id: str
    upload: Upload
    category: str | None

    @property
    def spec(self) -> GarmentSpec:
        return GarmentSpec(self.upload.path, self.category)

    @property
    def line(self) -> str:
        """The garment as `tryon swap --live` reads it: PATH or PATH:CATEGORY."""
        return f"{self.upload.path}:{self.category}" if self.category else str(self.upload.path)


def display_name(name: str | None, fallback: str) -> str:
    """The client's file name as shown in messages: its last part, printable, not too long."""
    name = re.split(r"[\\/]", name or "")[-1]
    name = "".join(ch for ch in name if ch.isprintable())[:MAX_NAME_CHARS]
    return name or fallback


def safe_suffix(name: str) -> str:
    """The file name's extension when it is short and plain (readers go by content anyway)."""
    suffix = Path(name).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ""


def parse_category(text: str | None) -> str | None:
    """'' or 'unknown': no category (the model infers it); else one of GARMENT_CATEGORIES."""
    text = (text or "").strip().lower()
    if text in ("", "unknown"):
        return None
    if text not in GARMENT_CATEGORIES:
        raise UploadError(f"unknown garment category '{text[:20]}' (use one of {', '.join(GARMENT_CATEGORIES)})")
    return text


class Session:
    """What one tab has uploaded, in its own folder."""

    def __init__(self, session_id: str, folder: Path) -> None:
        self.id = session_id
        self.folder = folder
        self.user: Upload | None = None
        self.motion: Upload | None = None
        self.garments: dict[str, Garment] = {}
        self.streaming = False  # uploads that a running stream reads are refused meanwhile
        self._count = 0

    @property
    def video(self) -> Path:
        """Where the session's MP4 is written (replaced by each new stream)."""
        return self.folder / "tryon-studio.mp4"

    async def save_user(self, name: str | None, body: AsyncIterator[bytes], declared: int | None) -> Upload:
        self._refuse_while_streaming("person photo")
        upload = await self._receive(display_name(name, "photo"), "user", body, declared, MAX_IMAGE_BYTES)
        await self._check(upload, load_photo)
        self.user = self._replace(self.user, upload)
        return upload

    async def save_motion(self, name: str | None, body: AsyncIterator[bytes], declared: int | None) -> Upload:
        self._refuse_while_streaming("motion video")
        upload = await self._receive(display_name(name, "video"), "motion", body, declared, MAX_VIDEO_BYTES)
        await self._check(upload, check_motion)
        self.motion = self._replace(self.motion, upload)
        return upload

    def drop_motion(self) -> None:
        """Stream from the prompt alone."""
        self._refuse_while_streaming("motion video")
        if self.motion is not None:
            self.motion.path.unlink(missing_ok=True)
            self.motion = None

    async def add_garment(self, name: str | None, category: str | None, body: AsyncIterator[bytes],
                          declared: int | None) -> Garment:
        category = parse_category(category)
        if len(self.garments) >= MAX_GARMENTS_ON_SHELF:
            raise UploadError(f"the shelf holds {MAX_GARMENTS_ON_SHELF} garments at most")
        upload = await self._receive(display_name(name, "garment"), "garment", body, declared, MAX_IMAGE_BYTES)
        await self._check(upload, load_photo)
        self._count += 1
        garment = Garment(f"g{self._count}", upload, category)
        self.garments[garment.id] = garment
        return garment

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def public_message(self, message: str) -> str:
        """A message of the engine as the tab may see it: session paths shown by the client's file names."""
        uploads = [self.user, self.motion, *(g.upload for g in self.garments.values())]
        for upload in filter(None, uploads):
            message = message.replace(str(upload.path), upload.name)
        return message.replace(f"{self.folder}/", "")

    # -- internals ----------------------------------------------------------------------------

    def _refuse_while_streaming(self, what: str) -> None:
        if self.streaming:
            raise UploadError(f"the {what} cannot change while streaming: stop first", status=409)

    async def _receive(self, name: str, stem: str, body: AsyncIterator[bytes], declared: int | None,
                       limit: int) -> Upload:
        """Write the body to a fresh file in the folder, refusing more than `limit` bytes."""
        too_large = UploadError(f"{name}: larger than the {limit // MiB} MiB limit", status=413)
        if declared is not None and declared > limit:
            raise too_large
        path = self.folder / f"{stem}-{secrets.token_hex(4)}{safe_suffix(name)}"
        size = 0
        try:
            with path.open("wb") as file:
                async for chunk in body:
                    size += len(chunk)
                    if size > limit:
                        raise too_large
                    file.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return Upload(path, name)

    async def _check(self, upload: Upload, check) -> None:
        """Run the CLI's reader on the file (in a thread: ffmpeg may take a while)."""
        try:
            await in_own_thread(lambda: check(upload.path))
        except InputError as error:
            upload.path.unlink(missing_ok=True)
            raise UploadError(f"{upload.name}: {error.problem}" if error.path else str(error)) from None

    @staticmethod
    def _replace(old: Upload | None, new: Upload) -> Upload:
        if old is not None:
            old.path.unlink(missing_ok=True)
        return new


@dataclass
class SessionStore:
    """The open sessions, each in a folder under `root`."""

    root: Path
    sessions: dict[str, Session] = field(default_factory=dict)

    def create(self) -> Session:
        session_id = secrets.token_urlsafe(16)
        folder = self.root / session_id
        folder.mkdir(mode=0o700)
        session = Session(session_id, folder)
        self.sessions[session_id] = session
        return session

    def get(self, session_id: str) -> Session | None:
        return self.sessions.get(session_id)

    def remove(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        session.close()


ROOT_PREFIX = "tryon-studio-"


def studio_root() -> Path:
    """A fresh folder for a studio's sessions, named after this process (`remove_stale_roots`)."""
    return Path(tempfile.mkdtemp(prefix=f"{ROOT_PREFIX}{os.getpid()}-"))


def remove_stale_roots(parent: Path) -> None:
    """Remove the session folders of studios that were killed (their process is gone)."""
    for folder in parent.glob(f"{ROOT_PREFIX}*-*"):
        pid = folder.name[len(ROOT_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and folder.is_dir() and folder.stat().st_uid == os.getuid() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def release_memory() -> None:
    """Hand memory freed by a finished session back to the system: glibc keeps freed blocks in its
    malloc arenas (the worker threads get arenas of their own) and the process would stay at its
    highest size.
    Elsewhere (musl, macOS, Windows) nothing is done."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        return libc.malloc_trim if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


async def in_own_thread(function: Callable[[], T]) -> T:
    """`function()` on a thread of its own that ends with it (a daemon: a server that stops does
    not wait for a chunk in progress); unlike asyncio.to_thread, no pool of idle threads stays."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def target() -> None:
        try:
            result = function()
        except BaseException as error:  # noqa: BLE001 - handed to the awaiting coroutine
            outcome = functools.partial(future.set_exception, error)
        else:
            outcome = functools.partial(future.set_result, result)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody is waiting
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=target, name="tryon-studio-work", daemon=True).start()
    return await future
