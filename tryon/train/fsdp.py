"""FSDP2 (`torch.distributed.fsdp.fully_shard`) for full fine-tuning at the papers' scale.

A config with `"parallel": "fsdp"` shards the trained transformer over the processes of a
torchrun launch instead of replicating it (DDP): each transformer block is one FSDP unit
(its weights gathered just before it runs and freed after), then the root. Parameters,
gradients and AdamW state live sharded in float32 on every process; on CUDA the gathered
weights are bf16 and gradients are reduced in float32 (`MixedPrecisionPolicy`).

Checkpoints stay what every other run writes: every shard is gathered whole to the CPU
(all processes take part, in the same order; the main one writes), the optimizer's moments
too, keyed by parameter index as `tryon.train.state` saves them; a resumed run cuts them
back into each process's shards.
"""

from __future__ import annotations

import torch
from torch.distributed.tensor import DTensor, distribute_tensor
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

from tryon.model.distributed import Processes



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


def used_by_all(transformer: torch.nn.Module) -> torch.Tensor:
    """A zero that depends on every CondNet parameter, added to the loss under FSDP.

    FSDP2 reduce-scatters the gradients a process has; a parameter one process used and
    another did not (the motion embedding, when one drew a motion dropout) would make the
    processes' collectives differ in size. With this term every process has a gradient for
    each of them (zero where unused), as DDP gives. `drop_unused_gradients` then takes back
    the gradient of a parameter no process used, as DDP leaves it None: AdamW skips it.
    """
    return sum(param.sum() * 0.0 for param in transformer.condnet_parameters())


def drop_unused_gradients(transformer: torch.nn.Module) -> None:
    """After the step's reduce-scatter: a CondNet gradient that is zero on every process was unused
    everywhere (see `used_by_all`); make it None, as a DDP run has it (every process must call)."""
    for param in transformer.condnet_parameters():
        if param.grad is None:
            continue
        magnitude = param.grad.abs().sum()
        if isinstance(magnitude, DTensor):
            magnitude = magnitude.full_tensor()
        if magnitude.item() == 0:
            param.grad = None


def _full(value: torch.Tensor) -> torch.Tensor:
    """A whole tensor on the CPU from a shard (every process must call, in the same order)."""
    if isinstance(value, DTensor):
        value = value.full_tensor()
    return value.detach().cpu()


def full_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole, unsharded state dict on the CPU (every process must call; each gets it)."""
    return {name: _full(value) for name, value in module.state_dict().items()}


def full_optimizer_state(module: torch.nn.Module, optimizer: torch.optim.Optimizer, names: list[str]) -> dict:
    """The optimizer's whole state keyed by parameter index (the order of `names`), as an unsharded
    run's `optimizer.state_dict()` gives it (every process must call)."""
    saved = optimizer.state_dict()
    state = {index: {key: _full(value) if torch.is_tensor(value) else value for key, value in values.items()}
             for index, values in sorted(saved["state"].items())}
    return {"state": state, "param_groups": saved["param_groups"]}


def load_optimizer_state(module: torch.nn.Module, optimizer: torch.optim.Optimizer, saved: dict,
                         names: list[str]) -> None:
    """Hand a whole, index-keyed optimizer state (`full_optimizer_state`) to the sharded optimizer:
    each moment is cut into this process's shard of its parameter."""
    params = [param for group in optimizer.param_groups for param in group["params"]]
    state = {}
    for index, values in saved["state"].items():
        param = params[int(index)]
        state[int(index)] = {
            key: distribute_tensor(value.to(param.device), param.device_mesh, param.placements)
            if torch.is_tensor(value) and value.ndim > 0 else value
            for key, value in values.items()
        }
    optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})


class FullOptimizerState:
    """What `save_training_state` needs of an optimizer (`state_dict()`), for a state gathered already."""

    def __init__(self, state: dict) -> None:
        self._state = state

    def state_dict(self) -> dict:
        return self._state
