"""Single process or `torchrun`: who this process is, and the few collective operations used.

Under torchrun (RANK and WORLD_SIZE set) the process group is started here — gloo on the
CPU, nccl on CUDA — unless the caller already started one. A plain `python` run is rank 0
of a world of 1 and never touches torch.distributed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from engine.errors import InputError


@dataclass
class Processes:
    rank: int
    world_size: int
    device: torch.device
    owns_group: bool  # we started the process group, so we end it

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints, metrics and progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def mean(self, value: float) -> float:
        """The mean of `value` over all processes."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.item() / self.world_size

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group:
            dist.destroy_process_group()


def is_main_process() -> bool:
    """False in the processes of a torchrun launch other than the first (RANK 0)."""
    return int(os.environ.get("RANK", "0")) == 0


def start_processes() -> Processes:
    """This process's rank, world size and device (CUDA when available: cuda:LOCAL_RANK)."""
    cuda = torch.cuda.is_available()
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return Processes(0, 1, torch.device("cuda" if cuda else "cpu"), owns_group=False)
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = torch.device("cpu")
    if cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank % torch.cuda.device_count())))
        torch.cuda.set_device(device)
    owns = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world_size)
        owns = True
    return Processes(rank, world_size, device, owns_group=owns)


def enable_context_parallel(transformer: torch.nn.Module, processes: Processes) -> None:
    """Split each of the transformer's sequences across all processes: Ulysses context parallelism.

    diffusers' `ContextParallelConfig` and its Ulysses attention do the all-to-all inside every
    self-attention; the CondNet splits and gathers its own sequence (`_ContextShards`), as
    diffusers' `_cp_plan` hooks cannot keep condition and video tokens apart. Set up here rather
    than by `enable_parallelism`, which places ranks on accelerators and so fails on the CPU.
    For the teacher only: a KV-cached stream refuses it.
    """
    from diffusers.models._modeling_parallel import (
        ContextParallelConfig,
        ParallelConfig,
    )
    from torch.distributed.device_mesh import init_device_mesh

    heads = transformer.config.num_attention_heads
    if heads % processes.world_size:
        raise InputError(f"context parallelism over {processes.world_size} processes needs a head count "
                         f"divisible by it; this model has {heads}")
    context = ContextParallelConfig(ulysses_degree=processes.world_size)
    config = ParallelConfig(context_parallel_config=context)
    mesh = init_device_mesh(processes.device.type, context.mesh_shape, mesh_dim_names=context.mesh_dim_names)
    config.setup(processes.rank, processes.world_size, processes.device, mesh=mesh)
    transformer._parallel_config = config
    for block in transformer.blocks:
        block.attn1.processor._parallel_config = config
