import json
import shutil

import pytest

from engine.api.batch import jobs as batch_jobs
from engine.api.batch import run as batch_run
from engine.media import probe_video

FAST = ("--size", "64x64", "--seconds", "0.25", "--fps", "24", "--steps", "1")


@pytest.fixture
def jobs(inputs, tmp_path):
    """A manifest folder holding the inputs: the manifests name them relative to it."""
    folder = tmp_path / "jobs"
    shutil.copytree(inputs, folder)
    return folder


def write_manifest(folder, rows, name="jobs.csv"):
    path = folder / name
    path.write_text("\n".join(["user,garments,motion,prompt,seconds,seed,output", *rows]) + "\n")
    return path


SIX_JOBS = [
    "user.png,shirt.png:top,,she spins,,1,first.mp4",
    "user.png,shirt.png:hat,,,,,",  # row 2: unknown category
    "user.png,pants.png:bottom,dance.mp4,,,,",
    "user.png,,,,,,sub/fourth.mp4",
    "user.png,,,,,,../escape.mp4",  # row 5: outside OUTDIR
    "user.png,shirt.png:dress,,,0.2,9,",
]


def read_report(path):
    """The report's lines in row order (bad rows are reported first, then jobs as they end)."""
    return sorted((json.loads(line) for line in path.read_text().splitlines()), key=lambda line: line["row"])


def mtimes(outdir):
    return {p.relative_to(outdir).as_posix(): p.stat().st_mtime_ns for p in outdir.rglob("*.mp4")}


def test_bad_rows_are_reported_and_the_rest_rendered_then_nothing_is_redone(tiny_checkpoint, jobs, tmp_path, tryon):
    path = write_manifest(jobs, SIX_JOBS)
    outdir = tmp_path / "renders"
    run = tryon("batch", path, "-o", outdir, "--model", tiny_checkpoint, *FAST)
    assert run.code == 1, run.stderr
    outputs = sorted(mtimes(outdir))
    assert outputs == ["first.mp4", "job_3_user.mp4", "job_6_user.mp4", "sub/fourth.mp4"]
    assert probe_video(outdir / "job_6_user.mp4").frame_count == 5  # its own seconds: 0.2 × 24
    assert probe_video(outdir / "first.mp4").frame_count == 6
    report = read_report(outdir / "report.jsonl")
    assert [(line["row"], line["status"]) for line in report] == [
        (1, "ok"), (2, "failed"), (3, "ok"), (4, "ok"), (5, "failed"), (6, "ok")]
    assert "unknown category 'hat'" in report[1]["reason"] and "'..'" in report[4]["reason"]
    assert [line["attempts"] for line in report] == [1, 0, 1, 1, 0, 1]  # a bad row is never handed to a worker
    assert "2 bad rows, not rendered" in run.stderr and "hat" in run.stderr and "4 rendered" in run.stderr
    assert run.stderr.index("2 bad rows") < run.stderr.index("row 1: ok")  # listed before anything renders
    assert not (tmp_path / "escape.mp4").exists()

    before, rendered = mtimes(outdir), [line for line in report if line["status"] == "ok"]
    again = tryon("batch", path, "-o", outdir, "--model", tiny_checkpoint, *FAST)
    assert again.code == 1, again.stderr
    assert mtimes(outdir) == before
    report = read_report(outdir / "report.jsonl")
    assert [line["status"] for line in report] == ["ok", "failed", "ok", "ok", "failed", "ok"]
    assert [line for line in report if line["status"] == "ok"] == rendered  # their renders' seconds and attempts
    assert [line["row"] for line in report if line["status"] == "failed"] == [2, 5]
    assert "0 rendered, 4 already complete, 2 failed" in again.stderr


def test_two_shards_cover_every_job_once_with_separate_reports(tiny_checkpoint, jobs, tmp_path, tryon,
                                                              monkeypatch):
    rows = ["user.png,,,,,," for _ in range(5)]
    path = write_manifest(jobs, rows)
    outdir = tmp_path / "out"
    first = tryon("batch", path, "-o", outdir, "--model", tiny_checkpoint, *FAST, "--shard", "1/2", "--json")
    assert first.code == 0, first.stderr
    assert json.loads(first.stdout)["jobs"] == 3
    monkeypatch.setenv("RANK", "1")  # torchrun's rank 1 of 2 is shard 2/2
    monkeypatch.setenv("WORLD_SIZE", "2")
    second = tryon("batch", path, "-o", outdir, "--model", tiny_checkpoint, *FAST, "--json")
    assert second.code == 0, second.stderr
    assert json.loads(second.stdout)["succeeded"] == 2
    one, two = read_report(outdir / "report.1of2.jsonl"), read_report(outdir / "report.2of2.jsonl")
    assert [line["row"] for line in one] == [1, 3, 5] and [line["row"] for line in two] == [2, 4]
    assert all(line["status"] == "ok" for line in one + two)
    assert not (outdir / "report.jsonl").exists()
    assert sorted(mtimes(outdir)) == [f"job_{row}_user.mp4" for row in range(1, 6)]


def test_json_summary(tiny_checkpoint, jobs, tmp_path, tryon):
    rows = ["user.png,,,,,,", "nobody.png,,,,,,"]
    path = write_manifest(jobs, rows)
    run = tryon("batch", path, "-o", tmp_path / "out", "--model", tiny_checkpoint, *FAST, "--json")
    assert run.code == 1, run.stderr
    summary = json.loads(run.stdout)
    assert summary == {"jobs": 2, "succeeded": 1, "skipped": 0, "failed": 1, "seconds": summary["seconds"],
                       "report": str(tmp_path / "out" / "report.jsonl")}
    again = write_manifest(jobs, rows[:1], "again.csv")  # the good row alone: complete, so skipped
    run = tryon("batch", again, "-o", tmp_path / "out", "--model", tiny_checkpoint, *FAST, "--json")
    assert run.code == 0, run.stderr
    assert json.loads(run.stdout)["skipped"] == 1


UNREADABLE = {
    "missing": ("absent.csv", None, "absent.csv: file not found"),
    "not csv or jsonl": ("jobs.txt", "user\na.png\n", "jobs.txt: a manifest must be a .csv or .jsonl file"),
    "no user column": ("jobs.csv", "person\na.png\n", "jobs.csv: no 'user' column"),
}


@pytest.mark.parametrize("name, text, problem", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_unreadable_manifest_is_exit_2_with_one_line(tmp_path, tryon, name, text, problem):
    if text is not None:
        (tmp_path / name).write_text(text)
    run = tryon("batch", tmp_path / name, "-o", tmp_path / "out")
    assert run.code == 2
    assert len(run.stderr.strip().splitlines()) == 1 and problem in run.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("shard", ["0/2", "3/2", "two"])
def test_bad_shard_is_exit_2(tmp_path, tryon, shard):
    (tmp_path / "jobs.csv").write_text("user\na.png\n")
    run = tryon("batch", tmp_path / "jobs.csv", "-o", tmp_path / "out", "--shard", shard)
    assert run.code == 2 and "--shard" in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_ctrl_c_says_how_many_jobs_finished(tiny_checkpoint, jobs, tmp_path, tryon, monkeypatch):
    real_dance, calls = batch_jobs.dance, []

    def dance(request, **kwargs):
        calls.append(request)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_dance(request, **kwargs)

    monkeypatch.setattr(batch_jobs, "dance", dance)
    path = write_manifest(jobs, ["user.png,,,,,," for _ in range(4)])
    run = tryon("batch", path, "-o", tmp_path / "out", "--model", tiny_checkpoint, *FAST)
    assert run.code == 130
    assert "interrupted: 2 of 4 jobs finished" in run.stderr and "Traceback" not in run.stderr
    assert run.stderr.count("interrupted") == 1  # one line says it
    assert sorted(mtimes(tmp_path / "out")) == ["job_1_user.mp4", "job_2_user.mp4"]
    assert len(read_report(tmp_path / "out" / "report.jsonl")) == 2


def test_a_row_whose_seed_overflows_fails_alone(tiny_checkpoint, jobs, tmp_path, tryon):
    path = write_manifest(jobs, ["user.png,,,,,99999999999999999999999,", "user.png,,,,,,"])
    run = tryon("batch", path, "-o", tmp_path / "out", "--model", tiny_checkpoint, *FAST)
    assert run.code == 1 and "Traceback" not in run.stderr
    report = read_report(tmp_path / "out" / "report.jsonl")
    assert [line["status"] for line in report] == ["failed", "ok"] and "seed must be an integer" in report[0]["reason"]


def test_a_disk_that_stays_full_ends_the_batch_with_one_line(tiny_checkpoint, jobs, tmp_path, tryon, monkeypatch):
    from engine.errors import DiskFull

    def no_space(request, **kwargs):
        raise DiskFull(request.output, "writing the video")

    monkeypatch.setattr(batch_jobs, "render", no_space)
    monkeypatch.setattr(batch_run, "disk_is_full", lambda folder: True)
    path = write_manifest(jobs, ["user.png,,,,,," for _ in range(3)])
    outdir = tmp_path / "out"
    run = tryon("batch", path, "-o", outdir, "--model", tiny_checkpoint, *FAST, "--quiet")
    assert run.code == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "disk full" in lines[0] and str(outdir) in lines[0] and "1 of 3 jobs" in lines[0]
    assert [line["status"] for line in read_report(outdir / "report.jsonl")] == ["failed"]


def test_batch_delivers_the_exact_size_and_a_rerun_finds_it_complete(jobs, tiny_checkpoint, tmp_path, tryon):
    manifest = write_manifest(jobs, ["user.png,shirt.png:top,,,,,exact.mp4"])
    args = ("batch", manifest, "-o", tmp_path / "out", "--model", tiny_checkpoint, "--size", "80x48",
            "--seconds", "0.25", "--fps", "24", "--steps", "1")
    assert tryon(*args).code == 0
    info = probe_video(tmp_path / "out" / "exact.mp4")
    assert (info.width, info.height) == (80, 48)
    before = (tmp_path / "out" / "exact.mp4").stat().st_mtime_ns
    assert tryon(*args).code == 0
    assert (tmp_path / "out" / "exact.mp4").stat().st_mtime_ns == before  # complete at 80x48: skipped
