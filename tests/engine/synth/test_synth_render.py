"""The rasteriser: drawing order, masks, and textures that stick to the body part."""

from __future__ import annotations

import numpy as np

from engine.synth.garments import Texture
from engine.synth.render import (
    Material,
    Scene,
    background,
    label_masks,
    rasterise,
    shade,
)

SIZE = (64, 64)
STRIPES = Texture("stripes", ("red", "white"), 0.5, "horizontal", (0.0, 0.0))


def _render(scene: Scene, frames: int) -> tuple[np.ndarray, np.ndarray]:
    ids = rasterise(scene, SIZE, frames)
    return shade(scene, ids, np.full((SIZE[1], SIZE[0], 3), 20, np.uint8)), ids


def _limb(scene: Scene, mat: Material, a: list, b: list) -> None:
    scene.add_capsule(mat, np.array(a, float), np.array(b, float), 6.0, 6.0)


def test_later_shapes_cover_earlier_ones_and_masks_follow_visibility():
    scene = Scene(unit=8.0)
    under = Material((200, 0, 0), label="under")
    over = Material((0, 0, 200), label="over")
    _limb(scene, under, [[32, 10]], [[32, 54]])
    _limb(scene, over, [[10, 32]], [[54, 32]])
    frames, ids = _render(scene, 1)
    masks = label_masks(scene, ids)
    assert masks["over"][0, 32, 32] and not masks["under"][0, 32, 32]
    assert masks["under"][0, 15, 32] and not masks["over"][0, 15, 32]
    assert frames[0, 32, 32, 2] > 100 and frames[0, 32, 32, 0] == 0
    assert not (masks["under"] & masks["over"]).any()
    assert (ids == 0).sum() > 0 and np.all(frames[ids == 0] == 20)


def test_texture_translates_with_the_shape():
    scene = Scene(unit=8.0)
    mat = Material((200, 30, 30), STRIPES, "top", shade=0.0)
    dx, dy = 7, 3
    _limb(scene, mat, [[20, 12], [20 + dx, 12 + dy]], [[24, 40], [24 + dx, 40 + dy]])
    frames, _ = _render(scene, 2)
    moved = np.roll(frames[0], (dy, dx), axis=(0, 1))
    inner = (slice(10, 54), slice(10, 54))
    assert np.array_equal(frames[1][inner], moved[inner])
    assert len(np.unique(frames[0].reshape(-1, 3), axis=0)) == 3  # backdrop and two stripe colours


def test_texture_rotates_with_the_shape():
    scene = Scene(unit=8.0)
    mat = Material((200, 30, 30), STRIPES, "top", shade=0.0)
    # Frame 0: the limb points down; frame 1: it points to the right.
    _limb(scene, mat, [[32, 8], [8, 32]], [[32, 56], [56, 32]])
    frames, ids = _render(scene, 2)
    red = (frames[..., 0] == 200) & (ids > 0)
    # Stripes run across the limb: down the image when it hangs, across when it points right.
    down = red[0][:, 29:36]
    right = red[1][29:36, :]
    assert (down == down[:, :1]).all() and not (down == down[:1]).all()
    assert (right == right[:1]).all() and not (right == right[:, :1]).all()


def test_edge_shading_darkens_the_sides():
    scene = Scene(unit=8.0)
    _limb(scene, Material((200, 200, 200), shade=0.3), [[32, 8]], [[32, 56]])
    frames, ids = _render(scene, 1)
    row = frames[0, 32, :, 0].astype(int)[ids[0, 32] > 0]
    assert row.max() == 200 and row.min() < 160
    assert row[len(row) // 2] == 200


def test_rasterise_is_empty_without_shapes():
    ids = rasterise(Scene(unit=1.0), SIZE, 3)
    assert ids.shape == (3, 64, 64) and not ids.any()


def test_shapes_far_outside_a_frame_do_not_leak_into_the_next():
    scene = Scene(unit=8.0)
    mat = Material((255, 255, 0))
    # Frame 0 reaches far below the frame, frame 1 far above it; both stay empty inside.
    _limb(scene, mat, [[32, 90], [32, -200]], [[32, 200], [32, -30]])
    ids = rasterise(scene, SIZE, 2)
    assert not ids.any()


def test_two_tone_background():
    img = background({"kind": "two_tone", "colours": ["cream", "slate"], "split": 0.5}, (8, 10))
    assert img.shape == (10, 8, 3)
    assert (img[:5] == img[0, 0]).all() and (img[5:] == img[-1, 0]).all()
    assert not (img[0, 0] == img[-1, 0]).all()
