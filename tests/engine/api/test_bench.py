"""engine.api.bench at toy size. No timed assertions: speed targets live in the benchmark output."""

import json

import numpy as np
import pytest
import torch

from engine import api
from engine.api import loading
from engine.api.bench import STAGES, BenchRequest, StageClock
from engine.checkpoint import build_random
from engine.checkpoint.presets import TINY
from engine.errors import InputError
from engine.media import VideoFrames
from engine.modes import RunOptions

FAST = dict(preset="tiny", random_weights=True, size=(64, 64), seconds=0.5, steps=1)
KEYS = ("fps", "first_frame_s", "peak_memory_mb", "total_s", "load_s", "weights_mb")


@pytest.fixture(scope="module")
def dress():
    return json.loads(json.dumps(api.bench_and_compare(BenchRequest(**FAST)).to_dict()))  # JSON-serialisable


@pytest.fixture(scope="module")
def stream():
    return json.loads(json.dumps(api.bench_and_compare(BenchRequest(**FAST, mode="stream", chunk_frames=1)).to_dict()))


def check_common(result):
    for key in KEYS:
        assert result[key] > 0, key
    assert set(result["stages"]) == set(STAGES)
    assert all(seconds > 0 for seconds in result["stages"].values()), result["stages"]
    assert sum(result["stages"].values()) <= result["total_s"]
    assert result["first_frame_s"] <= result["total_s"]
    assert result["other_s"] >= 0
    assert 0 <= result["overhead_without_writing"] <= result["overhead"] < 1
    assert result["peak_memory_kind"] == "cpu_peak_rss"
    assert result["device"].startswith("cpu")
    assert result["frames"] == 12 and result["size"] == [64, 64]


def test_dress_reports_fps_first_frame_stages_and_memory(dress):
    check_common(dress)
    assert dress["mode"] == "dress" and dress["stream"] is None
    assert dress["calls"]["transformer"] == 1  # one step, tiny's guidance 1: no unconditional pass
    assert dress["calls"]["text_encoding"] == 1
    assert dress["calls"]["vae_encode"] == 3  # user photo, garment, motion video
    assert dress["calls"]["vae_decode"] == 1


def test_stream_reports_chunks_and_the_switch(stream):
    check_common(stream)
    info = stream["stream"]
    chunks = info["chunks"]
    assert [c["frames"] for c in chunks] == [1, 4, 4, 3]  # 1 latent frame per chunk
    assert sum(c["frames"] for c in chunks) == stream["frames"]
    assert all(c["seconds"] > 0 and c["fps"] > 0 for c in chunks)
    assert info["first_chunk_s"] == chunks[0]["seconds"]
    for chunk in chunks:
        assert chunk["stages"]["transformer"] > 0 and chunk["stages"]["vae_decode"] > 0
        assert chunk["stages"]["vae_encode"] > 0  # the motion video is encoded chunk by chunk
        assert sum(chunk["stages"].values()) <= chunk["seconds"]
    assert info["early_chunk_transformer_s"] > 0 and info["late_chunk_transformer_s"] > 0
    switch = info["switch"]
    assert switch["frame"] == 9  # the first chunk starting at or after 0.25 s (frame 6)
    assert [c["switch"] for c in chunks] == [False, False, False, True]
    assert 0 < switch["ops_s"] < switch["latency_s"] == info["switch_latency_s"]
    assert chunks[3]["context_tokens"] < chunks[2]["context_tokens"]  # the switch withdrew the history
    assert info["steady_chunks"] == 2 and info["early_chunk_fps"] > 0 and info["late_chunk_fps"] > 0
    assert info["setup_s"] + info["first_chunk_s"] <= stream["first_frame_s"]
    # per chunk 1 step + 1 cache pass; condition passes: 1 at the start, 1 at the switch (disentangle and
    # refresh update the reference and garments, then the region is recomputed once)
    assert stream["calls"]["transformer"] == 4 * 2 + 2


def test_end_to_end_streams_from_a_motion_file_through_the_writer_thread(monkeypatch):
    from engine.api.bench import runs

    opened = []
    monkeypatch.setattr(runs, "VideoFrames", lambda *args, **kwargs: opened.append(kwargs) or VideoFrames(*args, **kwargs))
    result = api.bench_and_compare(BenchRequest(**FAST, mode="stream", chunk_frames=1, sync="end")).to_dict()
    assert result["sync"] == "end" and set(result["stages"].values()) == {0.0}  # nothing timed per stage
    assert [kwargs["size"] for kwargs in opened] == [(64, 64)]  # the motion file, fitted as swap fits it
    chunks = result["stream"]["chunks"]
    assert [c["frames"] for c in chunks] == [1, 4, 4, 3] and all(c["seconds"] > 0 for c in chunks)
    assert result["stream"]["switch"]["latency_s"] > 0
    assert 0 < result["first_frame_s"] <= result["total_s"]


def test_compare_covers_the_attention_backends_and_the_new_modes():
    from engine.api.bench.benchmark import compared_run

    run = RunOptions(attention="sdpa")
    assert compared_run(run, "cudnn").attention == "cudnn" and compared_run(run, "flash3").attention == "flash3"
    assert compared_run(run, "vae-bf16").acceleration.vae_bf16 and compared_run(run, "vae-bf16").attention == "sdpa"
    assert compared_run(run, "fp8").acceleration.fp8 and not compared_run(run, "fp8").acceleration.fp8_weights


def test_a_size_the_model_cannot_generate_is_benched_at_that_size():
    result = api.bench_and_compare(BenchRequest(**{**FAST, "size": (80, 48)}))
    assert result.size == [80, 48]


@pytest.mark.slow
def test_warmup_and_repeat_report_mean_and_min():
    result = api.bench_and_compare(BenchRequest(**FAST, warmup=1, repeat=2))
    assert result.warmup == 1 and len(result.runs) == 2
    assert result.total_s_min <= result.total_s and result.fps_best >= result.fps
    assert all(result.stages_min[s] <= result.stages[s] for s in STAGES)


def test_a_checkpoint_is_benched_and_left_uninstrumented(tiny_checkpoint):
    result = api.bench_and_compare(BenchRequest(run=RunOptions(model=str(tiny_checkpoint)), mode="stream", size=(64, 64), seconds=0.5, steps=1))
    assert result.model == str(tiny_checkpoint) and result.preset == "tiny" and not result.random_weights
    pipeline = next(iter(loading._loaded.values())).pipeline  # get_model keeps it loaded
    for owner, name in ((pipeline.transformer, "forward"),
                        (pipeline.text_encoder, "forward"), (pipeline.vae, "encode"), (pipeline.vae, "decode")):
        assert name not in vars(owner), name


def test_stage_clock_times_nested_calls_once_and_restores():
    class Model:
        def outer(self):
            return self.inner() + 1

        def inner(self):
            return 1

    model = Model()
    clock = StageClock(torch.device("cpu"))
    clock.wrap(model, "outer", "a")
    clock.wrap(model, "inner", "b")
    assert model.outer() == 2 and model.inner() == 1
    assert clock.calls == {"a": 1, "b": 1}  # inner inside outer is not counted again
    clock.restore()
    assert vars(model) == {}


@pytest.mark.slow
def test_vae_tiling_keeps_the_output_shape():
    pipeline = build_random(TINY, device=torch.device("cpu"), dtype=torch.float32)
    latents = torch.randn(1, 48, 2, 6, 6, generator=torch.Generator().manual_seed(0))
    frames = np.random.default_rng(0).integers(0, 256, (5, 96, 96, 3), dtype=np.uint8)
    plain = pipeline.decode(latents), pipeline.encode_frames(frames)
    pipeline.vae.enable_tiling(tile_sample_min_height=64, tile_sample_min_width=64, tile_sample_stride_height=32,
                               tile_sample_stride_width=32)
    tiled = pipeline.decode(latents), pipeline.encode_frames(frames)
    assert tiled[0].shape == plain[0].shape == (5, 96, 96, 3) and tiled[1].shape == plain[1].shape
    assert api.bench_and_compare(BenchRequest(**FAST, vae_tiling=True)).vae_tiling


@pytest.mark.slow
def test_compare_runs_each_mode_alone_against_the_baseline():
    result = api.bench_and_compare(BenchRequest(**FAST, compare=("fp8-weights", "fuse-qkv")))
    assert result.acceleration["fp8_weights"] is False
    fp8, fused = result.compare
    assert fp8["mode"] == "fp8-weights" and fp8["acceleration"]["fp8_weights"] and not fp8["acceleration"]["fuse_qkv"]
    assert fused["acceleration"]["fuse_qkv"] and not fused["acceleration"]["fp8_weights"]
    assert fp8["weights_ratio"] < 1 and fused["weights_ratio"] == pytest.approx(1.0)  # fused frees q, k, v
    for entry in result.compare:
        assert entry["fps_ratio"] == pytest.approx(entry["fps"] / result.fps)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(preset="nope"), "unknown preset"),
        (dict(mode="fast"), "^mode must be dress or stream"),
        (dict(size=(101, 64)), "even"),
        (dict(run=RunOptions(model="somewhere")), "not both"),
        (dict(repeat=0), "^repeat must be an integer from 1 to 100"),
        (dict(mode="stream", guidance=2.0), "no --guidance"),
        (dict(mode="stream", switch_at=0.5), "at or after the end"),
        (dict(compare=("warp",)), "unknown mode 'warp'"),
        (dict(sync="fast"), "^sync must be stage or end"),
    ],
)
def test_bad_requests_are_input_errors(changes, message):
    with pytest.raises(InputError, match=message):
        api.bench_and_compare(BenchRequest(**{**FAST, **changes}))
