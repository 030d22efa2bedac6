import pytest
import torch
from diffusers import WanTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

from tryon.checkpoint.presets import TINY, WAN22_TI2V_5B
from tryon.model.transformer_condnet import Condition, CondNetTransformer


@pytest.fixture(scope="module")
def base_and_condnet():
    torch.manual_seed(0)
    base = WanTransformer3DModel(**TINY.transformer).eval()
    return base, CondNetTransformer.from_base(base).eval()


def inputs(frames=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, 48, frames, 4, 6, generator=g)
    text = torch.randn(1, 5, TINY.transformer["text_dim"], generator=g)
    return latents, text


def latent(seed):
    return torch.randn(1, 48, 1, 4, 6, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_fresh_condnet_without_conditions_is_the_base_model(base_and_condnet):
    base, model = base_and_condnet
    latents, text = inputs()
    t = torch.tensor([700.0])
    assert model.condnet_is_zero()
    expected = base(latents, t, text).sample
    torch.testing.assert_close(model(latents, t, text).sample, expected, atol=1e-5, rtol=1e-5)
    # zero-initialised motion input changes nothing either
    with_motion = model(latents, t, text, motion_latents=torch.randn_like(latents)).sample
    torch.testing.assert_close(with_motion, expected, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_per_frame_timesteps_match_expanded_scalar(base_and_condnet):
    _, model = base_and_condnet
    latents, text = inputs()
    scalar = model(latents, torch.tensor([300.0]), text).sample
    per_frame = model(latents, torch.full((1, 3), 300.0), text).sample
    torch.testing.assert_close(per_frame, scalar)
    mixed = model(latents, torch.tensor([[0.0, 300.0, 300.0]]), text).sample
    assert not torch.allclose(mixed, scalar)


def test_rotary_matches_diffusers_for_video_frames(base_and_condnet):
    _, model = base_and_condnet
    rope = WanRotaryPosEmbed(TINY.transformer["attention_head_dim"], (1, 2, 2), 1024)
    expected_cos, expected_sin = rope(torch.zeros(1, 48, 3, 8, 12))
    cos, sin = model.rotary(torch.arange(3), 4, 6)
    torch.testing.assert_close(cos, expected_cos.float())
    torch.testing.assert_close(sin, expected_sin.float())


@torch.no_grad()
def test_condition_tokens_never_see_the_video(base_and_condnet):
    """Conditions attend only among themselves: their hidden states (hence K/V) are video-independent."""
    _, model = base_and_condnet
    conditions = [Condition("user", latent(10)), Condition("top", latent(11))]
    captured = []
    hook = model.blocks[-1].register_forward_hook(lambda m, a, out: captured.append(out.clone()))
    try:
        _, text = inputs()
        for seed in (1, 2):
            latents, _ = inputs(seed=seed)
            model(latents, torch.tensor([500.0]), text, conditions=conditions)
    finally:
        hook.remove()
    n = 2 * 2 * 3  # two condition images of 2×3 patches
    torch.testing.assert_close(captured[0][:, :n], captured[1][:, :n])
    assert not torch.allclose(captured[0][:, n:], captured[1][:, n:])


@torch.no_grad()
@pytest.mark.parametrize("garments", [0, 1, 4])
def test_zero_to_four_garments_in_one_pass(base_and_condnet, garments):
    _, model = base_and_condnet
    latents, text = inputs()
    conditions = [Condition("user", latent(0))] + [Condition("unknown", latent(i + 1)) for i in range(garments)]
    out = model(latents, torch.tensor([500.0]), text, conditions=conditions).sample
    assert out.shape == latents.shape
    assert torch.isfinite(out).all()


@torch.no_grad()
def test_role_and_motion_embeddings_steer_the_output_once_trained():
    torch.manual_seed(0)
    model = CondNetTransformer(**TINY.transformer).eval()
    torch.nn.init.normal_(model.role_embedding.weight, std=1.0)
    torch.nn.init.normal_(model.motion_embedding.weight, std=0.1)
    assert not model.condnet_is_zero()
    latents, text = inputs()
    t = torch.tensor([500.0])
    as_top = model(latents, t, text, conditions=[Condition("user", latent(0)), Condition("top", latent(1))]).sample
    as_dress = model(latents, t, text, conditions=[Condition("user", latent(0)), Condition("dress", latent(1))]).sample
    assert not torch.allclose(as_top, as_dress)
    still = model(latents, t, text).sample
    moving = model(latents, t, text, motion_latents=torch.randn_like(latents)).sample
    assert not torch.allclose(still, moving)


def test_production_preset_has_five_billion_transformer_parameters():
    with torch.device("meta"):
        model = CondNetTransformer(**WAN22_TI2V_5B.transformer)
    total = sum(p.numel() for p in model.parameters())
    condnet = sum(p.numel() for p in model.condnet_parameters())
    assert round(total / 1e9, 1) == 5.0
    assert 0 < condnet < 1e6
    assert model.config.num_layers == 30 and model.config.num_attention_heads * model.config.attention_head_dim == 3072
