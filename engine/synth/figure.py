"""The articulated 2D figure: appearance, motion program and forward kinematics.

Coordinates are image pixels, x to the right and y down. "Left" and "right" are the
viewer's (image) sides: `_l` joints have the smaller x when the figure stands straight.
A motion program is defined in seconds and frame-relative units, independent of who
performs it, so two different people can do exactly the same motion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from engine.synth import colours
from engine.synth.geometry import across_of

HAIR_STYLES = ("short", "long", "bun")

# Body lengths and radii as fractions of the standing height (head top to soles).
_BASE_PROPORTIONS = {
    "head_r": 0.064,
    "neck": 0.030,
    "torso": 0.285,
    "shoulder_hw": 0.105,
    "waist_hw": 0.074,
    "hip_hw": 0.050,
    "upper_arm": 0.165,
    "forearm": 0.150,
    "arm_r": 0.028,
    "forearm_r": 0.023,
    "hand_r": 0.024,
    "thigh": 0.245,
    "shin": 0.230,
    "thigh_r": 0.044,
    "shin_r": 0.032,
    "foot": 0.040,
    "foot_r": 0.020,
}

# Joint-angle channels of a motion program (radians). Arm/leg angles are measured away
# from the body (abduction), so a positive value moves the limb outward on either side.
CHANNELS = (
    "lean",
    "head",
    "shoulder_l",
    "shoulder_r",
    "elbow_l",
    "elbow_r",
    "hip_l",
    "hip_r",
    "knee_l",
    "knee_r",
)


@dataclass(frozen=True)
class Appearance:
    """What a person looks like, apart from clothes."""

    skin_tone: float
    skin: tuple[int, int, int]
    hair_colour: str
    hair_style: str
    shoe_colour: str
    height: float  # standing height as a fraction of the frame height
    proportions: dict[str, float]  # see _BASE_PROPORTIONS
    background: dict  # {"kind": "plain"|"two_tone", "colours": [name, ...], "split": float}

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["skin"] = list(self.skin)
        d["proportions"] = dict(self.proportions)
        d["background"] = {
            "kind": self.background["kind"],
            "colours": list(self.background["colours"]),
            "rgb": [list(colours.BACKGROUND_COLOURS[c]) for c in self.background["colours"]],
            "split": self.background["split"],
        }
        return d

    def describe(self) -> str:
        """E.g. 'a person with short black hair'."""
        style = {"short": "short", "long": "long", "bun": "tied-up"}[self.hair_style]
        return f"a person with {style} {self.hair_colour} hair"


def sample_appearance(rng: np.random.Generator, avoid: Appearance | None = None) -> Appearance:
    """A random appearance; with `avoid`, one clearly different from it (skin or hair)."""
    for _ in range(20):
        look = _draw_appearance(rng)
        if avoid is None or _looks_different(look, avoid):
            return look
    return look


def _looks_different(a: Appearance, b: Appearance) -> bool:
    hair = a.hair_colour != b.hair_colour or a.hair_style != b.hair_style
    return hair and (abs(a.skin_tone - b.skin_tone) > 0.15 or a.background != b.background)


def _draw_appearance(rng: np.random.Generator) -> Appearance:
    tone = colours.uniform(rng, 0.0, 1.0)
    build = colours.uniform(rng, 0.88, 1.14)  # broad vs slim
    limbs = colours.uniform(rng, 0.85, 1.15)
    props = dict(_BASE_PROPORTIONS)
    props["head_r"] *= colours.uniform(rng, 0.92, 1.08)
    props["torso"] *= colours.uniform(rng, 0.94, 1.06)
    props["shoulder_hw"] *= build
    props["waist_hw"] *= colours.uniform(rng, 0.9, 1.15) * build
    props["hip_hw"] *= colours.uniform(rng, 0.9, 1.2)
    for key in ("arm_r", "forearm_r", "thigh_r", "shin_r"):
        props[key] *= limbs
    legs = colours.uniform(rng, 0.95, 1.05)
    props["thigh"] *= legs
    props["shin"] *= legs
    total = 2 * props["head_r"] + props["neck"] + props["torso"] + props["thigh"] + props["shin"]
    total += props["foot_r"] * 2
    props = {k: round(v / total, 5) for k, v in props.items()}

    bg_names = list(colours.BACKGROUND_COLOURS)
    kind = "two_tone" if rng.random() < 0.5 else "plain"
    first = bg_names[colours.index(rng, len(bg_names))]
    bg: dict = {"kind": kind, "colours": [first], "split": 1.0}
    if kind == "two_tone":
        rest = [n for n in bg_names if n != first]
        bg["colours"].append(rest[colours.index(rng, len(rest))])
        bg["split"] = round(colours.uniform(rng, 0.55, 0.85), 4)  # wall above, floor below

    return Appearance(
        skin_tone=round(tone, 4),
        skin=colours.skin_colour(tone),
        hair_colour=list(colours.HAIR_COLOURS)[colours.index(rng, len(colours.HAIR_COLOURS))],
        hair_style=HAIR_STYLES[colours.index(rng, len(HAIR_STYLES))],
        shoe_colour=list(colours.SHOE_COLOURS)[colours.index(rng, len(colours.SHOE_COLOURS))],
        height=round(colours.uniform(rng, 0.74, 0.86), 4),
        proportions=props,
        background=bg,
    )


@dataclass(frozen=True)
class MotionProgram:
    """Joint angles as sums of sinusoids, body sway and sideways stepping.

    `channels[name] = (base, ((amplitude, frequency_hz, phase), ...))`. Horizontal
    positions are fractions of the frame width: the pelvis is at
    `start_x + step_speed * t + sway_amp * sin(2 pi sway_freq t + sway_phase)`.
    While stepping, legs lift alternately at `step_freq`.
    """

    channels: dict[str, tuple[float, tuple[tuple[float, float, float], ...]]]
    start_x: float
    step_speed: float  # frame widths per second; negative walks towards the image left
    step_freq: float
    step_phase: float
    step_lift: float  # 0..1, how high feet rise
    sway_amp: float
    sway_freq: float
    sway_phase: float
    duration: float  # seconds the program was planned for (keeps the figure in frame)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["channels"] = {
            k: {"base": b, "waves": [list(w) for w in waves]} for k, (b, waves) in self.channels.items()
        }
        return d

    def angles(self, times: np.ndarray) -> dict[str, np.ndarray]:
        """Every channel's angle (radians) at `times` (seconds)."""
        names = list(self.channels)
        rows, waves = [], []
        for row, name in enumerate(names):
            for wave in self.channels[name][1]:
                rows.append(row)
                waves.append(wave)
        out = np.repeat(np.array([[self.channels[n][0]] for n in names]), len(times), axis=1)
        if waves:
            amp, freq, phase = np.array(waves).T
            terms = amp[:, None] * np.sin((2 * math.pi) * freq[:, None] * times[None, :] + phase[:, None])
            np.add.at(out, np.array(rows), terms)
        return dict(zip(names, out))

    def root_x(self, times: np.ndarray) -> np.ndarray:
        """Pelvis x as a fraction of the frame width."""
        sway = self.sway_amp * np.sin(2 * math.pi * self.sway_freq * times + self.sway_phase)
        return self.start_x + self.step_speed * times + sway

    def lifts(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """How far each foot is lifted (0..1) at `times`; the feet alternate."""
        s = np.sin(2 * math.pi * self.step_freq * times + self.step_phase)
        return self.step_lift * np.maximum(s, 0.0), self.step_lift * np.maximum(-s, 0.0)

    def describe(self) -> str:
        """A caption phrase such as 'sways and steps to the left'."""
        acts = []
        if _amplitude(self.channels["lean"]) > 0.07 or self.sway_amp > 0.015:
            acts.append("sways")
        arms = max(_amplitude(self.channels["shoulder_l"]), _amplitude(self.channels["shoulder_r"]))
        raised = max(self.channels["shoulder_l"][0], self.channels["shoulder_r"][0])
        if arms > 0.4:
            acts.append("waves their arms")
        elif raised > 0.9:
            acts.append("holds their arms out")
        if abs(self.step_speed) * self.duration > 0.08:
            acts.append("steps to the left" if self.step_speed < 0 else "steps to the right")
        elif self.step_lift > 0.3:
            acts.append("marches on the spot")
        if not acts:
            return "stands and shifts slightly"
        return acts[0] if len(acts) == 1 else ", ".join(acts[:-1]) + " and " + acts[-1]


def _amplitude(channel: tuple[float, tuple[tuple[float, float, float], ...]]) -> float:
    return sum(abs(w[0]) for w in channel[1])


def sample_motion(rng: np.random.Generator, duration: float) -> MotionProgram:
    """A random motion program that keeps the figure inside the frame for `duration` s."""

    def waves(n_max: int, amp_hi: float, f_lo: float = 0.25, f_hi: float = 1.2) -> tuple:
        n = 1 + colours.index(rng, n_max)
        return tuple(
            (
                round(colours.uniform(rng, 0.0, amp_hi) / n, 4),
                round(colours.uniform(rng, f_lo, f_hi), 4),
                round(colours.uniform(rng, 0, 2 * math.pi), 4),
            )
            for _ in range(n)
        )

    ch: dict = {}
    ch["lean"] = (round(float(rng.normal(0, 0.03)), 4), waves(2, 0.16))
    ch["head"] = (round(float(rng.normal(0, 0.05)), 4), waves(1, 0.2))
    active = rng.random() < 0.45
    shoulder_base = colours.uniform(rng, 0.12, 0.45)
    if rng.random() < 0.12:
        shoulder_base = colours.uniform(rng, 0.9, 1.3)
    left = waves(2, 1.3 if active else 0.25)
    mode = colours.index(rng, 3)  # mirrored arms, alternating arms, independent arms
    if mode == 0:
        right = left
    elif mode == 1:
        right = tuple((a, f, round((p + math.pi) % (2 * math.pi), 4)) for a, f, p in left)
    else:
        right = waves(2, 1.3 if active else 0.25)
    ch["shoulder_l"] = (round(shoulder_base + float(rng.normal(0, 0.05)), 4), left)
    ch["shoulder_r"] = (round(shoulder_base + float(rng.normal(0, 0.05)), 4), right)
    for side in ("l", "r"):
        ch[f"elbow_{side}"] = (round(colours.uniform(rng, -0.2, 0.45), 4), waves(1, 0.7))
        ch[f"hip_{side}"] = (round(colours.uniform(rng, 0.02, 0.12), 4), waves(1, 0.08))
        ch[f"knee_{side}"] = (round(colours.uniform(rng, -0.06, 0.04), 4), waves(1, 0.08))

    stepping = rng.random() < 0.6
    travel = colours.uniform(rng, 0.12, 0.36) if stepping else 0.0
    direction = 1 if rng.random() < 0.5 else -1
    speed = direction * travel / duration if duration > 0 else 0.0
    lift = colours.uniform(rng, 0.3, 0.8) if stepping or rng.random() < 0.3 else 0.0
    return MotionProgram(
        channels=ch,
        start_x=round(0.5 - speed * duration / 2, 5),
        step_speed=round(speed, 5),
        step_freq=round(colours.uniform(rng, 0.8, 1.6), 4),
        step_phase=round(colours.uniform(rng, 0, 2 * math.pi), 4),
        step_lift=round(lift, 4),
        sway_amp=round(colours.uniform(rng, 0.0, 0.03), 4),
        sway_freq=round(colours.uniform(rng, 0.25, 0.9), 4),
        sway_phase=round(colours.uniform(rng, 0, 2 * math.pi), 4),
        duration=round(float(duration), 5),
    )


def canonical_pose() -> MotionProgram:
    """A still, symmetric pose (arms a little out, legs a little apart) for product shots."""
    ch: dict = {name: (0.0, ()) for name in CHANNELS}
    ch["shoulder_l"] = ch["shoulder_r"] = (0.42, ())
    ch["hip_l"] = ch["hip_r"] = (0.1, ())
    return MotionProgram(ch, 0.5, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0)


@dataclass
class Skeleton:
    """Joint positions in pixels, each (T, 2), plus the scale they were built at."""

    joints: dict[str, np.ndarray]
    torso_down: np.ndarray  # (T, 2) unit vector from neck base to pelvis
    head_down: np.ndarray  # (T, 2) unit vector from crown to chin
    scale: float  # pixels per standing height
    props: dict[str, float]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.joints[name]

    def px(self, name: str) -> float:
        """A proportion in pixels."""
        return self.props[name] * self.scale


def _rot(down: np.ndarray, across: np.ndarray, angle: np.ndarray, side: float) -> np.ndarray:
    """The unit vector `angle` radians from `down`, turned outward towards `side` (+1 right)."""
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    return c * down + side * s * across





def build_skeleton(
    look: Appearance,
    program: MotionProgram,
    times: np.ndarray,
    size: tuple[int, int],
    ground: float = 0.955,
) -> Skeleton:
    """Forward kinematics: where every joint of `look` is at `times` under `program`."""
    width, height = size
    scale = look.height * height
    p = {k: v * scale for k, v in look.proportions.items()}
    ang = program.angles(times)
    lift_l, lift_r = program.lifts(times)
    n = len(times)
    down = np.tile(np.array([[0.0, 1.0]]), (n, 1))
    right = np.tile(np.array([[1.0, 0.0]]), (n, 1))

    j: dict[str, np.ndarray] = {}
    pelvis = np.zeros((n, 2))
    for side, sign, lift in (("l", -1.0, lift_l), ("r", 1.0, lift_r)):
        hip = pelvis + sign * p["hip_hw"] * right
        # A lifted foot bends the knee towards the camera, which in a front view mostly
        # shortens the shin and swings it a little outward.
        thigh_dir = _rot(down, right, ang[f"hip_{side}"] + 0.12 * lift, sign)
        knee = hip + p["thigh"] * thigh_dir
        shin_dir = _rot(down, right, ang[f"hip_{side}"] + ang[f"knee_{side}"] - 0.05 * lift, sign)
        ankle = knee + (p["shin"] * (1 - 0.45 * lift))[:, None] * shin_dir
        toe = ankle + p["foot"] * (0.35 * sign * right + 0.75 * down)
        j[f"hip_{side}"], j[f"knee_{side}"], j[f"ankle_{side}"], j[f"toe_{side}"] = hip, knee, ankle, toe

    # Stand on the lower foot: the pelvis height makes that sole touch the ground.
    sole = np.maximum(j["toe_l"][:, 1], j["toe_r"][:, 1]) + p["foot_r"]
    offset = np.stack([program.root_x(times) * width, ground * height - sole], axis=1)
    for key in list(j):
        j[key] = j[key] + offset
    pelvis = pelvis + offset
    j["pelvis"] = pelvis

    lean = ang["lean"]
    torso_up = np.stack([np.sin(lean), -np.cos(lean)], axis=1)
    neck = pelvis + p["torso"] * torso_up
    tdown = -torso_up
    tacross = across_of(tdown)
    j["neck"] = neck
    for side, sign in (("l", -1.0), ("r", 1.0)):
        shoulder = neck + sign * (p["shoulder_hw"] - p["arm_r"]) * tacross + p["arm_r"] * 0.9 * tdown
        upper = _rot(tdown, tacross, ang[f"shoulder_{side}"], sign)
        elbow = shoulder + p["upper_arm"] * upper
        fore = _rot(tdown, tacross, ang[f"shoulder_{side}"] + ang[f"elbow_{side}"], sign)
        wrist = elbow + p["forearm"] * fore
        j[f"shoulder_{side}"], j[f"elbow_{side}"], j[f"wrist_{side}"] = shoulder, elbow, wrist
        j[f"hand_{side}"] = wrist + p["hand_r"] * 0.7 * fore

    tilt = lean + ang["head"]
    head_up = np.stack([np.sin(tilt), -np.cos(tilt)], axis=1)
    j["chin"] = neck + p["neck"] * head_up
    j["head"] = j["chin"] + p["head_r"] * head_up
    return Skeleton(j, tdown, -head_up, scale, dict(look.proportions))
