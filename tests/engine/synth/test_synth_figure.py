"""Motion programs and forward kinematics of the 2D figure."""

from __future__ import annotations

import math

import numpy as np

from engine.synth.figure import (
    CHANNELS,
    MotionProgram,
    build_skeleton,
    sample_appearance,
    sample_motion,
)

SIZE = (64, 112)
TIMES = np.arange(17) / 8.0


def _program(seed: int) -> MotionProgram:
    return sample_motion(np.random.default_rng(seed), TIMES[-1])


def test_angles_are_sums_of_sinusoids():
    prog = _program(0)
    angles = prog.angles(TIMES)
    assert set(angles) == set(CHANNELS)
    for name, (base, waves) in prog.channels.items():
        expected = base + sum(a * np.sin(2 * math.pi * f * TIMES + p) for a, f, p in waves)
        np.testing.assert_allclose(angles[name], expected, atol=1e-12)


def test_two_people_doing_one_program_move_their_limbs_alike():
    prog = _program(3)
    a = build_skeleton(sample_appearance(np.random.default_rng(1)), prog, TIMES, SIZE)
    b = build_skeleton(sample_appearance(np.random.default_rng(2)), prog, TIMES, SIZE)
    assert a.scale != b.scale
    for j0, j1 in [("shoulder_l", "elbow_l"), ("elbow_r", "wrist_r"), ("hip_l", "knee_l"), ("neck", "pelvis")]:
        da = (a[j1] - a[j0]) / np.linalg.norm(a[j1] - a[j0], axis=1, keepdims=True)
        db = (b[j1] - b[j0]) / np.linalg.norm(b[j1] - b[j0], axis=1, keepdims=True)
        np.testing.assert_allclose(da, db, atol=1e-9)
    np.testing.assert_allclose(a["pelvis"][:, 0], b["pelvis"][:, 0])


def test_figures_stand_on_the_ground_and_stay_in_frame():
    for seed in range(40):
        prog = _program(seed)
        look = sample_appearance(np.random.default_rng(seed + 1000))
        sk = build_skeleton(look, prog, TIMES, SIZE)
        sole = np.maximum(sk["toe_l"][:, 1], sk["toe_r"][:, 1]) + sk.px("foot_r")
        np.testing.assert_allclose(sole, 0.955 * SIZE[1])
        assert (sk["pelvis"][:, 0] > 0.2 * SIZE[0]).all() and (sk["pelvis"][:, 0] < 0.8 * SIZE[0]).all()
        assert (sk["head"][:, 1] > 0).all()


def test_stepping_translates_and_lifts_the_feet_alternately():
    prog = next(p for p in map(_program, range(100)) if abs(p.step_speed) * p.duration > 0.2)
    x = prog.root_x(TIMES)
    assert np.sign(x[-1] - x[0]) == np.sign(prog.step_speed)
    left, right = prog.lifts(TIMES)
    assert (left * right == 0).all() and left.max() > 0 and right.max() > 0


def test_description_names_the_direction():
    for seed in range(30):
        prog = _program(seed)
        text = prog.describe()
        if prog.step_speed * prog.duration < -0.08:
            assert "left" in text
        elif prog.step_speed * prog.duration > 0.08:
            assert "right" in text
