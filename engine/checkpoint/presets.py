"""Model presets: the exact configurations of each component, by name.

`wan2.2-ti2v-5b` is the public Wan2.2-TI2V-5B in diffusers layout (its transformer, VAE and
UMT5-XXL text encoder); its base weights live in `base_repo` on the Hub. `tiny` is the same
classes at a size that runs a whole video on a laptop CPU in seconds: tests, smoke runs and
the demo model are built from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.errors import InputError

# Wan2.2 VAE latent statistics (48 channels), as in Wan-AI/Wan2.2-TI2V-5B-Diffusers vae/config.json.
WAN22_LATENTS_MEAN = [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
]  # fmt: skip
WAN22_LATENTS_STD = [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
]  # fmt: skip

# Words the tiny tokenizer knows (whole words; anything else maps to <unk>). It covers the
# synthetic world's captions and the README's examples.
TINY_VOCABULARY = """
a an the and with in of to on at her his their she he they person woman man people
wearing wears top bottom dress shirt t-shirt sweater trousers pants skirt jacket sleeves
short long sleeved striped checked dotted solid plain patterned pattern stripes checks dots
red orange yellow green blue purple pink brown black white grey gray beige navy teal
hair bald skin background two-tone
dances dance spins spin slowly quickly sways sway steps step walks walk turns turn raises
raise arms arm hands hand legs leg waves wave left right forward back stands still moves
moving smiles poses camera
blonde dark light maroon olive tied-up long-sleeved short-sleeved sleeveless shorts polka-dot
holds marches shifts slightly out spot
""".split()


@dataclass(frozen=True)
class Preset:
    """Everything needed to build one model family from scratch or from its base weights."""

    name: str
    description: str
    transformer: dict[str, Any]
    vae: dict[str, Any]
    text_encoder: dict[str, Any]
    scheduler: dict[str, Any]
    base_repo: str | None = None
    default_size: tuple[int, int] = (1152, 720)
    default_fps: float = 24.0
    default_seconds: float = 5.0
    default_steps: int = 40
    default_guidance: float = 5.0
    max_text_tokens: int = 512
    hardware: str = ""
    tokenizer_vocabulary: list[str] = field(default_factory=list)

    @property
    def size_multiple(self) -> int:
        """Output sides must be multiples of this: VAE compression × transformer patch (as TryOnPipeline's)."""
        return self.vae.get("scale_factor_spatial", 16) * self.transformer["patch_size"][1]


WAN22_TI2V_5B = Preset(
    name="wan2.2-ti2v-5b",
    description="Wan2.2-TI2V-5B backbone with CondNet (production, 5.0 B transformer parameters)",
    base_repo="Wan-AI/Wan2.2-TI2V-5B-Diffusers",
    transformer=dict(
        patch_size=[1, 2, 2],
        num_attention_heads=24,
        attention_head_dim=128,
        in_channels=48,
        out_channels=48,
        text_dim=4096,
        freq_dim=256,
        ffn_dim=14336,
        num_layers=30,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        rope_max_seq_len=1024,
    ),
    vae=dict(
        base_dim=160,
        decoder_base_dim=256,
        z_dim=48,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=2,
        attn_scales=[],
        temperal_downsample=[False, True, True],
        dropout=0.0,
        is_residual=True,
        in_channels=12,
        out_channels=12,
        patch_size=2,
        scale_factor_temporal=4,
        scale_factor_spatial=16,
        latents_mean=WAN22_LATENTS_MEAN,
        latents_std=WAN22_LATENTS_STD,
    ),
    text_encoder=dict(
        vocab_size=256384,
        d_model=4096,
        d_kv=64,
        d_ff=10240,
        num_layers=24,
        num_heads=64,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        dropout_rate=0.1,
        feed_forward_proj="gated-gelu",
        layer_norm_epsilon=1e-6,
        tie_word_embeddings=False,
    ),
    scheduler=dict(num_train_timesteps=1000, shift=5.0),
    hardware="one GPU with 40 GB or more (H100/H200/A100 80 GB; 24 GB with offloading), bf16",
)

# The 5B configuration shrunk (the diffusers tests' way): the same classes, layouts and rules.
TINY = Preset(
    name="tiny",
    description="the same classes at toy size: tests, smoke runs and the CPU demo model",
    transformer=dict(WAN22_TI2V_5B.transformer, num_attention_heads=2, attention_head_dim=24, text_dim=32, freq_dim=32,
                     ffn_dim=96, num_layers=2),
    vae=dict(WAN22_TI2V_5B.vae, base_dim=8, decoder_base_dim=8, num_res_blocks=1, latents_mean=[0.0] * 48,
             latents_std=[1.0] * 48),
    text_encoder={**{key: value for key, value in WAN22_TI2V_5B.text_encoder.items() if key != "vocab_size"},
                  **dict(d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2, relative_attention_num_buckets=8,
                         relative_attention_max_distance=32, dropout_rate=0.0)},
    scheduler=dict(num_train_timesteps=1000, shift=3.0),
    default_size=(256, 448),
    default_fps=24.0,
    default_seconds=2.0,
    default_steps=8,
    default_guidance=1.0,
    max_text_tokens=32,
    hardware="any CPU",
    tokenizer_vocabulary=TINY_VOCABULARY,
)

# The demo VAE compresses 8x in space (Wan2.1's factor) with 16 latent channels rather than
# Wan2.2's 16x with 48: at the demo's 96x160 frames, 16x leaves a 6x10 latent in which a
# garment covers a couple of positions, and a VAE that small cannot reconstruct it.
DEMO_VAE = dict(
    TINY.vae,
    base_dim=16,
    decoder_base_dim=16,
    z_dim=16,
    dim_mult=[1, 2, 2],
    temperal_downsample=[True, True],
    scale_factor_spatial=8,
    latents_mean=[0.0] * 16,
    latents_std=[1.0] * 16,
)

DEMO = Preset(
    name="demo",
    description="the CPU demo model's size: a 6-layer, 192-wide CondNet on a small 8x VAE and the tiny text encoder",
    transformer=dict(TINY.transformer, num_attention_heads=6, attention_head_dim=32, ffn_dim=768, num_layers=6,
                     in_channels=16, out_channels=16, motion_conditioning="additive", motion_pool=1),
    vae=DEMO_VAE,
    text_encoder=TINY.text_encoder,
    scheduler=dict(num_train_timesteps=1000, shift=3.0),
    default_size=(160, 96),
    default_fps=8.0,
    default_seconds=2.0,
    default_steps=12,
    default_guidance=2.0,
    max_text_tokens=32,
    hardware="any CPU",
    tokenizer_vocabulary=TINY_VOCABULARY,
)

# The demo's next VAE (issue 29): the same 8x spatial factor (so the same 300 transformer tokens
# at 96x160) but 48 latent channels (16x compression instead of 48x) and wider stages, so that
# stripes and checks a few pixels wide survive encoding; the transformer reads 48 channels.
DEMO_Z48_VAE = dict(DEMO_VAE, base_dim=24, decoder_base_dim=24, z_dim=48, latents_mean=[0.0] * 48,
                    latents_std=[1.0] * 48)

DEMO_Z48 = Preset(
    **{**DEMO.__dict__, "name": "demo-z48", "vae": DEMO_Z48_VAE,
       "transformer": dict(DEMO.transformer, in_channels=48, out_channels=48),
       "description": "the demo preset on a 48-channel 8x VAE that keeps garment patterns (being trained)"},
)

# A candidate against demo-z48 (issue 29): 4x spatial, 4x temporal, 32 channels (12x compression of
# each 4x4x4-frame block; no patchify, so the first stage runs at full size with few channels), and
# a transformer patch of 4x4 so that the transformer still sees 6x10 tokens per latent frame.
DEMO_4X_VAE = dict(DEMO_VAE, base_dim=16, decoder_base_dim=16, z_dim=32, patch_size=None, in_channels=3,
                   out_channels=3, scale_factor_spatial=4, latents_mean=[0.0] * 32, latents_std=[1.0] * 32)

DEMO_4X = Preset(
    **{**DEMO.__dict__, "name": "demo-4x", "vae": DEMO_4X_VAE,
       "transformer": dict(DEMO.transformer, in_channels=32, out_channels=32, patch_size=[1, 4, 4]),
       "description": "the demo preset on a 32-channel 4x VAE, the transformer patching 4x4 (a candidate)"},
)

PRESETS: dict[str, Preset] = {p.name: p for p in (WAN22_TI2V_5B, TINY, DEMO, DEMO_Z48, DEMO_4X)}


def get_preset(name: str) -> Preset:
    """The preset called `name`, or an InputError listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(PRESETS)
        raise InputError(f"unknown preset '{name}' (known: {known})") from None
