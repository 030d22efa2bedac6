import numpy as np
import pytest
import torch
from PIL import Image

from engine.errors import InputError
from engine.pipelines.shapes import VideoShape, frame_count

W, H = 64, 64


def image(seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8))


def generate(pipeline, num_frames=5, seed=0, user=None, **inputs):
    return pipeline(image(0) if user is None else user, num_frames=num_frames, num_inference_steps=2,
                    guidance_scale=1.0, generator=torch.Generator().manual_seed(seed), **inputs).frames


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
    guided = pipe(image(0), garments=[("top", image(1))], prompt="red top", num_frames=5, num_inference_steps=2,
                  guidance_scale=4.0, generator=torch.Generator().manual_seed(0)).frames
    unguided = generate(pipe, garments=[("top", image(1))], prompt="red top")
    assert not np.array_equal(guided, unguided)


def test_diffusers_call_conventions_latents_output_type_return_dict_and_step_callback(tiny_model):
    pipe = tiny_model.pipeline
    latents = generate(pipe, output_type="latent")
    spatial = pipe.vae.config.scale_factor_spatial
    assert latents.shape == (1, pipe.vae.config.z_dim, 2, H // spatial, W // spatial)
    as_tuple = pipe(image(0), num_frames=5, num_inference_steps=2, guidance_scale=1.0, return_dict=False,
                    generator=torch.Generator().manual_seed(0))
    assert isinstance(as_tuple, tuple) and np.array_equal(as_tuple[0], generate(pipe))
    noise = pipe.prepare_latents(pipe.video_shape(W, H, 5), torch.Generator().manual_seed(0))
    assert np.array_equal(generate(pipe, seed=99, latents=noise), generate(pipe))  # given latents replace the draw
    steps = []

    def zero_after_the_last_step(pipeline, step, t, tensors):
        steps.append(step)
        return {"latents": torch.zeros_like(tensors["latents"])} if step == 1 else {}

    zeroed = generate(pipe, output_type="latent", callback_on_step_end=zero_after_the_last_step)
    assert steps == [0, 1] and not zeroed.any()


@pytest.mark.parametrize("change, message", [
    (dict(garments=[("top", image(1))] * 5), "`garments`"),
    (dict(height=96), "`image`"),
    (dict(motion=np.zeros((4, H, W, 3), np.uint8)), "`motion`"),
    (dict(output_type="pil"), "`output_type`"),
])
def test_inputs_that_do_not_fit_name_the_argument(tiny_model, change, message):
    with pytest.raises(ValueError, match=message):
        generate(tiny_model.pipeline, **change)


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
    with pytest.raises(InputError, match="^seconds "):
        frame_count(seconds, 24)
