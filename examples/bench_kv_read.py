"""Time one layer's KV cache read at a full window: the zero-copy view against concatenation.

    python examples/bench_kv_read.py                     # the 5 B model's layer at 1280x704, bf16
    python examples/bench_kv_read.py --frame-tokens 440  # a smaller frame

What a stream's video tokens attend to at one layer, once the history ring is full: the
conditions, the sink, `window` chunks and the pass's own keys. `KVCache.context` writes the
pass's keys after the cached run and returns one view; before, the cache was concatenated
(`keys_values`, then the pass's keys after it), copying all of it per layer per pass.
"""

from __future__ import annotations

import argparse
import time

import torch

from engine.model.kv_cache import KVCache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frame-tokens", type=int, default=880, help="tokens of a latent frame (1280x704: 880)")
    parser.add_argument("--window", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    chunk = 3 * args.frame_tokens
    cache = KVCache(layers=1, heads=24, head_dim=128, frame_tokens=args.frame_tokens, chunk_frames=3,
                    window=args.window, dtype=torch.bfloat16, device=torch.device("cpu"))
    with torch.no_grad():
        for region, count in [("conditions", 2 * args.frame_tokens), ("sink", chunk)] + [("history", chunk)] * args.window:
            key = torch.randn(1, count, 24, 128, dtype=torch.bfloat16)
            cache.write(region, 0, key, key)
            cache.commit(region)
        own = torch.randn(1, chunk, 24, 128, dtype=torch.bfloat16)

        def concatenated():
            cached_key, cached_value = cache.keys_values(0)
            return torch.cat([cached_key, own], dim=1), torch.cat([cached_value, own], dim=1)

        for name, read in (("concatenation (before)", concatenated),
                           ("view (now)", lambda: cache.context(0, own, own))):
            read()
            started = time.perf_counter()
            for _ in range(args.repeat):
                keys, _ = read()
            seconds = (time.perf_counter() - started) / args.repeat
            print(f"{name}: {seconds * 1000:.1f} ms per layer per pass, {keys.shape[1]} keys")


if __name__ == "__main__":
    main()
