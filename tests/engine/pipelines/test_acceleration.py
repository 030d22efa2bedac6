"""The speed and memory modes (engine.pipelines.runtime.apply_runtime) leave the output as it was."""

import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from engine.checkpoint import build_random, load_model
from engine.checkpoint.presets import TINY
from engine.pipelines.pipeline_tryon import to_uint8
from engine.pipelines.pipeline_tryon_streaming import StreamConfig, TryOnStream
from engine.pipelines.runtime import Acceleration, Runtime, apply_runtime

W, H = 32, 32


def image(seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8))


def pipeline_with(checkpoint, **modes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline = load_model(str(checkpoint)).pipeline
    apply_runtime(pipeline, Runtime(torch.device("cpu"), torch.float32, "sdpa", Acceleration(**modes)))
    return pipeline


def stream_frames(pipeline):
    stream = TryOnStream(pipeline, reference=image(0), garments=[("top", image(1))], prompt="she spins",
                                generator=torch.Generator().manual_seed(0),
                                config=StreamConfig(chunk_frames=2, steps=1, window=1))
    first = stream.next_chunk()
    stream.switch([("dress", image(2))])
    return np.concatenate([first, stream.next_chunk(), stream.next_chunk()])


def teacher_frames(pipeline):
    return to_uint8(pipeline(image(0), garments=[("top", image(1))], prompt="she spins", num_frames=5,
                             num_inference_steps=2, guidance_scale=2.0, generator=torch.Generator().manual_seed(0)).frames[0])


@pytest.fixture(scope="module")
def baseline(tiny_checkpoint):
    pipeline = pipeline_with(tiny_checkpoint)
    return stream_frames(pipeline), teacher_frames(pipeline)


def difference(a, b):
    return np.abs(a.astype(int) - b.astype(int)).max()


@pytest.mark.parametrize("modes", [{"fuse_qkv": True}, {"offload": "model"}, {"offload": "group"}],
                         ids=["fuse_qkv", "offload-model", "offload-group"])
def test_exact_modes_give_the_same_video(tiny_checkpoint, baseline, modes):
    pipeline = pipeline_with(tiny_checkpoint, **modes)
    assert difference(stream_frames(pipeline), baseline[0]) <= 1  # float summation order only
    assert difference(teacher_frames(pipeline), baseline[1]) <= 1


def test_fuse_qkv_keeps_one_projection(tiny_checkpoint):
    pipeline = pipeline_with(tiny_checkpoint, fuse_qkv=True)
    attention = pipeline.transformer.blocks[0].attn1
    assert attention.fused_projections and not hasattr(attention, "to_q")


def test_fp8_weights_stores_float8_weights_and_stays_close(tiny_checkpoint, baseline):
    pipeline = pipeline_with(tiny_checkpoint, fp8_weights=True)
    block = pipeline.transformer.blocks[0]
    assert block.ffn.net[2].weight.dtype == torch.float8_e4m3fn
    assert pipeline.transformer.dtype == torch.float32  # the compute dtype
    frames = stream_frames(pipeline)
    assert frames.shape == baseline[0].shape
    assert 0 < np.abs(frames.astype(int) - baseline[0].astype(int)).mean() < 8  # rounded weights, same video


def test_model_offload_onloads_on_every_entry_point(tiny_checkpoint):
    """The engine calls the transformer's condition pass and the VAE's parts directly, not through forward."""
    pipeline = pipeline_with(tiny_checkpoint, offload="model")
    onloaded = []
    for name in ("transformer", "vae"):
        hook = getattr(pipeline, name)._hf_hook
        hook.pre_forward = lambda module, *args, _name=name, _original=hook.pre_forward, **kwargs: (
            onloaded.append(_name) or _original(module, *args, **kwargs))
    stream = TryOnStream(pipeline, reference=image(0), garments=[("top", image(1))], prompt="she spins",
                                generator=torch.Generator().manual_seed(0),
                                config=StreamConfig(chunk_frames=2, steps=1, window=1))
    onloaded.clear()
    stream.decoder.decode(torch.zeros(1, pipeline.vae.config.z_dim, 1, 4, 4))
    assert onloaded == ["vae"]
    onloaded.clear()
    stream.switch([("dress", image(2))])  # encodes the garment, then the transformer's condition pass
    assert onloaded == ["vae", "transformer"]


class FakeTorchao:
    """Stands in for torchao.quantization (whose float8 kernels need a GPU of compute capability 8.9+):
    records what `quantize_` was asked to do, and marks the layers it would quantize."""

    class PerRow:
        pass

    class Float8DynamicActivationFloat8WeightConfig:
        def __init__(self, granularity):
            self.granularity = granularity

    def __init__(self):
        self.calls = []

    def quantize_(self, model, config, filter_fn):
        chosen = [name for name, module in model.named_modules() if filter_fn(module, name)]
        for name in chosen:
            model.get_submodule(name).float8 = config
        self.calls.append((model, config, chosen))


def test_fp8_gives_the_transformer_blocks_linear_layers_torchaos_row_wise_float8(tiny_checkpoint, monkeypatch):
    import sys
    import types

    fake = FakeTorchao()
    module = types.ModuleType("torchao.quantization")
    for name in ("PerRow", "Float8DynamicActivationFloat8WeightConfig", "quantize_"):
        setattr(module, name, getattr(fake, name))
    monkeypatch.setitem(sys.modules, "torchao", types.ModuleType("torchao"))
    monkeypatch.setitem(sys.modules, "torchao.quantization", module)
    pipeline = pipeline_with(tiny_checkpoint, fp8=True)
    [(model, config, chosen)] = fake.calls
    assert model is pipeline.transformer and isinstance(config.granularity, FakeTorchao.PerRow)
    linear = {name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert set(chosen) == {name for name in linear if name.startswith("blocks.")}  # its sides are multiples of 16
    assert "proj_out" in linear and "proj_out" not in chosen  # the output projection stays as it is
    assert pipeline.text_encoder.dtype == torch.float32  # no weight casting besides


def test_fp8_and_fp8_weights_are_refused_where_they_cannot_run():
    from engine.errors import InputError
    from engine.pipelines.runtime import resolve_runtime

    with pytest.raises(InputError, match="float8 tensor cores") as caught:
        resolve_runtime("cpu", acceleration=Acceleration(fp8=True))
    assert caught.value.option == "fp8"
    with pytest.raises(InputError, match="not both"):
        Acceleration(fp8=True, fp8_weights=True)


def test_vae_bf16_decodes_in_bf16_and_stays_close(tiny_checkpoint, baseline):
    pipeline = pipeline_with(tiny_checkpoint, vae_bf16=True)
    assert pipeline.vae.decoder.conv_in.weight.dtype == torch.bfloat16
    assert pipeline.vae.encoder.conv_in.weight.dtype == torch.float32  # the motion and conditions encode as before
    frames, teacher = stream_frames(pipeline), teacher_frames(pipeline)
    assert 0 < np.abs(frames.astype(int) - baseline[0].astype(int)).mean() < 4
    assert np.abs(teacher.astype(int) - baseline[1].astype(int)).mean() < 4


def test_compile_is_static_and_allows_a_streams_ramp_up(tiny_checkpoint, monkeypatch):
    import torch._dynamo

    calls = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline = load_model(str(tiny_checkpoint)).pipeline
    monkeypatch.setattr(pipeline.transformer, "compile_repeated_blocks", lambda **kwargs: calls.append(kwargs))
    # dynamo's own patch restores its settings (a monkeypatched alias of cache_size_limit is not undone cleanly)
    with torch._dynamo.config.patch(recompile_limit=8, accumulated_recompile_limit=256):
        apply_runtime(pipeline, Runtime(torch.device("cpu"), torch.float32, "sdpa", Acceleration(compile=True)))
        assert calls == [{"dynamic": False}] and torch._dynamo.config.recompile_limit >= 16


@pytest.mark.slow
def test_statically_compiled_blocks_give_the_same_stream(tiny_checkpoint, baseline):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline = load_model(str(tiny_checkpoint)).pipeline
    compile_blocks = pipeline.transformer.compile_repeated_blocks
    pipeline.transformer.compile_repeated_blocks = lambda **kwargs: compile_blocks(backend="eager", **kwargs)
    apply_runtime(pipeline, Runtime(torch.device("cpu"), torch.float32, "sdpa", Acceleration(compile=True)))
    assert difference(stream_frames(pipeline), baseline[0]) <= 1


@pytest.mark.slow
def test_compiled_blocks_give_the_same_stream(tiny_checkpoint, baseline):
    pipeline = pipeline_with(tiny_checkpoint, compile=True)
    assert all(block._compiled_call_impl is not None for block in pipeline.transformer.blocks)
    assert difference(stream_frames(pipeline), baseline[0]) <= 1


def graphs_compiled_for_a_stream(layers: int) -> int:
    """Graphs torch.compile captures for a short stream of the tiny model with `layers` blocks."""
    preset = replace(TINY, transformer=dict(TINY.transformer, num_layers=layers))
    pipeline = build_random(preset, device=torch.device("cpu"), dtype=torch.float32)
    graphs = []

    def count(graph, example_inputs):  # an eager backend: capture only, no code generation
        graphs.append(graph)
        return graph.forward

    torch._dynamo.reset()
    pipeline.transformer.compile_repeated_blocks(backend=count, dynamic=True)
    with torch._dynamo.config.patch(recompile_limit=1000, accumulated_recompile_limit=10000):  # no eager fallback
        stream_frames(pipeline)
    torch._dynamo.reset()
    return len(graphs)


@pytest.mark.slow
def test_compiled_stream_blocks_are_not_recompiled_for_each_layer():
    """Every block reads its own slot of the KV cache: that slot must not be a constant of the
    compiled code, or the 5 B model's 30 blocks recompile (past dynamo's limit of 8) on the GPU."""
    assert graphs_compiled_for_a_stream(1) == graphs_compiled_for_a_stream(3)
