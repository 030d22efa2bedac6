"""FSDP2 at tiny size on the CPU: two gloo processes shard the teacher or the student (with its critic
and teacher), save whole weights, and resume."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from engine.train.config import TrainConfig
from engine.train.student import train_student
from engine.train.student_config import StudentConfig
from engine.train.teacher import train_teacher

WEIGHTS = ("transformer", "diffusion_pytorch_model.safetensors")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(steps: int, batch_size: int, parallel: str) -> dict:
    stage = {"name": "clips", "steps": steps, "size": [32, 32], "num_frames": 5, "batch_size": batch_size, "lr": 3e-3}
    return {"stages": [stage], "synthetic_examples": 2, "grad_accum": 2, "motion_dropout": 0.5, "log_every": 1,
            "checkpoint_every": 2, "parallel": parallel}


def torchrun(tmp_path, base, output, config_data: dict, *extra: str, kind: str = "teacher"
             ) -> subprocess.CompletedProcess:
    config_file = tmp_path / f"{output.name}.json"
    config_file.write_text(json.dumps(config_data))
    source = "--base" if kind == "teacher" else "--teacher"
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
               "--master-addr=127.0.0.1", f"--master-port={free_port()}", "-m", "tryon_cli.main", "train",
               kind, "--data", "synthetic", source, str(base), "--output", str(output),
               "--config", str(config_file), "-q", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_fsdp_on_two_gloo_processes_trains_like_one_process_and_resumes(tiny_checkpoint, tmp_path):
    done = torchrun(tmp_path, tiny_checkpoint, tmp_path / "fsdp", config(2, 1, "fsdp"))
    assert done.returncode == 0, done.stderr[-3000:]
    sharded = load_file(tmp_path / "fsdp" / WEIGHTS[0] / WEIGHTS[1])
    base = load_file(tiny_checkpoint / WEIGHTS[0] / WEIGHTS[1])
    assert sharded.keys() == base.keys()  # the whole transformer, not a shard of it

    # One process with both ranks' examples in each micro-batch takes the same steps (up to
    # float rounding, magnified by Adam's first steps: compare relative to how far training moved).
    single = train_teacher("synthetic", str(tiny_checkpoint), tmp_path / "single",
                           TrainConfig.from_dict(config(2, 2, "ddp")))
    alone = load_file(single / WEIGHTS[0] / WEIGHTS[1])
    moved = torch.cat([(alone[name] - base[name]).flatten() for name in base]).norm()
    apart = torch.cat([(alone[name] - sharded[name]).flatten() for name in base]).norm()
    assert moved > 1e-2
    assert apart < 0.01 * moved, (apart, moved)

    # The gathered optimizer state is a whole one: a resumed sharded run continues from it.
    state = json.loads((tmp_path / "fsdp" / "training_state" / "state.json").read_text())
    moments = load_file(tmp_path / "fsdp" / "training_state" / "optimizer.safetensors")
    first = state["parameter_names"][0]
    assert moments["0.exp_avg"].shape == base[first].shape
    resumed = torchrun(tmp_path, tiny_checkpoint, tmp_path / "fsdp", config(3, 1, "fsdp"), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    steps = [json.loads(line)["step"] for line in (tmp_path / "fsdp" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    after = load_file(tmp_path / "fsdp" / WEIGHTS[0] / WEIGHTS[1])
    assert any(not torch.equal(after[name], sharded[name]) for name in base)


def student_config(batch_size: int, parallel: str, checkpointing: bool, dmd: int = 2) -> dict:
    """Teacher forcing (through the KV cache), then DMD with an EMA."""
    stage = {"size": [32, 32], "num_frames": 9, "fps": 8.0, "batch_size": batch_size, "lr": 3e-3}
    return {"stages": [{"name": "tf", "phase": "teacher_forcing", "steps": 2, **stage},
                       {"name": "dmd", "phase": "dmd", "steps": dmd, **stage}],
            "synthetic_examples": 2, "grad_accum": 2, "motion_dropout": 0.5, "log_every": 1, "checkpoint_every": 2,
            "chunk_frames": 1, "steps_per_chunk": 2, "window": 2, "guidance": 3.0, "ema": 0.5, "ema_start": 2,
            "gradient_checkpointing": checkpointing, "parallel": parallel}


def relative_distance(one: dict, other: dict, base: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """How far `one` moved from `base`, and how far `other` is from `one`."""
    moved = torch.cat([(one[name] - base[name]).flatten() for name in base]).norm()
    apart = torch.cat([(one[name] - other[name]).flatten() for name in base]).norm()
    return moved, apart


@pytest.mark.slow
@pytest.mark.parametrize("checkpointing", [True, False], ids=["recomputed", "kept"])
def test_a_sharded_student_distills_like_one_process_and_resumes(tiny_checkpoint, tmp_path, checkpointing):
    """The student's chunk passes reach its weights through the KV cache: sharded, it must still take the
    steps one process takes with both ranks' examples (critic, EMA and all)."""
    done = torchrun(tmp_path, tiny_checkpoint, tmp_path / "fsdp", student_config(1, "fsdp", checkpointing),
                    kind="student")
    assert done.returncode == 0, done.stderr[-3000:]
    single = train_student(str(tiny_checkpoint), "synthetic", tmp_path / "single",
                           StudentConfig.from_dict(student_config(2, "ddp", checkpointing)))
    base = load_file(tiny_checkpoint / WEIGHTS[0] / WEIGHTS[1])
    sharded_weights, alone_weights = (load_file(folder.joinpath(*WEIGHTS)) for folder in (tmp_path / "fsdp", single))
    for path in (WEIGHTS, ("training_state", "adapter.safetensors")):
        sharded, alone = (load_file(folder.joinpath(*path)) for folder in (tmp_path / "fsdp", single))
        assert sharded.keys() == alone.keys()
        names = [name for name in alone if name.removeprefix("critic.").removeprefix("live.") in base]
        reference = {name: base[name.removeprefix("critic.").removeprefix("live.")] for name in names}
        moved, apart = relative_distance({n: alone[n] for n in names}, {n: sharded[n] for n in names}, reference)
        assert moved > 1e-2 and apart < 0.01 * moved, (path, apart, moved)
    # The role embedding learns only through the keys and values the condition pass leaves in the cache.
    role = "role_embedding.weight"
    moved, apart = relative_distance({role: alone_weights[role]}, {role: sharded_weights[role]}, {role: base[role]})
    assert moved > 1e-3 and apart < 0.01 * moved, (apart, moved)

    resumed = torchrun(tmp_path, tiny_checkpoint, tmp_path / "fsdp", student_config(1, "fsdp", checkpointing, dmd=3),
                       "--resume",
                       kind="student")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    steps = [json.loads(line)["step"] for line in (tmp_path / "fsdp" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]
