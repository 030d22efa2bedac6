"""The tiny streaming decoder against the full VAE decoder: PSNR and decode time, on held-out clips.

    python examples/compare_decoders.py --model weights/demo-student --clips 16

For each held-out synthetic clip (dataset seed 42, never used in training) at the model's size:
the VAE encodes it (the posterior's mode, normalised as the transformer's latents are), then
both decoders decode those latents chunk by chunk as the stream does (`--chunk` latent frames
at a time, each keeping its causal state). Reported: PSNR in dB of the tiny decoder's frames
against the full decoder's (the quality the tiny one gives up), each decoder's PSNR against the
clip itself, and the decode seconds per frame of each and their ratio (tiny / full). Timing runs
on this machine's threads (`--threads`); the first clip is decoded once before timing.
`--decoder` takes the checkpoint's tiny decoder ("tiny") or TAEHV weights (a file or Hub file).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch

from engine.checkpoint import load_model
from engine.model.causal_vae import CausalDecoder
from engine.model.tiny_decoder import TinyStreamDecoder, TinyVideoDecoder
from engine.synth import SEED_STRIDE, make_sample

HELD_OUT_SEED = 42


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def to_frames(pixels: torch.Tensor) -> np.ndarray:
    return ((pixels[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()


def decode_in_chunks(decode, latents: torch.Tensor, chunk: int) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    pixels = torch.cat([decode(latents[:, :, start : start + chunk]) for start in range(0, latents.shape[2], chunk)], 2)
    return to_frames(pixels), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="weights/demo-student")
    parser.add_argument("--decoder", default="tiny", help="tiny (the checkpoint's) or TAEHV weights")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--fps", type=float, default=8.0)
    parser.add_argument("--size", default=None, help="WIDTHxHEIGHT; default the checkpoint's training size")
    parser.add_argument("--chunk", type=int, default=3, help="latent frames per decode call, as the stream")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model(args.model)
    pipeline = model.pipeline
    tiny = model.tiny_decoder if args.decoder == "tiny" else TinyVideoDecoder.from_taehv(args.decoder)
    if tiny is None:
        raise SystemExit(f"{args.model} ships no tiny decoder: give --decoder FILE")
    tiny.eval()
    width, height = (map(int, args.size.split("x")) if args.size else model.info.training_size or (96, 160))

    rows = []
    for index in range(args.clips + 1):  # clip 0 warms up, untimed and unreported
        clip = make_sample(HELD_OUT_SEED * SEED_STRIDE + index, size=(width, height), num_frames=args.frames,
                           fps=args.fps).target
        with torch.no_grad():
            latents = pipeline.encode_frames(clip)
            mean, std = pipeline._latent_stats(latents)
            full, full_s = decode_in_chunks(CausalDecoder(pipeline.vae).decode, latents * std + mean, args.chunk)
            small, tiny_s = decode_in_chunks(TinyStreamDecoder(tiny).decode, latents, args.chunk)
        if index:
            rows.append({"tiny_vs_full_db": psnr(small, full), "full_vs_clip_db": psnr(full, clip),
                         "tiny_vs_clip_db": psnr(small, clip), "full_s": full_s, "tiny_s": tiny_s,
                         "frames": len(full)})

    frames = sum(row["frames"] for row in rows)
    summary = {
        "model": args.model, "decoder": args.decoder, "size": [width, height], "clips": len(rows),
        "frames_per_clip": rows[0]["frames"], "chunk": args.chunk, "threads": args.threads,
        "tiny_parameters": sum(p.numel() for p in tiny.parameters()),
        "full_decoder_parameters": sum(p.numel() for p in pipeline.vae.decoder.parameters()),
        **{key: float(np.mean([row[key] for row in rows])) for key in ("tiny_vs_full_db", "full_vs_clip_db",
                                                                          "tiny_vs_clip_db")},
        "full_ms_per_frame": 1000 * sum(row["full_s"] for row in rows) / frames,
        "tiny_ms_per_frame": 1000 * sum(row["tiny_s"] for row in rows) / frames,
    }
    summary["decode_time_ratio"] = summary["tiny_ms_per_frame"] / summary["full_ms_per_frame"]
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    print(f"{summary['clips']} held-out clips of {summary['frames_per_clip']} frames at {width}x{height}, "
          f"chunks of {args.chunk} latent frames, {args.threads} thread(s)")
    print("| measure | value |\n|---|---|")
    print(f"| PSNR tiny vs full decoder | {summary['tiny_vs_full_db']:.2f} dB |")
    print(f"| PSNR full decoder vs clip | {summary['full_vs_clip_db']:.2f} dB |")
    print(f"| PSNR tiny decoder vs clip | {summary['tiny_vs_clip_db']:.2f} dB |")
    print(f"| decode, full | {summary['full_ms_per_frame']:.1f} ms/frame ({summary['full_decoder_parameters']:,} weights) |")
    print(f"| decode, tiny | {summary['tiny_ms_per_frame']:.1f} ms/frame ({summary['tiny_parameters']:,} weights) |")
    print(f"| decode time ratio (tiny / full) | {summary['decode_time_ratio']:.3f} |")


if __name__ == "__main__":
    main()
