import numpy as np
import pytest
import torch
from PIL import Image

from tryon.errors import InputError
from tryon.pipelines.pipeline_tryon import TryOnInputs
from tryon.pipelines.shapes import VideoShape, frame_count

W, H = 64, 64


def image(seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8))


def generate(pipeline, num_frames=5, seed=0, **inputs):
    inputs = {"user": image(0), **inputs}
    return pipeline(TryOnInputs(**inputs), pipeline.video_shape(W, H, num_frames), steps=2, guidance=1.0,
                    generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("num_frames", [1, 4, 5, 6, 9])
def test_the_frame_count_asked_for_is_the_frame_count_given(tiny_model, num_frames):
    frames = generate(tiny_model.pipeline, num_frames)
    assert frames.shape == (num_frames, H, W, 3) and frames.dtype == np.uint8


def test_same_seed_same_video_and_other_seed_another(tiny_model):
    pipe = tiny_model.pipeline
    first, again, other = generate(pipe, seed=3), generate(pipe, seed=3), generate(pipe, seed=4)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_dance_anchors_the_first_frame_to_the_user_photo(tiny_model):
    pipe = tiny_model.pipeline
    user = image(5)
    frames = generate(pipe, 5, user=user, anchor_first_frame=True)
    reconstructed = pipe.decode(pipe.encode_image(user))[0]
    assert np.array_equal(frames[0], reconstructed)
    free = generate(pipe, 5, user=user)
    assert not np.array_equal(free[0], reconstructed)


def test_garments_motion_and_guidance_all_reach_the_model(tiny_model):
    pipe = tiny_model.pipeline
    motion = np.random.default_rng(1).integers(0, 255, (5, H, W, 3), dtype=np.uint8)
    plain = generate(pipe)
    dressed = generate(pipe, garments=[("top", image(1)), ("bottom", image(2))], motion=motion, prompt="she spins")
    assert dressed.shape == plain.shape and not np.array_equal(plain, dressed)
    shape = pipe.video_shape(W, H, 5)
    guided = pipe(TryOnInputs(user=image(0), garments=[("top", image(1))], prompt="red top"), shape, steps=2,
                  guidance=4.0, generator=torch.Generator().manual_seed(0))
    unguided = pipe(TryOnInputs(user=image(0), garments=[("top", image(1))], prompt="red top"), shape, steps=2,
                    guidance=1.0, generator=torch.Generator().manual_seed(0))
    assert not np.array_equal(guided, unguided)


def test_video_shape_maps_frames_to_4k_plus_1():
    shape = VideoShape(width=1152, height=704, num_frames=120)
    assert (shape.latent_frames, shape.pixel_frames) == (31, 121)
    assert (shape.latent_height, shape.latent_width) == (44, 72)
    assert VideoShape(64, 64, 1).pixel_frames == 1
    assert VideoShape(64, 64, 5).latent_frames == 2


@pytest.mark.parametrize("seconds,fps,frames", [(5, 24, 120), (2, 24, 48), (0.01, 24, 1), (1.5, 25, 38)])
def test_frame_count(seconds, fps, frames):
    assert frame_count(seconds, fps) == frames


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf"), 1e6])
def test_absurd_seconds_are_refused(seconds):
    with pytest.raises(InputError, match="--seconds"):
        frame_count(seconds, 24)
