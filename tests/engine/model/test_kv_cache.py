import pytest
import torch
import torch.nn.functional as F

from engine.checkpoint.presets import TINY
from engine.model.attention import CondNetAttnProcessor
from engine.model.kv_cache import KVCache
from engine.model.transformer_condnet import Condition, CondNetTransformer

CHUNK = 2  # latent frames per chunk
CHUNKS = 4
FRAME_TOKENS = 2 * 3  # a 4×6 latent frame in 2×2 patches


@pytest.fixture(scope="module")
def model():
    """A random CondNet whose role and motion embeddings are non-zero (as if trained)."""
    torch.manual_seed(0)
    model = CondNetTransformer(**TINY.transformer).eval()
    torch.nn.init.normal_(model.role_embedding.weight, std=1.0)
    torch.nn.init.normal_(model.motion_embedding.weight, std=0.1)
    return model


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def stream_inputs():
    conditions = [Condition("user", randn(1, 48, 1, 4, 6, seed=1)), Condition("top", randn(1, 48, 1, 4, 6, seed=2))]
    latents = randn(1, 48, CHUNK * CHUNKS, 4, 6, seed=3)
    motion = randn(1, 48, CHUNK * CHUNKS, 4, 6, seed=4)
    text = randn(1, 5, TINY.transformer["text_dim"], seed=5)
    timesteps = (randn(CHUNKS, seed=6).abs() * 400).repeat_interleave(CHUNK)[None]  # one noise level per chunk
    return conditions, latents, motion, text, timesteps


class MaskedProcessor(CondNetAttnProcessor):
    """Reference attention: one masked SDPA call over the whole sequence."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__(layout=None)
        self.mask = mask

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        query, key, value = (t.transpose(1, 2) for t in self.project(attn, hidden_states, rotary_emb))
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=self.mask).transpose(1, 2)
        return attn.to_out[1](attn.to_out[0](out.flatten(2, 3)))


def block_causal_mask(conditions: int, chunk_tokens: int, chunks: int, window: int) -> torch.Tensor:
    """[conditions | chunk 0 | chunk 1 | ...]: conditions see themselves; a chunk sees the conditions,
    chunk 0 (the sink), the `window` chunks before it, and itself."""
    size = conditions + chunk_tokens * chunks
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[:conditions, :conditions] = True
    mask[conditions:, :conditions] = True

    def span(chunk):
        return slice(conditions + chunk * chunk_tokens, conditions + (chunk + 1) * chunk_tokens)

    for query in range(chunks):
        for key in range(query + 1):
            if key == 0 or key >= query - window:
                mask[span(query), span(key)] = True
    return mask


@torch.no_grad()
def full_masked_forward(model, mask, conditions, latents, motion, text, timesteps):
    processors = [block.attn1.processor for block in model.blocks]
    try:
        for block in model.blocks:
            block.attn1.set_processor(MaskedProcessor(mask))
        return model(latents, timesteps, text, conditions=conditions, motion_latents=motion).sample
    finally:
        for block, processor in zip(model.blocks, processors):
            block.attn1.set_processor(processor)


@torch.no_grad()
def cached_chunk_by_chunk(model, cache, conditions, latents, motion, text, timesteps):
    """Conditions once, then each chunk in one pass that also writes its K/V (sink first, then history)."""
    with model.attend_to(cache, write="conditions"):
        model(None, None, text, conditions=conditions)
    outputs, attended = [], []
    for chunk in range(CHUNKS):
        frames = slice(chunk * CHUNK, (chunk + 1) * CHUNK)
        attended.append(cache.keys_values(0)[0].shape[1])
        region = "sink" if cache.is_empty("sink") else "history" if cache.window else None  # window 0: the sink only
        with model.attend_to(cache, write=region):
            outputs.append(model(latents[:, :, frames], timesteps[:, frames], text, motion_latents=motion[:, :, frames],
                                 frame_offset=chunk * CHUNK).sample)
    return outputs, attended


def new_cache(model, window):
    return KVCache.for_transformer(model, frame_tokens=FRAME_TOKENS, chunk_frames=CHUNK, window=window)


@pytest.mark.parametrize("window", [CHUNKS, 1, 0])
def test_cached_chunks_equal_the_full_block_causal_masked_forward(model, window):
    conditions, latents, motion, text, timesteps = stream_inputs()
    mask = block_causal_mask(2 * FRAME_TOKENS, CHUNK * FRAME_TOKENS, CHUNKS, window)
    full = full_masked_forward(model, mask, conditions, latents, motion, text, timesteps)
    outputs, _ = cached_chunk_by_chunk(model, new_cache(model, window), conditions, latents, motion, text, timesteps)
    for chunk, output in enumerate(outputs):
        expected = full[:, :, chunk * CHUNK : (chunk + 1) * CHUNK]
        torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)


def test_without_a_cache_the_processor_is_the_bidirectional_teacher(model):
    """The streaming extension leaves the teacher path alone: an all-True mask gives the same output."""
    conditions, latents, motion, text, timesteps = stream_inputs()
    n = 2 * FRAME_TOKENS
    size = n + latents.shape[2] * FRAME_TOKENS
    mask = torch.ones(size, size, dtype=torch.bool)
    mask[:n, n:] = False
    full = full_masked_forward(model, mask, conditions, latents, motion, text, timesteps)
    with torch.no_grad():
        plain = model(latents, timesteps, text, conditions=conditions, motion_latents=motion).sample
    torch.testing.assert_close(plain, full, atol=1e-5, rtol=1e-5)


def test_sliding_window_keeps_memory_and_attended_tokens_flat(model):
    conditions, latents, motion, text, timesteps = stream_inputs()
    cache = new_cache(model, window=1)
    storage = {name: region.keys.data_ptr() for name, region in cache.regions.items()}
    _, attended = cached_chunk_by_chunk(model, cache, conditions, latents, motion, text, timesteps)
    chunk_tokens = CHUNK * FRAME_TOKENS
    conditions_tokens = 2 * FRAME_TOKENS
    # chunk 0: conditions; chunk 1: + sink; from chunk 2 on: + one history chunk, no more
    flat = conditions_tokens + 2 * chunk_tokens
    assert attended == [conditions_tokens, conditions_tokens + chunk_tokens, flat, flat]
    assert cache.history_chunks() == 1
    assert cache.tokens == conditions_tokens + 2 * chunk_tokens <= cache.capacity
    assert {name: region.keys.data_ptr() for name, region in cache.regions.items()} == storage  # never reallocated


def test_history_is_a_ring_of_the_newest_chunks():
    cache = KVCache(layers=1, heads=1, head_dim=2, frame_tokens=1, chunk_frames=1, window=2,
                    dtype=torch.float32, device=torch.device("cpu"))
    for chunk in range(5):
        key = torch.full((1, 1, 1, 2), float(chunk))
        cache.write("history", 0, key, key)
        cache.commit("history")
    keys, values = cache.read("history")
    assert keys.flatten().tolist() == [3.0, 3.0, 4.0, 4.0]  # oldest first
    cache.clear("history")
    assert cache.is_empty("history") and cache.keys_values(0)[0].shape == (1, 0, 1, 2)


def test_a_pass_sees_the_entry_it_replaces_until_commit():
    cache = KVCache(layers=2, heads=1, head_dim=1, frame_tokens=1, chunk_frames=1, window=1,
                    dtype=torch.float32, device=torch.device("cpu"))
    old = torch.ones(1, 1, 1, 1)
    for layer in range(2):
        cache.write("history", layer, old, old)
    cache.commit("history")
    cache.write("history", 0, 2 * old, 2 * old)  # layer 0 of the next entry, not committed yet
    assert cache.keys_values(1)[0].item() == 1.0
    cache.write("history", 1, 2 * old, 2 * old)
    cache.commit("history")
    assert cache.keys_values(0)[0].item() == 2.0 and cache.keys_values(1)[0].item() == 2.0


def test_a_view_reads_the_entries_of_its_time_and_refuses_one_replaced_since():
    cache = KVCache(layers=1, heads=1, head_dim=1, frame_tokens=1, chunk_frames=1, window=2,
                    dtype=torch.float32, device=torch.device("cpu"))

    def append(value: float) -> None:
        key = torch.full((1, 1, 1, 1), value)
        cache.write("history", 0, key, key)
        cache.commit("history")

    append(1.0)
    pinned = cache.view()
    append(2.0)
    assert cache.keys_values(0)[0].flatten().tolist() == [1.0, 2.0]
    assert cache.keys_values(0, pinned)[0].flatten().tolist() == [1.0]
    append(3.0)  # the ring of two replaces the entry the view holds
    with pytest.raises(RuntimeError, match="replaced after a pass read it"):
        cache.keys_values(0, pinned)


def test_an_entry_larger_than_its_region_is_refused():
    cache = KVCache(layers=1, heads=1, head_dim=1, frame_tokens=1, chunk_frames=2, window=1,
                    dtype=torch.float32, device=torch.device("cpu"))
    with pytest.raises(ValueError, match="at most 2 tokens"):
        cache.write("sink", 0, torch.zeros(1, 3, 1, 1), torch.zeros(1, 3, 1, 1))


def same_rows(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two (1, tokens, heads, dim) tensors hold the same token rows, in any order."""
    direction = torch.randn(a[0].flatten(1).shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def ordered(x):
        rows = x[0].flatten(1).double()
        return rows[torch.argsort(rows @ direction)]

    return a.shape == b.shape and torch.equal(ordered(a), ordered(b))


def shares_buffer(tensor: torch.Tensor, cache: KVCache) -> bool:
    return tensor.untyped_storage().data_ptr() == cache.keys.untyped_storage().data_ptr()


@torch.no_grad()
def test_the_zero_copy_read_holds_what_concatenation_held_across_a_wrap_a_withdraw_and_a_switch():
    layers, frame_tokens, chunk = 2, 3, 2
    cache = KVCache(layers=layers, heads=2, head_dim=4, frame_tokens=frame_tokens, chunk_frames=chunk, window=2,
                    dtype=torch.float32, device=torch.device("cpu"))
    seed = iter(range(10_000))
    views = []

    def tokens(count):
        return randn(1, count, 2, 4, seed=next(seed)), randn(1, count, 2, 4, seed=next(seed))

    def a_pass(count, region=None):
        """Every layer reads its context as a stream's pass would, then (optionally) writes its keys."""
        for layer in range(layers):
            key, value = tokens(count)
            before = [torch.cat([c, x], dim=1) for c, x in zip(cache.keys_values(layer), (key, value))]
            keys, values = cache.context(layer, key, value)
            assert same_rows(keys, before[0]) and same_rows(values, before[1])
            views.append(shares_buffer(keys, cache))
            if region is not None:
                cache.write(region, layer, key, value)
        if region is not None:
            cache.commit(region)

    a_pass(3 * frame_tokens, "conditions")  # the reference and two garments
    a_pass(chunk * frame_tokens, "sink")
    for _ in range(4):  # the ring of two wraps
        a_pass(chunk * frame_tokens)  # a denoising pass reads only
        a_pass(chunk * frame_tokens, "history")
    assert cache.history_chunks() == 2 and all(views[-4:])  # the steady chunk reads a view
    cache.clear("history")
    cache.clear("sink")  # the withdraw of a switch
    a_pass(2 * frame_tokens, "conditions")  # one garment fewer after it
    a_pass(chunk * frame_tokens, "sink")
    a_pass(chunk * frame_tokens, "history")
    a_pass(chunk * frame_tokens)
    assert all(views[-6:])
    a_pass(frame_tokens, "history")  # a short chunk at the end of the run: still one run
    a_pass(chunk * frame_tokens)
    assert views[-1]
    cache.clear("history")
    cache.clear("sink")
    a_pass(frame_tokens, "sink")  # a short sink leaves a hole before the history: concatenated
    a_pass(chunk * frame_tokens, "history")
    a_pass(chunk * frame_tokens)
    assert not views[-1]


@torch.no_grad()
def test_a_pinned_view_of_an_older_time_never_writes_over_newer_entries():
    cache = KVCache(layers=1, heads=1, head_dim=1, frame_tokens=1, chunk_frames=1, window=3,
                    dtype=torch.float32, device=torch.device("cpu"))

    def append(region, value):
        cache.write(region, 0, torch.full((1, 1, 1, 1), value), torch.full((1, 1, 1, 1), value))
        cache.commit(region)

    append("sink", 1.0)
    pinned = cache.view()
    append("history", 2.0)
    keys, _ = cache.context(0, torch.full((1, 1, 1, 1), 9.0), torch.full((1, 1, 1, 1), 9.0), pinned)
    assert sorted(keys.flatten().tolist()) == [1.0, 9.0]
    assert sorted(cache.keys_values(0)[0].flatten().tolist()) == [1.0, 2.0]  # the newer entry is intact


def test_with_gradients_the_read_is_a_fresh_tensor():
    cache = KVCache(layers=1, heads=1, head_dim=1, frame_tokens=1, chunk_frames=1, window=1,
                    dtype=torch.float32, device=torch.device("cpu"))
    key = torch.ones(1, 1, 1, 1, requires_grad=True)
    keys, _ = cache.context(0, key, key)
    assert not shares_buffer(keys, cache)
    keys.sum().backward()
    assert key.grad.item() == 1.0  # the gradient reaches the pass's keys


# -- LongLive's configuration (the public route's live stream) ----------------------------------


def longlive_mask(chunk_of: list[int], window: int) -> torch.Tensor:
    """Frame f (one token each) sees the sink (chunk -1) and the chunks from `window` before its own to its own."""
    chunk = torch.tensor(chunk_of)
    query, key = chunk[:, None], chunk[None, :]
    return (key == -1) | ((key <= query) & (key >= query - window))


@torch.no_grad()
def test_the_chunk_runner_at_longlive_configuration_equals_a_full_masked_pass(model):
    """A clean first frame (the sink), then chunks of 8 frames with a 32-frame window: each chunk's
    flow from the cached runner equals one masked pass over [sink, earlier chunks clean, the chunk noisy]."""
    from engine.checkpoint.convert import LONGLIVE_STREAM
    from engine.pipelines.block_causal import BlockCausalRunner
    from engine.pipelines.public.stream import LiveSettings

    settings = LiveSettings.from_section(LONGLIVE_STREAM)
    text = randn(1, 5, TINY.transformer["text_dim"], seed=1)
    runner = BlockCausalRunner(model, model, text=text, latent_size=(2, 2), chunk_frames=settings.chunk_frames,
                               window=settings.window)
    chunks, size = 5, settings.chunk_frames  # 5 chunks: the window slides past the first ones
    sink = randn(1, 48, 1, 2, 2, seed=2)
    clean = [randn(1, 48, size, 2, 2, seed=10 + k) for k in range(chunks)]
    runner.write_chunk(sink, 0, None)
    position = 1
    for k in range(chunks):
        noisy, level = randn(1, 48, size, 2, 2, seed=30 + k), 1000.0 * settings.sigmas[k % 4]
        got = runner.predict(noisy, torch.full((1, size), level), position, None)
        runner.write_chunk(clean[k], position, None)
        position += size

        latents = torch.cat([sink, *clean[:k], noisy], dim=2)
        timesteps = torch.cat([torch.zeros(1, 1 + k * size), torch.full((1, size), level)], dim=1)
        chunk_of = [-1] + [j for j in range(k + 1) for _ in range(size)]
        expected = full_masked_forward(model, longlive_mask(chunk_of, settings.window), [], latents, None, text,
                                       timesteps)
        torch.testing.assert_close(got, expected[:, :, -size:], atol=1e-5, rtol=1e-5)
    assert runner.cache.frames("sink") == 1 and runner.cache.history_chunks() == settings.window
