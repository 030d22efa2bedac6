"""Curation's edit model is the public route's edit stage: try-off and dressing at tiny size."""

import numpy as np
import pytest
from PIL import Image

from engine.errors import InputError


@pytest.mark.slow
def test_the_public_routes_edit_stage_takes_off_and_puts_on_garments(tmp_path):
    from engine.api.data import load_editor
    from engine.api.models import init_model

    route = init_model("public-tiny", tmp_path / "route")
    editor = load_editor(route, steps=1)
    frame = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 32, 3), dtype=np.uint8))
    shot = editor.take_off(frame, "top")
    dressed = editor.put_on(frame, shot, "top")
    assert shot.size == frame.size and dressed.size == frame.size
    assert "public route" in editor.name


def test_an_editor_folder_must_hold_a_model(tmp_path):
    from engine.api.data import load_editor

    with pytest.raises(InputError, match="model_index.json"):
        load_editor(tmp_path)
