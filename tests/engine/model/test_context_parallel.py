"""Ulysses context parallelism for the teacher, with 2 CPU processes (gloo) at tiny size."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import InputError
from engine.model.distributed import Processes, enable_context_parallel
from engine.model.transformer_condnet import _ContextShards

WORKER = Path(__file__).with_name("cp_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(command, tmp_path):
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_render_what_one_process_renders(tiny_checkpoint, tmp_path):
    run([sys.executable, str(WORKER), str(tiny_checkpoint), str(tmp_path)], tmp_path)
    run([sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
         "--master-addr=127.0.0.1", f"--master-port={free_port()}", str(WORKER), str(tiny_checkpoint),
         str(tmp_path)], tmp_path)
    alone = np.load(tmp_path / "rank0-of-1.npy")
    split = [np.load(tmp_path / f"rank{rank}-of-2.npy") for rank in (0, 1)]
    assert alone.shape == (9, 64, 64, 3) and alone.std() > 0
    np.testing.assert_array_equal(split[0], split[1])
    assert np.abs(split[0].astype(int) - alone.astype(int)).max() <= 1  # float summation order only


def test_sequences_and_models_that_do_not_divide_are_input_errors(tiny_model):
    shards = _ContextShards(condition_tokens=4, world_size=2, rank=0, group=None)
    assert shards.split(torch.arange(10.0).view(1, 10)).tolist() == [[0.0, 1.0, 4.0, 5.0, 6.0]]
    with pytest.raises(InputError, match="gives 3 condition or video tokens") as caught:
        shards.split(torch.zeros(1, 7))  # 4 condition tokens, 3 video tokens
    assert caught.value.option == "size"
    heads = tiny_model.pipeline.transformer.config.num_attention_heads
    with pytest.raises(InputError, match=f"head count divisible by it; this model has {heads}"):
        enable_context_parallel(tiny_model.pipeline.transformer, Processes(0, heads + 1, torch.device("cpu"), False))
