import numpy as np
import pytest
import torch

from engine.train.config import Stage, TrainConfig
from engine.train.flow import (
    Draw,
    Encoded,
    draw,
    flow_example,
    flow_loss,
    group_by_layout,
    shift_sigma,
)

C, F, H, W = 48, 3, 2, 2


def encoded(seed: int = 0, garments=("top", "bottom")) -> Encoded:
    g = torch.Generator().manual_seed(seed)
    return Encoded(
        target=torch.randn(1, C, F, H, W, generator=g),
        user=torch.randn(1, C, 1, H, W, generator=g),
        garments=[(role, torch.randn(1, C, 1, H, W, generator=g)) for role in garments],
        motion=torch.randn(1, C, F, H, W, generator=g),
        text=torch.ones(1, 4, 8),
    )


def choice(**changes) -> Draw:
    return Draw(**{"sigma": 0.25, "noise_seed": 7, "drop_conditions": False, "drop_motion": False,
                   "dance": False, "unknown_garments": (False, False), **changes})


EMPTY = torch.zeros(1, 4, 8)


def test_the_shift_keeps_the_ends_and_moves_sigmas_up():
    assert shift_sigma(0.0, 3.0) == 0.0 and shift_sigma(1.0, 3.0) == pytest.approx(1.0)
    assert shift_sigma(0.5, 1.0) == 0.5 and shift_sigma(0.5, 3.0) == pytest.approx(0.75)


def test_a_plain_example_interpolates_noise_and_predicts_the_flow():
    example = encoded()
    batch = flow_example(example, choice(), EMPTY)
    noise = batch.flow + example.target
    assert torch.allclose(batch.noisy, 0.75 * example.target + 0.25 * noise, atol=1e-6)
    assert torch.equal(batch.timestep, torch.full((1, F), 250.0))
    assert [c.role for c in batch.conditions] == ["user", "top", "bottom"]
    assert torch.equal(batch.conditions[0].latent, example.user)
    assert batch.motion is example.motion and batch.text is example.text
    assert batch.loss_frames.all()


def test_condition_dropout_is_the_samplers_unconditional_branch():
    batch = flow_example(encoded(), choice(drop_conditions=True), EMPTY)
    assert [c.role for c in batch.conditions] == ["user"]
    assert batch.text is EMPTY and batch.motion is not None


def test_a_dance_example_anchors_the_clean_first_frame_at_timestep_zero():
    example = encoded()
    batch = flow_example(example, choice(dance=True), EMPTY)
    assert [c.role for c in batch.conditions] == ["user"]
    assert torch.equal(batch.conditions[0].latent, example.target[:, :, :1])
    assert torch.equal(batch.noisy[:, :, 0], example.target[:, :, 0])
    assert batch.timestep[0].tolist() == [0.0, 250.0, 250.0]
    assert batch.loss_frames[0].tolist() == [False, True, True]
    predicted = batch.flow.clone()
    predicted[:, :, 0] += 100.0  # the anchored frame does not count
    assert flow_loss(predicted, batch).item() == 0.0


def test_category_dropout_and_motion_dropout():
    batch = flow_example(encoded(), choice(unknown_garments=(False, True), drop_motion=True), EMPTY)
    assert [c.role for c in batch.conditions] == ["user", "top", "unknown"]
    assert batch.motion is None


def test_draws_follow_the_stream_position_only():
    config = TrainConfig([Stage("s", 1, (32, 32), 1)], p_dance=0.5)
    first = [draw(np.random.default_rng([0, 0, 0, p]), config, 3.0, 2, 2) for p in range(50)]
    again = [draw(np.random.default_rng([0, 0, 0, p]), config, 3.0, 2, 2) for p in range(50)]
    assert first == again
    assert 0 < sum(d.dance for d in first) < 50
    single_frame = [draw(np.random.default_rng([0, 0, 0, p]), config, 3.0, 2, 1) for p in range(50)]
    assert not any(d.dance for d in single_frame)


def test_examples_sharing_a_layout_share_a_forward_pass():
    plain = [flow_example(encoded(seed), choice(noise_seed=seed), EMPTY) for seed in range(2)]
    dropped = flow_example(encoded(5), choice(drop_conditions=True), EMPTY)
    groups = group_by_layout([plain[0], dropped, plain[1]])
    assert [len(g.noisy) for g in groups] == [2, 1]
    assert torch.equal(groups[0].conditions[1].latent[1], plain[1].conditions[1].latent[0])
    assert torch.equal(flow_loss(groups[0].flow, groups[0]), torch.zeros(2))


def test_a_bf16_run_encodes_under_its_autocast_and_keeps_fp32_latents(tiny_model):
    import functools

    from engine.train.data import open_dataset
    from engine.train.flow import Encoder

    stage = Stage(name="clips", steps=1, size=(32, 32), num_frames=5, fps=8)
    dataset = open_dataset("synthetic", stage, TrainConfig(stages=(stage,), synthetic_examples=1))
    bf16 = functools.partial(torch.autocast, "cpu", dtype=torch.bfloat16)
    plain = Encoder(tiny_model.pipeline, cache=False).example(dataset, 0)
    mixed = Encoder(tiny_model.pipeline, cache=False, autocast=bf16).example(dataset, 0)
    assert mixed.target.dtype == torch.float32 and not torch.equal(mixed.target, plain.target)
    assert torch.allclose(mixed.target, plain.target, atol=0.1)  # bf16's rounding, nothing more
