"""A pool of long-lived Ray actors that run jobs, each actor holding one worker object.

Used by `tryon batch --ray` (`engine.api.batch_ray`); any per-item stage that loads a model once
and then maps it over many items (curation, for one) can use it the same way: give it a
factory that builds the worker (and loads its model) inside the actor, and the jobs.

Why plain actors and `ray.wait` rather than Ray Data's `map_batches` with an actor pool:
the driver must know, per job, how many times it was handed to a worker and must write the
report itself as each job ends. With actors it owns that loop: a job whose actor died goes
back to the queue (at most `max_retries` more times) and the dead actor is replaced by a new
one. Ray Data retries inside its own operator, hides the attempts from the driver, fails
the whole dataset when one item runs out of retries, and needs pyarrow and pandas.

Ray is an optional dependency: this module imports it only when a pool is used, and says
how to install it when it is missing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from engine.errors import InputError, RuntimeFailure

Job = TypeVar("Job")
Result = TypeVar("Result")

INSTALL_HINT = "--ray needs Ray, which is not installed: pip install 'tryon[ray]' (or pip install -e \".[ray]\")"

# File systems that only the machine they are mounted on can see: OUT on one of them cannot
# hold what the workers of other nodes write. (Network and cluster file systems, NFS, CIFS,
# CephFS, Lustre, GPFS, FUSE mounts of object stores..., are not in the list.)
LOCAL_FILE_SYSTEMS = frozenset({
    "ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "jfs", "reiserfs", "bcachefs",
    "tmpfs", "ramfs", "overlay", "aufs", "squashfs", "vfat", "msdos", "exfat", "ntfs", "ntfs3",
    "fuseblk", "hfsplus", "apfs", "devtmpfs",
})


def import_ray() -> Any:
    """The `ray` module, or InputError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError(INSTALL_HINT) from None
    return ray


# -- connecting -------------------------------------------------------------------------------


def connect(address: str) -> bool:
    """Join the Ray cluster at `address` (`auto`: the running one; `local`: a new one on this
    machine, on loopback). Returns whether this call connected (and so should disconnect).

    A process already connected (a notebook, a test) keeps its connection.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR,
                               "configure_logging": True}
    if address == "local":
        options |= {"include_dashboard": False, "_node_ip_address": "127.0.0.1"}
    try:
        ray.init(address=address, **options)
    except (ConnectionError, ValueError, RuntimeError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise InputError(f"--ray {address}: cannot connect to a Ray cluster ({first_line}); start one with "
                         "`ray start --head`, or use --ray local") from None
    if address == "local":
        _end_with_this_process(ray)
    return True


def _end_with_this_process(ray: Any) -> None:
    """The cluster `--ray local` started ends with this process, even one killed by SIGKILL.

    Ray's raylet starts agents (dashboard, runtime env) that outlive a killed driver for
    minutes. A watchdog process waits for this one to end, then kills every process of the
    cluster's session: those naming its session folder on their command line, and their children.
    """
    session = ray._private.worker._global_node.get_session_dir_path()  # no public name for it
    code = f"from engine.api.ray_pool import end_session_after; end_session_after({os.getpid()}, {session!r})"
    subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def end_session_after(pid: int, session: str, poll: float = 0.2) -> None:
    """Wait for process `pid` to end, then kill the processes of the Ray session `session`: those
    whose command line names it and their descendants (the agents rename themselves, so they are
    known by their parent, seen while it lived). None are left after a clean `ray.shutdown()`."""
    seen: dict[int, str] = {}
    while _running(pid):
        seen.update(_session_processes(session))
        time.sleep(poll)
    seen.update(_session_processes(session))
    for member, started in seen.items():
        if member != os.getpid() and _stat(member)[2:] == (started,):  # the same process, not a reused id
            with contextlib.suppress(OSError):
                os.kill(member, signal.SIGKILL)


def _session_processes(session: str) -> dict[int, str]:
    """{pid: start time} of the running processes naming `session`, and of their descendants."""
    table = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                named, stat = session.encode() in (proc / "cmdline").read_bytes(), _stat(int(proc.name))
                if stat:
                    table[int(proc.name)] = (named, *stat)
    members = {pid for pid, (named, *_rest) in table.items() if named}
    grew = True
    while grew:
        children = {pid for pid, (_named, parent, _state, _started) in table.items() if parent in members}
        grew = not children <= members
        members |= children
    return {pid: table[pid][3] for pid in members if table[pid][2] not in ("Z", "X")}


def _stat(pid: int) -> tuple:
    """(parent pid, state, start time) of a process; () when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ()
    return int(fields[1]), fields[0], fields[19]


def _running(pid: int) -> bool:
    """Whether `pid` runs (a killed process its parent has not reaped yet is a zombie: not running)."""
    stat = _stat(pid)
    return bool(stat) and stat[1] not in ("Z", "X")


def disconnect() -> None:
    import_ray().shutdown()


def alive_nodes() -> list[dict[str, Any]]:
    return [node for node in import_ray().nodes() if node.get("Alive")]


def worker_slots(use_gpus: bool) -> tuple[int, dict[str, float]]:
    """How many workers the cluster holds and what each asks for: one per GPU, or one per
    CPU when there is no GPU (or `use_gpus` is False)."""
    resources = import_ray().cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if use_gpus and gpus:
        return gpus, {"num_gpus": 1, "num_cpus": 1}
    return max(1, int(resources.get("CPU", 1))), {"num_cpus": 1}


# -- shared storage ---------------------------------------------------------------------------


def file_system_of(path: Path, mounts_text: str) -> str | None:
    """The type of the file system holding `path` (or its nearest existing parent), from a
    /proc/mounts table; None when the table names none."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    path = path.resolve()
    best, kind = -1, None
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = Path(fields[1].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\"))
        if (path == point or path.is_relative_to(point)) and len(point.parts) > best:
            best, kind = len(point.parts), fields[2]
    return kind


def require_shared_storage(outdir: Path, nodes: int, mounts: Path = Path("/proc/self/mounts")) -> None:
    """On a cluster of more than one node, refuse an OUT on a file system local to this machine."""
    if nodes <= 1 or not mounts.exists():  # one node sees its own disk; no mount table: cannot tell
        return
    kind = file_system_of(outdir, mounts.read_text(encoding="utf-8", errors="replace"))
    if kind in LOCAL_FILE_SYSTEMS:
        raise InputError(f"the Ray cluster has {nodes} nodes, but this folder is on a local {kind} file system "
                         "that the other nodes cannot see; put OUT on storage every node mounts (NFS, CephFS, ...)",
                         outdir)


# -- the pool ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finished(Generic[Job, Result]):
    """A job that ended: its worker's result, or why there is none (`error`)."""

    job: Job
    result: Result | None
    attempts: int
    error: str | None = None


class _Host:
    """The actor: builds its worker once, then runs jobs on it."""

    def __init__(self, make_worker: Callable[[], Callable[[Any], Any]]) -> None:
        self.make_worker = make_worker
        self.worker: Callable[[Any], Any] | None = None

    def setup(self) -> int:
        self.worker = self.make_worker()
        return os.getpid()

    def run(self, job: Any) -> Any:
        assert self.worker is not None, "setup() runs first"
        return self.worker(job)


class WorkerPool(Generic[Job, Result]):
    """`size` actors, each asking for `resources` and building its worker with `make_worker`.

    Jobs go to whichever actor is free; a job whose actor dies is queued again, at most
    `max_retries` times, and the actor is replaced. An error the worker raises is that job's
    failure, not retried. Call `close()` when done (also after an error).
    """

    def __init__(self, make_worker: Callable[[], Callable[[Job], Result]], size: int,
                 resources: dict[str, float], max_retries: int = 2) -> None:
        self.ray = import_ray()
        self.make_worker = make_worker
        self.size = size
        self.resources = resources
        self.max_retries = max_retries
        self.actor_class = self.ray.remote(max_restarts=0, max_task_retries=0)(_Host)
        self.ready: list[Any] = []  # started and idle
        self.starting: dict[Any, Any] = {}  # setup ref → actor
        self.running: dict[Any, tuple[Any, int]] = {}  # run ref → (actor, job index)
        self.pids: dict[Any, int] = {}
        self.jobs: list[Job] = []

    def start(self) -> None:
        """Start every actor and wait until the first is ready; an error from building a
        worker (a model that cannot load) is raised here, as the worker raised it."""
        for _ in range(self.size):
            self._launch()
        while not self.ready:
            if not self.starting:
                raise RuntimeFailure("no Ray worker could start")
            done, _ = self.ray.wait(list(self.starting), num_returns=1)
            self._settle_start(done[0], raise_errors=True)

    def busy(self) -> dict[int, Job]:
        """The job each busy actor runs now, by the actor's process id."""
        return {self.pids[actor]: self.jobs[index] for actor, index in self.running.values() if actor in self.pids}

    def run(self, jobs: Iterable[Job], on_start: Callable[[Job], None] = lambda job: None) -> Iterator[Finished]:
        """Run every job, yielding each as it ends (in the order they end)."""
        self.jobs = jobs = list(jobs)
        queue, attempts = deque(range(len(jobs))), [0] * len(jobs)
        while queue or self.running:
            while queue and self.ready:
                actor, index = self.ready.pop(), queue.popleft()
                attempts[index] += 1
                self.running[actor.run.remote(jobs[index])] = (actor, index)
                on_start(jobs[index])
            if not self.running and not self.starting:
                for index in queue:
                    yield Finished(jobs[index], None, attempts[index], "no Ray worker is left to run it")
                return
            done, _ = self.ray.wait([*self.running, *self.starting], num_returns=1)
            if done[0] in self.starting:
                self._settle_start(done[0], raise_errors=False)
                continue
            actor, index = self.running.pop(done[0])
            try:
                result = self.ray.get(done[0])
            except self.ray.exceptions.RayTaskError as error:  # the worker raised: the job's own failure
                self.ready.append(actor)
                yield Finished(jobs[index], None, attempts[index], _first_line(_cause(error)))
                continue
            except self.ray.exceptions.RayError as error:  # the worker is gone: killed, out of memory, node lost
                self._replace(actor)
                if attempts[index] <= self.max_retries:
                    queue.appendleft(index)
                else:
                    yield Finished(jobs[index], None, attempts[index],
                                   f"its Ray worker died {attempts[index]} times ({_first_line(error)})")
                continue
            self.ready.append(actor)
            yield Finished(jobs[index], result, attempts[index])

    def close(self) -> None:
        for actor in [*self.ready, *self.starting.values(), *(actor for actor, _ in self.running.values())]:
            self.ray.kill(actor, no_restart=True)
        self.ready, self.starting, self.running = [], {}, {}

    def _launch(self) -> None:
        actor = self.actor_class.options(**self.resources).remote(self.make_worker)
        self.starting[actor.setup.remote()] = actor

    def _settle_start(self, ref: Any, raise_errors: bool) -> None:
        actor = self.starting.pop(ref)
        try:
            self.pids[actor] = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as error:
            self.ray.kill(actor, no_restart=True)
            if raise_errors:
                raise _cause(error) from None
            return
        except self.ray.exceptions.RayError:  # died while loading: not replaced, or it could loop
            return
        self.ready.append(actor)

    def _replace(self, actor: Any) -> None:
        self.pids.pop(actor, None)
        self.ray.kill(actor, no_restart=True)
        self._launch()


class ClusterPool(Generic[Job, Result]):
    """One WorkerPool on the Ray cluster at `address` (`auto`, `local` or an address), writing into
    `outdir`: connects (and later disconnects, when it connected), refuses an `outdir` the other
    nodes cannot see, and sizes the pool: one worker per GPU (per CPU without GPUs, or without
    `use_gpus`), at most `workers`.
    """

    def __init__(self, address: str, outdir: Path, workers: int | None = None, max_retries: int = 2) -> None:
        import_ray()  # says how to install Ray before anything else happens
        self.address, self.outdir, self.workers, self.max_retries = address, Path(outdir), workers, max_retries
        self.pool: WorkerPool[Job, Result] | None = None
        self.connected = False

    def start(self, make_worker: Callable[[], Callable[[Job], Result]], use_gpus: bool) -> WorkerPool[Job, Result]:
        self.connected = connect(self.address)
        require_shared_storage(self.outdir, len(alive_nodes()))
        slots, resources = worker_slots(use_gpus)
        self.pool = WorkerPool(make_worker, min(slots, self.workers or slots), resources, self.max_retries)
        self.pool.start()
        return self.pool

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        if self.connected:
            disconnect()
            self.connected = False


def _cause(error: Exception) -> BaseException:
    """The exception a Ray task raised, as it raised it."""
    return getattr(error, "cause", None) or error


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
