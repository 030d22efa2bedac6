import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from engine.api import batch as eb
from engine.api.batch import jobs as batch_jobs
from engine.api.batch import run as batch_run
from engine.api import loading
from engine.api.batch import BadRow, Job, PlannedJob, Shard, job_defaults
from engine.api.generate import GenerateRequest
from engine.api.specs import GarmentSpec
from engine.errors import DiskFull, InputError
from engine.media import probe_video, write_video
from engine.modes import RunOptions

HEADER = "user,garments,motion,prompt,seconds,seed,output\n"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A manifest folder with a portrait user photo, two garments, a motion video and a fake image."""
    folder = tmp_path_factory.mktemp("manifest")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (90, 60, 3), dtype=np.uint8)).save(folder / "user.png")
    Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(folder / "shirt.png")
    Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(folder / "pants.png")
    write_video(folder / "dance.mp4", rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8), 24)
    (folder / "notes.png").write_text("text, not a picture")
    return folder


def manifest(folder: Path, text: str, name: str = "jobs.csv") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def fast(model: Path, **changes):
    return job_defaults(**{"run": RunOptions(model=str(model)), "size": (64, 64), "seconds": 0.25, "steps": 1, **changes})


def job(row: int, output: str | None = None) -> Job:
    return Job(row=row, user=Path("user.png"), output=output or eb.default_output_name(row, "user.png"))


# -- manifests --------------------------------------------------------------------------------


def test_csv_paths_are_relative_to_the_manifest_and_empty_cells_take_defaults(folder, monkeypatch):
    monkeypatch.chdir(folder.parent)  # the current folder must not matter
    path = manifest(folder, HEADER + "user.png, shirt.png:top ; pants.png ,dance.mp4,she spins,0.5,7,a/x.mp4\n"
                                      "user.png,,,,,,\n")
    first, second = eb.read_manifest(path)
    assert first == Job(row=1, user=folder / "user.png", output="a/x.mp4",
                        garments=(GarmentSpec(folder / "shirt.png", "top"), GarmentSpec(folder / "pants.png")),
                        motion=folder / "dance.mp4", prompt="she spins", seconds=0.5, seed=7)
    assert second == Job(row=2, user=folder / "user.png", output="job_2_user.mp4")

    defaults = job_defaults(run=RunOptions(model="m"), seconds=2.0, seed=3, prompt="walks", motion=Path("cli.mp4"),
                            steps=4, fps=12)
    request = eb.job_request(PlannedJob(second, folder / "out.mp4"), defaults)
    assert (request.seconds, request.seed, request.prompt, request.motion) == (2.0, 3, "walks", Path("cli.mp4"))
    assert (request.run.model, request.steps, request.fps, request.overwrite) == ("m", 4, 12, True)
    request = eb.job_request(PlannedJob(first, folder / "out.mp4"), defaults)
    assert (request.seconds, request.seed, request.prompt) == (0.5, 7, "she spins")
    assert request.motion == folder / "dance.mp4"


def test_jsonl_takes_lists_numbers_and_absolute_paths(folder):
    rows = [
        {"user": str(folder / "user.png"), "garments": ["shirt.png:dress"], "seconds": 1, "seed": 5},
        {"user": "user.png", "garments": [], "prompt": None, "output": "named.mp4"},
    ]
    path = manifest(folder, "\n".join(map(json.dumps, rows)) + "\n\n", "jobs.jsonl")
    first, second = eb.read_manifest(path)
    assert first.user == folder / "user.png" and first.garments == (GarmentSpec(folder / "shirt.png", "dress"),)
    assert (first.seconds, first.seed, first.output) == (1.0, 5, "job_1_user.mp4")
    assert (second.garments, second.prompt, second.output) == ((), None, "named.mp4")


BAD_CELLS = {
    "missing user photo": ("nobody.png,,,,,,", "nobody.png: file not found"),
    "empty user cell": (",shirt.png,,,,,", "no user photo"),
    "missing garment": ("user.png,hat.png,,,,,", "hat.png: file not found"),
    "unknown category": ("user.png,shirt.png:hat,,,,,", "unknown category 'hat'"),
    "too many garments": ("user.png," + ";".join(["shirt.png"] * 5) + ",,,,,", "at most 4"),
    "dress with a top": ("user.png,shirt.png:dress;pants.png:top,,,,,", "one piece"),
    "missing motion": ("user.png,,gone.mp4,,,,", "gone.mp4: file not found"),
    "seconds not a number": ("user.png,,,,abc,,", "seconds must be a number"),
    "seconds zero": ("user.png,,,,0,,", "positive"),
    "seconds infinite": ("user.png,,,,inf,,", "positive"),
    "seed not whole": ("user.png,,,,,1.5,", "seed must be a whole number"),
    "too many cells": ("user.png,,,,,,,extra", "8 cells"),
}


@pytest.mark.parametrize("cells, reason", BAD_CELLS.values(), ids=BAD_CELLS.keys())
def test_bad_rows_keep_their_row_number_and_reason(folder, cells, reason):
    path = manifest(folder, HEADER + "user.png,,,,,,\n\n" + cells + "\nuser.png,,,,,,\n")
    good, bad, after = eb.read_manifest(path)
    assert isinstance(good, Job) and isinstance(after, Job) and after.row == 3  # blank lines are not rows
    assert isinstance(bad, BadRow) and bad.row == 2 and reason in bad.reason


def test_bad_jsonl_rows(folder):
    rows = [{"user": "user.png", "garments": "shirt.png:top;pants.png:bottom"}, {"user": "user.png", "size": "9x9"},
            {"user": "user.png", "garments": [1]}, {"user": 3}, {"user": "user.png", "seconds": True},
            {"user": "user.png", "output": 5}]
    entries = eb.read_manifest(manifest(folder, "\n".join(map(json.dumps, rows)), "bad.jsonl"))
    assert isinstance(entries[0], Job) and len(entries[0].garments) == 2  # a ;-joined string is taken too
    reasons = [entry.reason for entry in entries[1:]]
    assert [entry.row for entry in entries[1:]] == [2, 3, 4, 5, 6]
    for reason, expected in zip(reasons, ["unknown key 'size'", "'garments' must be a list", "'user' must be text",
                                          "seconds must be a number", "'output' must be text"]):
        assert expected in reason


UNREADABLE = {
    "missing": ("absent.csv", None, "file not found"),
    "not csv or jsonl": ("jobs.txt", HEADER, ".csv or .jsonl"),
    "no user column": ("x.csv", "person,garments\na.png,\n", "no 'user' column"),
    "unknown column": ("x.csv", "user,garment\na.png,b.png\n", "unknown column 'garment'"),
    "header only": ("x.csv", HEADER, "no jobs"),
    "empty file": ("x.csv", "", "empty"),
}


@pytest.mark.parametrize("name, text, problem", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_unreadable_manifest_is_an_input_error(tmp_path, name, text, problem):
    if text is not None:
        (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=problem) as caught:
        eb.read_manifest(tmp_path / name)
    assert caught.value.path == tmp_path / name and "\n" not in str(caught.value)


def test_not_utf8_is_an_input_error(tmp_path):
    (tmp_path / "x.csv").write_bytes(b"user\n\xff\xfe\x00bad\n")
    with pytest.raises(InputError, match="not UTF-8"):
        eb.read_manifest(tmp_path / "x.csv")


# -- outputs ----------------------------------------------------------------------------------


def test_no_output_can_leave_outdir(tmp_path):
    outdir, outside = tmp_path / "out", tmp_path / "outside"
    (outdir / "sub").mkdir(parents=True)
    outside.mkdir()
    (outdir / "away").symlink_to(outside, target_is_directory=True)
    (outdir / "link.mp4").symlink_to(outside / "stolen.mp4")
    (outdir / "inner").symlink_to(outdir / "sub", target_is_directory=True)
    names = ["ok.mp4", str(outside / "abs.mp4"), "../up.mp4", "sub/../../up.mp4", "away/x.mp4", "link.mp4",
             "inner/fine.mp4", "video.avi", "sub/deep/new.mp4"]
    planned = eb.plan([job(row, name) for row, name in enumerate(names, start=1)], outdir)
    verdicts = {names[entry.row - 1]: entry for entry in planned}
    assert verdicts["ok.mp4"].target == (outdir / "ok.mp4").resolve()
    assert verdicts["inner/fine.mp4"].target == (outdir / "sub" / "fine.mp4").resolve()
    assert verdicts["sub/deep/new.mp4"].target == (outdir / "sub" / "deep" / "new.mp4").resolve()
    for name in names[1:6]:
        assert isinstance(verdicts[name], BadRow), name
        assert "outside the output folder" in verdicts[name].reason or "'..'" in verdicts[name].reason
    assert "must end in .mp4" in verdicts["video.avi"].reason


def test_the_second_row_naming_an_output_is_bad(tmp_path):
    entries = [job(1, "a.mp4"), job(2, "A.mp4"), job(3, "./a.mp4"), BadRow(4, "file not found", "b.mp4"),
               job(5, "b.mp4"), job(6), job(7, "job_6_user.mp4")]
    planned = eb.plan(entries, tmp_path)
    assert [type(entry).__name__ for entry in planned] == ["PlannedJob", "BadRow", "BadRow", "BadRow", "BadRow",
                                                           "PlannedJob", "BadRow"]
    assert planned[1].reason == "output 'A.mp4' is already the output of row 1"
    assert "of row 4" in planned[4].reason  # a bad row still owns its output
    assert "of row 6" in planned[6].reason


# -- shards -----------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(0, 40), count=st.integers(1, 12))
def test_every_row_lands_in_exactly_one_shard(rows, count):
    entries = [job(row) if row % 5 else BadRow(row, "bad", None) for row in range(1, rows + 1)]
    outdir = Path(tempfile.gettempdir()) / "tryon-shard-test"
    shards = [eb.plan(entries, outdir, Shard(index, count)) for index in range(1, count + 1)]
    taken = sorted(entry.row for shard in shards for entry in shard)
    assert taken == list(range(1, rows + 1))
    for index, shard in enumerate(shards, start=1):
        assert all((entry.row - 1) % count == index - 1 for entry in shard)


def test_shard_from_option_or_torchrun():
    assert eb.choose_shard("2/4", {"RANK": "0", "WORLD_SIZE": "8"}) == Shard(2, 4)
    assert eb.choose_shard(None, {"RANK": "3", "WORLD_SIZE": "8"}) == Shard(4, 8)
    assert eb.choose_shard(None, {}) == Shard(1, 1)
    assert [Shard(1, 1).report_name, Shard(2, 3).report_name] == ["report.jsonl", "report.2of3.jsonl"]
    for text in ["0/2", "3/2", "1/0", "x", "1/2/3", "-1/2", ""]:
        with pytest.raises(InputError, match="--shard"):
            eb.parse_shard(text)
    with pytest.raises(InputError, match="RANK"):
        eb.choose_shard(None, {"RANK": "4", "WORLD_SIZE": "4"})


# -- running ----------------------------------------------------------------------------------


def run(folder: Path, outdir: Path, rows: str, defaults: GenerateRequest, shard: Shard | None = None):
    entries = eb.read_manifest(manifest(folder, HEADER + rows))
    return eb.run_batch(eb.plan(entries, outdir, shard), outdir, defaults, shard)


@pytest.mark.slow
def test_complete_outputs_are_skipped_untouched_and_broken_ones_rendered_again(folder, tiny_checkpoint, tmp_path):
    rows = "user.png,shirt.png:top,,,,,a.mp4\nuser.png,,,,,,b.mp4\nuser.png,,,,,,c.mp4\n"
    first = run(folder, tmp_path, rows, fast(tiny_checkpoint))
    assert [o.status for o in first.outcomes] == ["ok", "ok", "ok"] and first.ok
    full = (tmp_path / "b.mp4").read_bytes()
    (tmp_path / "b.mp4").write_bytes(full[: len(full) // 2])  # a truncated video
    (tmp_path / "c.mp4").write_bytes(b"not a video")
    os.utime(tmp_path / "a.mp4", ns=(1_000_000_000, 1_000_000_000))

    again = run(folder, tmp_path, rows, fast(tiny_checkpoint))
    assert [o.status for o in again.outcomes] == ["skipped", "ok", "ok"] and again.ok
    assert (tmp_path / "a.mp4").stat().st_mtime_ns == 1_000_000_000
    for name in "bc":
        info = probe_video(tmp_path / f"{name}.mp4")
        assert (info.frame_count, info.width, info.height) == (6, 64, 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4", "c.mp4", "report.jsonl"]

    longer = run(folder, tmp_path, rows, fast(tiny_checkpoint, seconds=0.5))  # a different length: not complete
    assert [o.status for o in longer.outcomes] == ["ok", "ok", "ok"]
    assert probe_video(tmp_path / "a.mp4").frame_count == 12


def test_expected_video_follows_the_engine_defaults(folder, tiny_checkpoint, tmp_path):
    defaults = fast(tiny_checkpoint, size=None, seconds=0.1)
    summary = run(folder, tmp_path, "user.png,,,,,,", defaults)
    assert summary.ok
    planned = eb.plan(eb.read_manifest(folder / "jobs.csv"), tmp_path)[0]
    request = eb.job_request(planned, defaults)
    frames, size = eb.expected_video(request, eb.load_batch_model(defaults.run))
    info = probe_video(tmp_path / "job_1_user.mp4")
    assert (frames, size) == (info.frame_count, (info.width, info.height)) == (2, (256, 448))  # portrait photo


def test_the_model_is_loaded_once_and_engine_errors_fail_only_their_job(folder, tiny_checkpoint, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setattr(loading, "_loaded", {})  # start with nothing loaded
    loads = []
    real_load = loading.load_model
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    rows = "user.png,,,,,,\nnotes.png,,,,,,\nuser.png,pants.png:bottom,,,,3,\n"
    summary = run(folder, tmp_path, rows, fast(tiny_checkpoint))
    assert len(loads) == 1
    assert [o.status for o in summary.outcomes] == ["ok", "failed", "ok"] and not summary.ok
    assert "notes.png" in summary.outcomes[1].reason
    report = [json.loads(line) for line in (tmp_path / "report.jsonl").read_text().splitlines()]
    assert [line["status"] for line in report] == ["ok", "failed", "ok"]
    assert set(report[0]) == {"row", "status", "output", "reason", "seconds", "attempts", "record"}
    assert [line["attempts"] for line in report] == [1, 0, 1]  # notes.png is a bad row, found by check_jobs
    assert summary.to_dict() == {"jobs": 3, "succeeded": 2, "skipped": 0, "failed": 1,
                                 "seconds": summary.seconds, "report": str(tmp_path / "report.jsonl")}


def test_a_model_that_cannot_load_stops_the_batch(folder, tmp_path):
    with pytest.raises(InputError, match="no such checkpoint"):
        run(folder, tmp_path / "out", "user.png,,,,,,\n", job_defaults(run=RunOptions(model=str(tmp_path / "none"))))
    assert not (tmp_path / "out").exists()


def test_interrupt_keeps_the_finished_jobs(folder, tiny_checkpoint, tmp_path, monkeypatch):
    real_dance, calls = batch_jobs.dance, []

    def dance(request, **kwargs):
        calls.append(request)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_dance(request, **kwargs)

    monkeypatch.setattr(batch_jobs, "dance", dance)
    summary = run(folder, tmp_path, "user.png,,,,,,\nuser.png,,,,,,\nuser.png,,,,,,\n", fast(tiny_checkpoint))
    assert summary.interrupted and not summary.ok and len(summary.outcomes) == 1
    assert len((tmp_path / "report.jsonl").read_text().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job_1_user.mp4", "report.jsonl"]


# -- resuming, reports and failures of one job (no model: a stand-in renderer) ---------------


class FakeRenderer:
    """Stands in for the model: writes a 2-frame 64x64 video per job, and records what it rendered."""

    def __init__(self, monkeypatch, fail: dict[int, BaseException] | None = None):
        self.rendered: list[str] = []
        self.commands: list[str] = []
        self.fail = fail or {}
        monkeypatch.setattr(batch_jobs, "load_batch_model", lambda run, notice=None: "model")
        monkeypatch.setattr(batch_jobs, "expected_video", lambda request, model: (2, (64, 64)))
        monkeypatch.setattr(batch_jobs, "render", self)

    def __call__(self, request, progress=None, notice=None):
        self.commands.append("dress" if request.garments else "dance")
        failure = self.fail.get(len(self.rendered) + 1)
        self.rendered.append(request.output.name)
        if failure is not None:
            raise failure
        write_video(request.output, np.zeros((2, 64, 64, 3), np.uint8), 24)


def rows_of(count: int) -> str:
    return "".join(f"user.png,,,,,,out_{row}.mp4\n" for row in range(1, count + 1))


def report_lines(outdir: Path, name: str = "report.jsonl") -> list[dict]:
    return [json.loads(line) for line in (outdir / name).read_text().splitlines()]


def test_a_restart_finds_finished_jobs_by_their_record_without_decoding_them(folder, tmp_path, monkeypatch):
    renderer = FakeRenderer(monkeypatch)
    outdir = tmp_path / "out"
    run(folder, outdir, rows_of(6), job_defaults(seconds=1))  # 6 of the 8 jobs done, as after a kill
    decoded = []
    monkeypatch.setattr(batch_jobs, "probe_video", lambda path: decoded.append(path) or probe_video(path))
    renderer.rendered.clear()
    summary = run(folder, outdir, rows_of(8), job_defaults(seconds=1))
    assert decoded == [] and renderer.rendered == ["out_7.mp4", "out_8.mp4"]
    assert [o.status for o in summary.outcomes] == ["skipped"] * 6 + ["ok"] * 2

    entries = eb.plan(eb.read_manifest(folder / "jobs.csv"), outdir)
    renderer.rendered.clear()
    verified = eb.run_batch(entries, outdir, job_defaults(seconds=1), verify=True)  # the full check, on demand
    assert len(decoded) == 8 and renderer.rendered == [] and verified.count("skipped") == 8


def test_a_record_is_trusted_only_for_the_same_job_and_an_unchanged_file(folder, tmp_path, monkeypatch):
    renderer = FakeRenderer(monkeypatch)
    run(folder, tmp_path, rows_of(3), job_defaults(seconds=1))
    (tmp_path / "out_1.mp4").write_bytes(b"not a video any more")
    os.utime(tmp_path / "out_2.mp4", ns=(1_000_000_000, 1_000_000_000))  # same content, new mtime: decoded
    renderer.rendered.clear()
    summary = run(folder, tmp_path, rows_of(3), job_defaults(seconds=1))
    assert [o.status for o in summary.outcomes] == ["ok", "skipped", "skipped"]
    renderer.rendered.clear()
    changed = run(folder, tmp_path, rows_of(3), job_defaults(seconds=1, seed=5))  # another job: not the record's
    assert [o.status for o in changed.outcomes] == ["skipped"] * 3  # decoded, and complete
    assert all(line["record"]["job"] != old["record"]["job"]
               for line, old in zip(report_lines(tmp_path), [o.to_dict() for o in summary.outcomes]))


def test_the_report_is_kept_across_runs_and_ends_with_one_line_per_row(folder, tmp_path, monkeypatch):
    FakeRenderer(monkeypatch, fail={3: KeyboardInterrupt()})
    first = run(folder, tmp_path, rows_of(4), job_defaults(seconds=1))
    assert first.interrupted and [line["row"] for line in report_lines(tmp_path)] == [1, 2]
    with (tmp_path / "report.jsonl").open("a") as report:
        report.write('{"row": 3, "status": "ok", "out')  # what a SIGKILL mid-line leaves
    FakeRenderer(monkeypatch, fail={1: KeyboardInterrupt()})  # the restart is interrupted at once
    second = run(folder, tmp_path, rows_of(4), job_defaults(seconds=1))
    assert second.interrupted
    assert [(line["row"], line["status"]) for line in report_lines(tmp_path)] == [(1, "ok"), (2, "ok")]
    FakeRenderer(monkeypatch)
    third = run(folder, tmp_path, rows_of(4), job_defaults(seconds=1))
    assert third.ok and third.count("skipped") == 2
    assert [(line["row"], line["status"]) for line in report_lines(tmp_path)] == [
        (1, "ok"), (2, "ok"), (3, "ok"), (4, "ok")]


def test_a_rerun_of_a_finished_batch_keeps_each_rows_render_seconds_and_attempts(folder, tmp_path, monkeypatch):
    FakeRenderer(monkeypatch)
    first = run(folder, tmp_path, rows_of(3), job_defaults(seconds=1))
    rendered = report_lines(tmp_path)
    assert first.ok and all(line["status"] == "ok" and line["seconds"] > 0 for line in rendered)
    again = FakeRenderer(monkeypatch)
    second = run(folder, tmp_path, rows_of(3), job_defaults(seconds=1))
    assert second.ok and second.count("skipped") == 3 and again.rendered == []
    assert report_lines(tmp_path) == rendered  # the same lines: status ok, seconds, attempts, record


def test_stale_temp_files_in_outdir_are_removed_when_a_batch_starts(folder, tmp_path, monkeypatch):
    FakeRenderer(monkeypatch)
    (tmp_path / "sub").mkdir()
    stale = [tmp_path / ".out_1.mp4.999999-0123abcd.tmp.mp4", tmp_path / "sub" / ".x.mp4.999999-0123abcd.tmp.mp4",
             tmp_path / ".report.jsonl.999999-0123abcd.tmp"]
    for path in stale:
        path.write_bytes(b"left by a killed run")
    run(folder, tmp_path, rows_of(1), job_defaults(seconds=1))
    assert not any(path.exists() for path in stale)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out_1.mp4", "report.jsonl", "sub"]


def test_every_row_is_checked_before_anything_renders(folder, tmp_path, monkeypatch):
    renderer = FakeRenderer(monkeypatch)
    events = []

    class Listener(eb.BatchListener):
        def rows_checked(self, bad):
            events.append(("checked", [row.row for row in bad]))

        def job_finished(self, outcome):
            events.append((outcome.row, outcome.status))

    rows = ("user.png,shirt.png:top,,,,,\n"
            "notes.png,,,,,,\n"  # text, not a photo
            "user.png,dance.mp4,,,,,\n"  # a video where a garment photo belongs
            "user.png,,shirt.png,,,,\n"  # a photo where the motion video belongs
            "user.png,,,,,99999999999999999999999,\n"  # a seed out of range
            "dance.mp4,,,,,,\n"  # a video as the user photo
            "user.png,,dance.mp4,,,-1,\n")
    entries = eb.read_manifest(manifest(folder, HEADER + rows))
    summary = eb.run_batch(eb.plan(entries, tmp_path / "out"), tmp_path / "out", job_defaults(seconds=1),
                           listener=Listener())
    assert events[0] == ("checked", [2, 3, 4, 5, 6, 7])
    assert events[1:] == [(1, "ok"), (2, "failed"), (3, "failed"), (4, "failed"), (5, "failed"), (6, "failed"),
                          (7, "failed")]
    reasons = [o.reason for o in summary.outcomes]
    assert "notes.png: not an image" in reasons[1] and "dance.mp4: not an image" in reasons[2]
    assert "shirt.png: not a video" in reasons[3] and "seed must be an integer" in reasons[4] and "seed must be" in reasons[6]
    assert renderer.rendered == ["job_1_user.mp4"]


def test_a_row_without_garments_is_a_dance_job(folder, tmp_path, monkeypatch):
    renderer = FakeRenderer(monkeypatch)
    run(folder, tmp_path, "user.png,,,,,,\nuser.png,shirt.png,,,,,\n", job_defaults(seconds=1))
    assert renderer.commands == ["dance", "dress"]


def test_any_failure_of_one_job_is_that_rows_failure(folder, tmp_path, monkeypatch):
    FakeRenderer(monkeypatch, fail={1: MemoryError(), 2: RuntimeError("Overflow when unpacking long"),
                                    3: DiskFull(tmp_path / "out_3.mp4", "writing the video")})
    monkeypatch.setattr(batch_run, "disk_is_full", lambda folder: False)  # one big file failed; space is left
    summary = run(folder, tmp_path, rows_of(4), job_defaults(seconds=1))
    assert [o.status for o in summary.outcomes] == ["failed", "failed", "failed", "ok"] and not summary.stopped
    reasons = [o.reason for o in summary.outcomes]
    assert "out of memory" in reasons[0] and "Overflow" in reasons[1] and "disk full" in reasons[2]


def test_a_disk_that_stays_full_stops_the_batch_and_keeps_the_report(folder, tmp_path, monkeypatch):
    renderer = FakeRenderer(monkeypatch, fail={2: DiskFull(tmp_path / "out_2.mp4", "writing the video")})
    monkeypatch.setattr(batch_run, "disk_is_full", lambda folder: True)
    summary = run(folder, tmp_path, rows_of(4), job_defaults(seconds=1))
    assert summary.stopped and "disk full" in summary.stopped and str(tmp_path) in summary.stopped
    assert renderer.rendered == ["out_1.mp4", "out_2.mp4"] and not summary.ok
    assert [(line["row"], line["status"]) for line in report_lines(tmp_path)] == [(1, "ok"), (2, "failed")]


def test_jsonl_lines_that_are_not_objects_are_bad_rows_even_nested_thousands_deep(folder):
    deep = '{"user": ' + "[" * 100_000 + "]" * 100_000 + "}"
    lines = [json.dumps({"user": "user.png"}), deep, "{nope", '["a.png"]']
    rows = eb.read_manifest(manifest(folder, "\n".join(lines) + "\n", "deep.jsonl"))
    assert isinstance(rows[0], eb.Job)
    assert [(row.row, row.reason) for row in rows[1:]] == [
        (2, "line 2 is not valid JSON (nested too deeply)"),
        (3, "line 3 is not valid JSON (Expecting property name enclosed in double quotes)"),
        (4, "line 4 is not a JSON object")]
