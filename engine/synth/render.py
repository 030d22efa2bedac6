"""Rasteriser: layered polygons with local body coordinates, shaded and textured.

Each shape is one polygon per frame, drawn in order (painter's algorithm) with PIL into
an id buffer; shading and textures are then computed in one vectorised numpy pass over
the covered pixels, using each shape's per-frame local frame (origin + "down" axis), so
a texture sticks to the body part it is printed on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from engine.synth import colours, geometry
from engine.synth.garments import Texture

MAX_SHAPES = 255  # ids are uint8, 0 is the background


@dataclass(frozen=True)
class Material:
    """How a shape is coloured. `label` names the garment mask it belongs to (or None)."""

    rgb: tuple[int, int, int]
    texture: Texture | None = None
    label: str | None = None
    shade: float = 0.25  # how much darker the shape's side edges are than its middle


@dataclass
class Shape:
    """One polygon per frame plus the local frame that its texture coordinates live in.

    The shape exists in the scene's frames first .. first + len(verts) - 1 and is drawn in
    those of them inside `window` (start, stop).
    """

    material: int
    verts: np.ndarray  # (n, K, 2) pixels
    origin: np.ndarray  # (n, 2) pixels
    down: np.ndarray  # (n, 2) unit vectors: the v axis; u points 90 degrees to the image right
    half_width: float  # pixels: |u| at which edge shading is strongest
    unit: float  # pixels per body unit (texture scale)
    first: int
    window: tuple[int, int]


@dataclass
class Scene:
    """Shapes in drawing order, the materials they use, and how new shapes are placed.

    One scene can hold several clips one after another (frames of different people, or
    product shots), so that they are drawn and shaded in one pass: shapes added now start
    at frame `start`, are drawn in frames start + `frames` (default: all of their own),
    and print textures at `unit` pixels per body unit.

    Capsules are queued and built in batches (one numpy pass per vertex layout) when the
    shapes are first needed: `finish()`.
    """

    unit: float = 1.0
    start: int = 0
    frames: tuple[int, int] | None = None
    materials: list[Material] = field(default_factory=list)
    _shapes: list[Shape] = field(default_factory=list)
    _index: dict[Material, int] = field(default_factory=dict)
    _queued: list[tuple] = field(default_factory=list)

    @property
    def shapes(self) -> list[Shape]:
        self.finish()
        return self._shapes

    def material(self, mat: Material) -> int:
        """The index of `mat`, added if new."""
        k = self._index.get(mat)
        if k is None:
            k = self._index[mat] = len(self.materials)
            self.materials.append(mat)
        return k

    def _shape(self, mat: Material, verts, origin: np.ndarray, down, half_width: float) -> Shape:
        n = len(origin)
        f0, f1 = self.frames if self.frames is not None else (0, n)
        if not 0 <= f0 < f1 <= n:
            raise ValueError(f"frames {self.frames} outside the shape's {n} frames")
        window = (self.start + f0, self.start + f1)
        return Shape(self.material(mat), verts, origin, down, max(half_width, 1e-3), self.unit, self.start, window)

    def add(self, mat: Material, verts: np.ndarray, origin: np.ndarray, down: np.ndarray, half_width: float) -> None:
        """Add a polygon (T, K, 2) with its texture frame."""
        self._shapes.append(self._shape(mat, verts, origin, down, float(half_width)))

    def add_capsule(
        self,
        mat: Material,
        a: np.ndarray,
        b: np.ndarray,
        r0: float,
        r1: float,
        round0: bool = True,
        round1: bool = True,
    ) -> None:
        """Add a tapered capsule from a to b (each (T, 2)); its frame is a + the a->b axis."""
        n0 = geometry.arc_points(r0) if round0 else 0
        n1 = geometry.arc_points(r1) if round1 else 0
        self._queued.append((len(self._shapes), a, b, float(r0), float(r1), n0, n1))
        self._shapes.append(self._shape(mat, None, a, None, max(float(r0), float(r1))))

    def finish(self) -> None:
        """Build the queued capsules."""
        if not self._queued:
            return
        groups: dict[tuple, list[tuple]] = {}
        for item in self._queued:
            groups.setdefault((len(item[1]),) + item[5:], []).append(item)
        for (_, n0, n1), items in groups.items():
            a = np.array([it[1] for it in items])
            b = np.array([it[2] for it in items])
            r0 = np.array([it[3] for it in items])
            r1 = np.array([it[4] for it in items])
            verts, down = geometry.capsules(a, b, r0, r1, n0, n1)
            for j, it in enumerate(items):
                shape = self._shapes[it[0]]
                shape.verts, shape.down = verts[j], down[j]
        self._queued.clear()


def background(spec: dict, size: tuple[int, int]) -> np.ndarray:
    """The (H, W, 3) uint8 backdrop described by an appearance's `background` dict.

    The result is shared and read-only.
    """
    return _background(spec["kind"], tuple(spec["colours"]), float(spec["split"]), tuple(size))


@lru_cache(maxsize=256)
def _background(kind: str, names: tuple[str, ...], split: float, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    img = np.empty((height, width, 3), np.uint8)
    img[:] = colours.BACKGROUND_COLOURS[names[0]]
    if kind == "two_tone":
        img[int(round(split * height)) :] = colours.BACKGROUND_COLOURS[names[1]]
    img.flags.writeable = False
    return img


def rasterise(scene: Scene, size: tuple[int, int], frames: int) -> np.ndarray:
    """The (T, H, W) uint8 id buffer: 1 + index of the topmost shape, 0 where none."""
    shapes = scene.shapes
    if len(shapes) > MAX_SHAPES:
        raise ValueError(f"{len(shapes)} shapes; at most {MAX_SHAPES}")
    width, height = size
    if not shapes:
        return np.zeros((frames, height, width), np.uint8)
    # Shapes living in the same frames share one vertex buffer (float32 (x, y) pairs, which
    # PIL reads directly). All frames go into one tall image, stacked with gaps wide
    # enough that no polygon reaches into a neighbouring frame (the image edges clip x).
    groups: dict[tuple[int, int], list[int]] = {}
    for k, s in enumerate(shapes):
        groups.setdefault((s.first, len(s.verts)), []).append(k)
    # Coordinates snap to 1/64 pixel, so that adding a frame's integer offset is exact in
    # float32: a body drawn in two frames in the same pose gives the same pixels.
    stacked = {
        key: (np.round(np.concatenate([shapes[k].verts for k in ks], axis=1) * 64) / 64).astype(np.float32)
        for key, ks in groups.items()
    }
    ys = [v[..., 1] for v in stacked.values()]
    gap = int(np.ceil(max(0.0, -min(y.min() for y in ys), max(y.max() for y in ys) - height))) + 1
    stride = height + gap
    where: list[tuple] = [()] * len(shapes)  # per shape: buffer, row length, columns, first
    for (first, n), ks in groups.items():
        verts = stacked[(first, n)]
        verts[..., 1] += (gap + stride * np.arange(first, first + n, dtype=np.float32))[:, None]
        buffer, row, col = memoryview(verts.reshape(-1)), verts.shape[1] * 2, 0
        for k in ks:
            size_k = 2 * shapes[k].verts.shape[1]
            where[k] = (buffer, row, col, col + size_k, first)
            col += size_k

    img = Image.new("L", (width, gap + stride * frames), 0)
    polygon = ImageDraw.Draw(img).draw.draw_polygon  # the C call under ImageDraw.polygon
    cuts = sorted({0, frames} | {c for s in shapes for c in s.window if 0 <= c <= frames})
    for f0, f1 in zip(cuts, cuts[1:]):  # the same shapes are drawn in every frame of a run
        run = [where[k] + (k + 1,) for k, s in enumerate(shapes) if s.window[0] <= f0 and f1 <= s.window[1]]
        for t in range(f0, f1):
            for buffer, row, i, j, first, ink in run:
                at = (t - first) * row
                polygon(buffer[at + i : at + j], ink, 1)
    tall = np.asarray(img)[gap:]
    return np.ascontiguousarray(tall.reshape(frames, stride, width)[:, :height])


_LEVELS = 32  # edge shading is quantised so that colours come from a small lookup table


def _palette(scene: Scene) -> np.ndarray:
    """RGBA packed as uint32, index (2 * material + second colour) * _LEVELS + edge level.

    Level l darkens the colour by material.shade * l / (_LEVELS - 1).
    """
    return _palette_of(tuple(scene.materials))


@lru_cache(maxsize=1024)
def _palette_of(materials: tuple[Material, ...]) -> np.ndarray:
    rgb, dark = [], []
    for m in materials:
        second = m.texture.rgb[1] if m.texture is not None else m.rgb
        rgb += [m.rgb, second]
        dark += [m.shade, m.shade]
    ramp = np.arange(_LEVELS, dtype=np.float32) / (_LEVELS - 1)
    factor = 1.0 - np.asarray(dark, np.float32)[:, None] * ramp[None, :]
    rgba = np.full((len(rgb), _LEVELS, 4), 255, np.uint8)
    rgba[..., :3] = np.round(np.asarray(rgb, np.float32)[:, None, :] * factor[..., None]).astype(np.uint8)
    palette = rgba.reshape(-1, 4).view(np.uint32).ravel()
    palette.flags.writeable = False
    return palette


def shade(scene: Scene, ids: np.ndarray, backdrop: np.ndarray | list[tuple[int, int, np.ndarray]]) -> np.ndarray:
    """Colour an id buffer: (T, H, W, 3) uint8 frames.

    `backdrop` is one (H, W, 3) image for every frame, or a list of (start, stop, image)
    covering frames start..stop-1 each.
    """
    frames, height, width = ids.shape
    rgba = np.empty((frames, height, width, 4), np.uint8)
    runs = [(0, frames, backdrop)] if isinstance(backdrop, np.ndarray) else backdrop
    for start, stop, image in runs:
        back = np.empty((height, width, 4), np.uint8)
        back[..., :3] = image
        rgba[start:stop] = back  # a 4-byte fill is far faster than assigning into rgba[..., :3]
    flat = ids.reshape(-1)
    idx = np.flatnonzero(flat != 0)
    if idx.size:
        cidx = _colour_index(scene, flat.take(idx), idx, ids.shape)
        rgba.view(np.uint32).reshape(-1)[idx] = _palette(scene).take(cidx)
    out = np.empty((frames, height, width, 3), np.uint8)
    for c in range(3):  # faster than one strided copy of rgba[..., :3]
        out[..., c] = rgba[..., c]
    return out


@lru_cache(maxsize=8)
def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """x and y (float32) of every pixel of a frame, flattened."""
    y, x = np.indices((height, width), np.float32)
    return x.ravel(), y.ravel()


def _tables(scene: Scene, frames: int) -> tuple[np.ndarray, ...]:
    """Per (frame, shape) affine maps from pixel (x, y) to local coordinates, flattened.

    Entry t * S + k is shape k (0-based) in frame t. Returns the coefficients (a, b, c) of
    the edge value u / half_width and of v in body units, each a * x + b * y + c, and per
    shape (with a leading 1 for the background) half_width in body units.
    """
    shapes = scene.shapes
    origin = np.zeros((frames, len(shapes), 2), np.float32)
    down = np.zeros((frames, len(shapes), 2), np.float32)
    for k, s in enumerate(shapes):
        origin[s.first : s.first + len(s.origin), k] = s.origin
        down[s.first : s.first + len(s.down), k] = s.down
    ox, oy, dx, dy = origin[..., 0], origin[..., 1], down[..., 0], down[..., 1]
    hw = np.array([s.half_width for s in shapes], np.float32)
    inv_unit = np.array([1.0 / s.unit for s in shapes], np.float32)
    cu = oy * dx - ox * dy  # u = dy * x - dx * y + cu: the across axis is (dy, -dx)
    cv = -(ox * dx + oy * dy)
    return (
        (dy / hw).ravel(),
        (-dx / hw).ravel(),
        (cu / hw).ravel(),
        (dx * inv_unit).ravel(),
        (dy * inv_unit).ravel(),
        (cv * inv_unit).ravel(),
        np.concatenate([[1.0], hw * inv_unit]).astype(np.float32),
    )


def _colour_index(scene: Scene, sid: np.ndarray, idx: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Palette index of the covered pixels: flat indices `idx` (sorted), shape ids `sid`.

    Gathers use mode="clip": the indices are valid by construction, and skipping the
    bounds check makes them markedly faster. (Measured: separate 1-D tables beat
    row-gathers from 2-D tables here, and chunking did not pay.)
    """
    frames, height, width = shape
    n = len(scene.shapes)
    area = height * width
    counts = np.diff(np.searchsorted(idx, np.arange(frames + 1) * area))  # idx is sorted
    key = np.repeat(np.arange(frames, dtype=np.intp) * n - 1, counts)
    key += sid  # intp: numpy converts any other index type on every gather
    pix = idx - np.repeat(np.arange(frames, dtype=np.int64) * area, counts)
    xs, ys = _grid(height, width)
    x, y = xs.take(pix, mode="clip"), ys.take(pix, mode="clip")
    ea, eb, ec, va, vb, vc, hw = _tables(scene, frames)

    edge = ea.take(key, mode="clip") * x  # u / half width: 0 on the axis, +-1 at the sides
    edge += eb.take(key, mode="clip") * y
    edge += ec.take(key, mode="clip")
    level = edge * edge
    np.minimum(level, 1.0, out=level)
    level *= _LEVELS - 1
    level += 0.5
    mat_of = np.array([0] + [s.material for s in scene.shapes], np.int32)
    cidx = (mat_of * (2 * _LEVELS)).take(sid, mode="clip")
    cidx += level.astype(np.int32)

    textured = [
        m for m, mat in enumerate(scene.materials) if mat.texture is not None and mat.texture.pattern != "solid"
    ]
    if not textured:
        return cidx
    u = edge
    u *= hw.take(sid, mode="clip")
    v = va.take(key, mode="clip") * x
    v += vb.take(key, mode="clip") * y
    v += vc.take(key, mode="clip")
    mat = mat_of.take(sid, mode="clip")
    for m in textured:
        sel = np.flatnonzero(mat == m)
        if sel.size:
            texture = scene.materials[m].texture
            second = texture.second(u.take(sel, mode="clip"), v.take(sel, mode="clip"))  # type: ignore[union-attr]
            cidx[sel[second]] += _LEVELS
    return cidx


def label_masks(scene: Scene, ids: np.ndarray) -> dict[str, np.ndarray]:
    """For each garment label, the (T, H, W) bool mask of where it is visible."""
    labels = sorted({m.label for m in scene.materials if m.label is not None})
    if not labels:
        return {}
    lut = np.zeros(256, np.uint8)  # id -> 1 + label index, 0 for unlabelled shapes
    for k, s in enumerate(scene.shapes, start=1):
        label = scene.materials[s.material].label
        lut[k] = 0 if label is None else 1 + labels.index(label)
    which = lut.take(ids.astype(np.intp))
    return {label: which == i for i, label in enumerate(labels, start=1)}
