"""A local vision-language model (Qwen2.5-VL class, through transformers): captions, yes/no, ratings.

Used by `tryon data curate` (static and dynamic captions, garment validation) and by
`tryon eval --bench hgc` (the HGC/LGC/NTP judge). A model folder holds what
`Qwen2_5_VLForConditionalGeneration.from_pretrained`, `AutoTokenizer.from_pretrained` and
`Qwen2VLImageProcessorPil.from_pretrained` read (`Qwen/Qwen2.5-VL-7B-Instruct` saved locally,
or the tiny one `build_tiny_vlm` writes); weights are read from .safetensors only and no
code from the folder is run.

The inputs are built here rather than by `Qwen2_5_VLProcessor`, which in transformers 5 cannot
be made without torchvision (its video processor needs it): each image's `<|image_pad|>`
becomes grid_t·grid_h·grid_w / merge_size² pads, as the processor does. Prompts are written
in Qwen's chat format by hand (`chat`), so a folder needs no chat template.
Answers that must be a choice are read from the next-token distribution rather than from
sampled text: `rate` is the expected value over the digits 1..5, `yes_probability` is
P(yes) / (P(yes) + P(no)) — well defined whatever the model, even an untrained one. Each answer's
probability is summed over every single-token spelling of it (`answer_token_ids`): chat models
answer "Yes", and byte-level tokenizers have a token for " Yes" as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.errors import InputError

IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]
DIGITS = ("1", "2", "3", "4", "5")
TINY_WORDS = """
a an the and or of in on at to with without is are this that it its from one two first rest video frames frame
image images person people man woman garment garments top bottom dress shirt trousers skirt jacket product shot
white background rate how well answer digit yes no describe scene appearance action motion camera static moving
walks dances turns raises arms stands still indoor outdoor wearing wears colour color texture pattern style shape
category fine details face hair body clothes other preserved everything except keeps matches same shown only
""".split()


def chat(question: str, images: int) -> str:
    """One user turn with `images` images, then the assistant's turn (Qwen's chat format)."""
    return (f"<|im_start|>user\n{IMAGE * images}{question}<|im_end|>\n"
            "<|im_start|>assistant\n")


def answer_token_ids(tokenizer, word: str) -> list[int]:
    """The ids of every single-token spelling of `word`: as given, capitalised and in capitals, each with
    and without a leading space."""
    ids = set()
    for spelling in {word, word.capitalize(), word.upper()}:
        for text in (spelling, " " + spelling):
            encoded = tokenizer.encode(text, add_special_tokens=False)
            if len(encoded) == 1 and encoded[0] != tokenizer.unk_token_id:
                ids.add(encoded[0])
    if not ids:
        raise InputError(f"the vision-language model's tokenizer has no single token for the answer '{word}'")
    return sorted(ids)


def _answer_probabilities(probabilities: torch.Tensor, answers: list[list[int]]) -> torch.Tensor:
    """Each answer's probability: the sum over its spellings' tokens."""
    return torch.stack([probabilities[ids].sum() for ids in answers])


def check_vlm_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise InputError("not a vision-language model folder (no config.json)", folder)
    return folder


class LocalVLM:
    """A Qwen2.5-VL-class model from a local folder, on `device`."""

    def __init__(self, folder: str | Path, device: str | torch.device = "cpu") -> None:
        from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

        folder = check_vlm_folder(folder)
        self.folder, self.device = folder, torch.device(device)
        self.name = f"VLM {folder.name}"
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.image_processor = Qwen2VLImageProcessorPil.from_pretrained(folder)
        self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, use_safetensors=True).to(self.device)
        self.model.eval()
        self.digit_ids = [answer_token_ids(self.tokenizer, digit) for digit in DIGITS]
        self.yes_no_ids = [answer_token_ids(self.tokenizer, word) for word in ("yes", "no")]

    def _inputs(self, images: Sequence[Image.Image | np.ndarray], question: str) -> dict:
        pictures = [image if isinstance(image, Image.Image) else Image.fromarray(image) for image in images]
        text = chat(question, len(pictures))
        inputs = {}
        if pictures:
            vision = self.image_processor(images=pictures, return_tensors="pt")
            merge = self.image_processor.merge_size ** 2
            for grid in vision["image_grid_thw"]:
                text = text.replace(IMAGE, IMAGE.replace("<|image_pad|>", "<|placeholder|>" * int(grid.prod() // merge)), 1)
            text = text.replace("<|placeholder|>", "<|image_pad|>")
            inputs = {"pixel_values": vision["pixel_values"], "image_grid_thw": vision["image_grid_thw"]}
        tokens = self.tokenizer([text], return_tensors="pt")
        inputs.update(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        return {key: value.to(self.device) for key, value in inputs.items()}

    @torch.no_grad()
    def next_token_probabilities(self, images: Sequence[Image.Image | np.ndarray], question: str) -> torch.Tensor:
        logits = self.model(**self._inputs(images, question)).logits[0, -1].float()
        return logits.softmax(dim=-1)

    def rate(self, images: Sequence[Image.Image | np.ndarray], question: str) -> float:
        """The expected answer on 1..5: sum_k k · P(k) / sum_k P(k) over the digit tokens."""
        probabilities = _answer_probabilities(self.next_token_probabilities(images, question), self.digit_ids)
        return float((probabilities / probabilities.sum() * torch.arange(1, 6)).sum())

    def yes_probability(self, images: Sequence[Image.Image | np.ndarray], question: str) -> float:
        """P(yes) / (P(yes) + P(no)) for the answer's first token."""
        yes, no = _answer_probabilities(self.next_token_probabilities(images, question), self.yes_no_ids).tolist()
        return yes / (yes + no) if yes + no > 0 else 0.5

    @torch.no_grad()
    def describe(self, images: Sequence[Image.Image | np.ndarray], question: str, max_new_tokens: int = 60) -> str:
        """The model's answer, greedy."""
        inputs = self._inputs(images, question)
        output = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        answer = output[0, inputs["input_ids"].shape[1]:]
        return self.tokenizer.decode(answer, skip_special_tokens=True).strip()


def build_tiny_vlm(folder: str | Path, seed: int = 0) -> Path:
    """Write a random-weight Qwen2.5-VL of toy size, with an offline word-level tokenizer, to `folder`."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLImageProcessorPil,
    )

    folder = Path(folder)
    words = sorted(set(TINY_WORDS) | set(DIGITS) | set(".,:;!?"))
    vocab = {token: index for index, token in enumerate([*SPECIAL_TOKENS, "<unk>", *words])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<|endoftext|>",
                                        eos_token="<|im_end|>", additional_special_tokens=SPECIAL_TOKENS)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16, patch_size=14,
                                               merge_size=2, temporal_patch_size=2)
    hidden = 32
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                          "mrope_section": [2, 3, 3]},
                         bos_token_id=vocab["<|endoftext|>"], eos_token_id=vocab["<|im_end|>"],
                         pad_token_id=vocab["<|endoftext|>"]),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=hidden,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                           fullatt_block_indexes=[1]),
        image_token_id=vocab["<|image_pad|>"], video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"], vision_end_token_id=vocab["<|vision_end|>"],
        bos_token_id=vocab["<|endoftext|>"], eos_token_id=vocab["<|im_end|>"], pad_token_id=vocab["<|endoftext|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.pad_token_id = vocab["<|endoftext|>"]
    model.generation_config.eos_token_id = vocab["<|im_end|>"]
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    image_processor.save_pretrained(folder)
    return folder
