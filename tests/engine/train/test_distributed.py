import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from engine.train.config import TrainConfig
from engine.train.teacher import train_teacher

WORKER = Path(__file__).with_name("ddp_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(batch_size: int) -> TrainConfig:
    stage = {"name": "clips", "steps": 2, "size": [32, 32], "num_frames": 5, "batch_size": batch_size, "lr": 3e-3}
    return TrainConfig.from_dict({"stages": [stage], "synthetic_examples": 2, "grad_accum": 2,
                                  "motion_dropout": 0.5, "log_every": 1, "checkpoint_every": 2})


@pytest.mark.slow
def test_two_gloo_processes_end_with_the_same_weights_as_one_process(tiny_checkpoint, tmp_path):
    config_file = tmp_path / "train.json"
    config_file.write_text(json.dumps(config(batch_size=1).to_dict()))
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
               "--master-addr=127.0.0.1", f"--master-port={free_port()}",
               str(WORKER), str(tiny_checkpoint), str(tmp_path / "ddp"), str(config_file), str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]

    rank0, rank1 = (load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1))
    assert all(torch.equal(rank0[name], rank1[name]) for name in rank0)
    saved = load_file(tmp_path / "ddp" / "transformer" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(rank0[name], saved[name]) for name in saved)
    assert len((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()) == 2  # rank 0 only

    # One process with both ranks' examples in each micro-batch takes the same steps, up to
    # float rounding (a different reduction order) that Adam's first steps magnify: compare the
    # two runs' weights relative to how far training moved them.
    single = train_teacher("synthetic", str(tiny_checkpoint), tmp_path / "single", config(batch_size=2))
    alone = load_file(single / "transformer" / "diffusion_pytorch_model.safetensors")
    base = load_file(tiny_checkpoint / "transformer" / "diffusion_pytorch_model.safetensors")
    moved = torch.cat([(alone[name] - base[name]).flatten() for name in base]).norm()
    apart = torch.cat([(alone[name] - saved[name]).flatten() for name in saved]).norm()
    assert moved > 1e-2
    assert apart < 0.01 * moved, (apart, moved)
