"""Which transformer weights learn, LoRA adapters, and the plain transformer a checkpoint holds.

- "all": every transformer weight.
- "attention": the self- and cross-attention weights (attn1, attn2) of every block.
- "lora": low-rank adapters (peft) on to_q, to_k, to_v and to_out.0 of every attention.
CondNet's own parameters (role and motion embeddings) learn in every mode: they start at
zero, and without them the garments and the motion have no way in.
"""

from __future__ import annotations

import copy

import torch

from engine.errors import InputError
from engine.model.transformer_condnet import CondNetTransformer

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
ADAPTER = "default"


def prepare_trainable(model: CondNetTransformer, mode: str, lora_rank: int) -> list[tuple[str, torch.nn.Parameter]]:
    """Freeze what must not learn (adding LoRA adapters first for "lora"); return (name, param) that do.

    The LoRA A matrices start random from torch's global generator: seed it before calling.
    """
    if mode == "lora":
        add_lora(model, lora_rank)
    condnet = {id(p) for p in model.condnet_parameters()}
    trainable = []
    for name, param in model.named_parameters():
        learns = id(param) in condnet or _learns_in(mode, name)
        param.requires_grad_(learns)
        if learns:
            trainable.append((name, param))
    return trainable


def _learns_in(mode: str, name: str) -> bool:
    if mode == "all":
        return True
    if mode == "attention":
        return ".attn1." in name or ".attn2." in name
    return "lora_" in name


def add_lora(model: CondNetTransformer, rank: int) -> None:
    try:
        from peft import LoraConfig
    except ImportError:
        raise InputError('trainable "lora" needs peft: pip install "tryon[train]"') from None
    # lora_alpha = rank: the adapter's output is B·A·x, unscaled, whatever the rank.
    model.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=LORA_TARGETS), adapter_name=ADAPTER)


def lora_weights(model: CondNetTransformer) -> dict[str, torch.Tensor]:
    """The adapters' A and B matrices by parameter name (empty without LoRA)."""
    return {name: param.detach() for name, param in model.named_parameters() if "lora_" in name}


def restore_lora(model: CondNetTransformer, weights: dict[str, torch.Tensor]) -> None:
    """Put saved adapters on a model that holds their MERGED weights (a saved checkpoint).

    The base weights come back as merged − B·A·scale: equal to the originals to float
    rounding, which is what resuming a LoRA run rests on.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
        for module in model.modules():
            if isinstance(module, BaseTunerLayer):
                module.get_base_layer().weight -= module.get_delta_weight(ADAPTER)


def plain_transformer(model: CondNetTransformer) -> CondNetTransformer:
    """The transformer to save: itself, or with LoRA a copy with the adapters merged in."""
    if not lora_weights(model):
        return model
    merged = copy.deepcopy(model)
    merged.fuse_lora()
    merged.unload_lora()
    return merged
