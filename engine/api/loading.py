"""Which model a request runs, and loading it once per process on the requested runtime."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from engine.checkpoint import CondNetUntrainedWarning, LoadedModel, load_model
from engine.checkpoint.public import LoadedRoute, is_route_source, load_route
from engine.errors import InputError
from engine.paths import DEMO_MODEL, DEMO_STUDENT
from engine.pipelines.runtime import Runtime, apply_runtime
from engine.progress import Notice



def default_model(streaming: bool = False) -> str:
    """`$TRYON_MODEL`, else the demo model shipped in weights/: the student for streaming
    (swap, extend), the teacher otherwise. Streaming falls back to the teacher when no
    student is shipped (it runs block-causally, but it was not distilled for it)."""
    chosen = os.environ.get("TRYON_MODEL")
    if chosen:
        return chosen
    for candidate in ([DEMO_STUDENT] if streaming else []) + [DEMO_MODEL]:
        if candidate.is_dir():
            return str(candidate)
    raise InputError("no --model given and no default model in weights/demo (make one: tryon models init tiny ./ck)")


_loaded: dict[tuple, LoadedModel | LoadedRoute] = {}


def get_model(source: str, revision: str | None, runtime: Runtime, notice: Notice) -> LoadedModel | LoadedRoute:
    """Load (once per process) the checkpoint on the runtime's device, dtype and backend."""
    if revision is not None and Path(source).expanduser().exists():
        raise InputError(f"pins a version of a Hub checkpoint; {source} is a local folder, which has none",
                         option="revision")
    key = (source, revision, runtime)
    if key not in _loaded and is_route_source(source):  # the public-weights route (engine.checkpoint.public)
        route = load_route(source, runtime)
        if route.preset.name != "public":
            notice(f"warning: {source} is the '{route.preset.name}' route: random weights, for tests and smoke runs")
        _loaded.clear()
        _loaded[key] = route
    if key not in _loaded:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CondNetUntrainedWarning)
            model = load_model(source, revision=revision, device=runtime.load_device, dtype=runtime.dtype)
        for warning in caught:
            if issubclass(warning.category, CondNetUntrainedWarning):
                notice(f"warning: {warning.message}")
        apply_runtime(model.pipeline, runtime)
        _loaded.clear()  # one model in memory at a time
        _loaded[key] = model
    return _loaded[key]
