"""LPIPS (Zhang et al. 2018), used only when it can run fully offline.

LPIPS needs the `lpips` package, its linear-layer weights (shipped inside the package as
`lpips/weights/v0.1/alex.pth`) and torchvision's ImageNet AlexNet checkpoint already in the
torch hub cache (`<torch.hub.get_dir()>/checkpoints/alexnet-owt-7be5be79.pth`). When any of
them is missing the score is None and a one-line notice says why ("LPIPS skipped: ...").
Nothing is ever downloaded: the backbone is built untrained and loaded from the cached file.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

LPIPS_NET = "alex"
LPIPS_VERSION = "0.1"
ALEXNET_CHECKPOINT = "alexnet-owt-7be5be79.pth"
"""File name torchvision gives its ImageNet AlexNet weights in the torch hub cache."""

_FRAMES_PER_BATCH = 8


def _weight_files(lpips_module: Any) -> tuple[Path, Path]:
    """(linear-layer weights inside the package, AlexNet backbone in the torch hub cache)."""
    package_dir = Path(lpips_module.__file__).resolve().parent
    linear = package_dir / "weights" / f"v{LPIPS_VERSION}" / f"{LPIPS_NET}.pth"
    backbone = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_CHECKPOINT
    return linear, backbone


def _backbone_state(model: Any, checkpoint: Path) -> dict[str, torch.Tensor]:
    """torchvision AlexNet `features.<i>.*` tensors renamed to lpips' `slice<k>.<i>.*` keys."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return {key: state["features." + key.split(".", 1)[1]] for key in model.net.state_dict()}


@functools.lru_cache(maxsize=1)
def _load_lpips() -> tuple[Any | None, str | None]:
    """(model, None) when LPIPS can run offline, else (None, "LPIPS skipped: <why>")."""
    try:
        import lpips  # type: ignore[import-not-found]
    except ImportError:
        return None, "LPIPS skipped: the lpips package is not installed"
    linear, backbone = _weight_files(lpips)
    for path in (linear, backbone):
        if not path.is_file():
            return None, f"LPIPS skipped: weights not found at {path} (nothing is downloaded)"
    try:
        model = lpips.LPIPS(net=LPIPS_NET, version=LPIPS_VERSION, pnet_rand=True, verbose=False)
        model.net.load_state_dict(_backbone_state(model, backbone))
    except Exception as exc:  # a broken install must not sink the other metrics
        return None, f"LPIPS skipped: could not load the model ({type(exc).__name__}: {exc})"
    return model.eval(), None


def lpips_available() -> tuple[bool, str | None]:
    """Whether LPIPS can run here; when not, the notice saying why."""
    model, notice = _load_lpips()
    return model is not None, notice


def lpips_distance(pred: np.ndarray, ref: np.ndarray) -> tuple[float | None, str | None]:
    """Mean over frames of LPIPS (AlexNet, v0.1), lower is better.

    pred, ref: uint8 RGB (T, H, W, 3) of equal shape, fed to LPIPS scaled to [-1, 1].
    Returns (score, None), or (None, "LPIPS skipped: ...") when it cannot run offline.
    """
    if pred.shape != ref.shape:
        raise ValueError(f"pred {pred.shape} and ref {ref.shape} differ in shape")
    model, notice = _load_lpips()
    if model is None:
        return None, notice
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device)
    scores = []
    with torch.no_grad():
        for s in range(0, pred.shape[0], _FRAMES_PER_BATCH):
            x, y = (_to_tensor(v[s : s + _FRAMES_PER_BATCH], device) for v in (pred, ref))
            scores.append(model(x, y).reshape(-1).double().cpu())
    return float(torch.cat(scores).mean()), None


def _to_tensor(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(frames)).to(device)
    return t.permute(0, 3, 1, 2).float() / 127.5 - 1.0
