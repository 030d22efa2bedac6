"""Each stage gives exactly what its diffusers pipeline gives when called directly."""

import numpy as np
import pytest
import torch
from PIL import Image

from engine.checkpoint.public.loading import load_part, resolve_route
from engine.pipelines.public.stages import (animate_photo, animate_windows, dress_photo, edit_prompt, follow_motion, to_uint8,
                                  vae_image_area, video_frame_count)

SIZE = (64, 96)


@pytest.fixture(scope="module")
def route(tiny_route):
    return resolve_route(str(tiny_route))


def load(route, name):
    pipeline = load_part(name, route.parts[name], route.folders[name], torch.float32)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def noise_image(seed, size=SIZE):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_edit_stage_is_the_pipeline_called_directly(route):
    pipeline = load(route, "edit")
    user, shirt = noise_image(0), noise_image(1)
    steps = []
    got = dress_photo(pipeline, user, [("top", shirt)], SIZE, 2, 1.0, "blurry", torch.Generator().manual_seed(3),
                      report=lambda done, total: steps.append((done, total)), image_area=64 * 64)
    with vae_image_area(64 * 64):
        direct = pipeline(image=[user, shirt], prompt=edit_prompt(["top"]), negative_prompt="blurry", true_cfg_scale=1.0,
                          height=SIZE[1], width=SIZE[0], num_inference_steps=2,
                          generator=torch.Generator().manual_seed(3), output_type="np").images[0]
    assert got.size == SIZE and np.isfinite(direct).all()
    np.testing.assert_array_equal(np.asarray(got), to_uint8(direct))
    assert steps == [(1, 2), (2, 2)]
    other = dress_photo(pipeline, user, [("top", shirt)], SIZE, 2, 1.0, "blurry", torch.Generator().manual_seed(4),
                        image_area=64 * 64)
    assert not np.array_equal(np.asarray(other), np.asarray(got))  # the seed matters


def test_edit_prompt_names_each_garment_by_category():
    assert edit_prompt(["top"]).startswith("The person in picture 1 wears the top in picture 2.")
    text = edit_prompt(["top", "bottom", "unknown"])
    assert "the top in picture 2, the bottom (trousers or skirt) in picture 3 and the garment in picture 4" in text


def test_i2v_stage_is_the_pipeline_called_directly_and_keeps_exactly_the_frames_asked(route):
    pipeline = load(route, "i2v")
    photo = noise_image(2)
    got = animate_photo(pipeline, photo, "she spins", "blurry", SIZE, 6, 2, 1.0, torch.Generator().manual_seed(5))
    direct = pipeline(image=photo, prompt="she spins", negative_prompt="blurry", height=SIZE[1], width=SIZE[0],
                      num_frames=9, num_inference_steps=2, guidance_scale=1.0,
                      generator=torch.Generator().manual_seed(5), output_type="np").frames[0]
    assert got.shape == (6, SIZE[1], SIZE[0], 3) and got.dtype == np.uint8 and np.isfinite(direct).all()
    np.testing.assert_array_equal(got, to_uint8(direct[:6]))


def test_animate_stage_is_the_pipeline_called_directly_with_windows_chained(route):
    pipeline = load(route, "animate")
    photo = noise_image(3)
    pose = [noise_image(10 + i) for i in range(13)]
    face = [noise_image(40 + i, (16, 16)) for i in range(13)]
    assert animate_windows(13, 9, 1) == 2  # longer than one window
    steps = []
    got = follow_motion(pipeline, photo, pose, face, "she dances", "blurry", SIZE, 9, 1, 2, 1.0,
                        torch.Generator().manual_seed(6), report=lambda done, total: steps.append((done, total)))
    direct = pipeline(image=photo, pose_video=pose, face_video=face, prompt="she dances", negative_prompt="blurry",
                      height=SIZE[1], width=SIZE[0], segment_frame_length=9, prev_segment_conditioning_frames=1,
                      num_inference_steps=2, guidance_scale=1.0, mode="animate",
                      generator=torch.Generator().manual_seed(6), output_type="np").frames[0]
    assert got.shape == (13, SIZE[1], SIZE[0], 3) and np.isfinite(direct).all()
    np.testing.assert_array_equal(got, to_uint8(direct))
    assert steps[-1] == (4, 4) and len(steps) == 4  # 2 steps in each of 2 windows


def test_frame_counts_round_up_to_what_the_wan_vae_decodes():
    assert [video_frame_count(n) for n in (1, 2, 5, 6, 8, 9, 121)] == [1, 5, 5, 9, 9, 9, 121]
    assert [animate_windows(n, 77, 1) for n in (10, 77, 78, 153, 154)] == [1, 1, 2, 2, 3]
