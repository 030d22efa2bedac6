import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from PIL import Image

from engine.checkpoint import load_model
from engine.errors import InputError
from engine.model.transformer_condnet import CondNetTransformer
from engine.pipelines.pipeline_tryon import TryOnPipeline, to_uint8
from engine.pipelines.shapes import VideoShape, frame_count

W, H = 64, 64
ROOT = Path(__file__).resolve().parents[3]


def image(seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8))


def run(pipeline, num_frames=5, seed=0, user=None, **inputs):
    """What the pipeline returns as `frames`, for the test's defaults and `inputs`."""
    settings = dict(num_frames=num_frames, num_inference_steps=2, guidance_scale=1.0,
                    generator=torch.Generator().manual_seed(seed)) | inputs
    output = pipeline(image(0) if user is None else user, **settings)
    return output if isinstance(output, tuple) else output.frames


def generate(pipeline, num_frames=5, seed=0, user=None, **inputs):
    """The first video as uint8 frames (T, H, W, 3), or the latents for output_type "latent"."""
    frames = run(pipeline, num_frames, seed, user, **inputs)
    return frames if inputs.get("output_type") == "latent" else to_uint8(frames[0])


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
    guided = generate(pipe, garments=[("top", image(1))], prompt="red top", guidance_scale=4.0)
    unguided = generate(pipe, garments=[("top", image(1))], prompt="red top")
    assert not np.array_equal(guided, unguided)


def test_diffusers_call_conventions_latents_output_type_return_dict_and_step_callback(tiny_model):
    pipe = tiny_model.pipeline
    latents = generate(pipe, output_type="latent")
    spatial = pipe.vae.config.scale_factor_spatial
    assert latents.shape == (1, pipe.vae.config.z_dim, 2, H // spatial, W // spatial)
    as_tuple = run(pipe, return_dict=False)
    assert isinstance(as_tuple, tuple) and np.array_equal(to_uint8(as_tuple[0][0]), generate(pipe))
    noise = pipe.prepare_latents(pipe.video_shape(W, H, 5), torch.Generator().manual_seed(0))
    assert np.array_equal(generate(pipe, seed=99, latents=noise), generate(pipe))  # given latents replace the draw
    steps = []

    def zero_after_the_last_step(pipeline, step, t, tensors):
        steps.append(step)
        return {"latents": torch.zeros_like(tensors["latents"])} if step == 1 else {}

    zeroed = generate(pipe, output_type="latent", callback_on_step_end=zero_after_the_last_step)
    assert steps == [0, 1] and not zeroed.any()


def test_output_types_np_floats_pil_pt_and_latent_are_one_video(tiny_model):
    pipe = tiny_model.pipeline
    floats = run(pipe)
    assert floats.dtype == np.float32 and floats.shape == (1, 5, H, W, 3)
    assert 0.0 <= floats.min() and floats.max() <= 1.0 and len(np.unique(floats)) > 256  # not uint8 / 255
    assert np.array_equal(to_uint8(floats[0]), pipe.decode(run(pipe, output_type="latent"))[:5])
    pil = run(pipe, output_type="pil")
    assert len(pil) == 1 and len(pil[0]) == 5 and pil[0][0].size == (W, H)
    assert np.array_equal(np.stack([np.asarray(frame) for frame in pil[0]]), to_uint8(floats[0]))
    tensor = run(pipe, output_type="pt")
    assert tensor.shape == (1, 5, 3, H, W)
    assert np.allclose(tensor.permute(0, 1, 3, 4, 2).numpy(), floats)


def test_given_latents_are_never_written_to(tiny_model):
    pipe = tiny_model.pipeline
    noise = pipe.prepare_latents(pipe.video_shape(W, H, 5), torch.Generator().manual_seed(0))
    kept = noise.clone()
    frames = generate(pipe, latents=noise, anchor_first_frame=True)  # the anchor is written into the latents
    assert torch.equal(noise, kept)
    assert np.array_equal(frames, generate(pipe, anchor_first_frame=True))


def test_prompt_and_negative_prompt_embeds_stand_for_their_prompts(tiny_model):
    pipe = tiny_model.pipeline
    guided = dict(guidance_scale=4.0, garments=[("top", image(1))])
    with_text = generate(pipe, prompt="she spins", negative_prompt="blurry", **guided)
    assert not np.array_equal(with_text, generate(pipe, prompt="she spins", **guided))  # the negative prompt counts
    embedded = generate(pipe, prompt_embeds=pipe.encode_prompt("she spins"),
                        negative_prompt_embeds=pipe.encode_prompt("blurry"), **guided)
    assert np.array_equal(embedded, with_text)


def test_several_videos_per_prompt_each_from_its_own_noise(tiny_model):
    pipe = tiny_model.pipeline
    noise = pipe.prepare_latents(pipe.video_shape(W, H, 5), torch.Generator().manual_seed(0), batch=2)
    inputs = dict(garments=[("top", image(1))], motion=np.full((5, H, W, 3), 90, np.uint8), prompt="she spins",
                  guidance_scale=3.0)
    both = run(pipe, num_videos_per_prompt=2, latents=noise, **inputs)
    assert both.shape == (2, 5, H, W, 3) and not np.allclose(both[0], both[1])
    for index in range(2):
        alone = run(pipe, latents=noise[index : index + 1], **inputs)
        assert np.allclose(both[index], alone[0], atol=1e-5)


def test_the_step_callback_sees_and_replaces_the_named_tensors(tiny_model):
    pipe = tiny_model.pipeline
    seen = []

    def swap_the_prompt(pipeline, step, t, tensors):
        seen.append(sorted(tensors))
        return {"prompt_embeds": pipeline.encode_prompt("she spins")} if step == 0 else {}

    replaced = generate(pipe, callback_on_step_end=swap_the_prompt,
                        callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"])
    assert seen == [["latents", "prompt_embeds"]] * 2
    assert not np.array_equal(replaced, generate(pipe))
    assert not np.array_equal(replaced, generate(pipe, prompt="she spins"))  # the first step kept the old prompt


def test_interrupt_skips_the_remaining_steps_and_the_next_call_runs_them_all(tiny_model):
    pipe = tiny_model.pipeline
    steps, after_first = [], {}

    def stop_after_the_first_step(pipeline, step, t, tensors):
        steps.append(step)
        after_first.setdefault("latents", tensors["latents"].clone())
        pipeline.interrupt = True
        return {}

    stopped = generate(pipe, output_type="latent", num_inference_steps=3, callback_on_step_end=stop_after_the_first_step)
    assert steps == [0] and torch.equal(stopped, after_first["latents"])
    counted = []
    generate(pipe, num_inference_steps=3, callback_on_step_end=lambda p, i, t, x: counted.append(i) or {})
    assert counted == [0, 1, 2]


def test_the_progress_bar_counts_the_steps_and_model_hooks_are_freed(tiny_model, monkeypatch):
    pipe = tiny_model.pipeline
    shown, freed = io.StringIO(), []
    monkeypatch.setattr(pipe, "_progress_bar_config", {"file": shown})
    monkeypatch.setattr(pipe, "maybe_free_model_hooks", lambda: freed.append(True))
    generate(pipe, num_inference_steps=3)
    assert "3/3" in shown.getvalue() and freed == [True]


def test_attention_kwargs_scale_the_lora_layers(tiny_checkpoint):
    peft = pytest.importorskip("peft")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = load_model(str(tiny_checkpoint)).pipeline
    pipe.transformer.add_adapter(peft.LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_v"],
                                                 init_lora_weights=False))
    with_lora, scaled_off = generate(pipe), generate(pipe, attention_kwargs={"scale": 0.0})
    pipe.transformer.disable_adapters()
    without_lora = generate(pipe)
    assert not np.array_equal(with_lora, without_lora)
    assert np.array_equal(scaled_off, without_lora)


@pytest.mark.parametrize("folder", ["weights/demo", "weights/demo-student", "tiny"])
def test_checkpoints_load_with_diffusers_from_pretrained(folder, tiny_checkpoint, tiny_model):
    path = str(tiny_checkpoint) if folder == "tiny" else str(ROOT / folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = tiny_model if folder == "tiny" else load_model(path)
        loaded = [DiffusionPipeline.from_pretrained(path), TryOnPipeline.from_pretrained(path)]
    for pipe in loaded:
        assert type(pipe) is TryOnPipeline and type(pipe.transformer) is CondNetTransformer
        assert np.array_equal(generate(pipe), generate(ours.pipeline))


@pytest.mark.parametrize("change, message", [
    (dict(garments=[("top", image(1))] * 5), "`garments`"),
    (dict(height=96), "`image`"),
    (dict(motion=np.zeros((4, H, W, 3), np.uint8)), "`motion`"),
    (dict(output_type="mp4"), "`output_type`"),
    (dict(latents=torch.zeros(1, 4, 2, 8, 8)), "`latents`"),
    (dict(num_videos_per_prompt=0), "`num_videos_per_prompt`"),
    (dict(prompt="she spins", prompt_embeds=torch.zeros(1, 16, 32)), "`prompt_embeds`"),
    (dict(negative_prompt="blurry", negative_prompt_embeds=torch.zeros(1, 16, 32)), "`negative_prompt_embeds`"),
    (dict(callback_on_step_end=lambda *a: {}, callback_on_step_end_tensor_inputs=["noise"]),
     "`callback_on_step_end_tensor_inputs` has to be in \\['latents', 'flow'"),
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
