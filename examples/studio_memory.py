"""The studio's memory and threads over sessions: what stays after each tab closes.

    python examples/studio_memory.py --sessions 10 [--size 64x64] [--seconds 1]

Serves the demo student in this process (FastAPI's TestClient, 127.0.0.1), then runs the
sessions one after another: a tab opens, uploads a person photo and a garment, streams
`--seconds` and closes. After each, prints one line: the process's RSS and thread count
(/proc/self/status), Python's threads, and how many studio tabs, sessions, live runs,
streams and KV caches are still alive (after gc). Without `--size` the model's own size.
Linux only.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from engine.api.studio.app import Studio, Tab, create_app
from engine.api.studio.live import LiveRun, StudioModel
from engine.api.studio.sessions import Session
from engine.model.kv_cache import KVCache
from engine.modes import RunOptions
from engine.pipelines.pipeline_tryon_streaming import TryOnStream

ROOT = Path(__file__).resolve().parents[1]


def status(key: str) -> float:
    with open("/proc/self/status") as lines:
        return float(next(line for line in lines if line.startswith(key)).split()[1])


def figures() -> str:
    gc.collect()
    objects = gc.get_objects()
    alive = {cls.__name__: sum(type(o) is cls for o in objects) for cls in (Tab, Session, LiveRun, TryOnStream, KVCache)}
    return (f"rss {status('VmRSS') / 1024:.0f} MB, threads {int(status('Threads'))} "
            f"(python {threading.active_count()}), alive {alive}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--size", help="WxH (default: the model's)")
    parser.add_argument("--model", default=str(ROOT / "weights" / "demo-student"))
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x")) if args.size else None

    folder = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (96, 64, 3), dtype=np.uint8)).save(folder / "person.png")
    shirt = np.full((80, 80, 3), 255, np.uint8)
    shirt[16:64, 16:64] = (220, 30, 30)
    Image.fromarray(shirt).save(folder / "red.png")
    (folder / "studio").mkdir()
    served = StudioModel(RunOptions(model=args.model), fps=24, size=size, steps=1)
    studio = Studio(served, max_seconds=max(5.0, args.seconds), root=folder / "studio")
    print(f"idle: {figures()}", flush=True)
    with TestClient(create_app(studio), base_url="http://127.0.0.1") as client:
        for number in range(1, args.sessions + 1):
            started = time.perf_counter()
            with client.websocket_connect("ws://127.0.0.1/api/stream") as ws:
                session_id = ws.receive_json()["id"]
                client.put(f"/api/sessions/{session_id}/user", params={"name": "person.png"},
                           content=(folder / "person.png").read_bytes()).raise_for_status()
                client.post(f"/api/sessions/{session_id}/garments", params={"name": "red.png", "category": "top"},
                            content=(folder / "red.png").read_bytes()).raise_for_status()
                ws.send_json({"type": "start", "garments": ["g1"], "seconds": args.seconds})
                while True:
                    message = ws.receive()
                    if message.get("text") and json.loads(message["text"])["type"] == "done":
                        break
            deadline = time.monotonic() + 5
            while (studio.tabs or studio.store.sessions) and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.3)
            print(f"after session {number} ({time.perf_counter() - started:.1f} s): {figures()}", flush=True)


if __name__ == "__main__":
    main()
