"""Load the model the studio serves and run the app with uvicorn until Ctrl-C."""

from __future__ import annotations

import ipaddress
import secrets
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace

import uvicorn

from engine.api.inputs import check_options
from engine.api.loading import default_model, get_model
from engine.api.options import resolve_run
from engine.api.route_stream import check_live_source, load_live_parts
from engine.api.studio.app import Studio, create_app
from engine.api.studio.live import StudioModel
from engine.checkpoint.public import LoadedRoute
from engine.checkpoint.store import CheckpointInfo
from engine.errors import InputError, RuntimeFailure
from engine.modes import RunOptions
from engine.progress import Notice

DEFAULT_PORT = 7860


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def access_token(host: str, token: str | None) -> str | None:
    """The token requests must carry: the one given; one made up for any non-loopback host; else none."""
    if token is not None:
        if len(token) < 16:
            raise InputError("--token must be at least 16 characters")
        return token
    return None if is_loopback(host) else secrets.token_urlsafe(24)


@dataclass(frozen=True)
class StudioOptions:
    """How `tryon studio` serves: the model (`run`) and how streams are made, where it listens, who may use it."""

    run: RunOptions = RunOptions()
    size: tuple[int, int] | None = None
    fps: float | None = None
    steps: int | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = None
    max_seconds: float = 120.0


def load_studio(options: StudioOptions, notice: Notice) -> Studio:
    """The model loaded (once, before serving, so a bad --model fails at once) and the studio around it."""
    check_options(fps=options.fps, steps=options.steps)
    if not options.max_seconds > 0:
        raise InputError(f"--max-seconds must be more than 0, not {options.max_seconds:g}")
    token = access_token(options.host, options.token)
    run = replace(options.run, model=options.run.model or default_model(streaming=True))
    check_live_source(run.model)
    loaded = get_model(run.model, run.revision, resolve_run(run), notice)
    if isinstance(loaded, LoadedRoute):  # the public route: its editor re-dresses, LongLive streams
        load_live_parts(loaded)
        switch_defaults = CheckpointInfo().switch_defaults()
    else:
        if loaded.info.kind != "student":
            notice(f"{run.model} is a {loaded.info.kind}, not a distilled student: it streams, but slowly and less well")
        switch_defaults = loaded.info.switch_defaults()
    served = StudioModel(run, options.fps or loaded.preset.default_fps, options.size, options.steps, switch_defaults)
    return Studio(served, token=token, loopback=is_loopback(options.host), max_seconds=options.max_seconds)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (port 0: any free port); an InputError when it cannot be had."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return socket.create_server((host, port), family=family)
    except OSError as error:
        raise InputError(f"cannot listen on {host}:{port} ({error.strerror or error})") from None


def address(host: str, sock: socket.socket, token: str | None) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def serve(studio: Studio, sock: socket.socket, on_ready: Callable[[str], None]) -> None:
    """Serve on `sock` (from `bind`) until Ctrl-C: uvicorn turns it back into KeyboardInterrupt once it has shut down.

    A stream's chunk in progress is not waited for (more than a second): the server stops at once.
    """
    host = sock.getsockname()[0]
    config = uvicorn.Config(create_app(studio), log_level="warning", timeout_graceful_shutdown=1,
                            ws="websockets-sansio", ws_max_size=2**20)
    server = uvicorn.Server(config)
    on_ready(address(host, sock, studio.token))
    try:
        server.run(sockets=[sock])
        # uvicorn re-raises the signal that stopped it; where SIGINT is ignored (a background job) it
        # cannot, and a started server stops for nothing else
        if not server.started:
            raise RuntimeFailure("the web server did not start")
        raise KeyboardInterrupt
    finally:
        shutil.rmtree(studio.root, ignore_errors=True)  # the app's shutdown removed it, unless it never started
