"""Which decoder a stream runs (`--decoder`): the VAE's, the checkpoint's tiny one, or TAEHV weights.

"auto" takes the checkpoint's `tiny_decoder/` when it ships one, else the VAE's decoder;
"full" the VAE's; "tiny" the checkpoint's (one clear error when it has none); anything else
is published TAEHV weights (engine.model.tiny_decoder), a file or a Hub file, loaded once per
process. The name it returns is what `--json` reports as `decoder`.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from engine.checkpoint import LoadedModel
from engine.checkpoint.public import LoadedRoute
from engine.errors import InputError
from engine.model.tiny_decoder import TinyVideoDecoder
from engine.pipelines.runtime import Runtime


def choose_decoder(model: LoadedModel | None, runtime: Runtime, vae_config) -> tuple[TinyVideoDecoder | None, str]:
    """(the tiny decoder to stream with, None for the VAE's; its name: "full", "tiny" or "taehv:FILE").

    `model` None: a model without a checkpoint (the benchmark's random weights), which ships none.
    """
    choice = runtime.acceleration.decoder
    shipped = None if model is None else model.tiny_decoder
    if choice == "full" or (choice == "auto" and shipped is None):
        return None, "full"
    if choice in ("auto", "tiny"):
        if shipped is None:
            raise InputError("this model ships no tiny decoder (no tiny_decoder/ folder): use --decoder full, "
                             "or give TAEHV weights (--decoder FILE.safetensors)", option="decoder")
        return _on(shipped, runtime), "tiny"
    decoder = _taehv(choice)
    if decoder.config.latent_channels != vae_config.z_dim or decoder.config.patch_size != (vae_config.patch_size or 1):
        raise InputError(f"these TAEHV weights decode {decoder.config.latent_channels}-channel latents with patch "
                         f"{decoder.config.patch_size}; this model's VAE makes {vae_config.z_dim}-channel ones with "
                         f"patch {vae_config.patch_size}", option="decoder")
    return _on(decoder, runtime), f"taehv:{Path(choice).name}"


@functools.lru_cache(maxsize=2)
def _taehv(source: str) -> TinyVideoDecoder:
    return TinyVideoDecoder.from_taehv(source)


def _on(decoder: TinyVideoDecoder, runtime: Runtime) -> TinyVideoDecoder:
    """The decoder on the runtime's device and dtype (it is small: never offloaded).

    torch's own `Module.to`: diffusers' warns about float32 modules on every dtype cast."""
    if decoder.device != runtime.device or decoder.dtype != runtime.dtype:
        torch.nn.Module.to(decoder, device=runtime.device, dtype=runtime.dtype)
    return decoder


def stream_decoder(model: LoadedModel | LoadedRoute, runtime: Runtime) -> tuple[TinyVideoDecoder | None, str]:
    """`--decoder` for a stream: `choose_decoder` for a tryon checkpoint; the public route's live stream
    decodes with its VAE's own decoder (a tiny one is not wired for it)."""
    if not isinstance(model, LoadedRoute):
        return choose_decoder(model, runtime, model.pipeline.vae.config)
    if runtime.acceleration.decoder not in ("auto", "full"):
        raise InputError("the public route's live stream decodes with its VAE (--decoder auto or full)",
                         option="decoder")
    return None, "full"
