"""The studio's web app (FastAPI): the page, uploads, the stream socket, the MP4 download.

Protocol. A tab opens the WebSocket `/api/stream`; the server makes it a session (its own
folder) and answers `{"type": "session", "id", ..., "switch_operations"}` (the three KV
operations as the model's checkpoint would have them); the session ends when the socket
closes. Uploads are plain request bodies, written straight into the session folder:
`PUT /api/sessions/{id}/user?name=`, `PUT|DELETE /api/sessions/{id}/motion?name=`,
`POST /api/sessions/{id}/garments?name=&category=`; a refused file is a 4xx with
`{"error": message}`. Over the socket the tab sends `start` (garments to wear first, prompt,
seconds, the three KV operations, each true, false or left out for the model's choice),
`switch` (a garment id) and `stop`, as JSON; the server sends JSON events (`queued`,
`started`, `chunk`, `switch`, `notice`, `error`, `done`) and each frame as a binary message
(uint32 frame index, then a JPEG). `GET /api/sessions/{id}/video` downloads the session's MP4.

Access: bound to a loopback address, the app answers only requests whose Host is that
address and socket handshakes from its own origin (a web page elsewhere cannot drive it).
With a token (required by the CLI for any other address) every request must carry it,
as `?token=`, a `Bearer` header or the cookie set when the page was opened with it;
anything else, the page included, is answered 401.

Hostile clients: a socket frame that is not a JSON object (binary, nested too deeply, a
garment given as anything but its id) gets an `error` message and one log line, and the
socket stays open; an upload the client cuts off is one log line and leaves no file. At most
MAX_TABS sockets are open, MAX_TABS_PER_CLIENT from one address; one more gets an `error`
message and is closed (1013).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.requests import ClientDisconnect
from starlette.middleware.trustedhost import TrustedHostMiddleware

from engine.api.stream import StreamInterrupted
from engine.api.studio.live import LiveRun, StreamOptions, StudioModel
from engine.api.studio.sessions import (
    MAX_IMAGE_BYTES,
    MAX_VIDEO_BYTES,
    MiB,
    Session,
    SessionStore,
    UploadError,
    in_own_thread,
    release_memory,
    remove_stale_roots,
    studio_root,
)
from engine.api.studio.turns import Turns
from engine.checkpoint.store import SWITCH_OPERATIONS
from engine.errors import InputError, RuntimeFailure
from engine.jsonfiles import parse_json

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "tryon_studio_token"
LOOPBACK_NAMES = ("127.0.0.1", "localhost")
MAX_TABS = 16  # open sockets in all
MAX_TABS_PER_CLIENT = 4  # open sockets from one address
log = logging.getLogger("tryon.studio")


@dataclass
class Studio:
    """What the app shares between tabs: the model, the line in front of it, the sessions."""

    model: StudioModel
    token: str | None = None
    loopback: bool = True
    max_seconds: float = 120.0
    root: Path = field(default_factory=studio_root)
    turns: Turns = field(default_factory=Turns)
    max_tabs: int = MAX_TABS
    max_tabs_per_client: int = MAX_TABS_PER_CLIENT

    def __post_init__(self) -> None:
        remove_stale_roots(self.root.parent)  # the folders of studios that were killed
        self.store = SessionStore(self.root)
        self.tabs: set[Tab] = set()

    def refusal(self, client: str) -> str | None:
        """Why a new tab from `client` (its address) cannot open now, or None when it can."""
        if len(self.tabs) >= self.max_tabs:
            return f"the studio serves {self.max_tabs} tabs at most: close one and reload"
        if sum(tab.client == client for tab in self.tabs) >= self.max_tabs_per_client:
            return f"at most {self.max_tabs_per_client} tabs per client: close one and reload"
        return None

    async def close(self, wait: float = 1.0) -> None:
        """Stop every stream and remove every session folder, waiting at most `wait` seconds for the
        chunks being made (their threads end on their own; the folders go now)."""
        closing = [asyncio.ensure_future(tab.close()) for tab in list(self.tabs)]
        if closing:
            await asyncio.wait(closing, timeout=wait)
        shutil.rmtree(self.root, ignore_errors=True)


# -- access -----------------------------------------------------------------------------------


class TokenGate:
    """ASGI middleware: every HTTP request and socket handshake must present the token."""

    def __init__(self, app, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        from_query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [None])[0]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        presented = from_query or _bearer(headers.get("authorization")) or _cookie(headers.get("cookie"))
        if presented is not None and secrets.compare_digest(presented.encode(), self.token.encode()):
            if scope["type"] == "http" and from_query is not None:
                send = self._setting_cookie(send)
            return await self.app(scope, receive, send)
        await self._deny(scope, send)

    def _setting_cookie(self, send):
        cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict".encode()

        async def sending(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        return sending

    async def _deny(self, scope, send) -> None:
        body = b"tryon studio: an access token is needed (open the address that tryon studio printed)\n"
        start = {"status": 401, "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                            (b"content-length", str(len(body)).encode())]}
        if scope["type"] == "http":
            await send({"type": "http.response.start", **start})
            await send({"type": "http.response.body", "body": body})
        elif "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", **start})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})


def _bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


def _cookie(header: str | None) -> str | None:
    if not header:
        return None
    cookies = SimpleCookie()
    with contextlib.suppress(Exception):
        cookies.load(header)
    return cookies[COOKIE].value if COOKIE in cookies else None


def same_origin(websocket: WebSocket) -> bool:
    """A browser always sends Origin with a socket handshake; it must be this server's."""
    origin = websocket.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == websocket.headers.get("host")


# -- one tab ----------------------------------------------------------------------------------


class Tab:
    """One open page: its session, its socket's outgoing messages, and its stream."""

    def __init__(self, studio: Studio, session: Session, outbox: asyncio.Queue, client: str = "") -> None:
        self.studio = studio
        self.client = client
        self.session = session
        self.outbox = outbox
        self.task: asyncio.Task | None = None
        self.run: LiveRun | None = None
        self.delivery: asyncio.Task | None = None

    async def send(self, message: dict | bytes) -> None:
        await self.outbox.put(message)

    async def error(self, message: str) -> None:
        await self.send({"type": "error", "message": message})

    async def handle(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "start":
            await self.start(message)
        elif kind == "switch":
            await self.switch(message.get("garment"))
        elif kind == "stop":
            await self.stop()
        else:
            await self.error(f"unknown message type {str(kind)[:40]!r}")

    async def start(self, message: dict) -> None:
        if self.task is not None and not self.task.done():
            return await self.error("already streaming: stop first")
        try:
            options = self._options(message)
        except ValueError as problem:
            return await self.error(str(problem))
        self.session.streaming = True
        self.task = asyncio.create_task(self._run(options))

    async def switch(self, garment_id) -> None:
        garment = self.session.garments.get(garment_id) if isinstance(garment_id, str) else None
        if garment is None:
            return await self.error("no such garment on the shelf")
        if self.run is None:
            return await self.error("not streaming: press Start first")
        self.run.switch(garment)

    async def stop(self) -> None:
        if self.run is not None:
            self.run.stop()
        elif self.task is not None and not self.task.done():  # still waiting for its turn
            self.task.cancel()

    async def close(self) -> None:
        """The tab is gone: end its stream (after the chunk being made) and forget its session."""
        self.studio.tabs.discard(self)
        if self.run is not None:
            self.run.abandon()
        if self.delivery is not None:
            self.delivery.cancel()
        if self.task is not None:
            if self.run is None:
                self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
        self.studio.store.remove(self.session)
        self.task = self.run = self.delivery = None
        release_memory()  # the stream's tensors are freed by now

    def _options(self, message: dict) -> StreamOptions:
        session, studio = self.session, self.studio
        if session.user is None:
            raise ValueError("upload a photo of the person first")
        garments = message.get("garments")
        if not isinstance(garments, list) or not garments:
            raise ValueError("choose the garments to start with: click them on the shelf")
        if not all(isinstance(g, str) for g in garments):
            raise ValueError("garments are the ids of garments on the shelf (text)")
        if any(g not in session.garments for g in garments):
            raise ValueError("a chosen garment is not on the shelf")
        try:
            seconds = float(message.get("seconds", 10))
        except (TypeError, ValueError):
            raise ValueError("seconds must be a number") from None
        if not 0 < seconds <= studio.max_seconds:
            raise ValueError(f"seconds must be more than 0 and at most {studio.max_seconds:g}")
        prompt = message.get("prompt") or ""
        if not isinstance(prompt, str) or len(prompt) > 1000:
            raise ValueError("the prompt must be text of at most 1000 characters")
        flags = {name: message.get(name) for name in SWITCH_OPERATIONS}
        if not all(value is None or isinstance(value, bool) for value in flags.values()):
            raise ValueError("refresh, withdraw and disentangle are true or false")
        return StreamOptions(garments=list(dict.fromkeys(garments)), prompt=prompt, seconds=seconds, **flags)

    async def _run(self, options: StreamOptions) -> None:
        done = {"type": "done", "frames": 0, "stopped": False, "video": None}
        try:
            async with self.studio.turns.turn(self._tell_place):
                done.update(await self._stream(options))
        except asyncio.CancelledError:  # stopped while waiting for its turn, or the tab closed
            done["stopped"] = True
        except (InputError, RuntimeFailure) as problem:
            await self.error(self.session.public_message(str(problem)))
        except Exception as problem:  # noqa: BLE001 - the server keeps serving the other tabs
            log.exception("stream failed")
            await self.error(f"internal error: {type(problem).__name__}: {self.session.public_message(str(problem))}")
        finally:
            self.run = None
            self.session.streaming = False
            await self.send(done)

    async def _tell_place(self, ahead: int) -> None:
        await self.send({"type": "queued", "ahead": ahead})

    async def _stream(self, options: StreamOptions) -> dict:
        loop = asyncio.get_running_loop()
        model = self.studio.model

        def notify(message: str) -> None:  # on the worker thread
            event = {"type": "notice", "message": self.session.public_message(message)}
            loop.call_soon_threadsafe(self.outbox.put_nowait, event)

        run = self.run = LiveRun(self.session, options, model, loop, notify)
        await self.send({"type": "started", "fps": model.fps, "outfit": options.garments})
        self.delivery = asyncio.create_task(run.deliver(self.send, model.fps))
        try:
            result = await in_own_thread(run.generate)
        except StreamInterrupted:  # stopped before the first chunk: nothing was written
            result = None
        finally:
            with contextlib.suppress(asyncio.CancelledError):
                await self.delivery
        figures = run.figures
        return {
            "frames": result.frames if result else 0, "stopped": run.stopped,
            "video": f"/api/sessions/{self.session.id}/video" if result else None,
            "generated_fps": figures.generated_fps, "first_chunk_s": figures.first_chunk_s,
            "server_switch_latencies_s": figures.switch_latencies,
        }


async def _write_socket(websocket: WebSocket, outbox: asyncio.Queue) -> None:
    while True:
        message = await outbox.get()
        if isinstance(message, bytes):
            await websocket.send_bytes(message)
        else:
            await websocket.send_text(json.dumps(message))


# -- the app ----------------------------------------------------------------------------------


def create_app(studio: Studio) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await studio.close()

    app = FastAPI(title="tryon studio", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    if studio.loopback and studio.token is None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(LOOPBACK_NAMES))
    if studio.token is not None:
        app.add_middleware(TokenGate, token=studio.token)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def session_or_404(session_id: str) -> Session:
        session = studio.store.get(session_id)
        if session is None:
            raise UploadError("this session is closed: reload the page", status=404)
        return session

    @app.exception_handler(UploadError)
    async def refused(request: Request, error: UploadError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.exception_handler(ClientDisconnect)
    async def abandoned(request: Request, error: ClientDisconnect) -> JSONResponse:
        log.warning("upload abandoned by the client: %s", request.url.path)  # its partial file is gone
        return JSONResponse({"error": "the upload was cut off"}, status_code=400)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.put("/api/sessions/{session_id}/user")
    async def upload_user(session_id: str, request: Request, name: str = "") -> dict:
        upload = await session_or_404(session_id).save_user(name, request.stream(), _declared(request))
        return {"name": upload.name}

    @app.put("/api/sessions/{session_id}/motion")
    async def upload_motion(session_id: str, request: Request, name: str = "") -> dict:
        upload = await session_or_404(session_id).save_motion(name, request.stream(), _declared(request))
        return {"name": upload.name}

    @app.delete("/api/sessions/{session_id}/motion")
    async def drop_motion(session_id: str) -> dict:
        session_or_404(session_id).drop_motion()
        return {}

    @app.post("/api/sessions/{session_id}/garments")
    async def upload_garment(session_id: str, request: Request, name: str = "", category: str = "") -> dict:
        garment = await session_or_404(session_id).add_garment(name, category, request.stream(), _declared(request))
        return {"id": garment.id, "name": garment.upload.name, "category": garment.category}

    @app.get("/api/sessions/{session_id}/video")
    async def download(session_id: str) -> FileResponse:
        session = session_or_404(session_id)
        if session.streaming:
            raise UploadError("the video is still being made: stop or wait for the end", status=409)
        if not session.video.is_file():
            raise UploadError("no video yet: press Start", status=404)
        return FileResponse(session.video, media_type="video/mp4", filename="tryon-studio.mp4")

    @app.websocket("/api/stream")
    async def stream(websocket: WebSocket) -> None:
        if not same_origin(websocket):
            await websocket.close(code=1008)
            return
        await websocket.accept()
        client = websocket.client.host if websocket.client else ""
        refusal = studio.refusal(client)
        if refusal is not None:
            log.warning("tab refused (%s): %s", client, refusal)
            await websocket.send_text(json.dumps({"type": "error", "message": refusal}))
            await websocket.close(code=1013)  # try again later
            return
        session = studio.store.create()
        outbox: asyncio.Queue = asyncio.Queue()
        tab = Tab(studio, session, outbox, client)
        studio.tabs.add(tab)
        writer = asyncio.create_task(_write_socket(websocket, outbox))
        await tab.send({"type": "session", "id": session.id, "model": Path(studio.model.run.model).name,
                        "fps": studio.model.fps, "max_seconds": studio.max_seconds,
                        "switch_operations": studio.model.switch_defaults,
                        "limits_mib": {"image": MAX_IMAGE_BYTES // MiB, "video": MAX_VIDEO_BYTES // MiB}})
        try:
            while True:
                received = await websocket.receive()
                if received["type"] == "websocket.disconnect":
                    break
                message, problem = read_message(received)
                if problem is not None:
                    log.warning("tab %s: %s", session.id[:8], problem)
                    await tab.error(problem)
                    continue
                await tab.handle(message)
        except WebSocketDisconnect:
            pass
        finally:
            await tab.close()
            writer.cancel()

    return app


def read_message(received: dict) -> tuple[dict | None, str | None]:
    """A socket frame as the JSON object it must be, or the problem to tell the tab (and log)."""
    text = received.get("text")
    if text is None:
        return None, "messages are JSON text, not binary frames"
    try:
        message = parse_json(text, "message")
    except InputError:
        message = None
    if not isinstance(message, dict):
        return None, "messages are JSON objects"
    return message, None


def _declared(request: Request) -> int | None:
    value = request.headers.get("content-length", "")
    return int(value) if value.isdigit() else None
