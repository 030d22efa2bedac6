import pytest

from engine.api import loading
from engine.errors import InputError


@pytest.fixture
def weights(tmp_path, monkeypatch):
    monkeypatch.delenv("TRYON_MODEL", raising=False)
    monkeypatch.setattr(loading, "DEMO_MODEL", tmp_path / "demo")
    monkeypatch.setattr(loading, "DEMO_STUDENT", tmp_path / "demo-student")
    return tmp_path


def test_streaming_defaults_to_the_shipped_student_and_falls_back_to_the_teacher(weights):
    (weights / "demo").mkdir()
    assert loading.default_model(streaming=True) == str(weights / "demo")
    (weights / "demo-student").mkdir()
    assert loading.default_model(streaming=True) == str(weights / "demo-student")
    assert loading.default_model() == str(weights / "demo")


def test_tryon_model_overrides_the_default_and_no_model_is_an_input_error(weights, monkeypatch):
    with pytest.raises(InputError, match="no default model"):
        loading.default_model()
    monkeypatch.setenv("TRYON_MODEL", "someone/model")
    assert loading.default_model(streaming=True) == "someone/model"
