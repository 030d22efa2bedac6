"""The studio under hostile clients: every bad message is an error message to that tab and one
log line, the socket stays open; connections are capped; a client cut off mid-upload leaves
nothing; the folders of a killed studio go at the next start; no idle thread, and nothing of a
finished session, stays behind."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import platform
import subprocess
import sys
import threading
import time
import weakref

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from engine.api.studio.app import create_app
from engine.api.studio.sessions import ROOT_PREFIX, _malloc_trim, in_own_thread, release_memory, remove_stale_roots

from .conftest import make_studio
from .test_app import SOCKET, events_until, receive, upload


@pytest.fixture
def logged(caplog):
    caplog.set_level(logging.WARNING)
    return caplog


def test_bad_messages_each_get_an_error_and_one_log_line_and_the_socket_stays(client, studio, pictures, logged):
    with client.websocket_connect(SOCKET) as ws:
        session_id = receive(ws)["id"]
        upload(client, session_id, "user", pictures / "person.png")
        upload(client, session_id, "garments", pictures / "red.png", category="top")
        hostile = [
            ({"type": "start", "garments": [{"id": "g1"}]}, "ids of garments"),
            ({"type": "start", "garments": [["g1"]]}, "ids of garments"),
            ("[" * 100_000 + "]" * 100_000, "JSON objects"),
            (b"\x00\x01binary", "not binary"),
        ]
        for message, answer in hostile:
            logged.clear()
            if isinstance(message, bytes):
                ws.send_bytes(message)
            elif isinstance(message, str):
                ws.send_text(message)
            else:
                ws.send_json(message)
            reply = receive(ws)
            assert reply["type"] == "error" and answer in reply["message"], reply
        ws.send_json({"type": "switch", "garment": "g1"})  # still answering on the same socket
        assert receive(ws)["message"] == "not streaming: press Start first"
    assert "Exception in ASGI application" not in logged.text
    assert all(record.name != "uvicorn.error" for record in logged.records)


def test_each_bad_message_logs_one_line(client, logged):
    with client.websocket_connect(SOCKET) as ws:
        receive(ws)
        logged.clear()
        ws.send_bytes(b"\xff")
        receive(ws)
    assert len([r for r in logged.records if r.name == "tryon.studio"]) == 1


def test_connections_are_capped_per_client_and_in_all(tmp_path):
    studio = make_studio(tmp_path)
    studio.max_tabs_per_client, studio.max_tabs = 2, 3
    with TestClient(create_app(studio), base_url="http://127.0.0.1") as client:
        first, second = client.websocket_connect(SOCKET), client.websocket_connect(SOCKET)
        with first as a, second as b:
            receive(a), receive(b)
            with client.websocket_connect(SOCKET) as third:
                refused = third.receive_json()
                assert refused["type"] == "error" and "2 tabs per client" in refused["message"]
                with pytest.raises(WebSocketDisconnect):
                    third.receive_json()
            assert len(studio.tabs) == 2
        studio.max_tabs_per_client = 5
        with client.websocket_connect(SOCKET) as a, client.websocket_connect(SOCKET) as b, \
                client.websocket_connect(SOCKET) as c:
            receive(a), receive(b), receive(c)
            with client.websocket_connect(SOCKET) as fourth:
                assert "3 tabs at most" in fourth.receive_json()["message"]


def test_an_upload_cut_off_by_the_client_is_one_log_line_and_leaves_no_file(client, studio, logged):
    with client.websocket_connect(SOCKET) as ws:
        session_id = receive(ws)["id"]

        def cut_off():
            yield b"\x89PNG\r\n\x1a\n" + b"\x00" * 1000
            raise ConnectionResetError("the client went away")

        logged.clear()
        with pytest.raises(ConnectionResetError):
            client.put(f"/api/sessions/{session_id}/user", params={"name": "p.png"}, content=cut_off())
        assert list((studio.root / session_id).iterdir()) == []
    assert "Exception in ASGI application" not in logged.text


def test_the_folders_of_a_killed_studio_go_at_the_next_start(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"{ROOT_PREFIX}{int(dead.stdout)}-abc"
    (stale / "session").mkdir(parents=True)
    (stale / "session" / "user.png").write_bytes(b"x")
    mine = tmp_path / f"{ROOT_PREFIX}{os.getpid()}-def"
    mine.mkdir()
    remove_stale_roots(tmp_path)
    assert not stale.exists() and mine.exists()


def test_work_on_its_own_thread_leaves_no_idle_thread():
    before = threading.active_count()

    async def ten_jobs():
        return [await in_own_thread(lambda i=i: i * 2) for i in range(10)]

    assert asyncio.run(ten_jobs()) == list(range(0, 20, 2))
    deadline = time.monotonic() + 5  # each thread ends just after handing its result over
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before

    async def failing():
        await in_own_thread(lambda: 1 / 0)

    with pytest.raises(ZeroDivisionError):
        asyncio.run(failing())


def test_nothing_of_a_finished_session_stays_in_memory(tiny_checkpoint, tmp_path, pictures, monkeypatch):
    """After each tab closes, its session, its stream, the stream's KV cache and its socket's tab are
    gone (weak references dead), no thread of it is left, and freed memory went back to the system."""
    from engine.api.studio import app as app_module
    from engine.api.studio.app import Tab
    from engine.api.studio.live import LiveRun
    from engine.api.studio.sessions import Session
    from engine.model.kv_cache import KVCache
    from engine.pipelines.pipeline_tryon_streaming import TryOnStream

    made: list[tuple[str, weakref.ref]] = []
    for cls in (Tab, Session, LiveRun, TryOnStream, KVCache):
        def recording(self, *args, _init=cls.__init__, **kwargs):
            _init(self, *args, **kwargs)
            made.append((type(self).__name__, weakref.ref(self)))
        monkeypatch.setattr(cls, "__init__", recording)
    trims = []
    monkeypatch.setattr(app_module, "release_memory", lambda: trims.append(1))
    studio = make_studio(tmp_path, model=str(tiny_checkpoint))
    with TestClient(create_app(studio), base_url="http://127.0.0.1") as client:
        threads = threading.active_count()
        for number in range(1, 4):
            made.clear()
            with client.websocket_connect(SOCKET) as ws:
                session_id = receive(ws)["id"]
                upload(client, session_id, "user", pictures / "person.png")
                upload(client, session_id, "garments", pictures / "red.png", category="top")
                ws.send_json({"type": "start", "garments": ["g1"], "seconds": 0.5})
                events_until(ws, "done")
            deadline = time.monotonic() + 10
            while (studio.tabs or studio.store.sessions or len(trims) < number) and time.monotonic() < deadline:
                time.sleep(0.02)
            gc.collect()
            assert {name for name, _ in made} >= {"Tab", "Session", "LiveRun", "TryOnStream", "KVCache"}
            alive = sorted({name for name, ref in made if ref() is not None})
            assert alive == [], f"session {number} left {alive} alive"
            assert len(trims) == number  # the allocator was asked to give freed memory back
            while threading.active_count() > threads and time.monotonic() < deadline:
                time.sleep(0.02)
            assert threading.active_count() == threads


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_on_glibc_freed_memory_is_handed_back_with_malloc_trim():
    assert _malloc_trim() is not None
    release_memory()
