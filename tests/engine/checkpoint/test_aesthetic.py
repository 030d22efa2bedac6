"""The LAION aesthetic predictor converted (`tryon models convert ... --kind aesthetic`) scores as the published
code does: CLIP's processor, CLIP's unit image embedding, the MLP."""

import numpy as np
import pytest
import torch
from torch import nn

from engine.checkpoint.aesthetic import HEAD_LAYOUT, convert_aesthetic
from engine.errors import InputError
from engine.train.scorer import AestheticScorer, make_scorer


def published_mlp() -> nn.Sequential:
    """The improved-aesthetic-predictor's MLP, as its simple_inference.py builds it (in eval mode)."""
    return nn.Sequential(nn.Linear(768, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
                         nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1)).eval()


def random_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {f"layers.{key}": value for key, value in published_mlp().state_dict().items()}


@pytest.fixture
def clip_folder(tmp_path):
    """A tiny CLIP whose projection has ViT-L/14's 768 dimensions, with a processor that resizes and crops."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = tmp_path / "clip-l14"
    config = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=768)
    torch.manual_seed(1)
    CLIPVisionModelWithProjection(config).save_pretrained(folder, safe_serialization=True)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_the_state_dict_keys_are_the_published_layout():
    assert set(random_state_dict()) == {f"layers.{i}.{p}" for i in HEAD_LAYOUT for p in ("weight", "bias")}


def test_the_converted_predictor_scores_as_the_published_code(tmp_path, clip_folder):
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    state = random_state_dict()
    torch.save(state, tmp_path / "sac+logos+ava1-l14-linearMSE.pth")
    folder = convert_aesthetic(tmp_path / "sac+logos+ava1-l14-linearMSE.pth", clip_folder, tmp_path / "aesthetic")
    frames = np.random.default_rng(0).integers(0, 256, (3, 40, 64, 3), dtype=np.uint8)  # landscape: cropped
    scores = make_scorer("auto", str(folder), log=lambda message: None)(frames)

    mlp = published_mlp()
    mlp.load_state_dict({key.removeprefix("layers."): value for key, value in state.items()})
    pixels = CLIPImageProcessor.from_pretrained(clip_folder)(images=list(frames), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        embedding = CLIPVisionModelWithProjection.from_pretrained(clip_folder)(pixel_values=pixels).image_embeds
        expected = mlp(embedding / embedding.norm(dim=-1, keepdim=True))[:, 0]
    assert isinstance(make_scorer("auto", str(folder), log=print), AestheticScorer)
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("damage, problem", [
    (lambda s: s.pop("layers.7.bias"), "missing \\['layers.7.bias'\\]"),
    (lambda s: s.update({"layers.1.weight": torch.zeros(3)}), "unexpected \\['layers.1.weight'\\]"),
    (lambda s: s.update({"layers.0.weight": torch.zeros(1024, 512)}), "layers.0.weight is \\(1024, 512\\)"),
])
def test_a_state_dict_of_another_layout_is_refused(tmp_path, clip_folder, damage, problem):
    state = random_state_dict()
    damage(state)
    torch.save(state, tmp_path / "head.pth")
    with pytest.raises(InputError, match=problem):
        convert_aesthetic(tmp_path / "head.pth", clip_folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


class Payload:
    """Anything beyond tensors and plain containers: what weights_only refuses to unpickle."""


def test_a_pickle_with_objects_is_refused_unopened(tmp_path, clip_folder):
    torch.save({"layers.0.weight": Payload()}, tmp_path / "head.pth")
    with pytest.raises(InputError, match="cannot be read as a state dict of tensors"):
        convert_aesthetic(tmp_path / "head.pth", clip_folder, tmp_path / "out")
