"""The models curation runs, each behind a small interface so that another of its kind can stand in.

- `PersonDetector`: frames → person boxes with scores. `RTDetrPersonDetector` is transformers'
  RT-DETR (`PekingU/rtdetr_r50vd` saved locally, or the tiny one `build_tiny_detector` writes).
- `Captioner` / judge: the VLM of engine.vision.vlm (`LocalVLM`): captions, yes/no answers.
- `GarmentEditor`: the image edit model. `take_off(frame, category)` makes a product shot of the
  garment of that category the person wears ("try-off"); `put_on(frame, garment, category)`
  dresses the person in another garment. FashionChameleon uses Qwen-Image-Edit for both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from engine.errors import InputError

PERSON_LABEL = "person"


class PersonDetector(Protocol):
    name: str

    def person_scores(self, frames: list[np.ndarray]) -> list[list[float]]:
        """For each frame (H, W, 3) uint8, the scores of every person box it finds."""
        ...


class GarmentEditor(Protocol):
    name: str

    def take_off(self, frame: Image.Image, category: str) -> Image.Image: ...

    def put_on(self, frame: Image.Image, garment: Image.Image, category: str) -> Image.Image: ...


TAKE_OFF_PROMPT = ("Extract the {category} the person is wearing as a product photo: the garment alone, "
                   "flat, front view, centred on a plain white background, every colour, texture and print kept.")
PUT_ON_PROMPT = ("Dress the person in the first image in the {category} of the second image, keeping the "
                 "person, the pose, the other clothes and the background unchanged.")


class QwenImageEditor:
    """Qwen-Image-Edit (diffusers' `QwenImageEditPlusPipeline`, the public route's edit stage) as a GarmentEditor:
    try-off asks it for the product shot; putting a garment on is the route's own dress stage."""

    def __init__(self, pipeline, steps: int = 40, true_cfg: float = 4.0, seed: int = 0, size: tuple[int, int] | None = None,
                 name: str = "Qwen-Image-Edit") -> None:
        self.pipeline, self.steps, self.true_cfg, self.seed, self.size, self.name = pipeline, steps, true_cfg, seed, size, name
        pipeline.set_progress_bar_config(disable=True)  # curation shows its own progress

    def _edit(self, images: list[Image.Image], prompt: str) -> Image.Image:
        width, height = self.size or images[0].size
        generator = torch.Generator("cpu").manual_seed(self.seed)
        result = self.pipeline(image=images, prompt=prompt, negative_prompt=" ", true_cfg_scale=self.true_cfg,
                               width=width, height=height, num_inference_steps=self.steps, generator=generator,
                               output_type="pil")
        return result.images[0].convert("RGB")

    def take_off(self, frame: Image.Image, category: str) -> Image.Image:
        return self._edit([frame], TAKE_OFF_PROMPT.format(category=category))

    def put_on(self, frame: Image.Image, garment: Image.Image, category: str) -> Image.Image:
        """The public route's dress stage (engine.pipelines.public.stages.dress_photo) with one garment."""
        from engine.pipelines.public.stages import dress_photo

        generator = torch.Generator("cpu").manual_seed(self.seed)
        return dress_photo(self.pipeline, frame, [(category, garment)], self.size or frame.size, self.steps,
                           self.true_cfg, " ", generator)


def check_detector_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise InputError("not a detector folder (no config.json)", folder)
    return folder


class RTDetrPersonDetector:
    """transformers' RT-DETR: boxes of the label named "person" (COCO's class 0 when unnamed)."""

    def __init__(self, folder: str | Path, device: str | torch.device = "cpu") -> None:
        from transformers import RTDetrForObjectDetection, RTDetrImageProcessorPil

        folder = check_detector_folder(folder)
        self.name = f"RT-DETR {folder.name}"
        self.device = torch.device(device)
        self.processor = RTDetrImageProcessorPil.from_pretrained(folder)
        self.model = RTDetrForObjectDetection.from_pretrained(folder, use_safetensors=True).to(self.device).eval()
        labels = {name.lower(): int(index) for index, name in self.model.config.id2label.items()}
        self.person = labels.get(PERSON_LABEL, 0)

    @torch.no_grad()
    def person_scores(self, frames: list[np.ndarray]) -> list[list[float]]:
        inputs = self.processor(images=list(frames), return_tensors="pt").to(self.device)
        outputs = self.model(**inputs)
        sizes = torch.tensor([frame.shape[:2] for frame in frames])
        results = self.processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=sizes)
        return [[float(score) for score, label in zip(result["scores"], result["labels"]) if int(label) == self.person]
                for result in results]


def build_tiny_detector(folder: str | Path, seed: int = 0) -> Path:
    """A random-weight RT-DETR of toy size (its real classes, a small ResNet backbone), saved to `folder`."""
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrImageProcessorPil, RTDetrResNetConfig

    folder = Path(folder)
    backbone = RTDetrResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                                  layer_type="basic", out_features=["stage2", "stage3", "stage4"])
    config = RTDetrConfig(
        backbone_config=backbone, d_model=16, encoder_hidden_dim=16, encoder_in_channels=[16, 24, 32],
        encoder_ffn_dim=32, encoder_attention_heads=2, encoder_layers=1, decoder_layers=1, decoder_ffn_dim=32,
        decoder_attention_heads=2, decoder_in_channels=[16, 16, 16], num_queries=10, num_labels=2,
        id2label={0: PERSON_LABEL, 1: "other"}, label2id={PERSON_LABEL: 0, "other": 1}, num_denoising=0,
        use_pretrained_backbone=False,
    )
    torch.manual_seed(seed)
    RTDetrForObjectDetection(config).save_pretrained(folder, safe_serialization=True)
    RTDetrImageProcessorPil(size={"height": 64, "width": 64}).save_pretrained(folder)
    return folder
