"""The VLM judge reads its yes/no and digit answers in whatever spelling a chat model gives them."""

import shutil

import pytest
import torch


def byte_level_tokenizer():
    """A small byte-level BPE (GPT-2 / Qwen style: a leading space is part of the token, "ĠYes")."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    backend.train_from_iterator(["Yes, it is. No, it is not.", "Is it? Yes. Is it? No."] * 50, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend)


def test_every_single_token_spelling_of_yes_counts():
    from engine.vision.vlm import answer_token_ids

    tokenizer = byte_level_tokenizer()
    yes = answer_token_ids(tokenizer, "yes")
    for spelling in ("Yes", " Yes"):
        (token,) = tokenizer.encode(spelling, add_special_tokens=False)
        assert token in yes
    assert not set(yes) & set(answer_token_ids(tokenizer, "no"))
    assert tokenizer.encode("Yes", add_special_tokens=False) != tokenizer.encode(" Yes", add_special_tokens=False)


def test_a_model_answering_Yes_with_a_capital_is_a_yes(tiny_vlm_folder, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    from engine.vision.vlm import LocalVLM

    folder = tmp_path / "vlm"
    shutil.copytree(tiny_vlm_folder, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.add_tokens(["Yes", "No"])  # what a chat model's vocabulary has beside "yes" and "no"
    tokenizer.save_pretrained(folder)
    vlm = LocalVLM(folder)
    for answer, expected in (("Yes", 1.0), ("No", 0.0), ("yes", 1.0)):
        one_hot = torch.zeros(len(tokenizer))
        one_hot[tokenizer.convert_tokens_to_ids(answer)] = 1.0
        monkeypatch.setattr(vlm, "next_token_probabilities", lambda images, question, p=one_hot: p)
        assert vlm.yes_probability([], "is it?") == pytest.approx(expected)
