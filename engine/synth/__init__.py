"""Procedural, seeded synthetic try-on world for training and evaluating small models.

`make_sample(seed)` builds one example in memory (user photo, garment product shots,
motion video of another person, ground-truth target video, garment masks, caption,
metadata); `write_sample` / `write_dataset` put examples on disk. See `sample.py`.
"""

from engine.synth.sample import (
    SEED_STRIDE,
    Sample,
    make_sample,
    write_dataset,
    write_sample,
)

__all__ = ["SEED_STRIDE", "Sample", "make_sample", "write_dataset", "write_sample"]
