"""Fuzzing the option grammar: whatever the command line, one clean ending.

Hypothesis draws command lines from each command's options, with valid, boundary and absurd
values and paths (FIFOs, devices, /proc, names longer than the file system allows). Every
model given is absent or not a checkpoint, so each call ends at validation, before any model
loads, and runs in this process through the same `app()` error mapping as the installed
program. Each call must end with exit code 0, 1, 2 or 130, no traceback, no internal error, at
most one error line (not after a blank one), and leave nothing behind in its folder.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import tryon_program

INTS = ["0", "1", "2", "3", "-1", "7", "2147483648", "4294967295", "4294967296", "18446744073709551616",
        "99999999999999999999999", "1e3", "abc", "", "0x10", "2^64", " 5"]
FLOATS = ["0", "0.25", "1", "2", "-1", "600", "601", "1e23", "1e308", "1e309", "inf", "-inf", "nan", "abc", "",
          "1e-300"]
SIZES = ["64x96", "0x0", "8192x8192", "8193x16", "axb", "64X96", "1x1", "-64x96", "", "99999999999999999999x1",
         "32x56", "4096x4096"]
NAMES = {"device": ["auto", "cpu", "cuda", "cuda:9", "tpu", ""], "dtype": ["auto", "bf16", "fp64", ""],
         "attention": ["auto", "sdpa", "flash", "xformers", "nope"], "offload": ["none", "model", "group", "x"]}
FLAGS = ["--fp8", "--compile", "--fuse-qkv", "--overwrite", "--json", "--quiet", "--nope", "--help"]
MISSING_MODEL = "/nonexistent/tryon-model"


@pytest.fixture(scope="module")
def places(inputs, tmp_path_factory) -> dict[str, str]:
    """Paths to draw from: good inputs, and every kind of wrong one."""
    folder = tmp_path_factory.mktemp("fuzz-places")
    os.mkfifo(folder / "fifo")
    busy = folder / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("mine")
    manifest = folder / "jobs.csv"
    manifest.write_text(f"user,garments,motion,prompt,seconds,seed,output\n{inputs / 'user.png'},"
                        f"{inputs / 'shirt.png'}:top,,,,99999999999999999999999,a.mp4\n")
    (folder / "deep.jsonl").write_text('{"user": ' + "[" * 5000 + "]" * 5000 + "}\n")
    return {"user": str(inputs / "user.png"), "shirt": str(inputs / "shirt.png"), "text": str(inputs / "notes.png"),
            "motion": str(inputs / "dance.mp4"), "still": str(inputs / "still.mp4"),
            "fake_video": str(inputs / "image.mp4"), "fifo": str(folder / "fifo"), "busy": str(busy),
            "manifest": str(manifest), "deep": str(folder / "deep.jsonl"), "inputs": str(inputs)}


def paths(places: dict, *good: str) -> st.SearchStrategy[str]:
    bad = [places["fifo"], "/dev/null", "missing.png", places["inputs"], places["text"], "x" * 300 + ".png", ""]
    return st.sampled_from([places[name] for name in good] + bad)


def option(name: str, values) -> st.SearchStrategy[list[str]]:
    return st.one_of(st.just([]), st.builds(lambda value: [name, value], st.sampled_from(values)))


def flags() -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(FLAGS), max_size=2, unique=True).map(
        lambda chosen: [flag for flag in chosen if flag != "--help" or len(chosen) == 1])


def garment(places: dict, timed: bool) -> st.SearchStrategy[str]:
    suffixes = ["", ":top", ":bottom", ":dress", ":hat", ":"] + (["@2", "@-1", "@nan", "@1e309", "@x"] if timed else [])
    return st.builds(lambda path, suffix: path + suffix, paths(places, "shirt", "shirt"), st.sampled_from(suffixes))


def models(places: dict) -> st.SearchStrategy[list[str]]:
    return st.builds(lambda model: ["--model", model],
                     st.sampled_from([MISSING_MODEL, places["fifo"], places["busy"], places["user"], "owner/name",
                                      "tiny", "wan2.2-ti2v-5b", "/dev/null", ""]))


def generation_options(places: dict) -> list[st.SearchStrategy[list[str]]]:
    return [option("--motion", [places["motion"], places["still"], places["fake_video"], places["fifo"], "/dev/null",
                                "missing.mp4", places["inputs"]]),
            option("-o", ["out.mp4", "out.txt", "sub/out.mp4", "/proc/x.mp4", "x" * 300 + ".mp4", "", ".",
                          places["user"], "/dev/null"]),
            option("--size", SIZES), option("--seconds", FLOATS), option("--fps", FLOATS), option("--seed", INTS),
            option("--steps", INTS), option("--guidance", FLOATS), option("--prompt", ["", "she spins", "ü" * 5000]),
            *(option(f"--{name}", values) for name, values in NAMES.items()), models(places), flags()]


def command_lines(places: dict) -> st.SearchStrategy[list[str]]:
    def join(*parts):
        return [word for part in parts for word in ([part] if isinstance(part, str) else part)]

    generation = generation_options(places)
    dress = st.builds(join, st.just("dress"), paths(places, "user"),
                      st.lists(garment(places, timed=False), min_size=0, max_size=5), *generation)
    dance = st.builds(join, st.just("dance"), paths(places, "user"), *generation)
    swap = st.builds(join, st.just("swap"), paths(places, "user"),
                     st.lists(garment(places, timed=True), max_size=3).map(lambda gs: [w for g in gs for w in ("-g", g)]),
                     *generation)
    extend = st.builds(join, st.just("extend"), paths(places, "motion"), option("--seconds", FLOATS),
                       option("-o", ["longer.mp4", "/proc/x.mp4", "x" * 300 + ".mp4"]), option("--seed", INTS),
                       option("--steps", INTS), models(places), flags())
    batch = st.builds(join, st.just("batch"), paths(places, "manifest", "deep"),
                      option("-o", ["renders", "/proc/r", places["fifo"], places["user"]]), option("--seed", INTS),
                      option("--size", SIZES), option("--guidance", FLOATS), option("--shard", ["1/2", "0/0", "3/2", "x"]),
                      models(places), flags())
    bench = st.builds(join, st.just("bench"),
                      st.one_of(models(places), option("--preset", ["tiny", "demo", "nope", "wan2.2-ti2v-5b"])),
                      option("--mode", ["dress", "stream", "x"]), option("--size", SIZES), option("--seconds", FLOATS),
                      option("--steps", INTS), option("--garments", INTS), option("--chunk-frames", INTS),
                      option("--window", INTS), option("--switch-at", FLOATS), option("--warmup", INTS),
                      option("--repeat", INTS), option("--seed", INTS), option("--guidance", FLOATS),
                      option("--compare", ["fp8", "nope", "fp8,compile", ""]), flags())
    synth = st.builds(join, st.just("data"), st.just("synth"),
                      st.sampled_from(["data", "/proc/d", places["fifo"], places["user"], "/dev/null"]),
                      # always a count: the default (a whole training set) would run for half a minute
                      st.builds(lambda count: ["--count", count],
                                st.sampled_from(["0", "1", "-1", "18446744073709551616", "100004", "x"])),
                      option("--frames", ["0", "1", "3", "1001", "100000000000000000000000"]),
                      option("--size", ["32x56", "0x0", "8192x8192", "33x57", "axb", "2050x32"]),
                      option("--fps", FLOATS), option("--seed", INTS), st.just(["--quiet"]))
    init = st.builds(join, st.just("models"), st.just("init"), st.sampled_from(["tiny", "nope", "wan2.2-ti2v-5b"]),
                     st.sampled_from([".", "", "..", "/", "~", places["fifo"], places["busy"], "/dev/null"]),
                     st.sampled_from([[], ["--overwrite"]]), option("--seed", INTS))
    evaluate = st.builds(join, st.just("eval"), paths(places, "motion", "fake_video"),
                         st.builds(lambda ref: ["--reference", ref], paths(places, "motion", "still")),
                         st.sampled_from([[], ["--json"]]))
    vae = st.builds(join, st.just("train"), st.just("vae"), st.just(["--base", MISSING_MODEL]),
                    st.sampled_from([["--output", "ck"], ["--output", "."], ["--output", places["busy"]]]),
                    option("--steps", INTS), option("--batch-size", INTS), option("--size", SIZES),
                    option("--frames", INTS), option("--lr", FLOATS), option("--examples", INTS), st.just(["-q"]))
    return st.one_of(dress, dance, swap, extend, batch, bench, synth, init, evaluate, vae)


def run_in_process(args: list[str], cwd: Path) -> tuple[int, str]:
    from tryon_cli.main import app

    out, err = io.StringIO(), io.StringIO()
    previous, argv = Path.cwd(), sys.argv
    os.chdir(cwd)
    sys.argv = ["tryon", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            app()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        os.chdir(previous)
        sys.argv = argv
    return code, err.getvalue()


def check_ending(args: list[str], code: int, stderr: str, left: list[str]) -> None:
    where = f"tryon {' '.join(args)[:400]}"
    assert code in (0, 1, 2, 130), where
    assert "Traceback" not in stderr and "internal error" not in stderr, f"{where}\n{stderr}"
    errors = [line for line in stderr.splitlines() if line.startswith("tryon:")]
    assert len(errors) <= 1 and not stderr.startswith("\n"), f"{where}\n{stderr}"
    if code != 0:
        assert errors, f"{where}: exit {code} without a line saying why\n{stderr}"
        assert left in ([], ["renders"]), f"{where}: left {left}"  # a batch keeps its report folder


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a Hub id is looked up in the local cache only


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_command_line_ends_cleanly_and_leaves_nothing(data, places):
    args = data.draw(command_lines(places))
    before = sorted(os.listdir(places["inputs"]))
    with tempfile.TemporaryDirectory() as folder:
        code, stderr = run_in_process(args, Path(folder))
        check_ending(args, code, stderr, sorted(os.listdir(folder)))
    assert sorted(os.listdir(places["inputs"])) == before, f"tryon {' '.join(args)}: wrote beside the inputs"


@pytest.mark.slow
@pytest.mark.parametrize("args", [
    ["dance", "{user}", "--seed", "99999999999999999999999", "--model", MISSING_MODEL],
    ["dance", "{user}", "--guidance", "nan", "--model", MISSING_MODEL],
    ["data", "synth", "data", "--count", "18446744073709551616"],
    ["bench", "--model", MISSING_MODEL, "--window", "100000"],
    ["models", "init", "tiny", ".", "--overwrite"],
])
def test_the_installed_program_ends_the_same_way(args, places, tmp_path):
    args = [arg.format(**places) for arg in args]
    done = subprocess.run([tryon_program(), *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    check_ending(args, done.returncode, done.stderr, sorted(os.listdir(tmp_path)))
