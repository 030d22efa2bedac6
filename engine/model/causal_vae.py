"""Chunk-by-chunk encoding and decoding with the Wan VAE's causal cache.

`AutoencoderKLWan._decode` decodes one latent frame at a time, carrying each causal
convolution's last inputs (`feat_cache`) from frame to frame, and clears that cache when the
video ends; `_encode` does the same over groups of frames (the first alone, then fours).
`CausalDecoder` and `CausalEncoder` run the same loops but keep their own caches between
calls, so a video handled chunk by chunk gives the result of one full pass. Their caches are
private: encoding or decoding other images with the same VAE in between does not disturb them.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import (
    WanCausalConv3d,
    patchify,
    unpatchify,
)


class _CausalPass:
    """One video's causal-convolution cache for the VAE's encoder or decoder, kept between calls."""

    def __init__(self, vae: AutoencoderKLWan, part: torch.nn.Module) -> None:
        self.vae = vae
        self._convs = sum(isinstance(m, WanCausalConv3d) for m in part.modules())
        self.reset()

    def reset(self) -> None:
        """Start a new video."""
        self._cache: list = [None] * self._convs
        self._first = True


class CausalDecoder(_CausalPass):
    """Decode successive chunks of one latent video; the first latent frame gives 1 frame, others 4."""

    def __init__(self, vae: AutoencoderKLWan) -> None:
        super().__init__(vae, vae.decoder)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Raw (unnormalised) latents (1, C, F, h, w) → float32 pixels (1, 3, T, H, W) in [-1, 1].

        The decoder runs in its own dtype (bf16 when the runtime's `vae_bf16` mode made it so).
        """
        onload(self.vae)
        x = self.vae.post_quant_conv(latents.to(self.vae.post_quant_conv.weight.dtype))
        frames = []
        for i in range(x.shape[2]):
            frames.append(self.vae.decoder(x[:, :, i : i + 1], feat_cache=self._cache, feat_idx=[0],
                                           first_chunk=self._first))
            self._first = False
        out = torch.cat(frames, dim=2)
        if self.vae.config.patch_size is not None:
            out = unpatchify(out, patch_size=self.vae.config.patch_size)
        return out.float().clamp(-1.0, 1.0)


class CausalEncoder(_CausalPass):
    """Encode successive chunks of one video: 4k+1 frames first, then 4k at a time."""

    def __init__(self, vae: AutoencoderKLWan) -> None:
        super().__init__(vae, vae.encoder)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels (1, 3, T, H, W) in [-1, 1] → raw latents (1, C, F, h, w), the posterior's mode."""
        onload(self.vae)
        temporal = self.vae.config.scale_factor_temporal
        lead = 1 if self._first else 0
        if (pixels.shape[2] - lead) % temporal:
            raise ValueError(f"a chunk of {pixels.shape[2]} frames: the first needs 4k+1, later ones 4k")
        x = pixels if self.vae.config.patch_size is None else patchify(pixels, patch_size=self.vae.config.patch_size)
        groups = [(0, 1)] if self._first else []
        groups += [(start, start + temporal) for start in range(lead, x.shape[2], temporal)]
        self._first = False
        out = torch.cat([self.vae.encoder(x[:, :, a:b], feat_cache=self._cache, feat_idx=[0]) for a, b in groups], dim=2)
        return self.vae.quant_conv(out)[:, : self.vae.config.z_dim]


def onload(model: torch.nn.Module) -> None:
    """Bring a model under diffusers' model CPU offload to its device before calling it other than by `forward`.

    What diffusers' `apply_forward_hook` does for `encode`/`decode`; needed where the engine
    calls a model's parts directly (the causal VAE passes).
    """
    hook = getattr(model, "_hf_hook", None)
    if hook is not None and hasattr(hook, "pre_forward"):
        hook.pre_forward(model)
