import numpy as np
import pytest
import torch
from PIL import Image

from engine.media import VideoFrames, read_video, write_video
from engine.model.causal_vae import CausalDecoder, CausalEncoder
from engine.pipelines.pipeline_tryon_streaming import (
    MotionLatents,
    StreamConfig,
    TryOnStream,
)

W, H = 32, 32
FAST = StreamConfig(chunk_frames=2, steps=1, window=1)


def image(seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8))


def stream(pipeline, config=FAST, seed=0, **inputs):
    inputs = {"reference": image(0), "garments": [("top", image(1))], "prompt": "she spins", **inputs}
    return TryOnStream(pipeline, generator=torch.Generator().manual_seed(seed), config=config, **inputs)


def regions(generator):
    return {name: generator.cache.read(name) for name in ("reference", "garments", "sink", "history")}


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_chunk_by_chunk_decode_equals_one_full_decode(tiny_model):
    vae = tiny_model.pipeline.vae
    latents = torch.randn(1, 48, 6, 2, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = vae.decode(latents).sample
    decoder = CausalDecoder(vae)
    chunks = [decoder.decode(latents[:, :, a:b]) for a, b in ((0, 1), (1, 4), (4, 6))]
    assert [c.shape[2] for c in chunks] == [1, 12, 8]
    torch.testing.assert_close(torch.cat(chunks, dim=2), full, atol=1e-5, rtol=0)


def test_chunk_by_chunk_encode_equals_one_full_encode(tiny_model):
    vae = tiny_model.pipeline.vae
    pixels = torch.rand(1, 3, 13, H, W, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        full = vae.encode(pixels).latent_dist.mode()
    encoder = CausalEncoder(vae)
    chunks = [encoder.encode(pixels[:, :, a:b]) for a, b in ((0, 5), (5, 9), (9, 13))]
    assert [c.shape[2] for c in chunks] == [2, 1, 1]
    torch.testing.assert_close(torch.cat(chunks, dim=2), full, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="4k"):
        encoder.encode(pixels[:, :, :3])


def test_motion_is_encoded_as_the_stream_reaches_it(tiny_model):
    pipeline = tiny_model.pipeline
    frames = np.random.default_rng(0).integers(0, 255, (11, H, W, 3), dtype=np.uint8)
    whole = pipeline.encode_frames(frames)  # 11 frames padded to 13: 4 latent frames
    motion = MotionLatents(pipeline, frames)
    first = motion.latents(0, 2)
    assert motion.encoded == 2  # only what was asked for
    parts = [first, motion.latents(2, 3), motion.latents(3, 4)]
    torch.testing.assert_close(torch.cat(parts, dim=2), whole, atol=1e-5, rtol=0)
    assert motion.kept.shape[2] == 1  # earlier latents were let go
    with pytest.raises(ValueError, match="let go"):
        motion.latents(0, 1)


def test_chunks_stream_frames_and_the_cache_stays_flat(tiny_model):
    generator = stream(tiny_model.pipeline)
    capacity = generator.cache.capacity
    counts, cached = [], []
    for _ in range(4):
        frames = generator.next_chunk()
        counts.append(len(frames))
        cached.append(generator.cache.tokens)
        assert frames.dtype == np.uint8 and frames.shape[1:] == (H, W, 3)
    assert counts == [5, 8, 8, 8]  # 1 + 4 frames from the first 2 latent frames, then 4 per latent frame
    assert cached[2] == cached[3] <= capacity  # sink + one history chunk: no growth
    assert generator.cache.history_chunks() == 1
    assert generator.next_chunk(max_frames=3).shape[0] == 3  # one latent frame is enough for the end


def test_with_no_history_window_every_chunk_follows_the_sink(tiny_model):
    """Window 0: a chunk attends to the conditions and the sink alone, at the RoPE slot right after
    the sink (the layout of two-chunk training clips), and no pass writes it into the cache."""
    generator = stream(tiny_model.pipeline, StreamConfig(chunk_frames=2, steps=1, window=0))
    conditions = generator.cache.tokens
    passes = []
    forward = generator.runner._forward

    def spy(latents, timestep, frame_offset, motion):
        passes.append((frame_offset, generator.cache.tokens))
        return forward(latents, timestep, frame_offset, motion)

    generator.runner._forward = spy
    frames = [len(generator.next_chunk()) for _ in range(4)]
    sink = generator.cache.tokens - conditions
    assert frames == [5, 8, 8, 8] and sink > 0 and generator.cache.history_chunks() == 0
    # chunk 0: its step and the pass that writes the sink; then one step per chunk, nothing written
    assert passes == [(0, conditions), (0, conditions)] + [(2, conditions + sink)] * 3


def test_each_switch_operation_changes_exactly_its_regions(tiny_model):
    generator = stream(tiny_model.pipeline)
    for _ in range(3):
        generator.next_chunk()

    before = regions(generator)
    generator.refresh_garments([("top", image(2))])
    after = regions(generator)
    assert not same(before["garments"], after["garments"])
    assert same(before["sink"], after["sink"]) and same(before["history"], after["history"])
    # the reference's first-layer K/V are its own; deeper layers see the garments (they attend to each other)
    assert same([t[0] for t in before["reference"]], [t[0] for t in after["reference"]])

    before = after
    generator.disentangle_reference(generator.last_frame)
    after = regions(generator)
    assert not torch.equal(before["reference"][1][0], after["reference"][1][0])  # new reference values
    assert torch.equal(before["garments"][1][0], after["garments"][1][0])  # same garment values
    assert same(before["sink"], after["sink"]) and same(before["history"], after["history"])
    assert generator.user_slot == generator.position

    before = after
    generator.withdraw_history()
    after = regions(generator)
    assert same(before["reference"], after["reference"]) and same(before["garments"], after["garments"])
    assert generator.cache.is_empty("sink") and generator.cache.is_empty("history")
    generator.next_chunk()
    assert not generator.cache.is_empty("sink") and generator.cache.is_empty("history")  # the new sink


@pytest.mark.parametrize("flags", [{}, {"refresh": False, "withdraw": False}])
def test_frames_before_a_switch_are_those_of_a_run_without_it(tiny_model, flags):
    config = StreamConfig(chunk_frames=2, steps=1, window=1, **flags)
    plain, switched = stream(tiny_model.pipeline, config), stream(tiny_model.pipeline, config)
    for _ in range(2):
        assert np.array_equal(plain.next_chunk(), switched.next_chunk())
    switched.switch([("dress", image(3))])
    assert not np.array_equal(plain.next_chunk(), switched.next_chunk())


def test_switch_does_only_what_the_config_enables(tiny_model):
    generator = stream(tiny_model.pipeline, StreamConfig(chunk_frames=2, steps=1, window=1, refresh=False,
                                                          withdraw=False, disentangle=False))
    generator.next_chunk()
    before = regions(generator)
    generator.switch([("dress", image(3))])
    assert all(same(before[name], value) for name, value in regions(generator).items())


def test_a_continued_video_fills_sink_and_history_and_follows_on(tiny_model):
    pipeline = tiny_model.pipeline
    context = np.random.default_rng(4).integers(0, 255, (13, H, W, 3), dtype=np.uint8)  # 4 latent frames
    generator = stream(pipeline, reference=Image.fromarray(context[-1]), garments=[], context=context)
    assert generator.position == generator.user_slot == 4
    assert not generator.cache.is_empty("sink") and generator.cache.history_chunks() == 1
    assert np.array_equal(generator.last_frame, context[-1])
    assert len(generator.next_chunk()) == 8  # no single first frame: the video goes on


def test_a_chunk_never_waits_on_the_device_before_its_frames(tiny_model, monkeypatch):
    """Nothing in the chunk loop makes the host wait for the device: no .item(), .nonzero(), .tolist(),
    bool(tensor), synchronize, and no blocking copy of host data to the device (on CUDA each stalls
    the queue of kernels). The frames are read later, by the writer thread."""
    motion = np.random.default_rng(5).integers(0, 255, (21, H, W, 3), dtype=np.uint8)
    generator = stream(tiny_model.pipeline, motion=motion)
    generator.next_chunk()
    waits = []

    def counted(owner, name, when=lambda *args, **kwargs: True):
        original = getattr(owner, name)

        def call(*args, **kwargs):
            if when(*args, **kwargs):
                waits.append(name)
            return original(*args, **kwargs)
        monkeypatch.setattr(owner, name, call)

    def host_data(tensor):  # a tensor made from a NumPy array: what a copy to the device starts from
        tensor._from_host = True
        return tensor

    from_numpy = torch.from_numpy
    monkeypatch.setattr(torch, "from_numpy", lambda array: host_data(from_numpy(array)))
    for name in ("item", "nonzero", "tolist", "__bool__"):
        counted(torch.Tensor, name)
    counted(torch.cuda, "synchronize")
    counted(torch.cuda.Event, "synchronize")
    counted(torch, "tensor", lambda *args, **kwargs: "device" in kwargs)
    counted(torch, "as_tensor", lambda *args, **kwargs: "device" in kwargs)
    counted(torch.Tensor, "to", lambda self, *args, **kwargs: getattr(self, "_from_host", False)
            and ("device" in kwargs or any(isinstance(a, (torch.device, str)) for a in args))
            and not kwargs.get("non_blocking"))
    generator.next_chunk_frames()
    generator.next_chunk_frames()
    monkeypatch.undo()
    assert waits == []


def test_the_streams_own_euler_steps_are_the_schedulers(tiny_model):
    cached, stepped = stream(tiny_model.pipeline), stream(tiny_model.pipeline)
    stepped._schedule = None  # through FlowMatchEulerDiscreteScheduler.step
    for _ in range(2):
        assert np.array_equal(cached.next_chunk(), stepped.next_chunk())


def test_a_motion_video_decoded_as_the_stream_goes_gives_the_same_video(tiny_model, tmp_path):
    frames = np.random.default_rng(3).integers(0, 255, (20, H, W, 3), dtype=np.uint8)
    path = tmp_path / "motion.mp4"
    write_video(path, frames, fps=8)
    whole = read_video(path, fps=8, num_frames=14)
    outputs = []
    for motion in (whole, VideoFrames(path, fps=8, num_frames=14)):
        generator = stream(tiny_model.pipeline, motion=motion)
        outputs.append(np.concatenate([generator.next_chunk() for _ in range(3)]))
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_attended_motion_streams_only_the_current_chunks_tokens(tiny_model):
    """With motion as attended tokens, a chunk's motion tokens are attended but never cached."""
    from engine.model.transformer_condnet import CondNetTransformer

    pipeline = tiny_model.pipeline
    original = pipeline.transformer
    pipeline.transformer = CondNetTransformer.from_base(original, motion_conditioning="attention").eval()
    try:
        frames = np.random.default_rng(0).integers(0, 255, (13, H, W, 3), dtype=np.uint8)
        moving = stream(pipeline, motion=frames)
        still = stream(pipeline)
        first = moving.next_chunk()
        assert not np.array_equal(first, still.next_chunk())  # the motion is attended
        frame_tokens = (H // 16 // 2) * (W // 16 // 2)
        assert moving.cache.tokens == still.cache.tokens == (2 + 2) * frame_tokens  # reference, garment, sink
    finally:
        pipeline.transformer = original


def test_the_official_sampler_steps_at_the_warped_timesteps_and_renoises(tiny_model):
    from engine.pipelines.pipeline_tryon_streaming import renoise_sigmas, renoise_step

    sigmas = renoise_sigmas(4, 5.0)  # timesteps 1000/750/500/250 warped by shift 5
    assert sigmas == pytest.approx([1.0, 0.9375, 0.8333, 0.625], abs=1e-4)
    x, v, eps = torch.ones(1, 2), torch.full((1, 2), 0.5), torch.zeros(1, 2)
    torch.testing.assert_close(renoise_step(x, v, 0.8, None, None), torch.full((1, 2), 0.6))  # x0 = x - sigma v
    torch.testing.assert_close(renoise_step(x, v, 0.8, 0.5, eps), torch.full((1, 2), 0.3))  # (1 - 0.5) x0 + 0.5 eps
    euler = stream(tiny_model.pipeline, config=StreamConfig(chunk_frames=2, steps=2, window=1)).next_chunk()
    renoised = stream(tiny_model.pipeline, config=StreamConfig(chunk_frames=2, steps=2, window=1, sampler="renoise"))
    assert renoised.next_chunk().shape == euler.shape and not np.array_equal(renoised.next_chunk(), euler)


def test_the_zero_copy_cache_read_makes_the_video_that_concatenation_made(tiny_model, monkeypatch):
    """Across the ring's wrap (window 1), a switch (refresh, disentangle, withdraw) and the chunks after it."""
    from engine.model.kv_cache import KVCache

    def video():
        generator = stream(tiny_model.pipeline)
        frames = [generator.next_chunk() for _ in range(3)]
        generator.switch([("dress", image(3))])
        return np.concatenate(frames + [generator.next_chunk() for _ in range(2)]).astype(int)

    zero_copy = video()
    monkeypatch.setattr(KVCache, "_run_before", lambda *args, **kwargs: None)  # always concatenate
    concatenated = video()
    assert np.abs(zero_copy - concatenated).max() <= 1  # the order of keys changes float sums only
    assert (zero_copy == concatenated).mean() > 0.99


def test_a_stream_with_the_tiny_decoder_gives_the_whole_clip_decode_of_its_latents(tiny_model):
    from engine.model.tiny_decoder import TinyVideoDecoder

    pipeline = tiny_model.pipeline
    torch.manual_seed(0)
    tiny = TinyVideoDecoder.for_vae(pipeline.vae.config, channels=(8, 8, 8, 8)).eval()
    made = stream(pipeline, tiny_decoder=tiny)
    seen = []
    decode = made.decoder.decode
    made.decoder.decode = lambda latents: decode(seen.append(latents) or latents)
    frames = np.concatenate([made.next_chunk() for _ in range(3)])

    assert len(frames) == 1 + 4 * 5 and not isinstance(made.decoder, CausalDecoder)
    whole = tiny.decode(torch.cat(seen, dim=2))  # normalised latents, as the transformer made them
    expected = ((whole[0] + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()
    assert np.abs(frames.astype(int) - expected).max() <= 1
def test_prompt_embeds_stand_for_the_prompt(tiny_model):
    pipe = tiny_model.pipeline
    said = stream(pipe).next_chunk()
    embedded = stream(pipe, prompt="", prompt_embeds=pipe.encode_prompt("she spins")).next_chunk()
    assert np.array_equal(said, embedded)
    assert not np.array_equal(said, stream(pipe, prompt="").next_chunk())
