"""The public-weights route: its parts (Hub repo, revision, licence) and its presets.

The route is FashionChameleon's "Edit + I2V" baseline and its motion-video variant, built
only from diffusers and transformers pipelines on Apache-2.0 weights:

- `edit`: Qwen-Image-Edit-2509 (`QwenImageEditPlusPipeline`) puts the garments on the photo;
- `i2v`: Wan2.2-TI2V-5B (`WanImageToVideoPipeline`, first frame = the dressed photo);
- `animate`: Wan2.2-Animate-14B (`WanAnimatePipeline`), driven by a pose video and a face
  video extracted from `--motion` by
- `detector` (RT-DETR, person boxes) and `keypoints` (ViTPose, COCO body keypoints).

Live streaming (`swap`, `extend`, `studio`; engine.pipelines.public.stream) adds two parts,
found only when a stream needs them:

- `stream`: LongLive-2.0-5B, a block-causal student of Wan2.2-TI2V-5B, converted once from its
  pickle by `tryon models convert model_bf16.pt DIR --from longlive` (for `--model public` the
  folder is `$TRYON_PUBLIC_STREAM_DIR`);
- `lightning`: the 4-step Lightning LoRA of Qwen-Image-Edit-2509 (one file of
  `lightx2v/Qwen-Image-Lightning`), which makes the editor fast enough to re-dress a frame
  at a switch.

Each part's repo id and revision can be overridden with `TRYON_PUBLIC_<PART>_REPO` and
`TRYON_PUBLIC_<PART>_REVISION` (e.g. `TRYON_PUBLIC_EDIT_REVISION=<commit>`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace

from engine.errors import InputError

ROUTE_KIND = "route"
PART_NAMES = ("edit", "i2v", "animate", "detector", "keypoints")
LIVE_PART_NAMES = ("stream", "lightning")
# The stages each part belongs to: the two pose models are one stage, "pose"; the LoRA is the editor's.
PART_STAGE = {"edit": "edit", "i2v": "i2v", "animate": "animate", "detector": "pose", "keypoints": "pose",
              "stream": "stream", "lightning": "edit"}
STREAM_DIR_ENV = "TRYON_PUBLIC_STREAM_DIR"
# The Lightning LoRA for Qwen-Image-Edit-2509, 4 steps, and the scheduler its model card runs it with.
LIGHTNING_WEIGHTS = "Qwen-Image-Edit-2509/Qwen-Image-Edit-2509-Lightning-4steps-V1.0-bf16.safetensors"
LIGHTNING_SCHEDULER = {
    "base_image_seq_len": 256, "base_shift": math.log(3), "invert_sigmas": False, "max_image_seq_len": 8192,
    "max_shift": math.log(3), "num_train_timesteps": 1000, "shift": 1.0, "shift_terminal": None,
    "stochastic_sampling": False, "time_shift_type": "exponential", "use_beta_sigmas": False,
    "use_dynamic_shifting": True, "use_exponential_sigmas": False, "use_karras_sigmas": False,
}


@dataclass(frozen=True)
class Part:
    """One model of the route: which class it is, and the Hub repo and revision it stands for."""

    name: str
    repo: str
    loader: str  # the class that loads it (from engine.checkpoint.public.loading's allow-list)
    licence: str
    revision: str = "main"

    def as_dict(self) -> dict[str, str]:
        return {"repo": self.repo, "revision": self.revision, "licence": self.licence, "loader": self.loader}


PUBLIC_PARTS: dict[str, Part] = {
    part.name: part
    for part in (
        Part("edit", "Qwen/Qwen-Image-Edit-2509", "QwenImageEditPlusPipeline", "Apache-2.0"),
        Part("i2v", "Wan-AI/Wan2.2-TI2V-5B-Diffusers", "WanImageToVideoPipeline", "Apache-2.0"),
        Part("animate", "Wan-AI/Wan2.2-Animate-14B-Diffusers", "WanAnimatePipeline", "Apache-2.0"),
        Part("detector", "PekingU/rtdetr_r50vd_coco_o365", "RTDetrForObjectDetection", "Apache-2.0"),
        Part("keypoints", "usyd-community/vitpose-base-simple", "VitPoseForPoseEstimation", "Apache-2.0"),
    )
}
LIVE_PARTS: dict[str, Part] = {
    part.name: part
    for part in (
        Part("stream", "Efficient-Large-Model/LongLive-2.0-5B", "CondNetTransformer", "Apache-2.0"),
        Part("lightning", "lightx2v/Qwen-Image-Lightning", "QwenImageLoraLoaderMixin", "Apache-2.0"),
    )
}


@dataclass(frozen=True)
class StageSettings:
    """Sampling defaults of one generating stage (`--steps`/`--guidance` override the video stage's)."""

    steps: int
    guidance: float


@dataclass(frozen=True)
class RoutePreset:
    """What `--model public` (or a `public-tiny` folder) renders by default, and how."""

    name: str
    description: str
    parts: dict[str, Part]
    default_size: tuple[int, int] = (1280, 704)
    default_fps: float = 24.0
    default_seconds: float = 5.0
    size_multiple: int = 32  # Wan2.2's 16x VAE times 2x2 patches; Qwen-Image and Wan2.1's VAE need 16
    edit: StageSettings = StageSettings(40, 4.0)  # Qwen-Image-Edit-2509's card: 40 steps, true CFG 4
    lightning: StageSettings = StageSettings(4, 1.0)  # the edit stage with the Lightning LoRA: 4 steps, no CFG
    i2v: StageSettings = StageSettings(50, 5.0)  # Wan2.2-TI2V-5B's defaults
    animate: StageSettings = StageSettings(20, 1.0)  # Wan-Animate: no CFG
    # Pixels each reference image is VAE-encoded at by the edit stage; None keeps diffusers' own
    # (1024x1024). The tiny route lowers it: a 1024x1024 VAE pass takes ~25 s on a small CPU.
    edit_image_area: int | None = None
    animate_window: int = 77  # frames per WanAnimate window (4k+1), chained with...
    animate_overlap: int = 1  # ...this many frames of the previous window as its start
    negative_prompt: str = "blurry, distorted body, extra limbs, deformed hands, low quality, watermark, text"
    hardware: str = ""
    notes: dict[str, str] = field(default_factory=dict)

    # What the generation API reads from a model's preset (engine.api.generate.plan_output).
    @property
    def default_steps(self) -> int:
        return self.i2v.steps

    @property
    def default_guidance(self) -> float:
        return self.i2v.guidance


PUBLIC = RoutePreset(
    name="public",
    description="real people today: Qwen-Image-Edit-2509 dresses the photo, Wan2.2 animates it "
                "(TI2V-5B from --prompt, Animate-14B from --motion via RT-DETR + ViTPose)",
    parts=PUBLIC_PARTS,
    hardware="one GPU with 80 GB (H100/H200/A100 80 GB) in bf16, one stage on the GPU at a time; "
             "about 40 GB with --offload model (--offload group and --fp8 go lower)",
)

PUBLIC_TINY = RoutePreset(
    name="public-tiny",
    description="the public route's classes at toy size with random weights: tests and smoke runs only",
    parts=PUBLIC_PARTS,
    default_size=(128, 224),
    default_fps=8.0,
    default_seconds=1.0,
    edit=StageSettings(2, 1.0),
    lightning=StageSettings(1, 1.0),
    i2v=StageSettings(2, 1.0),
    animate=StageSettings(2, 1.0),
    edit_image_area=128 * 128,
    animate_window=9,
    animate_overlap=1,
    hardware="any CPU",
)

ROUTE_PRESETS: dict[str, RoutePreset] = {p.name: p for p in (PUBLIC, PUBLIC_TINY)}


def get_route_preset(name: str) -> RoutePreset:
    try:
        return ROUTE_PRESETS[name]
    except KeyError:
        raise InputError(f"unknown route preset '{name}' (known: {', '.join(ROUTE_PRESETS)})") from None


def overridden(parts: dict[str, Part], environ: dict[str, str] | None = None) -> dict[str, Part]:
    """The parts with `TRYON_PUBLIC_<PART>_REPO` / `_REVISION` from the environment applied."""
    environ = os.environ if environ is None else environ
    result = {}
    for name, part in parts.items():
        prefix = f"TRYON_PUBLIC_{name.upper()}_"
        result[name] = replace(part, repo=environ.get(prefix + "REPO") or part.repo,
                               revision=environ.get(prefix + "REVISION") or part.revision)
    return result
