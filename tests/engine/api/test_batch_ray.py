"""`tryon batch` on a Ray cluster started here, on loopback: the same outputs and report as
the local batch, and nothing lost or rendered twice when a worker process is killed."""

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.api import batch as eb
from engine.api.batch import BatchListener, job_defaults
from engine.api.generate import GenerateRequest
from engine.errors import InputError
from engine.modes import RunOptions
from engine.media import probe_video, read_video, write_video

ray = pytest.importorskip("ray")
from engine.api.batch_ray import RayExecutor  # noqa: E402 - needs Ray

pytestmark = pytest.mark.slow

HEADER = "user,garments,motion,prompt,seconds,seed,output\n"
ROWS = [
    "user.png,shirt.png:top,,,,1,",
    "user.png,pants.png:bottom,dance.mp4,,,2,",
    "user.png,shirt.png:dress,,she spins,,3,dress/spin.mp4",
    "user.png,shirt.png:hat,,,,,",  # row 4: unknown category
    "user.png,,,,,4,",
    "user.png,shirt.png:top;pants.png:bottom,,,0.2,5,",
    "user.png,,dance.mp4,,,6,",
    "user.png,shirt.png,,,,7,",
    "nobody.png,,,,,,",  # row 9: no such photo
    "user.png,pants.png,,,,8,",
    "user.png,shirt.png:top,dance.mp4,,,9,",
    "user.png,,,,,10,last.mp4",
]
BAD_ROWS = {4, 9}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("catalog")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (90, 60, 3), dtype=np.uint8)).save(folder / "user.png")
    Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(folder / "shirt.png")
    Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(folder / "pants.png")
    write_video(folder / "dance.mp4", rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8), 24)
    path = folder / "jobs.csv"
    path.write_text(HEADER + "\n".join(ROWS) + "\n")
    return path


@pytest.fixture(scope="module")
def defaults(tiny_checkpoint) -> GenerateRequest:
    return job_defaults(run=RunOptions(model=str(tiny_checkpoint)), size=(64, 64), seconds=0.25, fps=24, steps=1)


@pytest.fixture(scope="module")
def local_run(manifest, defaults, tmp_path_factory):
    """The same batch under the local loop: what Ray must reproduce."""
    outdir = tmp_path_factory.mktemp("local")
    summary = eb.run_batch(eb.plan(eb.read_manifest(manifest), outdir), outdir, defaults)
    return outdir, summary


def run_on_ray(manifest: Path, outdir: Path, defaults: GenerateRequest, listener=None, **options):
    executor = RayExecutor("local", outdir, **options)
    summary = eb.run_batch(eb.plan(eb.read_manifest(manifest), outdir), outdir, defaults, listener=listener,
                           executor=executor)
    return summary, executor


def report(outdir: Path) -> dict[int, dict]:
    """The report's lines by row, each row once; `seconds` dropped (it is a measurement), and a
    completion record's size and mtime checked against the output they describe, then dropped
    (they are this folder's file's), its job fingerprint kept."""
    lines = [json.loads(line) for line in (outdir / "report.jsonl").read_text().splitlines()]
    for line in lines:
        del line["seconds"]
        if "record" in line:
            stat = (outdir / line["output"]).stat()
            assert (line["record"]["bytes"], line["record"]["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns)
            line["record"] = line["record"]["job"]
    by_row = {line.pop("row"): line for line in lines}
    assert len(by_row) == len(lines), "a row is reported twice"
    return by_row


def videos(outdir: Path) -> list[str]:
    return sorted(p.relative_to(outdir).as_posix() for p in outdir.rglob("*") if p.is_file() and p.suffix == ".mp4")


def assert_same_videos(outdir: Path, reference: Path) -> None:
    """Same files, frame counts and sizes; frames equal but for float rounding (another thread count)."""
    assert videos(outdir) == videos(reference)
    for name in videos(reference):
        ours, theirs = probe_video(outdir / name), probe_video(reference / name)
        assert (ours.frame_count, ours.width, ours.height) == (theirs.frame_count, theirs.width, theirs.height)
        difference = np.abs(read_video(outdir / name).astype(int) - read_video(reference / name).astype(int))
        assert difference.mean() < 1.0, name


def test_the_catalog_renders_on_ray_as_it_does_locally(ray_cluster, manifest, defaults, local_run, tmp_path):
    reference, local = local_run
    assert [o.row for o in local.failures] == sorted(BAD_ROWS)
    summary, _ = run_on_ray(manifest, tmp_path, defaults)
    assert not summary.ok and not summary.interrupted
    assert summary.to_dict() | {"seconds": 0, "report": ""} == local.to_dict() | {"seconds": 0, "report": ""}
    assert report(tmp_path) == report(reference)
    assert {row for row, line in report(tmp_path).items() if line["status"] == "failed"} == BAD_ROWS
    assert all(line["attempts"] == (0 if row in BAD_ROWS else 1) for row, line in report(tmp_path).items())
    assert_same_videos(tmp_path, reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in reference.iterdir())  # no temp files

    again, _ = run_on_ray(manifest, tmp_path, defaults, workers=1)  # resume: nothing is rendered again
    assert again.count("skipped") == 10 and again.count("ok") == 0


class KillOnce(BatchListener):
    """SIGKILLs the worker process a chosen row was just handed to."""

    def __init__(self, row: int) -> None:
        self.row, self.killed = row, []
        self.executor: RayExecutor | None = None

    def job_started(self, entry) -> None:
        if entry.row != self.row or self.killed:
            return
        pid = next(pid for pid, row in self.executor.busy_workers().items() if row == self.row)
        os.kill(pid, signal.SIGKILL)
        self.killed.append(pid)


def test_a_killed_worker_loses_nothing_and_renders_no_job_twice(ray_cluster, manifest, defaults, local_run, tmp_path):
    reference, _ = local_run
    listener = KillOnce(row=6)
    executor = RayExecutor("local", tmp_path)
    listener.executor = executor
    summary = eb.run_batch(eb.plan(eb.read_manifest(manifest), tmp_path), tmp_path, defaults, listener=listener,
                           executor=executor)
    assert len(listener.killed) == 1
    lines = report(tmp_path)
    assert sorted(lines) == list(range(1, 13))
    good = {row: line for row, line in lines.items() if row not in BAD_ROWS}
    assert all(line["status"] == "ok" for line in good.values())  # rendered, none found done by a twin
    assert {row: line["attempts"] for row, line in good.items()} == {row: 2 if row == 6 else 1 for row in good}
    assert summary.count("ok") == 10 and [o.row for o in summary.failures] == sorted(BAD_ROWS)
    assert_same_videos(tmp_path, reference)


def test_a_job_whose_worker_always_dies_fails_after_three_attempts_and_the_rest_run(ray_cluster, manifest, defaults,
                                                                                    tmp_path):
    short = manifest.parent / "short.csv"
    short.write_text(HEADER + "\n".join(ROWS[:3]) + "\n")

    class KillEveryTime(KillOnce):
        def job_started(self, entry) -> None:
            if entry.row == self.row:
                pid = next(pid for pid, row in self.executor.busy_workers().items() if row == self.row)
                os.kill(pid, signal.SIGKILL)
                self.killed.append(pid)

    listener = KillEveryTime(row=1)
    executor = RayExecutor("local", tmp_path)
    listener.executor = executor
    summary = eb.run_batch(eb.plan(eb.read_manifest(short), tmp_path), tmp_path, defaults, listener=listener,
                           executor=executor)
    lines = report(tmp_path)
    assert len(set(listener.killed)) == 3 and lines[1]["attempts"] == 3 and lines[1]["status"] == "failed"
    assert "worker died 3 times" in lines[1]["reason"]
    assert [lines[row]["status"] for row in (2, 3)] == ["ok", "ok"] and not summary.ok
    assert not (tmp_path / "job_1_user.mp4").exists()


def test_a_model_that_cannot_load_stops_the_batch_as_locally(ray_cluster, manifest, tmp_path):
    with pytest.raises(InputError, match="no such checkpoint"):
        run_on_ray(manifest, tmp_path / "out", job_defaults(run=RunOptions(model=str(tmp_path / "none"))))
    assert not (tmp_path / "out").exists()
