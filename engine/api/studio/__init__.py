"""`tryon studio`: live garment switching in the browser.

A local web app (FastAPI, served by uvicorn): each tab uploads a person photo, garments and a
motion video or prompt, starts a stream of the streaming student and watches its frames
arrive over a WebSocket; clicking a garment switches mid-stream (engine.api.stream's live
switches). `app` is the web app, `sessions` the per-tab folders and uploads, `live` one
stream, `turns` the line in front of the model, `server` loading the model and serving.

FastAPI and uvicorn are an optional extra (`pip install 'tryon[studio]'`): this package
imports them only in its submodules, after `require_dependencies`.
"""

from __future__ import annotations

from importlib.util import find_spec

from engine.errors import InputError

DEPENDENCIES = {"fastapi": "fastapi", "uvicorn": "uvicorn", "websockets": "websockets"}


def require_dependencies() -> None:
    """An InputError saying how to install the studio extra when any of its packages is missing."""
    missing = []
    for module, package in DEPENDENCIES.items():
        try:
            found = find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(package)
    if missing:
        raise InputError(f"tryon studio needs {', '.join(missing)}: pip install 'tryon[studio]' "
                         "(or pip install -e '.[studio]' in a checkout)")
