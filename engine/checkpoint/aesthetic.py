"""The LAION aesthetic predictor as the folder GR-DMD's aesthetic scorer reads (engine.train.scorer).

The published predictor (christophschuhmann/improved-aesthetic-predictor, e.g.
`sac+logos+ava1-l14-linearMSE.pth`) is an MLP on the L2-normalised image embedding of CLIP
ViT-L/14: five Linear layers at indices 0, 2, 4, 6 and 7 of an `nn.Sequential` (Dropout between
the first four, no activations), saved as a PyTorch state dict. Converted, it is a folder of

- `clip/`: CLIP's vision tower with its projection (`CLIPVisionModelWithProjection`, .safetensors)
  and its `CLIPImageProcessor`, so frames get CLIP's own resize, centre crop and normalisation;
- `head.safetensors`: the MLP's tensors under their own names (`layers.<i>.weight/bias`).

The state dict is a pickle: it is read with `torch.load(weights_only=True)`, which unpickles
tensors and plain containers only, never code.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from engine.checkpoint.store import write_folder
from engine.errors import InputError
from engine.paths import check_replaceable

HEAD_FILE = "head.safetensors"
CLIP_FOLDER = "clip"
# The published MLP's Linear layers: index in its nn.Sequential -> (out, in) features.
HEAD_LAYOUT = {0: (1024, 768), 2: (128, 1024), 4: (64, 128), 6: (16, 64), 7: (1, 16)}


def expected_head_shapes() -> dict[str, tuple[int, ...]]:
    shapes = {}
    for index, (out_features, in_features) in HEAD_LAYOUT.items():
        shapes[f"layers.{index}.weight"] = (out_features, in_features)
        shapes[f"layers.{index}.bias"] = (out_features,)
    return shapes


def read_aesthetic_head(path: Path) -> dict[str, torch.Tensor]:
    """The predictor's MLP from its `.pth` state dict (or a `.safetensors` of the same tensors), checked
    key by key against the published layout."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file (the aesthetic predictor's .pth)", path)
    if path.suffix == ".safetensors":
        state = load_file(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # weights_only refuses anything but tensors and plain containers
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise InputError(f"cannot be read as a state dict of tensors: {first_line[:200]}", path) from None
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise InputError("is not a state dict of tensors (the aesthetic predictor's MLP)", path)
    expected = expected_head_shapes()
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    if missing or unexpected:
        raise InputError(f"is not the aesthetic predictor's MLP on CLIP ViT-L/14: missing {missing or 'nothing'}, "
                         f"unexpected {unexpected or 'nothing'}", path)
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise InputError(f"{key} is {tuple(state[key].shape)}, the published layout's is {shape}", path)
    return {key: state[key].float().contiguous() for key in expected}


def is_aesthetic_folder(folder: Path) -> bool:
    return (Path(folder) / HEAD_FILE).is_file() and (Path(folder) / CLIP_FOLDER).is_dir()


def check_aesthetic_target(folder: Path) -> None:
    """`folder` may receive the converted predictor: absent, empty, a file, or an aesthetic folder already."""
    check_replaceable(folder, is_aesthetic_folder, "aesthetic predictor")


def convert_aesthetic(source: Path, clip: Path, folder: Path) -> Path:
    """Write the aesthetic folder (see the module docstring) from the predictor's state dict `source` and a
    local CLIP folder `clip` (a transformers CLIPModel or CLIPVisionModelWithProjection, e.g.
    openai/clip-vit-large-patch14, with its preprocessor_config.json)."""
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    head = read_aesthetic_head(source)
    clip = Path(clip)
    for name in ("config.json", "preprocessor_config.json"):
        if not (clip / name).is_file():
            raise InputError(f"not a CLIP model folder (no {name})", clip)
    check_aesthetic_target(folder)
    vision = CLIPVisionModelWithProjection.from_pretrained(clip, use_safetensors=True)
    processor = CLIPImageProcessor.from_pretrained(clip)
    in_features = HEAD_LAYOUT[0][1]
    if vision.config.projection_dim != in_features:
        raise InputError(f"embeds images in {vision.config.projection_dim} dimensions; the predictor takes "
                         f"CLIP ViT-L/14's {in_features}", clip)

    def write(staging: Path) -> None:
        vision.save_pretrained(staging / CLIP_FOLDER, safe_serialization=True)
        processor.save_pretrained(staging / CLIP_FOLDER)
        save_file(head, staging / HEAD_FILE)

    return write_folder(Path(folder), write, check_aesthetic_target)
