"""Telling the synthetic world's pictures from camera photos (for the demo model's notice)."""

import numpy as np
from PIL import Image

from engine.synth import make_sample
from engine.synth.recognise import looks_synthetic


def test_synthetic_samples_look_synthetic_and_camera_noise_does_not():
    user = make_sample(3, size=(96, 160), num_frames=1).user
    assert looks_synthetic(Image.fromarray(user))
    noise = np.random.default_rng(0).integers(-6, 7, user.shape)
    assert not looks_synthetic(Image.fromarray(np.clip(user.astype(np.int16) + noise, 0, 255).astype(np.uint8)))


def test_real_photos_do_not_look_synthetic(real_cases):
    photos = sorted(real_cases.glob("*/user.png"))
    assert photos
    assert not any(looks_synthetic(Image.open(photo)) for photo in photos)
