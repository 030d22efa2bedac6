"""make_sample: determinism, shapes, and the relations between user, target and motion."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InputError
from engine.synth import make_sample
from engine.synth.colours import GARMENT_COLOURS

SIZE = (64, 112)


def _arrays(sample):
    yield sample.user
    yield sample.motion
    yield sample.target
    yield from sample.garments.values()
    yield from sample.masks.values()


def test_same_seed_gives_identical_samples():
    a, b = make_sample(7), make_sample(7)
    assert a.caption == b.caption
    assert a.meta == b.meta
    assert list(a.garments) == list(b.garments) and list(a.masks) == list(b.masks)
    for x, y in zip(_arrays(a), _arrays(b)):
        np.testing.assert_array_equal(x, y)


def test_different_seeds_give_different_samples(sample_at):
    a, b = sample_at(1), sample_at(2)
    assert not np.array_equal(a.target, b.target)
    assert not np.array_equal(a.motion, b.motion)
    assert a.meta["motion"] != b.meta["motion"]


def test_shapes_and_types_follow_size_and_frames(sample_at):
    width, height = 48, 80
    s = sample_at(3, (width, height), 5)
    assert s.user.shape == (height, width, 3) and s.user.dtype == np.uint8
    assert s.target.shape == s.motion.shape == (5, height, width, 3)
    assert s.target.dtype == s.motion.dtype == np.uint8
    assert set(s.garments) == set(s.masks) == set(s.meta["categories"])
    for cat in s.garments:
        assert s.garments[cat].shape == (height, width, 3) and s.garments[cat].dtype == np.uint8
        assert s.masks[cat].shape == (5, height, width) and s.masks[cat].dtype == bool


def test_defaults_are_64x112_17_frames(sample_at):
    s = sample_at(0)
    assert s.target.shape == (17, 112, 64, 3)
    assert s.meta["size"] == [64, 112] and s.meta["frames"] == 17 and s.meta["fps"] == 8.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_user_photo_differs_only_where_the_garments_are(sample_at, seed):
    s = sample_at(seed)
    frame0 = s.target[0].astype(int)
    user = s.user.astype(int)
    garments = np.zeros(frame0.shape[:2], bool)
    for mask in s.masks.values():
        garments |= mask[0]
    for mask in s.user_masks.values():
        garments |= mask
    outside = ~garments
    # Same person, same pose and backdrop: identical away from both outfits' garments.
    assert np.array_equal(user[outside], frame0[outside])
    # And a clearly different garment where the target's garment shows.
    for cat, mask in s.masks.items():
        diff = np.abs(user - frame0).sum(-1)[mask[0]]
        assert np.mean(diff > 30) > 0.5, cat


def test_user_garments_are_other_garments_of_the_same_categories_or_whole_body_layout(sample_at):
    layouts = set()
    for seed in range(24):
        s = sample_at(seed)
        target, user = s.meta["garment_specs"], s.meta["user_garment_specs"]
        assert set(s.user_masks) == set(user) and all(s.user_masks[c].any() for c in user)
        if set(user) == set(target):
            for cat, spec in target.items():
                assert user[cat]["category"] == spec["category"] == cat
                assert user[cat]["texture"] != spec["texture"]
        else:  # a dress for a top and a bottom, or the reverse: never a partial outfit
            assert {frozenset(user), frozenset(target)} == {frozenset({"dress"}), frozenset({"top", "bottom"})}
        layouts.add((tuple(sorted(target)), tuple(sorted(user))))
    # Both whole-body swaps occur, and the same-layout case too.
    assert {(("dress",), ("bottom", "top")), (("bottom", "top"), ("dress",)), (("dress",), ("dress",))} <= layouts


def test_motion_video_is_another_person_doing_the_same_motion(sample_at, silhouette, stepping_seeds):
    for seed in stepping_seeds:
        s = sample_at(seed)
        assert s.meta["motion_person"]["appearance"] != s.meta["person"]["appearance"]
        assert np.mean(np.abs(s.motion[0].astype(int) - s.target[0].astype(int))) > 10
        target = silhouette(s.target, s.meta["person"]["appearance"])
        motion = silhouette(s.motion, s.meta["motion_person"]["appearance"])
        cols = np.arange(SIZE[0])
        tx = (target.sum(1) * cols).sum(-1) / target.sum((1, 2))
        mx = (motion.sum(1) * cols).sum(-1) / motion.sum((1, 2))
        walked = tx - tx[0]
        assert abs(walked[-1]) > 0.15 * SIZE[0]  # the person really moves...
        assert np.max(np.abs(walked - (mx - mx[0]))) < 0.05 * SIZE[0]  # ...and both move alike
        assert np.corrcoef(tx, mx)[0, 1] > 0.95


def test_garments_move_with_the_body(sample_at, stepping_seeds):
    for seed in stepping_seeds:
        s = sample_at(seed)
        for cat, mask in s.masks.items():
            cols = np.arange(mask.shape[2])
            cx = (mask.sum(1) * cols).sum(-1) / mask.sum((1, 2))
            assert abs(cx[-1] - cx[0]) > 0.1 * SIZE[0], cat
            assert not np.array_equal(mask[0], mask[-1])


def _explained_by(pixels: np.ndarray, colours: list[tuple[int, int, int]]) -> np.ndarray:
    """Whether each pixel is one of `colours` darkened by edge shading (factor 0.55..1)."""
    ok = np.zeros(len(pixels), bool)
    for c in colours:
        c = np.asarray(c, float)
        f = np.clip(pixels @ c / (c @ c), 0.55, 1.0)
        ok |= np.abs(pixels - f[:, None] * c).max(-1) <= 2.5
    return ok


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5, 6, 7])
def test_masks_cover_exactly_the_garment_colours(sample_at, seed):
    s = sample_at(seed)
    for cat, mask in s.masks.items():
        assert mask.any(axis=(1, 2)).all(), f"{cat} invisible in a frame"
        tex = s.meta["garment_specs"][cat]["texture"]
        names = tex["colours"] if tex["pattern"] != "solid" else tex["colours"][:1]
        pixels = s.target[mask].astype(float)
        assert np.mean(_explained_by(pixels, [GARMENT_COLOURS[n] for n in names])) > 0.999, cat


def test_product_shots_show_the_garment_on_white(sample_at):
    for seed in range(6):
        s = sample_at(seed)
        for cat, img in s.garments.items():
            white = (img == 255).all(-1)
            assert white[0].all() and white[-1].all() and white[:, 0].all() and white[:, -1].all()
            assert 0.1 < np.mean(~white) < 0.8  # filling much of the frame
            ys, xs = np.nonzero(~white)
            h, w = white.shape
            assert abs(xs.mean() - w / 2) < 0.1 * w and abs((ys.min() + ys.max()) / 2 - h / 2) < 0.05 * h
            tex = s.meta["garment_specs"][cat]["texture"]
            names = tex["colours"] if tex["pattern"] != "solid" else tex["colours"][:1]
            explained = _explained_by(img[~white].astype(float), [GARMENT_COLOURS[n] for n in names])
            assert np.mean(explained) > 0.999


def test_random_outfits_favour_single_garments_and_never_mix_a_dress():
    counts = Counter(tuple(make_sample(seed, (32, 56), 1).meta["categories"]) for seed in range(300))
    assert set(counts) == {("top",), ("bottom",), ("dress",), ("top", "bottom")}
    singles = counts[("top",)] + counts[("bottom",)] + counts[("dress",)]
    assert singles > 2 * counts[("top", "bottom")]


def test_explicit_categories_are_honoured():
    s = make_sample(5, (32, 56), 2, categories=("bottom", "top"))
    assert s.meta["categories"] == ["top", "bottom"]
    assert set(s.garments) == set(s.masks) == {"top", "bottom"}
    d = make_sample(5, (32, 56), 2, categories=("dress",))
    assert set(d.garments) == {"dress"}


@pytest.mark.parametrize("cats", [("dress", "top"), ("bottom", "dress"), ("hat",), (), ("top", "top")])
def test_bad_categories_are_input_errors(cats):
    with pytest.raises(InputError):
        make_sample(0, (32, 56), 2, categories=cats)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": (63, 112)},
        {"size": (64, 111)},
        {"size": (16, 112)},
        {"size": (64, 30)},
        {"size": "big"},
        {"num_frames": 0},
        {"num_frames": 2.5},
        {"fps": 0.0},
        {"fps": float("nan")},
    ],
)
def test_bad_arguments_are_input_errors(kwargs):
    with pytest.raises(InputError):
        make_sample(0, **kwargs)


def test_motion_program_and_person_do_not_depend_on_the_garments():
    a = make_sample(11, (32, 56), 3, categories=("top",))
    b = make_sample(11, (32, 56), 3, categories=("dress",))
    assert a.meta["motion"] == b.meta["motion"]
    assert a.meta["person"]["appearance"] == b.meta["person"]["appearance"]


def test_caption_describes_person_garments_and_motion(sample_at):
    for seed in range(8):
        s = sample_at(seed)
        look = s.meta["person"]["appearance"]
        assert s.caption.startswith("a person with ")
        assert look["hair_colour"] in s.caption and " wearing " in s.caption
        for spec in s.meta["garment_specs"].values():
            assert spec["texture"]["colours"][0] in s.caption
            assert spec["kind"] in s.caption
        motion = s.meta["motion"]
        if abs(motion["step_speed"]) * motion["duration"] > 0.08:
            side = "left" if motion["step_speed"] < 0 else "right"
            assert f"steps to the {side}" in s.caption


def test_meta_is_json_and_records_the_generation(sample_at):
    s = sample_at(4)
    meta = s.meta
    assert json.loads(json.dumps(meta)) == meta
    assert meta["seed"] == 4 and meta["caption"] == s.caption
    for spec in meta["garment_specs"].values():
        assert {"category", "kind", "texture"} <= set(spec)
        assert {"pattern", "colours", "period"} <= set(spec["texture"])
    assert {"skin", "hair_colour", "hair_style", "proportions", "background"} <= set(meta["person"]["appearance"])
    assert {"channels", "step_speed", "sway_amp", "start_x"} <= set(meta["motion"])


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(min_value=-(2**40), max_value=2**40))
def test_any_seed_gives_visible_garments_inside_the_frame(seed):
    s = make_sample(seed, (32, 56), 4)
    assert s.target.shape == (4, 56, 32, 3)
    assert len(s.masks) in (1, 2) and not ({"dress"} < set(s.masks))
    for mask in s.masks.values():
        assert mask.shape == (4, 56, 32)
        assert mask.any(axis=(1, 2)).all()


def test_samples_record_the_motion_performers_garment_colours():
    from engine.synth import make_sample

    sample = make_sample(3, size=(64, 112), num_frames=5)
    colours = sample.meta["motion_person"]["garment_rgb"]
    worn = set(sample.meta["motion_person"]["garment_specs"])
    assert worn <= set(colours) and ({"dress"} <= set(colours) or {"top", "bottom"} <= set(colours))
    for category, rgb in colours.items():
        spec = sample.meta["motion_person"]["garment_specs"].get(category) or \
            sample.meta["motion_person"]["own_clothes"][category]
        first = np.array(spec["texture"]["rgb"][0], dtype=float)
        if spec["texture"]["pattern"] == "solid":  # shading darkens and lightens, the hue stays
            assert np.abs(np.array(rgb) - first).max() < 60, (category, rgb, first)
