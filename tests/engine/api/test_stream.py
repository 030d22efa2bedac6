"""The hooks a watcher of a stream uses (tryon studio): each chunk as it is written, and Stop."""

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from engine.api.specs import GarmentSpec
from engine.api.stream import StreamInterrupted, SwapRequest, stream_config, swap
from engine.checkpoint import CheckpointInfo
from engine.media import read_video
from engine.modes import RunOptions


@pytest.fixture
def request_for(tiny_checkpoint, tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "user.png")
    Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(tmp_path / "shirt.png")

    def make(**hooks) -> SwapRequest:
        return SwapRequest(user=tmp_path / "user.png", output=tmp_path / "out.mp4", run=RunOptions(str(tiny_checkpoint)),
                           garments=[GarmentSpec(tmp_path / "shirt.png", "top")], size=(64, 64), fps=8,
                           seconds=3, steps=1, **hooks)

    return make


def test_each_chunk_is_handed_over_as_written_and_stop_keeps_what_was_made(request_for, tmp_path):
    chunks = []
    result = swap(request_for(on_chunk=lambda chunk: chunks.append((chunk.start, chunk.images.copy(), chunk.worn)),
                              should_stop=lambda: len(chunks) == 2))
    assert [(start, len(frames)) for start, frames, _ in chunks] == [(0, 9), (9, 12)]  # stopped before the third
    assert result.frames == 21
    video = read_video(tmp_path / "out.mp4")
    assert len(video) == 21
    # The frames handed over are the file's (H.264 is lossy on the tiny model's noise: 8x8 block means)
    blocks = [frames.reshape(12, 8, 8, 8, 8, 3).mean(axis=(2, 4)) for frames in (video[9:], chunks[1][1])]
    assert np.abs(blocks[0] - blocks[1]).mean() < 3


def test_stopped_before_the_first_chunk_nothing_is_kept(request_for, tmp_path):
    with pytest.raises(StreamInterrupted) as stopped:
        swap(request_for(should_stop=lambda: True))
    assert stopped.value.frames == 0 and list(tmp_path.glob("*.mp4")) == [] and list(tmp_path.glob(".*")) == []


@pytest.mark.parametrize("asked, checkpoint, used", [(None, {}, True), (None, {"disentangle": False}, False),
                                                     (True, {"disentangle": False}, True), (False, {}, False)])
def test_a_switch_operation_is_as_asked_else_as_the_checkpoint_says_else_on(request_for, asked, checkpoint, used):
    model = SimpleNamespace(info=CheckpointInfo(kind="student", stream=checkpoint))
    config = stream_config(request_for(disentangle=asked), model)
    assert config.disentangle is used and config.refresh and config.withdraw
