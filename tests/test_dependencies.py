"""The quickstart installs only the core dependencies (`pip install -e .`, no extras): what
loading the shipped demo model imports must come from them. Packages that libraries import
only when present are allowed where tryon's extras bring them (peft, for training; protobuf, with ray)."""

import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

RUN_DEMO = """
import sys
from engine.api import default_model
from engine.checkpoint import load_model
load_model(default_model())
print(" ".join(sorted({name.split(".")[0] for name in sys.modules})))
"""


def core_closure(distribution: str) -> set[str]:
    """`distribution` and everything its non-extra requirements pull in, transitively (normalised names)."""
    seen: set[str] = set()
    todo = [distribution]
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        try:
            wanted = requires(name) or []
        except PackageNotFoundError:
            continue
        todo += [re.match(r"[A-Za-z0-9_.-]+", req).group(0) for req in wanted if "extra ==" not in req]
    return seen


def extras_closure(distribution: str) -> set[str]:
    """The packages `distribution`'s extras name, and what they pull in (normalised): an extra
    installed for the tests (ray brings protobuf) makes libraries import what they find."""
    named = {re.match(r"[A-Za-z0-9_.-]+", req).group(0) for req in requires(distribution) or []
             if "extra ==" in req}
    return set().union(*(core_closure(name) for name in named))


@pytest.mark.slow
def test_loading_the_demo_model_needs_only_core_dependencies():
    run = subprocess.run([sys.executable, "-c", RUN_DEMO], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    providers = packages_distributions()
    imported = {re.sub(r"[-_.]+", "-", dist).lower() for module in run.stdout.split()
                for dist in providers.get(module, [])}
    missing = imported - core_closure("tryon") - extras_closure("tryon")
    assert not missing, f"imported but not a core dependency of tryon: {sorted(missing)}"
