"""Student distillation configuration: a JSON file, read into `StudentConfig`.

A student config is a teacher config (engine.train.config: stages, trainable, dropouts,
checkpointing, seed, ...) in which every stage also names its `phase`, plus the keys of
streaming distillation. Example (`engine/train/configs/student.json` is a full recipe)::

    {
      "stages": [
        {"name": "teacher_forcing", "phase": "teacher_forcing", "steps": 400, "size": [96, 160],
         "num_frames": 17, "fps": 8, "batch_size": 2, "lr": 1e-4},
        {"name": "dmd", "phase": "dmd", "steps": 400, "size": [96, 160],
         "num_frames": 17, "fps": 8, "batch_size": 1, "lr": 1e-5}
      ],
      "chunk_frames": 3, "steps_per_chunk": 4, "window": 6,
      "guidance": 2.0, "critic_ratio": 1, "critic_lr": null,
      "reweight": true, "tau": 0.2, "scorer": "auto", "aesthetic_weights": null
    }

Keys beyond the teacher config's (each also commented at its field below):

- stage `phase`: "teacher_forcing" (flow matching under the block-causal mask, clean
  ground-truth history) or "dmd" (self-rollout + distribution matching). All teacher-forcing
  stages come before all DMD stages. The stage's `lr` is the student's learning rate.
- `chunk_frames`, `steps_per_chunk`, `window`: the streaming shape the student is trained
  for, StreamConfig's `chunk_frames`, `steps` and `window`; its checkpoint records them for
  streams, the window as far as the training clips filled it (engine.train.student.filled_window:
  a 2-s demo clip of two chunks fills only the sink, so its students stream with the sink
  alone; FashionChameleon's 81 frames fill the sink and 5).
- `guidance`: the teacher's classifier-free guidance in s_real; null: the teacher preset's
  default guidance; 1 or less: none.
- `guidance_keeps_garments`: the unconditional branch of that guidance keeps the garments
  (FashionChameleon's: only the prompt is dropped) or drops them with the prompt (false: the
  branch a teacher trained with `condition_dropout` learned, as its own pipeline guides).
- `negative_prompt`: the text of that unconditional branch: by default Wan2.2's negative
  prompt, as FashionChameleon's GR-DMD config gives it; "" for the empty prompt.
- `critic_ratio`: critic (fake score) updates per student update in DMD stages: the critic
  learns every step, the student on every `critic_ratio`-th step (Self-Forcing's
  dfake_gen_update_ratio; DMD2 uses 5).
- `critic_lr`: the critic's learning rate; null: the stage's `lr`.
- `dmd_min_t`, `dmd_max_t`: the DMD re-noising level is drawn as training noise levels are
  (u uniform, then the timestep shift) with u in [dmd_min_t, dmd_max_t] (DMD2: 0.02–0.98).
- `reweight`: GR-DMD's per-frame gradient weights on (true) or plain DMD (false, the ablation).
- `tau`: the temperature τ of A = softmax(−R/τ) (FashionChameleon: 0.2).
- `scorer`: the frame-quality score R: "auto" (the aesthetic model when its weights are in
  `aesthetic_weights`, else "sharpness_colour", with a notice), "sharpness_colour" or
  "aesthetic"; see engine.train.scorer.
- `aesthetic_weights`: a folder with the aesthetic model (clip/ and head.safetensors), or null.
- `sampler`: the student's few-step sampler in rollouts, recorded in the checkpoint for
  streaming: "euler" or "renoise" (FashionChameleon's: x0 at timesteps 1000/750/500/250
  warped by the shift, re-noised in between; engine.pipelines.pipeline_tryon_streaming).
- `random_exit`: Self-Forcing's random exit (FashionChameleon's `last_step_only: false`): each
  rollout stops at a denoising step drawn uniformly per update, the same for all its chunks,
  and the student's gradient is taken there; false: always the last step. "renoise" only.
- `block_noise`: in teacher forcing, each chunk gets its own noise level (drawn as flow
  matching draws one), as the official teacher forcing noises each block independently;
  false: one level for the whole clip.
- `ema`, `ema_start`: an exponential moving average of the student's trainable weights with
  this decay (the official 0.99), kept from optimizer step `ema_start` on (the official 200
  generator steps); the checkpoint's student is the average, the live weights stay in
  `training_state/` for resume. null: no average.

The built-in recipe follows FashionChameleon's configs (configs/gr_dmd_wan22_ic.yaml,
default_config.yaml) where they apply at this size: critic ratio 5, Adam β1 0 (β2 0.999),
gradient clipping at 10, teacher guidance 3.0, τ 0.2, chunks of 3 latent frames, 4 steps,
the renoise sampler with a random exit, 5 history chunks besides the sink (its 23-frame
window: 5 history chunks, the current one and the conditions), independent noise per block in
teacher forcing. Its learning rates (2e-6 student, 4e-7 critic, for the 5B model) and its
generator EMA (0.99 from step 200) are used in `wan5b-student.json` only: the demo model is a
random-init toy that needs larger steps, and its DMD stage makes 60 student updates, over
which a 0.99 average would keep most of the teacher-forcing weights. The demo recipe's
guidance branch drops the garments with the prompt (`guidance_keeps_garments` false): the demo
teacher learned no other unconditional branch (its `condition_dropout` drops both together),
and measured on held-out streams the student then follows garments better (the demo student's
note in docs/demo.md); `wan5b-student.json` keeps FashionChameleon's branch.

Defaults that differ from the teacher's: `condition_dropout` 0 (the streaming student never
runs unconditioned) and `p_dance` 0, which must stay 0 (streaming has no anchored first frame).
`gradient_checkpointing` recomputes each block in the backward pass on the cache entries its
chunk attended to (engine.model.kv_cache views); so every chunk of a training clip but the last
must stay cached: the sink and the `window` history chunks hold them (checked when training
starts, when the clip's latent length is known).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.errors import InputError
from engine.pipelines.pipeline_tryon_streaming import SAMPLERS
from engine.train.config import (
    RESHAPING,
    TrainConfig,
    _is_number,
    _require_bool,
    _require_choice,
    _require_int,
    _require_positive,
)

PHASES = ("teacher_forcing", "dmd")
# Wan2.2's default negative prompt, which FashionChameleon's GR-DMD config (gr_dmd_wan22_ic.yaml) gives the
# unconditional branch of the teacher's guidance.
WAN_NEGATIVE_PROMPT = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
                       "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，"
                       "静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走")
SCORERS = ("auto", "sharpness_colour", "aesthetic")


@dataclass(frozen=True)
class StudentConfig(TrainConfig):
    """A teacher config plus streaming distillation (see the module docstring for each key)."""

    condition_dropout: float = 0.0  # the student never runs unconditioned
    p_dance: float = 0.0  # must be 0: streaming has no anchored first frame
    phases: tuple[str, ...] = ()  # one per stage, from each stage's "phase"
    chunk_frames: int = 3  # latent frames per chunk (StreamConfig.chunk_frames)
    steps_per_chunk: int = 4  # the student's denoising steps per chunk in a rollout (StreamConfig.steps)
    window: int = 6  # history chunks kept besides the sink (StreamConfig.window)
    guidance: float | None = None  # teacher CFG in s_real; None: the teacher preset's; <= 1: none
    guidance_keeps_garments: bool = True  # the guidance's unconditional branch keeps the garments
    negative_prompt: str = WAN_NEGATIVE_PROMPT  # the text of that branch ("" for none)
    critic_ratio: int = 1  # critic updates per student update (the student learns every n-th DMD step)
    critic_lr: float | None = None  # the critic's learning rate; None: the stage's lr
    dmd_min_t: float = 0.02  # DMD re-noising: u uniform in [dmd_min_t, dmd_max_t], then shifted
    dmd_max_t: float = 0.98
    reweight: bool = True  # GR-DMD frame weights (false: plain DMD)
    tau: float = 0.2  # temperature of A = softmax(-R / tau)
    scorer: str = "auto"  # auto | sharpness_colour | aesthetic
    aesthetic_weights: str | None = None  # folder with clip/ and head.safetensors
    sampler: str = "euler"  # euler | renoise (see engine.pipelines.pipeline_tryon_streaming)
    random_exit: bool = False  # Self-Forcing's random exit step (renoise only)
    block_noise: bool = False  # teacher forcing: an independent noise level per chunk (else one per clip)
    ema: float | None = None  # decay of the generator's EMA (the saved student); None: no EMA
    ema_start: int = 0  # the optimizer step from which the EMA is kept (before it, it follows the weights)

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.phases) != len(self.stages):
            raise InputError(f"every stage needs a phase ({' or '.join(PHASES)})")
        for stage, phase in zip(self.stages, self.phases):
            if phase is None:
                raise InputError(f"stage '{stage.name}' needs a phase ({' or '.join(PHASES)})")
            if phase not in PHASES:
                raise InputError(f"stage '{stage.name}': phase must be one of {', '.join(PHASES)}, not {phase!r}")
        if list(self.phases) != sorted(self.phases, key=PHASES.index):
            raise InputError("all teacher_forcing stages must come before the dmd stages")
        if self.p_dance != 0:
            raise InputError("p_dance must be 0 for the student: streaming has no anchored first frame")
        for key in RESHAPING:
            if getattr(self, key) is not None:
                raise InputError(f"{key} is for teacher recipes: a student starts as a copy of its teacher's transformer")
        for key in ("chunk_frames", "steps_per_chunk", "critic_ratio"):
            _require_int(getattr(self, key), key, minimum=1)
        _require_int(self.window, "window", minimum=0)
        for key in ("guidance", "critic_lr"):
            if getattr(self, key) is not None:
                _require_positive(getattr(self, key), key)
        _require_positive(self.tau, "tau")
        if not (_is_number(self.dmd_min_t) and _is_number(self.dmd_max_t)
                and 0.0 <= self.dmd_min_t < self.dmd_max_t <= 1.0):
            raise InputError(f"need 0 <= dmd_min_t < dmd_max_t <= 1, not {self.dmd_min_t!r}, {self.dmd_max_t!r}")
        for key in ("reweight", "guidance_keeps_garments", "random_exit", "block_noise"):
            _require_bool(getattr(self, key), key)
        _require_choice(self.scorer, "scorer", SCORERS)
        if not isinstance(self.negative_prompt, str):
            raise InputError(f"negative_prompt must be a string, not {self.negative_prompt!r}")
        _require_choice(self.sampler, "sampler", SAMPLERS)
        if self.random_exit and self.sampler != "renoise":
            raise InputError("random_exit needs the renoise sampler")
        if self.ema is not None and not (_is_number(self.ema) and 0.0 < self.ema < 1.0):
            raise InputError(f"ema must be null or a decay in (0, 1), not {self.ema!r}")
        _require_int(self.ema_start, "ema_start", minimum=0)
        if self.aesthetic_weights is not None and not isinstance(self.aesthetic_weights, str):
            raise InputError(f"aesthetic_weights must be a folder path or null, not {self.aesthetic_weights!r}")

    @property
    def has_dmd(self) -> bool:
        return "dmd" in self.phases

    @property
    def dmd_start(self) -> int:
        """The first optimizer step of the first DMD stage (total_steps if there is none)."""
        return self.stage_start(self.phases.index("dmd")) if self.has_dmd else self.total_steps

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (each stage with its phase); `from_dict(to_dict())` gives back an equal config."""
        data = super().to_dict()
        phases = data.pop("phases")
        data["stages"] = [{**stage, "phase": phase} for stage, phase in zip(data["stages"], phases)]
        return data

    @classmethod
    def from_dict(cls, data: Any) -> "StudentConfig":
        """Build from parsed JSON: each stage's "phase" is taken out, the rest read as a teacher config."""
        if not isinstance(data, dict):
            raise InputError("the config must be a JSON object")
        if "phases" in data:
            raise InputError("unknown key(s) in config: phases (give each stage a \"phase\" instead)")
        stages = data.get("stages")
        if isinstance(stages, list):
            phases = tuple(stage.get("phase") if isinstance(stage, dict) else None for stage in stages)
            stages = [{k: v for k, v in stage.items() if k != "phase"} if isinstance(stage, dict) else stage
                      for stage in stages]
            data = {**data, "stages": stages, "phases": phases}
        return super().from_dict(data)
