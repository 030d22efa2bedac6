"""A tiny causal video decoder (TAEHV-class) for the model's latents, and its streaming state.

The full Wan VAE decoder costs ~16.6 TFLOP per 1280x704 frame; this one ~0.08 (the published
`taew2_2`). It is a stack of 2D convolutions applied to every frame, where a *memory block*
also sees its own input one frame earlier (that is all its causality), and *time grow*
blocks turn each frame into `stride` frames (channel groups become frames). So:

- A latent video of F frames decodes to 4F frames; the first `frames_to_trim` (3) are dropped,
  leaving 1 + 4(F-1): the full decoder's layout (latent frame 0 gives one frame, others four).
- Decoding chunk by chunk gives the whole-clip result when each memory block's last input
  frame is carried from one chunk to the next (`TinyStreamDecoder`).
- It decodes the *normalised* latents the transformer works on (no latent mean/std) into
  pixels in [0, 1] (we hand out [-1, 1], as the VAE does): the convention of the published
  TAEHV weights (madebyollin/taehv), whose parameter names and shapes these modules share, so
  `from_taehv` loads `taew2_2` / `taew2_2_super` (`.safetensors`, or `.pth` read with
  `torch.load(weights_only=True)`) from a file or the Hub. The optional encoder (time pool
  blocks group `stride` frames into one) is there so those files load whole.

Variants: "base" (memory blocks of three 3x3 convolutions, nearest upsampling) and "super"
(ConvNeXt-like memory blocks, pixel-shuffle upsampling; about twice the parameters).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from engine.errors import InputError

STAGES = 3  # upsampling stages of the decoder (pooling stages of the encoder)
IMAGE_CHANNELS = 3
VARIANTS = ("base", "super")
DEFAULT_CHANNELS = {"base": (256, 128, 64, 64), "super": (512, 256, 128, 64)}
_HUB_FILE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+/[\w./-]+\.(safetensors|pth)$")  # owner/repo/path


def conv3x3(channels_in: int, channels_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(channels_in, channels_out, 3, padding=1, **kwargs)


class SoftClamp(nn.Module):
    """Squash the input latents smoothly into (-3, 3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class MemoryBlock(nn.Module):
    """Three 3x3 convolutions of (this frame, the previous frame's input), plus a skip."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(conv3x3(2 * channels_in, channels_out), nn.ReLU(),
                                  conv3x3(channels_out, channels_out), nn.ReLU(),
                                  conv3x3(channels_out, channels_out))
        self.skip = nn.Identity() if channels_in == channels_out else nn.Conv2d(channels_in, channels_out, 1, bias=False)

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(torch.cat([x, past], 1)) + self.skip(x))


class WideMemoryBlock(nn.Module):
    """The "super" variant's memory block: a 7x7 depthwise convolution and an inverted bottleneck."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        both = 2 * channels
        self.conv = nn.Sequential(nn.Conv2d(both, both, 7, padding=3, groups=both, bias=False),
                                  nn.Conv2d(both, 4 * channels, 1), nn.ReLU(),
                                  nn.Conv2d(4 * channels, channels, 1, bias=False))

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([x, past], 1)) + x


class TimeGrow(nn.Module):
    """Each frame becomes `stride` frames: a 1x1 convolution to stride x channels, split in order."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(channels, channels * stride, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).reshape(-1, x.shape[1], *x.shape[2:])


class TimePool(nn.Module):
    """Each `stride` consecutive frames become one: stacked on channels, then a 1x1 convolution."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(channels * stride, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.reshape(-1, self.stride * x.shape[1], *x.shape[2:]))


MEMORY_BLOCKS = (MemoryBlock, WideMemoryBlock)


def run_blocks(blocks: nn.Sequential, frames: torch.Tensor, memory: dict[int, torch.Tensor]) -> torch.Tensor:
    """Apply `blocks` to frames (N, T, C, H, W), all T at once; return (N, T', C', H', W').

    `memory[i]` is memory block i's input one frame before these (zeros at the video's
    start); it is updated to this call's last frame, so successive calls continue one video.
    """
    batch = frames.shape[0]
    x = frames.flatten(0, 1)
    for index, block in enumerate(blocks):
        if isinstance(block, MEMORY_BLOCKS):
            by_frame = x.unflatten(0, (batch, -1))
            before = memory.get(index)
            if before is None:
                before = torch.zeros_like(by_frame[:, :1])
            past = torch.cat([before, by_frame[:, :-1]], dim=1).flatten(0, 1)
            memory[index] = by_frame[:, -1:].clone()
            x = block(x, past)
        else:
            x = block(x)
    return x.unflatten(0, (batch, -1))


def _stride(flag: bool) -> int:
    return 2 if flag else 1


class TinyVideoDecoder(ModelMixin, ConfigMixin):
    """The tiny decoder (and, for TAEHV files, its encoder); parameter names as in the TAEHV files.

    `space_upscale` / `time_upscale`: whether each of the three decoder stages doubles the
    size / the frame count; `patch_size`: the pixel (un)shuffle of the input and output (Wan2.2's 2).
    `encoder_channels` None: no encoder.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 48,
        patch_size: int = 2,
        variant: str = "base",
        channels: tuple[int, ...] | None = None,
        space_upscale: tuple[bool, ...] = (True, True, True),
        time_upscale: tuple[bool, ...] = (False, True, True),
        encoder_channels: int | None = None,
        encoder_time_downscale: tuple[bool, ...] = (True, True, False),
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
        channels = tuple(channels or DEFAULT_CHANNELS[variant])
        if len(channels) != STAGES + 1 or len(space_upscale) != STAGES or len(time_upscale) != STAGES:
            raise ValueError(f"channels needs {STAGES + 1} entries, space_upscale and time_upscale {STAGES}")
        output = IMAGE_CHANNELS * patch_size**2
        build = self._base_decoder if variant == "base" else self._super_decoder
        self.decoder = nn.Sequential(*build(latent_channels, channels, space_upscale, time_upscale, output))
        if encoder_channels is not None:
            self.encoder = nn.Sequential(*self._encoder(latent_channels, encoder_channels, encoder_time_downscale,
                                                        IMAGE_CHANNELS * patch_size**2))

    @staticmethod
    def _base_decoder(latents: int, channels, space, time, output: int) -> list[nn.Module]:
        layers: list[nn.Module] = [SoftClamp(), conv3x3(latents, channels[0]), nn.ReLU()]
        for stage in range(STAGES):
            width = channels[stage]
            layers += [MemoryBlock(width, width) for _ in range(3)]
            layers += [nn.Upsample(scale_factor=_stride(space[stage])), TimeGrow(width, _stride(time[stage])),
                       conv3x3(width, channels[stage + 1], bias=False)]
        return layers + [nn.ReLU(), conv3x3(channels[STAGES], output)]

    @staticmethod
    def _super_decoder(latents: int, channels, space, time, output: int) -> list[nn.Module]:
        layers: list[nn.Module] = [nn.Conv2d(latents, channels[0], 1, bias=False)]
        for stage in range(STAGES):
            width, scale = channels[stage], _stride(space[stage])
            layers += [WideMemoryBlock(width) for _ in range(3)]
            layers += [conv3x3(width, channels[stage + 1] * scale**2), nn.ReLU(), nn.PixelShuffle(scale),
                       TimeGrow(channels[stage + 1], _stride(time[stage]))]
        return layers + [conv3x3(channels[STAGES], output)]

    @staticmethod
    def _encoder(latents: int, width: int, time, pixels: int) -> list[nn.Module]:
        layers: list[nn.Module] = [conv3x3(pixels, width), nn.ReLU()]
        for stage in range(STAGES):
            layers += [TimePool(width, _stride(time[stage])), conv3x3(width, width, stride=2, bias=False)]
            layers += [MemoryBlock(width, width) for _ in range(3)]
        return layers + [conv3x3(width, latents)]

    # -- what the layout implies ----------------------------------------------------------------

    @property
    def time_factor(self) -> int:
        return math.prod(block.stride for block in self.decoder if isinstance(block, TimeGrow))

    @property
    def frames_to_trim(self) -> int:
        """Leading output frames dropped at a video's start: latent frame 0 gives one frame."""
        return self.time_factor - 1

    # -- decoding and encoding ------------------------------------------------------------------

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """Whole latent videos (N, C, F, h, w), normalised → pixels (N, 3, T, H, W), about [-1, 1],
        unclamped (for training; `decode` clamps)."""
        return self.to_pixels(run_blocks(self.decoder, latents.to(self.dtype).transpose(1, 2), {}))[:, :, self.frames_to_trim:]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """A whole latent video (1, C, F, h, w), normalised → pixels (1, 3, T, H, W) in [-1, 1]."""
        return TinyStreamDecoder(self).decode(latents)

    def to_pixels(self, out: torch.Tensor) -> torch.Tensor:
        """The decoder blocks' output (N, T, 3·p², h, w) → pixels (N, 3, T, H, W), [0, 1] mapped to [-1, 1]."""
        frames = F.pixel_shuffle(out.flatten(0, 1), self.config.patch_size).unflatten(0, out.shape[:2])
        return (frames * 2 - 1).transpose(1, 2)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """A whole video (N, 3, T, H, W) in [-1, 1] → normalised latents (N, C, F, h, w).

        Frames are padded at the end (repeating the last) to a multiple of the time factor.
        """
        if not hasattr(self, "encoder"):
            raise ValueError("this tiny decoder has no encoder")
        factor = math.prod(block.stride for block in self.encoder if isinstance(block, TimePool))
        frames = ((pixels.to(self.dtype) + 1) / 2).transpose(1, 2)
        missing = -frames.shape[1] % factor
        frames = torch.cat([frames, frames[:, -1:].expand(-1, missing, -1, -1, -1)], dim=1)
        frames = F.pixel_unshuffle(frames.flatten(0, 1), self.config.patch_size).unflatten(0, frames.shape[:2])
        return run_blocks(self.encoder, frames, {}).transpose(1, 2)

    # -- building -------------------------------------------------------------------------------

    @classmethod
    def for_vae(cls, vae_config, **overrides) -> "TinyVideoDecoder":
        """A fresh (random) decoder for the latents of an AutoencoderKLWan with `vae_config`."""
        patch = vae_config.patch_size or 1
        space = round(math.log2(vae_config.scale_factor_spatial // patch))
        time = round(math.log2(vae_config.scale_factor_temporal))
        if not (0 <= space <= STAGES and 0 <= time <= STAGES):
            raise ValueError(f"a VAE compressing {vae_config.scale_factor_spatial}x in space and "
                             f"{vae_config.scale_factor_temporal}x in time needs more than {STAGES} stages")
        settings = {
            "latent_channels": vae_config.z_dim,
            "patch_size": patch,
            "space_upscale": tuple(stage >= STAGES - space for stage in range(STAGES)),
            "time_upscale": tuple(stage >= STAGES - time for stage in range(STAGES)),
        }
        return cls(**{**settings, **overrides})

    @classmethod
    def from_taehv(cls, source: str | Path) -> "TinyVideoDecoder":
        """The published TAEHV weights (e.g. taew2_2.safetensors): a file, or a Hub file
        `owner/repo/path/in/repo` (through the Hub cache). Loaded strictly."""
        state = read_taehv_weights(taehv_file(source))
        model = cls(**taehv_config(state))
        model.load_state_dict(state, strict=True)
        return model.eval()


class TinyStreamDecoder:
    """Decode successive chunks of one latent video, carrying the memory blocks' last frames.

    Each chunk gives exactly the frames the whole-clip decode gives for it.
    """

    def __init__(self, model: TinyVideoDecoder) -> None:
        self.model = model
        self.reset()

    def reset(self) -> None:
        """Start a new video."""
        self._memory: dict[int, torch.Tensor] = {}
        self._trim = self.model.frames_to_trim

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (1, C, F, h, w) → pixels (1, 3, T, H, W) in [-1, 1]."""
        out = run_blocks(self.model.decoder, latents.to(self.model.dtype).transpose(1, 2), self._memory)
        dropped = min(self._trim, out.shape[1])
        self._trim -= dropped
        return self.model.to_pixels(out[:, dropped:]).clamp(-1, 1)


# -- the published TAEHV files ----------------------------------------------------------------


def taehv_file(source: str | Path) -> Path:
    """A local weights file, or `owner/repo/path` on the Hub (downloaded into the Hub cache)."""
    local = Path(source).expanduser()
    if local.is_file():
        return local
    parts = str(source).split("/")
    if not _HUB_FILE.match(str(source)) or local.exists():
        raise InputError("no such TAEHV weights file (a .safetensors or .pth file, or a Hub file "
                         "owner/repo/file.safetensors)", source)
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download("/".join(parts[:2]), "/".join(parts[2:])))
    except LocalEntryNotFoundError:
        raise InputError("not in the local Hub cache and the Hub cannot be reached", source) from None
    except (HfHubHTTPError, OSError) as error:
        raise InputError(f"could not download from the Hub ({type(error).__name__})", source) from None


def read_taehv_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a TAEHV `.safetensors` file, or of a `.pth` one (tensors only, no code run)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path)
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is one input error
        raise InputError(f"cannot read TAEHV weights ({type(error).__name__})", path) from None
    if not isinstance(state, dict) or not all(torch.is_tensor(value) for value in state.values()):
        raise InputError("not a TAEHV state dict (names to tensors)", path)
    return state


def taehv_config(state: dict[str, torch.Tensor]) -> dict:
    """The TinyVideoDecoder config a TAEHV state dict was made with, read from its shapes.

    The base variant's upsampling has no weights: like every published TAEHV it is taken to
    double the size at each stage.
    """
    try:
        return _decoder_config(state) | _encoder_config(state)
    except (KeyError, IndexError, ZeroDivisionError) as error:
        raise InputError(f"not a TAEHV state dict (no or odd '{error}')", "--decoder") from None


def _decoder_config(state: dict[str, torch.Tensor]) -> dict:
    variant = "super" if "decoder.0.weight" in state else "base"
    probe = TinyVideoDecoder(latent_channels=1, patch_size=1, variant=variant, channels=(1,) * (STAGES + 1))
    layers = list(probe.decoder)
    grows = [index for index, layer in enumerate(layers) if isinstance(layer, TimeGrow)]
    first = state[f"{'decoder.0' if variant == 'super' else 'decoder.1'}.weight"]
    last = state[f"decoder.{len(layers) - 1}.weight"]
    widths = [first.shape[0]]
    time = []
    for stage, grow in enumerate(grows):
        weight = state[f"decoder.{grow}.conv.weight"]  # (width * stride, width)
        time.append(weight.shape[0] // weight.shape[1] == 2)
        if variant == "base":
            widths.append(state[f"decoder.{grow + 1}.weight"].shape[0])
        else:
            widths.append(weight.shape[1])
    if variant == "base":
        space = (True,) * STAGES
    else:
        space = tuple(state[f"decoder.{grow - 3}.weight"].shape[0] == 4 * widths[stage + 1]
                      for stage, grow in enumerate(grows))
    return {"latent_channels": first.shape[1], "patch_size": math.isqrt(last.shape[0] // IMAGE_CHANNELS),
            "variant": variant, "channels": tuple(widths), "space_upscale": space, "time_upscale": tuple(time)}


def _encoder_config(state: dict[str, torch.Tensor]) -> dict:
    if "encoder.0.weight" not in state:
        return {}
    probe = TinyVideoDecoder(latent_channels=1, patch_size=1, channels=(1,) * (STAGES + 1), encoder_channels=1)
    pools = [index for index, layer in enumerate(probe.encoder) if isinstance(layer, TimePool)]
    downscale = []
    for pool in pools:
        weight = state[f"encoder.{pool}.conv.weight"]  # (width, width * stride)
        downscale.append(weight.shape[1] // weight.shape[0] == 2)
    return {"encoder_channels": state["encoder.0.weight"].shape[0], "encoder_time_downscale": tuple(downscale)}
