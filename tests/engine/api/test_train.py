"""engine.api.train: what the options change in the recipes before a run starts."""

from pathlib import Path

import engine.train
from engine import api


def test_mixed_precision_replaces_the_recipes_and_none_keeps_them(monkeypatch):
    seen = []
    monkeypatch.setattr(engine.train, "train_teacher", lambda *args, **kwargs: seen.append(args[3]))
    api.train_teacher("synthetic", "base", Path("out"), config="demo", mixed_precision="bf16")
    api.train_teacher("synthetic", "base", Path("out"), config="demo")
    assert [config.mixed_precision for config in seen] == ["bf16", "auto"]
    assert seen[0].total_steps == seen[1].total_steps  # nothing else changed
