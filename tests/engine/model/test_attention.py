"""engine.model.attention: the text cross-attention's kept keys and values, and the backend choice."""

import pytest
import torch
from diffusers.models.transformers.transformer_wan import WanAttnProcessor

from engine.checkpoint.presets import TINY
from engine.errors import InputError
from engine.model.attention import TextAttnProcessor, resolve_attention
from engine.model.transformer_condnet import Condition, CondNetTransformer


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CondNetTransformer(**TINY.transformer).eval()


def inputs(seed):
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, 48, 2, 4, 6, generator=generator)
    text = torch.randn(1, 5, TINY.transformer["text_dim"], generator=generator)
    return latents, torch.full((1, 2), 500.0), text


def run(model, latents, timestep, text):
    return model(latents, timestep, text, conditions=[Condition("user", latents[:, :, :1])]).sample


@torch.no_grad()
def test_text_attention_is_diffusers_and_projects_the_text_once_per_text(model):
    latents, timestep, text = inputs(1)
    ours = [run(model, latents, timestep, text) for _ in range(3)]
    calls = []
    model.blocks[0].attn2.to_k.register_forward_hook(lambda *args: calls.append(1))
    run(model, latents, timestep, text)
    assert calls == []  # kept from the calls before
    other = inputs(2)[2]
    run(model, latents, timestep, other)
    assert calls == [1]  # a new text is projected
    processors = [block.attn2.processor for block in model.blocks]
    try:
        for block in model.blocks:
            block.attn2.set_processor(WanAttnProcessor())
        theirs = run(model, latents, timestep, text)
    finally:
        for block, processor in zip(model.blocks, processors):
            block.attn2.set_processor(processor)
    assert all(torch.equal(out, theirs) for out in ours)


def test_changed_weights_or_gradients_project_the_text_again(model):
    latents, timestep, text = inputs(3)
    attention = model.blocks[0].attn2
    with torch.no_grad():
        before = run(model, latents, timestep, text)
        attention.to_v.weight.mul_(2.0)  # as an optimizer step would
        after = run(model, latents, timestep, text)
        attention.to_v.weight.div_(2.0)
    assert not torch.equal(before, after)
    assert isinstance(attention.processor, TextAttnProcessor)
    run(model, latents, timestep, text).sum().backward()  # with gradients nothing is kept
    assert attention.processor._kept is None and attention.to_k.weight.grad is not None


def test_cudnn_is_a_choice_for_cuda_in_half_precision():
    with pytest.raises(InputError, match="needs a CUDA device|not installed"):
        resolve_attention("cudnn", torch.device("cpu"))
    with pytest.raises(InputError, match="bf16 or fp16"):
        resolve_attention("cudnn", torch.device("cpu"), torch.float32)
    assert resolve_attention("auto", torch.device("cpu"), torch.bfloat16) == "sdpa"
