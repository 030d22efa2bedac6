import pytest
import torch
from diffusers import WanTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

from engine.checkpoint.presets import TINY, WAN22_TI2V_5B
from engine.model.transformer_condnet import Condition, CondNetTransformer


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


# ---- motion as attended tokens ----


@pytest.fixture(scope="module")
def attending(base_and_condnet):
    base, _ = base_and_condnet
    return {pool: CondNetTransformer.from_base(base, motion_conditioning="attention", motion_pool=pool).eval()
            for pool in (1, 2)}


@torch.no_grad()
def test_attended_motion_steers_the_video_and_keeps_its_own_tokens_out_of_the_output(attending):
    model = attending[1]
    latents, text = inputs()
    t = torch.tensor([700.0])
    motion = torch.randn_like(latents)
    plain = model(latents, t, text).sample
    steered = model(latents, t, text, motion_latents=motion).sample
    assert steered.shape == plain.shape  # motion tokens are not part of the output
    assert not torch.allclose(steered, plain)  # attended through the base patch embedding from the start
    assert not torch.allclose(model(latents, t, text, motion_latents=-motion).sample, steered)


@pytest.mark.parametrize("form", ["additive", "attention"])
def test_each_motion_form_has_only_parameters_it_uses(base_and_condnet, form):
    model = CondNetTransformer.from_base(base_and_condnet[0], motion_conditioning=form)
    latents, text = inputs()
    model(latents, torch.tensor([700.0]), text, conditions=[Condition("user", latent(2)), Condition("top", latent(3))],
          motion_latents=torch.randn_like(latents)).sample.square().mean().backward()
    unused = sorted(name for name, param in model.named_parameters() if param.grad is None)
    assert unused == []
    assert {name.split(".")[0] for name, _ in model.named_parameters()} >= (
        {"motion_embedding"} if form == "additive" else {"motion_role"})


def test_a_condnet_base_wraps_into_the_other_motion_form_with_the_backbone_kept(base_and_condnet):
    additive = base_and_condnet[1]
    attention = CondNetTransformer.from_base(additive, motion_conditioning="attention")
    assert attention.motion_embedding is None and attention.motion_role is not None
    kept = attention.state_dict()
    assert all(torch.equal(kept[name], value) for name, value in additive.state_dict().items()
               if not name.startswith("motion_embedding"))


def test_motion_tokens_sit_at_the_output_frames_slots_and_pool_to_their_mean_position(attending):
    motion = torch.randn(1, 48, 3, 4, 6)
    tokens, (cos, sin) = attending[1].embed_motion(motion, frame_offset=5)
    assert tokens.shape[1] == 3 * 2 * 3  # 3 frames of 2x3 patches
    expected = attending[1].rotary(torch.arange(5, 8), 2, 3)
    torch.testing.assert_close(cos, expected[0]) and torch.testing.assert_close(sin, expected[1])
    pooled, (cos, _) = attending[2].embed_motion(motion, frame_offset=5)
    assert pooled.shape[1] == 3 * 1 * 2  # 2x3 patches pooled 2x2 (ceil): 1x2 tokens a frame
    rows, columns = torch.tensor([0.5]), torch.tensor([0.5, 2.0])
    torch.testing.assert_close(cos, attending[2].rotary(torch.arange(5, 8), rows, columns)[0])
    patches = attending[2].patch_embedding(motion)[:, :, 0, :2, :2].mean(dim=(2, 3))
    torch.testing.assert_close(pooled[:, 0], patches, atol=1e-5, rtol=1e-5)  # motion_role starts at zero


@torch.no_grad()
def test_video_attends_to_motion_but_motion_and_conditions_do_not_attend_to_the_video(attending):
    """Changing the noisy video leaves the motion tokens' and the conditions' keys unchanged."""
    from engine.model.attention import CondNetAttnProcessor

    model = attending[1]
    keys = []
    original = CondNetAttnProcessor.attend

    def spy(self, query, key, value):
        keys.append(key.clone())
        return original(self, query, key, value)

    latents, text = inputs()
    motion = torch.randn_like(latents)
    runs = []
    for video in (latents, -latents):
        keys.clear()
        CondNetAttnProcessor.attend = spy
        try:
            model(video, torch.tensor([500.0]), text, conditions=[Condition("user", latent(3))], motion_latents=motion)
        finally:
            CondNetAttnProcessor.attend = original
        runs.append(list(keys))
    for layer in range(len(model.blocks)):
        conditions_a, motion_a, video_a = runs[0][3 * layer : 3 * layer + 3]
        conditions_b, motion_b, video_b = runs[1][3 * layer : 3 * layer + 3]
        torch.testing.assert_close(conditions_a, conditions_b)
        torch.testing.assert_close(motion_a, motion_b)
        assert video_a.shape[1] == conditions_a.shape[1] + motion_a.shape[1] + 3 * 2 * 3  # the video sees all
