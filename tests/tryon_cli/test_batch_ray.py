"""`tryon batch --ray`: its options, Ray missing, a run on a local cluster, and a cluster of several
nodes refusing an OUT on a local disk."""

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import tryon_program

FAST = ("--size", "64x64", "--seconds", "0.25", "--fps", "24", "--steps", "1")


def write_manifest(folder, rows):
    path = folder / "jobs.csv"
    path.write_text("\n".join(["user,garments,motion,prompt,seconds,seed,output", *rows]) + "\n")
    return path


def one_error_line(run) -> str:
    lines = run.stderr.strip().splitlines()
    assert run.code == 2 and len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    return lines[0]


def test_without_ray_installed_ray_says_how_to_install_it(inputs, tmp_path, tryon, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` does when Ray is not installed
    path = write_manifest(inputs, ["user.png,,,,,,"])
    line = one_error_line(tryon("batch", path, "-o", tmp_path / "out", "--ray", "local"))
    assert "pip install 'tryon[ray]'" in line and "--ray" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("options, problem", [
    (("--ray", "local", "--shard", "1/2"), "--shard and --ray"),
    (("--workers", "2"), "--workers needs --ray"),
])
def test_options_that_do_not_go_with_ray_are_refused(inputs, tmp_path, tryon, options, problem):
    path = write_manifest(inputs, ["user.png,,,,,,"])
    assert problem in one_error_line(tryon("batch", path, "-o", tmp_path / "out", *options))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_local_run_on_ray_renders_and_exits_0(tiny_checkpoint, inputs, tmp_path, tryon, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_memory_monitor_refresh_ms", "0")  # no kills for memory others use on this machine
    monkeypatch.setenv("RAY_worker_oom_score_adjustment", "0")
    path = write_manifest(inputs, ["user.png,shirt.png:top,,,,,", "user.png,,,,,3,b.mp4", "user.png,,dance.mp4,,,,"])
    run = tryon("batch", path, "-o", tmp_path / "out", "--model", tiny_checkpoint, *FAST, "--ray", "local",
                "--workers", "2", "--json")
    assert run.code == 0, run.stderr
    assert json.loads(run.stdout) | {"seconds": 0} == {"jobs": 3, "succeeded": 3, "skipped": 0, "failed": 0,
                                                        "seconds": 0, "report": str(tmp_path / "out" / "report.jsonl")}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.mp4", "job_1_user.mp4", "job_3_user.mp4",
                                                                    "report.jsonl"]


@pytest.mark.slow
def test_on_a_cluster_of_two_nodes_an_out_on_a_local_disk_is_refused(tiny_checkpoint, inputs, tmp_path, tryon,
                                                                     monkeypatch):
    ray = pytest.importorskip("ray")
    from engine.api.ray_pool import LOCAL_FILE_SYSTEMS, file_system_of

    kind = file_system_of(tmp_path, open("/proc/self/mounts").read())
    if kind not in LOCAL_FILE_SYSTEMS:
        pytest.skip(f"the test folder is on {kind}, not a local file system")
    # A second node is faked: a real one on this machine would see the same disk anyway.
    ray_pool = importlib.import_module("engine.api.ray_pool")  # the module the CLI will use
    monkeypatch.setattr(ray_pool, "alive_nodes", lambda: [{"NodeID": "head"}, {"NodeID": "other"}])
    path = write_manifest(inputs, ["user.png,,,,,,"])
    run = tryon("batch", path, "-o", tmp_path / "out", "--model", tiny_checkpoint, *FAST, "--ray", "local", "--quiet")
    line = one_error_line(run)
    assert str(tmp_path / "out") in line and "2 nodes" in line and f"local {kind}" in line
    assert not (tmp_path / "out").exists()
    assert not ray.is_initialized()  # the command let go of the cluster it started


def _processes_naming(text: str) -> list[int]:
    """The running processes (not zombies) whose command line holds `text`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text.encode() in (proc / "cmdline").read_bytes() \
                    and (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX":
                found.append(int(proc.name))
        except (OSError, IndexError):
            continue
    return found


def _raylets() -> int:
    """Raylet processes on this machine (one per local Ray node)."""
    return len(_processes_naming("raylet/raylet"))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="counts processes in /proc")
def test_ctrl_c_under_ray_keeps_the_finished_jobs_and_lets_the_cluster_go(tiny_checkpoint, inputs, tmp_path):
    pytest.importorskip("ray")
    path = write_manifest(inputs, [f"user.png,shirt.png:top,,,,{seed},job_{seed}.mp4" for seed in range(12)])
    before = _raylets()
    out = tmp_path / "out"
    process = subprocess.Popen([tryon_program(), "batch", str(path), "-o", str(out), "--model", str(tiny_checkpoint),
                                *FAST, "--ray", "local", "--workers", "1", "--quiet"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "RAY_memory_monitor_refresh_ms": "0"})
    deadline = time.monotonic() + 240
    while not list(out.glob("job_*.mp4")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert _raylets() == before  # the local cluster it started is gone
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}
    assert 1 <= len(finished) < 12
    report = [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]
    # A job the worker finished while the driver was stopping has its video but no report line yet.
    assert {line["output"] for line in report if line["status"] == "ok"} <= set(finished)

    rerun = subprocess.run([tryon_program(), "batch", str(path), "-o", str(out), "--model", str(tiny_checkpoint),
                            *FAST, "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted([f"job_{seed}.mp4" for seed in range(12)] + ["report.jsonl"])
    assert all((out / name).stat().st_mtime_ns == mtime for name, mtime in finished.items())  # none redone


def _descendants(pid: int) -> dict[int, str]:
    """{pid: start time} of the running descendants of `pid` (Ray's agents rename themselves: their
    command lines do not tell whose they are, their parents do)."""
    table = {}
    for proc in Path("/proc").iterdir():
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            table[int(proc.name)] = (int(fields[1]), fields[0], fields[19])
        except (OSError, IndexError, ValueError):
            continue
    found, grew = {pid}, True
    while grew:
        children = {child for child, (parent, _, _) in table.items() if parent in found}
        grew = not children <= found
        found |= children
    return {p: table[p][2] for p in found - {pid} if p in table and table[p][1] not in "ZX"}


def _still_running(processes: dict[int, str]) -> list[int]:
    alive = []
    for pid, started in processes.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[19] == started and fields[0] not in "ZX":
            alive.append(pid)
    return alive


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads processes in /proc")
def test_nothing_of_a_local_cluster_outlives_a_driver_killed_by_sigkill(tiny_checkpoint, inputs, tmp_path):
    pytest.importorskip("ray")
    path = write_manifest(inputs, [f"user.png,,,,,{seed},job_{seed}.mp4" for seed in range(6)])
    process = subprocess.Popen([tryon_program(), "batch", str(path), "-o", str(tmp_path / "out"), "--model",
                                str(tiny_checkpoint), *FAST, "--ray", "local", "--workers", "1", "--quiet"],
                               cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "RAY_memory_monitor_refresh_ms": "0"})
    deadline, ours = time.monotonic() + 240, {}
    while process.poll() is None and time.monotonic() < deadline:
        ours.update(_descendants(process.pid))
        watchdog = set(_processes_naming("end_session_after")) & set(ours)  # started once Ray is up
        if watchdog and _processes_naming("ray::RuntimeEnvAgent") and len(ours) >= 6:  # raylet, gcs, agents
            time.sleep(1)  # the watchdog polls every 0.2 s: the agents are known to it by now
            break
        time.sleep(0.2)
    ours.update(_descendants(process.pid))
    assert process.poll() is None and len(ours) >= 6, "the driver started no Ray cluster"
    process.kill()
    process.wait()
    deadline = time.monotonic() + 10  # left alone, Ray's agents outlive the driver far longer
    while _still_running(ours) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _still_running(ours) == []
