"""`swap` and `extend` on the public route (tiny random weights): LongLive streams, the editor switches."""

import json

import pytest

from engine.media import probe_video
from engine.pipelines.public.stream import LiveRouteStream


def test_motion_is_refused_on_the_route_in_one_line_before_loading(tryon, tiny_route, inputs, tmp_path):
    run = tryon("swap", inputs / "user.png", "-g", f"{inputs / 'shirt.png'}:top", "--motion", inputs / "dance.mp4",
                "--model", tiny_route, "-o", tmp_path / "o.mp4")
    assert run.code == 2 and len(run.stderr.strip().splitlines()) == 1
    assert "--prompt" in run.stderr and "tryon dance --model public --motion" in run.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_the_real_route_without_longlive_converted_is_one_line_before_any_download(tryon, inputs, tmp_path,
                                                                                  monkeypatch):
    monkeypatch.delenv("TRYON_PUBLIC_STREAM_DIR", raising=False)
    run = tryon("swap", inputs / "user.png", "-g", f"{inputs / 'shirt.png'}:top", "--model", "public",
                "-o", tmp_path / "o.mp4")
    assert run.code == 2 and len(run.stderr.strip().splitlines()) == 1
    assert "tryon models convert" in run.stderr and "--from longlive" in run.stderr
    assert not (tmp_path / "o.mp4").exists()


@pytest.fixture
def edits_land_one_chunk_later(monkeypatch):
    """An edit still running at the next chunk boundary is waited for at the one after: the stream
    makes one chunk in the old outfit while the editor works, however fast this machine is."""
    original = LiveRouteStream.land_switches
    pending = []

    def land(self):
        pending.append(self.edits_pending)
        if len(pending) >= 2 and pending[-2] and self.edits_pending:
            self.wait_for_edits()
        return original(self)

    monkeypatch.setattr(LiveRouteStream, "land_switches", land)


@pytest.mark.slow
def test_swap_streams_and_switches_on_a_real_case_then_extend_continues_it(tryon, tiny_route, real_cases, tmp_path,
                                                                           edits_land_one_chunk_later):
    case, other = real_cases / "case1", real_cases / "case2"
    run = tryon("swap", case / "user.png", "-g", f"{case / 'garment.png'}:top", "-g", f"{other / 'garment.png'}:dress@1",
                "--prompt", (case / "prompt.txt").read_text(), "--model", tiny_route, "--seconds", "3", "--fps", "24",
                "--size", "64x96", "-o", tmp_path / "swap.mp4", "--json")
    assert run.code == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["frames"] == 72 and summary["size"] == [64, 96]
    [switch] = summary["switches"]
    # due at frame 24; its edit starts with the chunk at frame 33 (1 + 32), which keeps the old
    # outfit, and the re-dressed stream begins with the chunk after it
    assert switch["at"] == 1 and switch["frame"] == 65 and switch["latency"] > 0
    assert [s["stage"] for s in summary["stages"]] == ["edit", "stream"]
    assert "Efficient-Large-Model/LongLive-2.0-5B" in summary["stages"][1]["repo"]
    assert "lightx2v/Qwen-Image-Lightning" in summary["stages"][0]["repo"]
    info = probe_video(tmp_path / "swap.mp4")
    assert (info.width, info.height, info.frame_count) == (64, 96, 72)

    run = tryon("extend", tmp_path / "swap.mp4", "--seconds", "1", "--prompt", "she keeps turning", "--model",
                tiny_route, "-o", tmp_path / "longer.mp4", "--json")
    assert run.code == 0, run.stderr
    assert json.loads(run.stdout)["frames"] == 72 + 24
    info = probe_video(tmp_path / "longer.mp4")
    assert (info.width, info.height, info.frame_count) == (64, 96, 96)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["longer.mp4", "swap.mp4"]
