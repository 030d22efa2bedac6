import io
import json
import shutil
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse
from PIL import Image
from starlette.websockets import WebSocketDisconnect

from engine.api.studio.app import create_app
from engine.api.studio.server import StudioOptions, load_studio
from engine.media import read_video
from engine.modes import RunOptions

from .conftest import ROOT, make_studio

TOKEN = "a-long-enough-access-token"
SOCKET = "ws://127.0.0.1/api/stream"


def receive(ws) -> dict | bytes:
    message = ws.receive()
    if message["type"] == "websocket.close":
        raise AssertionError(f"socket closed: {message}")
    return message["bytes"] if message.get("bytes") is not None else json.loads(message["text"])


def events_until(ws, kind: str, frames: list | None = None, limit: int = 500) -> list[dict]:
    """Events up to and including the first of `kind`; frames met on the way go to `frames`."""
    events = []
    for _ in range(limit):
        message = receive(ws)
        if isinstance(message, bytes):
            if frames is not None:
                frames.append((int.from_bytes(message[:4], "big"), time.perf_counter(), message[4:]))
            continue
        events.append(message)
        if message["type"] == kind:
            return events
    raise AssertionError(f"no {kind} event in {events}")


def upload(client, session_id: str, what: str, path, **params):
    method = client.post if what == "garments" else client.put
    return method(f"/api/sessions/{session_id}/{what}", params={"name": path.name, **params},
                  content=path.read_bytes())


def test_the_page_and_its_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="shelf"' in page.text and "/static/studio.js" in page.text
    assert client.get("/static/studio.js").status_code == 200


def test_on_loopback_another_host_name_is_refused(client):
    assert client.get("/", headers={"host": "attacker.example"}).status_code == 400


def test_a_socket_from_another_origin_is_refused(client):
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect(SOCKET, headers={"origin": "http://attacker.example"}) as ws:
            ws.receive()
    assert refused.value.code == 1008
    with client.websocket_connect(SOCKET, headers={"origin": "http://127.0.0.1"}) as ws:
        assert receive(ws)["type"] == "session"


def test_with_a_token_every_request_without_it_gets_401(tmp_path):
    studio = make_studio(tmp_path, token=TOKEN, loopback=False)
    with TestClient(create_app(studio), base_url="http://192.0.2.7:7860") as client:
        for path in ("/", "/static/studio.js", "/api/sessions/x/video"):
            assert client.get(path).status_code == 401, path
        assert client.get("/?token=wrong-token-of-some-length").status_code == 401
        with pytest.raises(WebSocketDenialResponse) as denied:
            with client.websocket_connect(SOCKET) as ws:
                ws.receive()
        assert denied.value.status_code == 401  # the handshake itself
        page = client.get(f"/?token={TOKEN}")  # the address printed once sets a cookie
        assert page.status_code == 200 and "HttpOnly" in page.headers["set-cookie"]
        assert client.get("/static/studio.js").status_code == 200  # the cookie is enough now
        with client.websocket_connect(SOCKET, headers={"cookie": page.headers["set-cookie"]}) as ws:
            assert receive(ws)["type"] == "session"
    with TestClient(create_app(studio), base_url="http://192.0.2.7:7860") as fresh:
        assert fresh.get("/", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_a_tab_is_a_session_whose_folder_goes_when_it_closes(client, studio, pictures):
    with client.websocket_connect(SOCKET) as ws:
        session = receive(ws)
        assert session["type"] == "session" and session["fps"] == 24
        assert session["switch_operations"] == {"refresh": True, "withdraw": True, "disentangle": True}
        folder = studio.root / session["id"]
        assert folder.is_dir()
        assert upload(client, session["id"], "user", pictures / "person.png").status_code == 200
        bad = upload(client, session["id"], "garments", pictures / "notes.png", category="top")
        assert bad.status_code == 400 and bad.json()["error"].startswith("notes.png: not an image")
        good = upload(client, session["id"], "garments", pictures / "red.png", category="top")
        assert good.json() == {"id": "g1", "name": "red.png", "category": "top"}  # it keeps serving
        assert client.get(f"/api/sessions/{session['id']}/video").status_code == 404  # nothing made yet
        assert len(list(folder.iterdir())) == 2
    deadline = time.monotonic() + 10
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not folder.exists() and studio.store.sessions == {}
    assert upload(client, session["id"], "user", pictures / "person.png").status_code == 404


def test_start_asks_for_what_is_missing(client, pictures):
    with client.websocket_connect(SOCKET) as ws:
        session_id = receive(ws)["id"]
        ws.send_json({"type": "start", "garments": ["g1"]})
        assert receive(ws) == {"type": "error", "message": "upload a photo of the person first"}
        upload(client, session_id, "user", pictures / "person.png")
        ws.send_json({"type": "start", "garments": []})
        assert "click them on the shelf" in receive(ws)["message"]
        upload(client, session_id, "garments", pictures / "red.png", category="top")
        ws.send_json({"type": "start", "garments": ["g1"], "seconds": 60})
        assert receive(ws)["message"] == "seconds must be more than 0 and at most 5"
        ws.send_text("not json")
        assert receive(ws)["message"] == "messages are JSON objects"


@pytest.mark.slow  # a real stream on the tiny model, paced at 24 fps
def test_a_stream_switches_on_click_and_its_mp4_holds_every_frame_sent(tiny_checkpoint, tmp_path, pictures):
    studio = make_studio(tmp_path, model=str(tiny_checkpoint))
    with TestClient(create_app(studio), base_url="http://127.0.0.1") as client, \
            client.websocket_connect(SOCKET) as ws:
        session_id = receive(ws)["id"]
        upload(client, session_id, "user", pictures / "person.png")
        upload(client, session_id, "garments", pictures / "red.png", category="top")
        upload(client, session_id, "garments", pictures / "green.png", category="dress")
        ws.send_json({"type": "start", "garments": ["g1"], "seconds": 1.5, "prompt": "she waves"})
        assert events_until(ws, "started")[-1] == {"type": "started", "fps": 24, "outfit": ["g1"]}
        ws.send_json({"type": "switch", "garment": "g2"})
        assert upload(client, session_id, "user", pictures / "person.png").status_code == 409
        assert client.get(f"/api/sessions/{session_id}/video").status_code == 409
        frames = []
        events = events_until(ws, "done", frames)
        download = client.get(events[-1]["video"])
    switch = next(e for e in events if e["type"] == "switch")
    done = events[-1]
    assert switch["garments"] == ["g2"] and switch["outfit"] == ["g2"]  # the dress took the top off
    assert switch["frame"] in (9, 21) and switch["server_latency_s"] > 0  # chunks start at 0, 9, 21, 33
    assert done["frames"] == 36 and done["stopped"] is False and done["generated_fps"] > 0
    assert [index for index, _, _ in frames] == list(range(36))
    assert frames[-1][1] - frames[0][1] >= 35 / 24 - 0.1  # paced at the video's frame rate, never faster
    assert download.status_code == 200 and download.headers["content-type"] == "video/mp4"
    (tmp_path / "got.mp4").write_bytes(download.content)
    video = read_video(tmp_path / "got.mp4")
    shown = np.stack([np.asarray(Image.open(io.BytesIO(jpeg))) for _, _, jpeg in frames])
    assert video.shape == shown.shape == (36, 64, 64, 3)
    # The same frames in the same order, through JPEG and through H.264 (both lossy on the tiny
    # model's noise, so compared as 8x8 block means, and against the frame after).
    blocks = [frames.reshape(36, 8, 8, 8, 8, 3).mean(axis=(2, 4)) for frames in (video, shown)]
    same = np.abs(blocks[0] - blocks[1]).mean()
    assert same < 3 and same < np.abs(blocks[0][1:] - blocks[1][:-1]).mean() / 2
    assert not studio.root.exists()  # the server shut down: every session folder went with it


def test_the_page_starts_with_the_switch_operations_of_the_models_checkpoint(tiny_checkpoint, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, model)
    info = json.loads((model / "tryon.json").read_text())
    (model / "tryon.json").write_text(json.dumps({**info, "stream": {"disentangle": False}}))
    studio = load_studio(StudioOptions(run=RunOptions(model=str(model))), notice=lambda message: None)
    with TestClient(create_app(studio), base_url="http://127.0.0.1") as client:
        with client.websocket_connect(SOCKET) as ws:
            session = receive(ws)
    assert session["switch_operations"] == {"refresh": True, "withdraw": True, "disentangle": False}


@pytest.mark.slow  # a short stream of the shipped demo student
def test_the_demo_student_on_a_camera_photo_tells_the_page_about_the_route(tmp_path, pictures, real_cases):
    student = ROOT / "weights" / "demo-student"
    studio = make_studio(tmp_path, model=str(student))
    with TestClient(create_app(studio), base_url="http://127.0.0.1") as client, \
            client.websocket_connect(SOCKET) as ws:
        session_id = receive(ws)["id"]
        upload(client, session_id, "user", real_cases / "case1" / "user.png")
        upload(client, session_id, "garments", pictures / "red.png", category="top")
        ws.send_json({"type": "start", "garments": ["g1"], "seconds": 0.25})
        events = events_until(ws, "done")
    notices = [e["message"] for e in events if e["type"] == "notice" and "--model public" in e["message"]]
    assert len(notices) == 1 and "synthetic world" in notices[0]
