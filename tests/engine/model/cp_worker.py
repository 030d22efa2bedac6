"""Run by test_context_parallel.py, alone or under torchrun: render with the teacher, save the frames.

Usage: cp_worker.py CHECKPOINT OUTPUT_DIR. Under torchrun the transformer's sequences are split
across the processes (Ulysses context parallelism); each rank saves what it rendered.
"""

import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.checkpoint import load_model
from engine.model.distributed import enable_context_parallel, start_processes
from engine.pipelines.pipeline_tryon import to_uint8
from engine.pipelines.pipeline_tryon_streaming import TryOnStream


def image(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8))


def main(checkpoint: str, output: str) -> None:
    processes = start_processes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline = load_model(checkpoint).pipeline
    if processes.distributed:
        enable_context_parallel(pipeline.transformer, processes)
        try:
            TryOnStream(pipeline, reference=image(0), garments=[("top", image(1))], prompt="",
                               generator=torch.Generator().manual_seed(0))
        except ValueError as error:
            assert "KV-cached stream" in str(error)
        else:
            raise AssertionError("a stream accepted context parallelism")
    frames = to_uint8(pipeline(image(0), garments=[("top", image(1)), ("bottom", image(2))], prompt="she spins",
                      height=64, width=64, num_frames=9, num_inference_steps=2, guidance_scale=2.0,
                      generator=torch.Generator().manual_seed(0)).frames[0])
    np.save(Path(output) / f"rank{processes.rank}-of-{processes.world_size}.npy", frames)
    processes.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
