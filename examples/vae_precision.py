"""How far a bf16 VAE strays from float32 over a long stream, chunk by chunk (issue 27 item 4).

    python examples/vae_precision.py                       # the tiny preset's VAE and weights/demo's
    python examples/vae_precision.py --vae weights/demo --chunks 40 --size 160x96

A stream encodes its motion video and decodes its output chunk by chunk with the VAE's causal
cache, so an error made in one chunk is carried into the next: this measures it where it
would show. A synthetic motion video (soft shapes moving across a gradient) is encoded chunk by
chunk (`CausalEncoder`) in float32 and in bf16; its float32 latents are decoded chunk by chunk
(`CausalDecoder`) in float32 and in bf16. For every chunk: the encoder's relative latent error
‖bf16 − fp32‖ / ‖fp32‖, and the decoder's PSNR (dB) and largest pixel difference (of 255)
against float32. A growing error down the table is drift.
"""

from __future__ import annotations

import argparse
import copy
import math

import numpy as np
import torch
from diffusers import AutoencoderKLWan

from engine.checkpoint import build_random_on
from engine.checkpoint.presets import TINY
from engine.media import parse_size
from engine.model.causal_vae import CausalDecoder, CausalEncoder
from engine.pipelines.pipeline_tryon import frames_to_pixels


def motion_video(frames: int, size: tuple[int, int]) -> np.ndarray:
    """uint8 (T, H, W, 3): two soft blobs circling over a colour gradient."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    video = []
    for t in range(frames):
        angle = 2 * math.pi * t / 48
        image = np.stack([x, y, 1 - x], axis=-1) * 0.6
        for phase, colour in ((0.0, (1.0, 0.3, 0.2)), (math.pi, (0.2, 0.4, 1.0))):
            cx, cy = 0.5 + 0.3 * math.cos(angle + phase), 0.35 + 0.2 * math.sin(angle + phase)
            blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.01)[..., None]
            image = image * (1 - blob) + blob * np.array(colour)
        video.append(image)
    return (np.clip(np.stack(video), 0, 1) * 255).round().astype(np.uint8)


def bf16_copy(vae: AutoencoderKLWan) -> AutoencoderKLWan:
    return copy.deepcopy(vae).to(torch.bfloat16)


@torch.no_grad()
def measure(vae: AutoencoderKLWan, chunks: int, chunk_latents: int, size: tuple[int, int]) -> list[dict]:
    temporal = vae.config.scale_factor_temporal
    frames = motion_video(1 + temporal * (chunks * chunk_latents - 1), size)
    low = bf16_copy(vae)
    encoders = CausalEncoder(vae), CausalEncoder(low)
    decoders = CausalDecoder(vae), CausalDecoder(low)
    rows, start = [], 0
    for chunk in range(chunks):
        stop = start + (1 + temporal * (chunk_latents - 1) if chunk == 0 else temporal * chunk_latents)
        pixels = frames_to_pixels(frames[start:stop], torch.device("cpu"))
        full = encoders[0].encode(pixels)
        half = encoders[1].encode(pixels.to(torch.bfloat16)).float()
        decoded = [((d.decode(full) + 1) * 127.5).round() for d in decoders]
        mse = (decoded[0] - decoded[1]).pow(2).mean().item()
        rows.append({
            "chunk": chunk,
            "encode_rel_error": ((half - full).norm() / full.norm()).item(),
            "decode_psnr_db": float("inf") if mse == 0 else 10 * math.log10(255**2 / mse),
            "decode_max_diff": (decoded[0] - decoded[1]).abs().max().item(),
        })
        start = stop
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vae", action="append", help="a checkpoint folder with a vae/ (repeatable); "
                        "default: the tiny preset's (random) and weights/demo")
    parser.add_argument("--chunks", type=int, default=24)
    parser.add_argument("--chunk-latents", type=int, default=3, help="latent frames per chunk, as a stream's")
    parser.add_argument("--size", default="160x96")
    args = parser.parse_args()
    size = parse_size(args.size)
    sources = args.vae or ["tiny", "weights/demo"]
    for source in sources:
        if source == "tiny":
            vae, name = build_random_on(TINY, torch.device("cpu"), torch.float32).vae, "tiny preset (random weights)"
        else:
            vae, name = AutoencoderKLWan.from_pretrained(source, subfolder="vae").float().eval(), source
        rows = measure(vae, args.chunks, args.chunk_latents, size)
        print(f"\n{name}, {size[0]}x{size[1]}, {args.chunks} chunks of {args.chunk_latents} latent frames")
        print("| chunk | encode bf16: relative latent error | decode bf16: PSNR vs fp32 (dB) | max pixel diff |")
        print("|---:|---:|---:|---:|")
        for row in rows:
            print(f"| {row['chunk']} | {row['encode_rel_error']:.4f} | {row['decode_psnr_db']:.1f} | "
                  f"{row['decode_max_diff']:.0f} |")
        first, last = rows[: len(rows) // 4], rows[-(len(rows) // 4) :]
        print(f"encode error, first quarter {np.mean([r['encode_rel_error'] for r in first]):.4f}, "
              f"last quarter {np.mean([r['encode_rel_error'] for r in last]):.4f}; "
              f"decode PSNR min {min(r['decode_psnr_db'] for r in rows):.1f} dB", flush=True)


if __name__ == "__main__":
    main()
