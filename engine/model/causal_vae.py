"""Chunk-by-chunk decoding with the Wan VAE's causal cache.

`AutoencoderKLWan._decode` decodes one latent frame at a time, carrying each causal
convolution's last inputs (`feat_cache`) from frame to frame, and clears that cache when the
video ends. `CausalDecoder` runs the same per-frame loop but keeps its own cache between calls,
so decoding a video chunk by chunk gives the frames of one full decode. Its cache is private:
encoding or decoding other images with the same VAE in between does not disturb it.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, unpatchify


class CausalDecoder:
    """Decode successive chunks of one latent video; the first latent frame gives 1 frame, others 4."""

    def __init__(self, vae: AutoencoderKLWan) -> None:
        self.vae = vae
        self._convs = sum(isinstance(m, WanCausalConv3d) for m in vae.decoder.modules())
        self.reset()

    def reset(self) -> None:
        """Start a new video."""
        self._cache: list = [None] * self._convs
        self._first = True

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Raw (unnormalised) latents (1, C, F, h, w) → pixels (1, 3, T, H, W) in [-1, 1]."""
        x = self.vae.post_quant_conv(latents)
        frames = []
        for i in range(x.shape[2]):
            frames.append(self.vae.decoder(x[:, :, i : i + 1], feat_cache=self._cache, feat_idx=[0],
                                           first_chunk=self._first))
            self._first = False
        out = torch.cat(frames, dim=2)
        if self.vae.config.patch_size is not None:
            out = unpatchify(out, patch_size=self.vae.config.patch_size)
        return out.clamp(-1.0, 1.0)
