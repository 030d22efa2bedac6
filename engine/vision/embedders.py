"""Image and text embeddings from a local CLIP-style model (transformers), unit-normalised.

A folder holds a `CLIPModel` (or, for images only, a `CLIPVisionModelWithProjection`) saved
with `save_pretrained`, its `CLIPImageProcessor` (preprocessor_config.json) and, for text, a
tokenizer. Weights are read from .safetensors only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from engine.errors import InputError


def _unit(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.float()
    return (tensor / tensor.norm(dim=-1, keepdim=True).clamp_min(1e-12)).cpu().numpy()


class ClipEmbedder:
    """`images(frames)` → (N, D) and, with a text tower, `text(prompt)` → (1, D); rows of unit length."""

    def __init__(self, folder: str | Path, device: str | torch.device = "cpu") -> None:
        from transformers import AutoConfig, CLIPImageProcessor, CLIPModel, CLIPVisionModelWithProjection

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise InputError("not a model folder (no config.json)", folder)
        self.name = f"CLIP {folder.name}"
        self.device = torch.device(device)
        kind = AutoConfig.from_pretrained(folder).model_type
        model_class = CLIPModel if kind == "clip" else CLIPVisionModelWithProjection
        self.model = model_class.from_pretrained(folder, use_safetensors=True).to(self.device).eval()
        self.image_processor = CLIPImageProcessor.from_pretrained(folder)
        self.tokenizer = None
        if kind == "clip":
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(folder)

    @torch.no_grad()
    def images(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        pixels = self.image_processor(images=list(frames), return_tensors="pt")["pixel_values"].to(self.device)
        if hasattr(self.model, "get_image_features"):
            features = self.model.get_image_features(pixel_values=pixels)
            features = getattr(features, "pooler_output", features)
        else:
            features = self.model(pixel_values=pixels).image_embeds
        return _unit(features)

    @torch.no_grad()
    def text(self, prompt: str) -> np.ndarray:
        if self.tokenizer is None:
            raise InputError("this model has no text tower (a CLIPModel folder is needed)")
        tokens = self.tokenizer([prompt], padding=True, truncation=True, return_tensors="pt").to(self.device)
        features = self.model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        return _unit(getattr(features, "pooler_output", features))


def build_tiny_clip(folder: str | Path, seed: int = 0) -> Path:
    """A random-weight CLIPModel of toy size, its image processor and an offline word-level tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, PreTrainedTokenizerFast

    from engine.vision.vlm import TINY_WORDS

    folder = Path(folder)
    vocab = {token: index for index, token in enumerate(["<pad>", "<unk>", "<bos>", "<eos>", *sorted(set(TINY_WORDS))])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>",
                                        bos_token="<bos>", eos_token="<eos>", model_max_length=32)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=32, eos_token_id=vocab["<eos>"],
                         pad_token_id=vocab["<pad>"], bos_token_id=vocab["<bos>"]),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=8,
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(folder, safe_serialization=True)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
