"""Garment specs (category, cut, texture) and texture evaluation in body coordinates.

Textures are functions of a body part's local coordinates (u across, v along the part,
both in "body units" of 1/8 of the wearer's height), so patterns move and rotate with
the limb or torso they are printed on.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from engine.synth import colours

CATEGORIES = ("top", "bottom", "dress")
PATTERNS = ("solid", "stripes", "checks", "dots")
# (categories, weight): single garments are favoured; a dress is always worn alone.
OUTFITS = ((("top",), 0.3), (("bottom",), 0.25), (("dress",), 0.2), (("top", "bottom"), 0.25))

_PATTERN_WORDS = {"solid": "", "stripes": "striped", "checks": "checked", "dots": "polka-dot"}


@dataclass(frozen=True)
class Texture:
    """A two-colour print. `period` and `phase` are in body units."""

    pattern: str
    colours: tuple[str, str]  # names in colours.GARMENT_COLOURS; the second is unused for solid
    period: float
    orientation: str  # stripes: "horizontal" (bands across the part) or "vertical"
    phase: tuple[float, float]

    @property
    def rgb(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        return colours.GARMENT_COLOURS[self.colours[0]], colours.GARMENT_COLOURS[self.colours[1]]

    def second(self, u: np.ndarray, v: np.ndarray) -> np.ndarray | None:
        """Where the second colour shows, for body coordinates u, v (None: nowhere)."""
        if self.pattern == "solid":
            return None
        inv = 1.0 / self.period
        uu = u * inv + self.phase[0]
        vv = v * inv + self.phase[1]
        if self.pattern == "stripes":
            w = vv if self.orientation == "horizontal" else uu
            return (w - np.floor(w)) < 0.5
        if self.pattern == "checks":
            return ((np.floor(uu) + np.floor(vv)) % 2) < 0.5
        fu = uu - np.floor(uu) - 0.5
        fv = vv - np.floor(vv) - 0.5
        return fu * fu + fv * fv < 0.09  # dots of radius 0.3 period

    def describe(self) -> str:
        """E.g. 'red and white striped' or 'blue'."""
        if self.pattern == "solid":
            return self.colours[0]
        return f"{self.colours[0]} and {self.colours[1]} {_PATTERN_WORDS[self.pattern]}"


@dataclass(frozen=True)
class GarmentSpec:
    """One garment. Lengths are fractions of the body part they end on.

    top: `sleeves` in none/short/long, `length` = hem position along the torso (1 = hips).
    bottom: `kind` trousers/shorts/skirt, `length` = hem position along the leg (1 = ankle).
    dress: `sleeves`, `length` = skirt hem along the leg.
    `ease` is extra width as a fraction of standing height (loose vs fitted).
    """

    category: str
    kind: str
    sleeves: str
    length: float
    ease: float
    flare: float  # skirts: extra hem half-width, fraction of standing height
    texture: Texture

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        t = self.texture
        d["texture"] = {
            "pattern": t.pattern,
            "colours": list(t.colours),
            "rgb": [list(c) for c in t.rgb],
            "period": t.period,
            "orientation": t.orientation,
            "phase": list(t.phase),
        }
        return d

    def describe(self) -> str:
        """E.g. 'a red and white striped long-sleeved top'."""
        words = [self.texture.describe()]
        if self.category in ("top", "dress"):
            words.append({"none": "sleeveless", "short": "short-sleeved", "long": "long-sleeved"}[self.sleeves])
        words.append(self.kind)
        text = " ".join(words)
        if self.kind in ("trousers", "shorts"):
            return text
        return ("an " if text[0] in "aeiou" else "a ") + text


def sample_texture(
    rng: np.random.Generator,
    avoid: tuple[tuple[int, int, int], ...] = (),
    pattern_weights: tuple[float, ...] = (0.3, 0.25, 0.22, 0.23),
) -> Texture:
    """A random texture whose main colour keeps away from the colours in `avoid`."""
    pattern = PATTERNS[colours.choice(rng, pattern_weights)]
    first = colours.pick(rng, colours.GARMENT_COLOURS, avoid, 110.0)
    second = colours.pick(rng, colours.GARMENT_COLOURS, (colours.GARMENT_COLOURS[first],), 150.0)
    lo, hi = {"stripes": (0.32, 0.6), "checks": (0.38, 0.7), "dots": (0.42, 0.7)}.get(pattern, (0.4, 0.6))
    return Texture(
        pattern=pattern,
        colours=(first, second),
        period=round(colours.uniform(rng, lo, hi), 4),
        orientation="horizontal" if rng.random() < 0.6 else "vertical",
        phase=(round(colours.uniform(rng, 0, 1), 4), round(colours.uniform(rng, 0, 1), 4)),
    )


def sample_garment(
    rng: np.random.Generator,
    category: str,
    avoid: tuple[tuple[int, int, int], ...] = (),
) -> GarmentSpec:
    """A random garment of `category`; its main colour keeps away from `avoid`."""
    texture = sample_texture(rng, avoid)
    ease = round(colours.uniform(rng, 0.006, 0.02), 4)
    if category == "top":
        sleeves = ("none", "short", "long")[colours.choice(rng, (0.15, 0.45, 0.4))]
        return GarmentSpec("top", "top", sleeves, round(colours.uniform(rng, 0.8, 1.08), 4), ease, 0.0, texture)
    if category == "bottom":
        kind = ("trousers", "shorts", "skirt")[colours.choice(rng, (0.45, 0.2, 0.35))]
        length = {"trousers": (0.93, 1.0), "shorts": (0.3, 0.45), "skirt": (0.35, 0.85)}[kind]
        flare = colours.uniform(rng, 0.01, 0.05) if kind == "skirt" else 0.0
        return GarmentSpec(
            "bottom", kind, "none", round(colours.uniform(rng, *length), 4), ease, round(flare, 4), texture
        )
    if category == "dress":
        sleeves = ("none", "short", "long")[colours.choice(rng, (0.4, 0.4, 0.2))]
        return GarmentSpec(
            "dress",
            "dress",
            sleeves,
            round(colours.uniform(rng, 0.4, 0.9), 4),
            ease,
            round(colours.uniform(rng, 0.015, 0.06), 4),
            texture,
        )
    raise ValueError(f"unknown garment category {category!r}")


def restyle(rng: np.random.Generator, garment: GarmentSpec, avoid: tuple[tuple[int, int, int], ...]) -> GarmentSpec:
    """A different garment of the same category: new colours and texture, half the time a new cut."""
    fresh = sample_garment(rng, garment.category, avoid + garment.texture.rgb[:1])
    if rng.random() < 0.5:
        return fresh
    return GarmentSpec(
        garment.category, garment.kind, garment.sleeves, garment.length, garment.ease, garment.flare, fresh.texture
    )


def base_outfit(rng: np.random.Generator, avoid: tuple[tuple[int, int, int], ...] = ()) -> dict[str, GarmentSpec]:
    """Plain clothes a person wears where no try-on garment covers them."""
    solid = (1.0, 0.0, 0.0, 0.0)
    top = GarmentSpec(
        "top",
        "top",
        "short",
        round(colours.uniform(rng, 0.8, 0.95), 4),
        0.008,
        0.0,
        sample_texture(rng, avoid, solid),
    )
    kind = "trousers" if rng.random() < 0.7 else "shorts"
    bottom = GarmentSpec(
        "bottom",
        kind,
        "none",
        0.97 if kind == "trousers" else 0.38,
        0.008,
        0.0,
        sample_texture(rng, avoid + (top.texture.rgb[0],), solid),
    )
    return {"top": top, "bottom": bottom}
