"""How big the real route is: parameters per component, download size, GPU memory per stage.

No GPU and no Hub here, so these are computed, not measured: each component of the real
repos is built on PyTorch's meta device (no memory, no weights) from its published
configuration, and its parameters are counted. `PARAMETERS` holds those counts, checked
against the meta-device build by a test. Memory is weights only (bf16: 2 bytes a parameter;
the Wan VAEs run in float32: 4), before activations, which grow with size and length.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

GIB = 2**30


def _qwen_edit_transformer():
    from diffusers import QwenImageTransformer2DModel

    return QwenImageTransformer2DModel()  # the defaults are Qwen-Image's 60-layer, 20 B configuration


def _qwen_vae():
    from diffusers import AutoencoderKLQwenImage

    return AutoencoderKLQwenImage()


def _qwen_vl_7b():
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2_5_VLConfig(
        text_config={"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                     "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
                     "tie_word_embeddings": False},
        vision_config={"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                       "out_hidden_size": 3584},
        vocab_size=152064, tie_word_embeddings=False,
    )
    return Qwen2_5_VLForConditionalGeneration(config)


def _wan22_5b_transformer():
    from diffusers import WanTransformer3DModel

    from engine.checkpoint.presets import WAN22_TI2V_5B

    return WanTransformer3DModel(**WAN22_TI2V_5B.transformer)


def _wan22_vae():
    from diffusers import AutoencoderKLWan

    from engine.checkpoint.presets import WAN22_TI2V_5B

    return AutoencoderKLWan(**WAN22_TI2V_5B.vae)


def _umt5_xxl():
    from transformers import UMT5Config, UMT5EncoderModel

    from engine.checkpoint.presets import WAN22_TI2V_5B

    return UMT5EncoderModel(UMT5Config(**WAN22_TI2V_5B.text_encoder))


def _wan_animate_transformer():
    from diffusers import WanAnimateTransformer3DModel

    return WanAnimateTransformer3DModel()  # the defaults are Wan2.2-Animate-14B's configuration


def _wan21_vae():
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan()  # Wan2.1's VAE, which Wan-Animate uses


def _clip_vit_h():
    from transformers import CLIPVisionConfig, CLIPVisionModel

    return CLIPVisionModel(CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                                            num_attention_heads=16, patch_size=14, image_size=224,
                                            projection_dim=1024))


def _rt_detr_r50():
    from transformers import RTDetrConfig, RTDetrForObjectDetection

    return RTDetrForObjectDetection(RTDetrConfig(num_labels=80))


def _vitpose_base():
    from transformers import VitPoseConfig, VitPoseForPoseEstimation

    return VitPoseForPoseEstimation(VitPoseConfig(num_labels=17))


# (part, component) → how to build it from its published configuration.
REAL_COMPONENTS: dict[tuple[str, str], Callable] = {
    ("edit", "transformer"): _qwen_edit_transformer,
    ("edit", "text_encoder"): _qwen_vl_7b,
    ("edit", "vae"): _qwen_vae,
    ("i2v", "transformer"): _wan22_5b_transformer,
    ("i2v", "text_encoder"): _umt5_xxl,
    ("i2v", "vae"): _wan22_vae,
    ("animate", "transformer"): _wan_animate_transformer,
    ("animate", "text_encoder"): _umt5_xxl,
    ("animate", "image_encoder"): _clip_vit_h,
    ("animate", "vae"): _wan21_vae,
    ("detector", "model"): _rt_detr_r50,
    ("keypoints", "model"): _vitpose_base,
}


def count_parameters(build: Callable) -> int:
    """Parameters of a model built on the meta device (nothing allocated)."""
    import torch

    with torch.device("meta"):
        model = build()
    return sum(p.numel() for p in model.parameters())


# count_parameters of each REAL_COMPONENTS entry (tests/engine/public/test_sizes.py checks them).
PARAMETERS: dict[tuple[str, str], int] = {
    ("edit", "transformer"): 20_430_401_088,
    ("edit", "text_encoder"): 8_292_166_656,
    ("edit", "vae"): 126_892_531,
    ("i2v", "transformer"): 4_999_787_712,
    ("i2v", "text_encoder"): 5_680_910_336,
    ("i2v", "vae"): 704_688_668,
    ("animate", "transformer"): 15_177_050_484,
    ("animate", "text_encoder"): 5_680_910_336,
    ("animate", "image_encoder"): 630_766_080,
    ("animate", "vae"): 126_892_531,
    ("detector", "model"): 42_891_372,
    ("keypoints", "model"): 85_912_337,
}
FLOAT32_COMPONENTS = {("i2v", "vae"), ("animate", "vae")}  # the route keeps Wan's VAEs in float32
STAGE_PARTS = {"edit": ("edit",), "i2v": ("i2v",), "animate": ("animate",), "pose": ("detector", "keypoints")}


def _bytes(part: str, component: str) -> int:
    return PARAMETERS[(part, component)] * (4 if (part, component) in FLOAT32_COMPONENTS else 2)


@dataclass(frozen=True)
class StageSize:
    """A stage's weights: parameters, download (bf16) and GPU memory without and with `--offload model`."""

    stage: str
    parameters: int
    download_gib: float
    gpu_gib: float
    gpu_offload_gib: float

    def describe(self) -> str:
        return (f"{self.parameters / 1e9:.2f} B parameters, download ~{self.download_gib:.1f} GiB (bf16); "
                f"GPU ~{self.gpu_gib:.1f} GiB, ~{self.gpu_offload_gib:.1f} GiB with --offload model")


def stage_sizes() -> list[StageSize]:
    """Each stage's size, computed from the parameter counts (weights only: no GPU was lent to measure)."""
    sizes = []
    for stage, parts in STAGE_PARTS.items():
        keys = [key for key in PARAMETERS if key[0] in parts]
        parameters = sum(PARAMETERS[key] for key in keys)
        on_gpu = [_bytes(*key) for key in keys]
        # Model offloading keeps one model at a time on the GPU: the largest one decides.
        sizes.append(StageSize(stage, parameters, 2 * parameters / GIB, sum(on_gpu) / GIB, max(on_gpu) / GIB))
    return sizes


# -- the live stream: the editor and LongLive's 5B student on one GPU together ----------------

# LongLive-2.0-5B is Wan2.2-TI2V-5B's transformer (the i2v stage's count), with its UMT5 and VAE.
LIVE_PARTS = {"student": (("i2v", "transformer"), ("i2v", "text_encoder"), ("i2v", "vae")),
              "editor": (("edit", "transformer"), ("edit", "text_encoder"), ("edit", "vae"))}
FP8_COMPONENTS = {("i2v", "transformer"), ("i2v", "text_encoder"), ("edit", "transformer")}  # what --fp8 stores in 8 bits
ACTIVATIONS_GIB = 6.0  # an allowance for one chunk's activations and the VAE's decode (estimated, not measured)


@dataclass(frozen=True)
class LivePlan:
    """GPU memory of a live stream: weights of the student and the editor, the KV cache, activations."""

    fp8: bool
    student_gib: float
    editor_gib: float
    kv_cache_gib: float

    @property
    def total_gib(self) -> float:
        return self.student_gib + self.editor_gib + self.kv_cache_gib + ACTIVATIONS_GIB

    def describe(self) -> str:
        mode = "--fp8" if self.fp8 else "bf16"
        return (f"{mode}: ~{self.total_gib:.0f} GiB (student {self.student_gib:.1f} + editor {self.editor_gib:.1f} "
                f"+ KV cache {self.kv_cache_gib:.1f} + ~{ACTIVATIONS_GIB:.0f} activations)")


def live_plan(fp8: bool, size: tuple[int, int] = (1280, 704), chunk_frames: int = 8,
              window_frames: int = 32) -> LivePlan:
    """The memory a live stream needs at `size` (LongLive's chunking), computed from parameter counts."""
    from engine.checkpoint.presets import WAN22_TI2V_5B

    def gib(component: tuple[str, str]) -> float:
        width = 1 if fp8 and component in FP8_COMPONENTS else None
        return (PARAMETERS[component] * width if width else _bytes(*component)) / GIB

    config = WAN22_TI2V_5B.transformer
    frame_tokens = (size[0] // 32) * (size[1] // 32)
    cached = (window_frames + chunk_frames) * frame_tokens  # sink and history, and the chunk written
    hidden = config["num_attention_heads"] * config["attention_head_dim"]
    kv = config["num_layers"] * cached * 2 * hidden * 2 / GIB  # keys and values in bf16
    return LivePlan(fp8, sum(map(gib, LIVE_PARTS["student"])), sum(map(gib, LIVE_PARTS["editor"])), kv)


def live_memory_problem(device_gib: float, fp8: bool, size: tuple[int, int]) -> str | None:
    """One line saying what does not fit on a GPU of `device_gib`, or None when the plan fits."""
    plan = live_plan(fp8, size)
    if plan.total_gib <= device_gib:
        return None
    lighter = live_plan(True, size)
    advice = (f"add --fp8 ({lighter.describe()})" if not fp8 and lighter.total_gib <= device_gib
              else "use a GPU with more memory (80 GB with --fp8, or an H200), or a smaller --size")
    return (f"the live stream needs {plan.describe()}, more than this GPU's {device_gib:.0f} GiB: {advice}")
