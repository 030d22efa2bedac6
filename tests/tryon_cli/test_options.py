"""The runtime options: declared once, shown in one help panel, reaching every command as one RunOptions."""

import re

import pytest

from engine.checkpoint.presets import PRESETS
from engine.modes import Acceleration, RunOptions
from tryon_cli import options

RUNTIME_FLAGS = ("--model", "--revision", "--device", "--dtype", "--attention", "--offload", "--fp8", "--fp8-weights",
                 "--vae-bf16", "--compile", "--fuse-qkv")


def runtime_panel(help_text: str) -> str:
    """The text of the help's `Runtime` panel (rich draws it as a box titled Runtime)."""
    match = re.search(r"─ Runtime ─+╮\n(.*?)╰", help_text, re.S)
    assert match, "no Runtime panel"
    return match.group(1)


@pytest.mark.parametrize("command", ["dress", "dance", "swap", "extend", "batch", "bench"])
def test_every_generating_command_shows_the_runtime_options_in_one_panel(command, tryon):
    run = tryon(command, "--help")
    assert run.code == 0
    panel = runtime_panel(run.stdout)
    assert all(flag in panel for flag in RUNTIME_FLAGS)
    assert ("--context-parallel" in panel) == (command in ("dress", "dance"))
    outside = run.stdout.replace(panel, "")
    assert "--fuse-qkv" not in outside and "--device" not in outside


def test_the_decorated_command_gets_one_run_options_record():
    seen = {}

    @options.run_options()
    def command(user: str, quiet: bool = False, run: RunOptions = RunOptions()) -> None:
        seen.update(user=user, quiet=quiet, run=run)

    command(user="u.png", quiet=True, model="./ck", revision=None, device="cpu", dtype="fp32", attention="sdpa",
            offload="group", threads=2, fp8=True, compile_=False, fuse_qkv=True)
    assert seen == {"user": "u.png", "quiet": True, "run": RunOptions(
        model="./ck", device="cpu", dtype="fp32", attention="sdpa", threads=2,
        acceleration=Acceleration(offload="group", fp8=True, fuse_qkv=True))}


def test_bench_help_gives_each_presets_size_multiple(tryon):
    text = " ".join(re.sub("[│╭╮╰╯─]", " ", tryon("bench", "--help").stdout).split())
    assert all(f"{name} {preset.size_multiple}" in text for name, preset in PRESETS.items())
    assert PRESETS["demo"].size_multiple == 16  # the multiple the help once gave as 32 for every model
