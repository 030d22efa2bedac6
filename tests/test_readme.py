"""The README's map of the code names every module, one line each, and nothing that is not there."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def mapped_modules() -> set[str]:
    """The module paths of the README's Layout block: `folder/` lines, and the files indented under them."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Layout", 1)[1].split("###", 1)[0]
    folder, found = "", set()
    for line in block.splitlines():
        if not line.startswith("    ") or not line.strip():
            continue
        name = line.split()[0]
        if not line.startswith("      "):  # a top-level entry: a folder or a module
            folder = name if name.endswith("/") else ""
            if name.endswith(".py"):
                found.add(name)
        elif name.endswith(".py"):
            found.add(folder + name)
    return found


def test_the_readme_maps_every_module_and_only_those():
    modules = {str(path.relative_to(ROOT)) for package in ("engine", "tryon_cli")
               for path in (ROOT / package).rglob("*.py") if path.name not in ("__init__.py", "__main__.py")}
    mapped = mapped_modules()
    assert sorted(modules - mapped) == [], "modules missing from the README's Layout"
    assert sorted(mapped - modules) == [], "README's Layout names modules that do not exist"
