"""The public route's live stream: LongLive's stream section, the switch, the editor, the memory plan.

The chunk runner at LongLive's configuration is checked against a masked full pass in
tests/engine/model/test_kv_cache.py."""

import numpy as np
import pytest
import torch
from PIL import Image

from engine.api.route_stream import LiveRoute
from engine.checkpoint.convert import LONGLIVE_STREAM
from engine.checkpoint.public import load_route
from engine.checkpoint.public.sizes import live_memory_problem, live_plan
from engine.modes import RunOptions
from engine.pipelines.pipeline_tryon_streaming import renoise_sigmas
from engine.pipelines.public.stages import vae_image_area
from engine.pipelines.public.stream import LiveSettings
from engine.api.options import resolve_run

SIZE = (64, 96)


def test_longlive_stream_section_is_what_the_runner_takes():
    settings = LiveSettings.from_section(LONGLIVE_STREAM)
    assert (settings.chunk_frames, settings.window) == (8, 3)  # 32 frames of window: the chunk and 3 before it
    assert settings.sigmas == pytest.approx(tuple(renoise_sigmas(4, 5.0)))
    other = LiveSettings.from_section({**LONGLIVE_STREAM, "chunk_frames": 5, "local_window_frames": 12,
                                       "timesteps": [1000, 500], "shift": 3.0})
    assert (other.chunk_frames, other.window, other.stream_config().steps) == (5, 2, 2)
    assert other.sigmas == pytest.approx((1.0, 0.75))


class SpyEditor:
    """The editor pipeline, recording what each call is given."""

    def __init__(self, pipeline) -> None:
        self.pipeline = pipeline
        self.calls: list[dict] = []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        return self.pipeline(**kwargs)


def noise_image(seed: int, size=SIZE) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def live(tiny_route):
    runtime = resolve_run(RunOptions(model=str(tiny_route), device="cpu"))
    live = LiveRoute(load_route(str(tiny_route), runtime), runtime, SIZE)
    live.editor = SpyEditor(live.editor)
    return live


@pytest.mark.slow
def test_a_switch_redresses_the_last_frame_with_the_photo_second_clears_the_old_outfit_and_keeps_counting(live):
    photo, top, dress = noise_image(1), noise_image(2), noise_image(3)
    start = live.dress(photo, [("top", top)], seed=0)
    assert live.editor.calls[-1]["image"][0] is photo and len(live.editor.calls[-1]["image"]) == 2
    stream = live.stream(start=start, photo=photo, prompt="she turns", seed=0, show_start=True)
    first = stream.next_chunk()
    assert len(first) == 1 + 4 * 8 and np.array_equal(first[0], start[0])  # the dressed photo, then a chunk
    second = stream.next_chunk()
    assert stream.cache.frames("sink") == 1 and stream.cache.history_chunks() == 2
    position = stream.position

    stream.switch([("dress", dress)])
    stream.wait_for_edits()
    call = live.editor.calls[-1]
    assert np.array_equal(np.asarray(call["image"][0]), second[-1])  # the last frame shown
    assert call["image"][1] is photo and call["image"][2] is dress  # the photo, second, for identity
    assert stream.land_switches() == 1 and stream.edits_pending == 0
    assert stream.cache.frames("sink") == 1 and stream.cache.history_chunks() == 0  # the old outfit withdrawn
    assert stream.position == position + 1  # the re-dressed frame took the next RoPE position
    third = stream.next_chunk(10)
    assert len(third) == 10 and stream.frames_made == len(first) + len(second) + 10
    assert stream.cache.history_chunks() == 1 and stream.position == position + 1 + 3
    stream.close()


def test_the_real_route_without_a_converted_student_says_how_to_make_one():
    from engine.checkpoint.public import PUBLIC
    from engine.checkpoint.public.loading import RouteSource, live_part
    from engine.errors import InputError

    with pytest.raises(InputError) as caught:
        live_part(RouteSource(PUBLIC, {}, {}, "public"), "stream", environ={})
    message = str(caught.value)
    assert "\n" not in message and "Efficient-Large-Model/LongLive-2.0-5B model_bf16.pt" in message
    assert "--from longlive" in message and "TRYON_PUBLIC_STREAM_DIR" in message


def test_memory_plan_says_what_does_not_fit_on_one_line():
    assert live_plan(True).total_gib < 80 < live_plan(False).total_gib  # one 80 GB GPU needs the FP8 editor
    problem = live_memory_problem(79.0, fp8=False, size=(1280, 704))
    assert "add --fp8" in problem and "79 GiB" in problem and "\n" not in problem
    assert live_memory_problem(79.0, fp8=True, size=(1280, 704)) is None
    assert "more memory" in live_memory_problem(40.0, fp8=True, size=(1280, 704))


@pytest.mark.slow
def test_lightning_is_the_editor_s_lora_and_scheduler_and_dress_can_turn_it_off(live):
    import math

    route, photo, top = live.route, noise_image(4), noise_image(5)

    def edit(lightning: bool) -> np.ndarray:
        pipeline = route.editor(lightning)
        with vae_image_area(route.preset.edit_image_area):
            result = pipeline(image=[photo, top], prompt="wear it", height=SIZE[1], width=SIZE[0], num_inference_steps=2,
                              generator=torch.Generator().manual_seed(0), output_type="np", true_cfg_scale=1.0)
        return pipeline.scheduler.config, result.images[0]

    lightning_config, with_lora = edit(True)
    full_config, without = edit(False)
    assert lightning_config.base_shift == pytest.approx(math.log(3)) and full_config.base_shift == 0.5
    assert np.isfinite(without).all() and not np.allclose(with_lora, without)  # the LoRA changes the edit
    _, again = edit(True)
    np.testing.assert_allclose(again, with_lora, atol=1e-6)


@pytest.mark.slow
def test_with_fp8_the_lightning_editor_runs_its_lora_in_the_compute_dtype(tiny_route):
    """--fp8-weights stores the editor's transformer in 8 bits; the LoRA loaded onto it must still compute."""
    from engine.modes import Acceleration

    runtime = resolve_run(RunOptions(model=str(tiny_route), device="cpu", acceleration=Acceleration(fp8_weights=True)))
    live = LiveRoute(load_route(str(tiny_route), runtime), runtime, SIZE)
    lora = [p for name, p in live.editor.transformer.named_parameters() if "lora_" in name]
    assert lora and all(p.dtype == runtime.dtype for p in lora)
    dressed = live.dress(noise_image(6), [("top", noise_image(7))], seed=0)
    assert dressed.shape == (1, SIZE[1], SIZE[0], 3)


def test_dress_picks_its_editor_from_the_environment_and_refuses_a_typo():
    from engine.checkpoint.public.route import lightning_for_dress
    from engine.errors import InputError

    assert not lightning_for_dress({}) and lightning_for_dress({"TRYON_PUBLIC_EDITOR": "lightning"})
    with pytest.raises(InputError, match="full or lightning"):
        lightning_for_dress({"TRYON_PUBLIC_EDITOR": "lightnin"})
