"""Qwen2.5-VL's processor for the edit stage: images and text, no video.

`QwenImageEditPlusPipeline` sends its text encoder images and text only. transformers'
`Qwen2VLProcessor` also insists on a video processor, which needs torchvision; this subclass
drops it and is otherwise the same class, so the edit stage runs without torchvision.
"""

from __future__ import annotations

from transformers import Qwen2VLProcessor
from transformers.processing_utils import ProcessorMixin


class EditProcessor(Qwen2VLProcessor):
    """`Qwen2VLProcessor` for images and text (loads a Hub `processor/` folder's tokenizer and image processor)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)
