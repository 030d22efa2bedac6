"""Whether a photo looks like it comes from the synthetic world (engine.synth) or from a camera.

The synthetic world draws flat-shaded figures on flat backgrounds: at the demo size most
pixels equal their right-hand neighbour (about 75% in its samples). A camera photo's noise
and shading leave few equal neighbours (4-7% in the real cases).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

PROBE_SIZE = (96, 160)
FLAT_FRACTION = 0.4


def flat_fraction(image: Image.Image) -> float:
    """The share of pixels exactly equal to their right-hand neighbour, at the demo's size."""
    pixels = np.asarray(image.convert("RGB").resize(PROBE_SIZE), dtype=np.int16)
    return float((np.abs(np.diff(pixels, axis=1)).sum(axis=-1) == 0).mean())


def looks_synthetic(image: Image.Image) -> bool:
    return flat_fraction(image) >= FLAT_FRACTION
