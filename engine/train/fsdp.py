"""FSDP2 (`torch.distributed.fsdp.fully_shard`) for full fine-tuning at the papers' scale.

A config with `"parallel": "fsdp"` shards the trained transformer over the processes of a
torchrun launch instead of replicating it (DDP): each transformer block is one FSDP unit
(its weights gathered just before it runs and freed after), then the root. Parameters,
gradients and AdamW state live sharded in float32 on every process; on CUDA the gathered
weights are bf16 and gradients are reduced in float32 (`MixedPrecisionPolicy`).

Checkpoints stay what every other run writes: the full state dict is gathered to the CPU
(all processes take part, the main one writes), the optimizer's too, keyed by parameter
index as `engine.train.state` saves it; a resumed run hands it back to the sharded optimizer.
"""

from __future__ import annotations

import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

from engine.distributed import Processes

FULL_ON_CPU = StateDictOptions(full_state_dict=True, cpu_offload=True)


def shard_transformer(transformer: torch.nn.Module, processes: Processes, bf16: bool) -> torch.nn.Module:
    """Shard `transformer` in place over all processes: one FSDP unit per block, then the root."""
    mesh = init_device_mesh(processes.device.type, (processes.world_size,))
    if bf16:
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    else:
        policy = MixedPrecisionPolicy()
    for block in transformer.blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(transformer, mesh=mesh, mp_policy=policy)
    return transformer


def is_sharded(module: torch.nn.Module) -> bool:
    return isinstance(module, FSDPModule)


def set_gradient_sync(module: torch.nn.Module, sync: bool) -> None:
    """FSDP's no_sync: reduce-scatter gradients only on the last micro-batch of a step."""
    module.set_requires_gradient_sync(sync)


def full_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole, unsharded state dict on the CPU of the main process (every process must call)."""
    return get_model_state_dict(module, options=FULL_ON_CPU)


def full_optimizer_state(module: torch.nn.Module, optimizer: torch.optim.Optimizer, names: list[str]) -> dict:
    """The optimizer's full state keyed by parameter index (the order of `names`), as
    `optimizer.state_dict()` of an unsharded run gives it, on the main process; {} on the others
    (every process must call)."""
    full = get_optimizer_state_dict(module, optimizer, options=FULL_ON_CPU)
    if "param_groups" not in full:  # gathered on the main process only
        return {}
    index = {name: position for position, name in enumerate(names)}
    groups = [{**group, "params": [index[name] for name in group["params"]]} for group in full["param_groups"]]
    return {"state": {index[name]: values for name, values in full["state"].items()}, "param_groups": groups}


def load_optimizer_state(module: torch.nn.Module, optimizer: torch.optim.Optimizer, saved: dict,
                         names: list[str]) -> None:
    """Hand a full, index-keyed optimizer state (`full_optimizer_state`) back to the sharded optimizer."""
    groups = [{**group, "params": [names[i] for i in group["params"]]} for group in saved["param_groups"]]
    state = {names[int(i)]: values for i, values in saved["state"].items()}
    set_optimizer_state_dict(module, optimizer, optim_state_dict={"state": state, "param_groups": groups},
                             options=StateDictOptions(full_state_dict=True))


class FullOptimizerState:
    """What `save_training_state` needs of an optimizer (`state_dict()`), for a state gathered already."""

    def __init__(self, state: dict) -> None:
        self._state = state

    def state_dict(self) -> dict:
        return self._state
