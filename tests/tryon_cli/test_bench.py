"""`tryon bench` at toy size. No timed assertions: speed targets live in the benchmark output."""

import json

import pytest
from PIL import Image

from engine.media.chart import PANEL_SIZE

FAST = ["bench", "--preset", "tiny", "--random-weights", "--size", "64x64", "--seconds", "0.5", "--steps", "1"]


def test_json_has_the_documented_keys(tryon):
    run = tryon(*FAST, "--json")
    assert run.code == 0, run.stderr
    result = json.loads(run.stdout)
    for key in ("fps", "first_frame_s", "peak_memory_mb"):
        assert result[key] > 0
    assert set(result["stages"]) == {"text_encoding", "vae_encode", "transformer", "vae_decode", "writing"}
    assert sum(result["stages"].values()) <= result["total_s"]


def test_stream_json_has_chunks_and_a_switch_latency(tryon):
    run = tryon(*FAST, "--mode", "stream", "--chunk-frames", "1", "--json")
    assert run.code == 0, run.stderr
    stream = json.loads(run.stdout)["stream"]
    assert len(stream["chunks"]) == 4 and stream["switch_latency_s"] > 0
    assert stream["early_chunk_fps"] > 0 and stream["late_chunk_fps"] > 0


def test_tables_without_json(tryon):
    run = tryon(*FAST, "--mode", "stream", "--chunk-frames", "1")
    assert run.code == 0, run.stderr
    for text in ("FPS", "time to first frame", "peak memory", "VAE decode", "switch latency", "CPU peak RSS"):
        assert text in run.stdout


def test_compare_prints_each_mode_against_the_run_and_charts_it(tryon, tmp_path):
    run = tryon(*FAST, "--fp8-weights", "--compare", "fuse-qkv,offload-group", "--chart", tmp_path / "bench.png")
    assert run.code == 0, run.stderr
    assert "fp8" in run.stdout  # the run's own modes, in the device row
    assert "each mode alone" in run.stdout and "fuse-qkv" in run.stdout and "offload-group" in run.stdout
    with Image.open(tmp_path / "bench.png") as chart:  # stages, FPS, × FPS, first frame, peak memory: 3 rows of 2
        assert chart.format == "PNG" and chart.size == (2 * PANEL_SIZE[0], 36 + 3 * PANEL_SIZE[1])


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "--preset", "nope", "--random-weights"],
        [*FAST, "--mode", "fast"],
        [*FAST, "--size", "101x64"],
        [*FAST, "--size", "big"],
        [*FAST, "--warmup", "-1"],
        ["bench", "--random-weights"],
        [*FAST, "--compare", "fuse-qkv,turbo"],
        [*FAST, "--offload", "disk"],
        [*FAST, "--chart", "bench.jpg"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(tryon, args):
    run = tryon(*args)
    assert run.code == 2
    assert run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1 and run.stderr.startswith("tryon: error")
