"""Turn a skeleton and an outfit into layered, textured polygons (a render.Scene)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.synth import colours
from engine.synth.figure import Appearance, Skeleton
from engine.synth.garments import GarmentSpec
from engine.synth.geometry import across_of, arc_points, circle_uv, unit
from engine.synth.render import Material, Scene

EYE_RGB = (34, 28, 30)


@dataclass(frozen=True)
class Worn:
    """A garment on a person; `label` is its mask name, None for the person's own clothes.

    `frames` (start, stop) limits it to those frames of the scene; None: worn throughout.
    """

    spec: GarmentSpec
    label: str | None
    frames: tuple[int, int] | None = None


def in_frame(origin: np.ndarray, down: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Points (K, 2) given as (u, v) pixels in a local frame, placed per frame: (T, K, 2)."""
    across = across_of(down)
    return origin[:, None, :] + uv[None, :, 0:1] * across[:, None, :] + uv[None, :, 1:2] * down[:, None, :]


def _circle(centre: np.ndarray, down: np.ndarray, r: float) -> np.ndarray:
    return in_frame(centre, down, r * circle_uv(max(arc_points(r) * 2, 6)))


def _torso_width(sk: Skeleton, v: float, sleeveless: bool = False) -> float:
    """The body's half width (pixels) at distance v (pixels) down the torso from the neck."""
    length = sk.px("torso")
    sw = sk.px("shoulder_hw")
    knots = (
        (0.0, 0.72 * sw if sleeveless else sw),
        (0.3 * length, 0.93 * sw),
        (0.62 * length, sk.px("waist_hw")),
        (length, sk.px("hip_hw") + sk.px("thigh_r")),
    )
    if v <= 0.0:
        return knots[0][1]
    for (v0, w0), (v1, w1) in zip(knots, knots[1:]):
        if v <= v1:
            return w0 + (w1 - w0) * (v - v0) / (v1 - v0)
    return knots[-1][1]


def _torso_profile(sk: Skeleton, hem: float, ease: float, sleeveless: bool, neck: bool) -> np.ndarray:
    """(u, v) outline in pixels of the torso (or of a top over it) down to `hem` x torso."""
    length = sk.px("torso")
    vs = [0.0, 0.3 * length, 0.62 * length, hem * length]
    vs = sorted({min(v, hem * length) for v in vs})
    right = [(_torso_width(sk, v, sleeveless) + ease, v) for v in vs]
    right[0] = (right[0][0], -0.3 * ease)
    top: list[tuple[float, float]]
    if neck:
        nw = 0.62 * sk.px("head_r") + ease
        depth = 0.05 * sk.scale
        top = [(-nw, -0.3 * ease), (-0.6 * nw, 0.6 * depth), (0.0, depth), (0.6 * nw, 0.6 * depth), (nw, -0.3 * ease)]
    else:
        r = sk.px("arm_r")
        top = [(-right[0][0] + r, -0.5 * r), (right[0][0] - r, -0.5 * r)]
    left = [(-u, v) for u, v in reversed(right)]
    return np.array(top + right + left, np.float64)


def _along_leg(sk: Skeleton, side: str, frac: float) -> tuple[np.ndarray, np.ndarray, float]:
    """The point `frac` of the way from hip to ankle, the limb axis there, and the leg radius."""
    hip, knee, ankle = sk[f"hip_{side}"], sk[f"knee_{side}"], sk[f"ankle_{side}"]
    thigh, shin = sk.px("thigh"), sk.px("shin")
    dist = frac * (thigh + shin)
    if dist <= thigh:
        f = dist / thigh
        r = sk.px("thigh_r") + f * (sk.px("shin_r") - sk.px("thigh_r")) * 0.6
        return hip + f * (knee - hip), unit(knee - hip), r
    f = min((dist - thigh) / shin, 1.0)
    r = sk.px("thigh_r") * 0.4 * (1 - f) + sk.px("shin_r") * (0.6 + 0.4 * f)
    return knee + f * (ankle - knee), unit(ankle - knee), r


class FigureBuilder:
    """Adds the shapes of one person (or of garments alone) to a scene, back to front."""

    def __init__(self, scene: Scene, sk: Skeleton, look: Appearance | None) -> None:
        self.scene, self.sk, self.look = scene, sk, look
        self.tdown = sk.torso_down
        self.tacross = across_of(sk.torso_down)

    # -- body -------------------------------------------------------------------------
    def body_back(self) -> None:
        """Long hair behind the shoulders, legs, shoes, the bare torso and neck."""
        sk, look = self.sk, self.look
        assert look is not None
        skin = Material(tuple(look.skin), shade=0.22)
        hair = Material(colours.HAIR_COLOURS[look.hair_colour], shade=0.3)
        if look.hair_style == "long":
            r = sk.px("head_r")
            uv = np.array([(-1.1, -0.2), (-1.2, 1.6), (-1.05, 2.7), (1.05, 2.7), (1.2, 1.6), (1.1, -0.2)]) * r
            self.scene.add(hair, in_frame(sk["head"], sk.head_down, uv), sk["head"], sk.head_down, 1.2 * r)
        shoe = Material(colours.SHOE_COLOURS[look.shoe_colour], shade=0.15)
        for side in ("l", "r"):
            self._limb(skin, f"hip_{side}", f"knee_{side}", sk.px("thigh_r"), sk.px("shin_r") * 1.08)
            self._limb(skin, f"knee_{side}", f"ankle_{side}", sk.px("shin_r") * 1.05, sk.px("shin_r") * 0.75)
            self._limb(shoe, f"ankle_{side}", f"toe_{side}", sk.px("foot_r") * 1.1, sk.px("foot_r"))
        profile = _torso_profile(sk, 1.0, 0.0, sleeveless=False, neck=False)
        self.scene.add(skin, in_frame(sk["neck"], self.tdown, profile), sk["neck"], self.tdown, sk.px("shoulder_hw"))
        neck_r = 0.5 * sk.px("head_r")
        self._limb(skin, "neck", "chin", neck_r, neck_r)

    def arm(self, side: str) -> None:
        skin = Material(tuple(self.look.skin), shade=0.22)  # type: ignore[union-attr]
        sk = self.sk
        self._limb(skin, f"shoulder_{side}", f"elbow_{side}", sk.px("arm_r"), sk.px("forearm_r") * 1.05)
        self._limb(skin, f"elbow_{side}", f"wrist_{side}", sk.px("forearm_r"), sk.px("forearm_r") * 0.8)
        self.scene.add_capsule(skin, sk[f"wrist_{side}"], sk[f"hand_{side}"], sk.px("hand_r") * 0.8, sk.px("hand_r"))

    def head(self) -> None:
        sk, look = self.sk, self.look
        assert look is not None
        r = sk.px("head_r")
        centre, hdown = sk["head"], sk.head_down
        skin = Material(tuple(look.skin), shade=0.22)
        self.scene.add(skin, _circle(centre, hdown, r), centre, hdown, r)
        hair = Material(colours.HAIR_COLOURS[look.hair_colour], shade=0.3)
        if look.hair_style == "bun":
            bun = centre - 1.05 * r * hdown
            self.scene.add(hair, _circle(bun, hdown, 0.5 * r), bun, hdown, 0.5 * r)
        reach = 2.25 if look.hair_style == "long" else 1.85  # how far down the sides hair falls
        arc = np.linspace(-reach, reach, 11)
        outer = [(1.1 * r * math.sin(a), -1.1 * r * math.cos(a)) for a in arc]
        # The hairline, right to left across the forehead; long hair also frames the face.
        line = [(0.9, 0.05), (0.55, -0.45), (0.0, -0.58), (-0.55, -0.45), (-0.9, 0.05)]
        if look.hair_style == "long":
            line = [(0.86, 0.6), (0.75, -0.3)] + line[1:-1] + [(-0.75, -0.3), (-0.86, 0.6)]
        line = [(u * r, v * r) for u, v in line]
        self.scene.add(hair, in_frame(centre, hdown, np.array(outer + line)), centre, hdown, 1.1 * r)
        if r >= 4.0:
            eye = Material(EYE_RGB, shade=0.0)
            for sign in (-1.0, 1.0):
                c = centre + in_frame(np.zeros_like(centre), hdown, np.array([[sign * 0.36 * r, 0.12 * r]]))[:, 0]
                self.scene.add(eye, _circle(c, hdown, max(0.13 * r, 0.6)), c, hdown, r)

    def _limb(self, mat: Material, j0: str, j1: str, r0: float, r1: float) -> None:
        self.scene.add_capsule(mat, self.sk[j0], self.sk[j1], r0, r1)

    # -- garments ---------------------------------------------------------------------
    def garment(self, worn: Worn, part: str = "all") -> None:
        """Add a garment's shapes. `part`: "all", or "body"/"sleeves" to split a top's layers."""
        spec = worn.spec
        mat = garment_material(worn)
        ease = spec.ease * self.sk.scale
        if spec.category == "bottom":
            if spec.kind == "skirt":
                self._skirt(mat, spec, ease)
            else:
                self._trousers(mat, spec, ease)
            return
        if part in ("all", "body"):
            hem = 1.0 if spec.category == "dress" else spec.length
            profile = _torso_profile(self.sk, hem, ease, spec.sleeves == "none", neck=True)
            sk = self.sk
            verts = in_frame(sk["neck"], self.tdown, profile)
            if spec.category == "dress":
                self._skirt(mat, spec, ease)
            self.scene.add(mat, verts, sk["neck"], self.tdown, sk.px("shoulder_hw") + ease)
        if part in ("all", "sleeves"):
            for side in ("l", "r"):
                self.sleeve(mat, spec, ease, side)

    def sleeve(self, mat: Material, spec: GarmentSpec, ease: float, side: str) -> None:
        sk = self.sk
        if spec.sleeves == "none":
            return
        s, e, w = sk[f"shoulder_{side}"], sk[f"elbow_{side}"], sk[f"wrist_{side}"]
        r = sk.px("arm_r") + ease
        if spec.sleeves == "short":
            end = s + 0.55 * (e - s)
            self.scene.add_capsule(mat, s, end, r * 1.05, r * 1.15, round1=False)
            return
        rf = sk.px("forearm_r") + ease
        self.scene.add_capsule(mat, s, e, r * 1.05, rf)
        self.scene.add_capsule(mat, e, e + 0.9 * (w - e), rf, rf * 1.05, round1=False)

    def _waist(self, ease: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Waistband centre and its left/right ends, per frame."""
        sk = self.sk
        v = 0.7 * sk.px("torso")
        centre = sk["neck"] + v * self.tdown
        half = _torso_width(sk, v) + ease
        return centre, centre - half * self.tacross, centre + half * self.tacross

    def _trousers(self, mat: Material, spec: GarmentSpec, ease: float) -> None:
        sk = self.sk
        centre, wl, wr = self._waist(ease)
        r_hip = sk.px("thigh_r") + ease
        crotch = sk["pelvis"] + 1.3 * r_hip * self.tdown
        hip_l = sk["hip_l"] - r_hip * self.tacross
        hip_r = sk["hip_r"] + r_hip * self.tacross
        seat = np.stack([wl, wr, hip_r, crotch, hip_l], axis=1)
        self.scene.add(mat, seat, centre, self.tdown, _torso_width(sk, sk.px("torso")) + ease)
        thigh = sk.px("thigh") / (sk.px("thigh") + sk.px("shin"))
        for side in ("l", "r"):
            hip, knee = sk[f"hip_{side}"], sk[f"knee_{side}"]
            if spec.length <= thigh:
                end, _, r = _along_leg(sk, side, spec.length)
                self.scene.add_capsule(mat, hip, end, r_hip, r + ease * 1.5, round1=False)
                continue
            rk = 0.5 * (sk.px("thigh_r") + sk.px("shin_r")) * 1.1 + ease
            self.scene.add_capsule(mat, hip, knee, r_hip, rk)
            end, _, r = _along_leg(sk, side, spec.length)
            self.scene.add_capsule(mat, knee, end, rk, r + ease * 1.2, round1=False)

    def _skirt(self, mat: Material, spec: GarmentSpec, ease: float) -> None:
        sk = self.sk
        centre, wl, wr = self._waist(ease)
        flare = spec.flare * sk.scale
        r_hip = sk.px("thigh_r") + ease
        hip_l = sk["hip_l"] - 1.1 * r_hip * self.tacross
        hip_r = sk["hip_r"] + 1.1 * r_hip * self.tacross
        hems = []
        for side, sign in (("l", -1.0), ("r", 1.0)):
            point, axis, r = _along_leg(sk, side, spec.length)
            out = across_of(axis) * sign
            hems.append(point + (r + ease + flare * 2 * spec.length) * out)
        verts = np.stack([wl, wr, hip_r, hems[1], hems[0], hip_l], axis=1)
        down = unit(0.5 * (hems[0] + hems[1]) - centre)
        half = 0.5 * float(np.median(np.linalg.norm(hems[1] - hems[0], axis=1)))
        self.scene.add(mat, verts, centre, down, half)


def garment_material(worn: Worn) -> Material:
    tex = worn.spec.texture
    return Material(tex.rgb[0], tex, worn.label, shade=0.3)


def dress_figure(scene: Scene, sk: Skeleton, look: Appearance, clothes: list[Worn]) -> None:
    """Add a clothed person to `scene`, back to front."""
    builder = FigureBuilder(scene, sk, look)
    builder.body_back()
    order = {"bottom": 0, "dress": 1, "top": 2}
    for worn in sorted(clothes, key=lambda w: order[w.spec.category]):
        scene.frames = worn.frames
        builder.garment(worn, part="body")
    for side in ("l", "r"):
        scene.frames = None
        builder.arm(side)
        for worn in clothes:
            if worn.spec.category in ("top", "dress"):
                scene.frames = worn.frames
                builder.sleeve(garment_material(worn), worn.spec, worn.spec.ease * sk.scale, side)
    scene.frames = None
    builder.head()


def garment_alone(scene: Scene, sk: Skeleton, worn: Worn) -> None:
    """Add just a garment (a product shot): no body, same cut and texture as when worn."""
    FigureBuilder(scene, sk, None).garment(worn, part="all")
