"""FSDP2 (`torch.distributed.fsdp.fully_shard`) for full fine-tuning at the papers' scale.

A config with `"parallel": "fsdp"` shards the trained transformer over the processes of a
torchrun launch instead of replicating it (DDP): each transformer block is one FSDP unit
(its weights gathered just before it runs and freed after), then the root. Parameters,
gradients and AdamW state live sharded in float32 on every process; on CUDA the gathered
weights are bf16 and gradients are reduced in float32 (`MixedPrecisionPolicy`).

The streaming student's chunk passes reach its weights not only through their outputs but also
through the keys and values they leave in the KV cache (a condition or clean-chunk pass whose
output is discarded). FSDP2 gathers a unit's weights for backward when the gradient reaches
its output, which such a pass never sees. With activation checkpointing that does not matter
(every block is run again in the backward pass, and gathered for it); without it, the
student is sharded `keep_gathered`: each unit stays gathered from its first forward pass of
a step until `release` before the optimizer step (the whole bf16 transformer per GPU during a
step), while gradients are still reduce-scattered and accumulated in float32 shards.

Checkpoints stay what every other run writes: every shard is gathered whole to the CPU
(all processes take part, in the same order; the main one writes), the optimizer's moments
too, keyed by parameter index as `engine.train.state` saves them; a resumed run cuts them
back into each process's shards.
"""

from __future__ import annotations

import torch
from torch.distributed.tensor import DTensor, distribute_tensor
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

from engine.model.distributed import Processes



def shard_transformer(transformer: torch.nn.Module, processes: Processes, bf16: bool,
                      keep_gathered: bool = False) -> torch.nn.Module:
    """Shard `transformer` in place over all processes: one FSDP unit per block, then the root.

    `keep_gathered`: weights stay gathered through a step's passes, until `release`.
    """
    mesh = init_device_mesh(processes.device.type, (processes.world_size,))
    if bf16:
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    else:
        policy = MixedPrecisionPolicy()
    reshard = False if keep_gathered else None  # None: FSDP's default (blocks reshard, the root does not)
    for block in transformer.blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard)
    fully_shard(transformer, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard)
    if keep_gathered:
        transformer.set_reshard_after_backward(False)
    return transformer


def release(transformer: torch.nn.Module) -> None:
    """Free every unit's gathered weights: the module's parameters are its shards again."""
    for module in transformer.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


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


def whole(value: torch.Tensor) -> torch.Tensor:
    """A whole tensor on the CPU from a shard (every process must call, in the same order)."""
    if isinstance(value, DTensor):
        value = value.full_tensor()
    return value.detach().cpu()


def full_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole, unsharded state dict on the CPU (every process must call; each gets it)."""
    return {name: whole(value) for name, value in module.state_dict().items()}


def copy_whole(param: torch.Tensor, value: torch.Tensor) -> None:
    """param ← a whole tensor: for a sharded parameter, this process's shard of it."""
    if isinstance(param, DTensor):
        value = distribute_tensor(value.to(param.device), param.device_mesh, param.placements)
    param.copy_(value)


def full_optimizer_state(module: torch.nn.Module, optimizer: torch.optim.Optimizer, names: list[str]) -> dict:
    """The optimizer's whole state keyed by parameter index (the order of `names`), as an unsharded
    run's `optimizer.state_dict()` gives it (every process must call)."""
    saved = optimizer.state_dict()
    state = {index: {key: whole(value) if torch.is_tensor(value) else value for key, value in values.items()}
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
