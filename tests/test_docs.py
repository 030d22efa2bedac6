"""The docs: docs/layout.md maps every module, one line each, and nothing that is not there; the README
stays short and every page it or the docs link to exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def mapped_modules() -> set[str]:
    """The module paths of docs/layout.md's map: `folder/` lines, and the files indented under them."""
    folder, found = "", set()
    for line in (ROOT / "docs" / "layout.md").read_text().splitlines():
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


def local_links(page: Path) -> list[Path]:
    """The files a markdown page links to (web addresses left out), resolved against the page's folder."""
    targets = [match.group(1) for match in LINK.finditer(page.read_text())]
    return [page.parent / target for target in targets if "://" not in target]


def test_the_layout_page_maps_every_module_and_only_those():
    modules = {str(path.relative_to(ROOT)) for package in ("engine", "tryon_cli")
               for path in (ROOT / package).rglob("*.py") if path.name not in ("__init__.py", "__main__.py")}
    mapped = mapped_modules()
    assert sorted(modules - mapped) == [], "modules missing from docs/layout.md"
    assert sorted(mapped - modules) == [], "docs/layout.md names modules that do not exist"


def test_the_readme_is_read_in_five_minutes():
    assert len((ROOT / "README.md").read_text().splitlines()) < 250


def test_every_docs_page_is_linked_from_the_readme():
    linked = {path.resolve() for path in local_links(ROOT / "README.md")}
    pages = {path.resolve() for path in (ROOT / "docs").glob("*.md")}
    assert sorted(map(str, pages - linked)) == [], "docs pages the README does not link to"


def test_every_local_link_in_the_readme_and_docs_exists():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = [f"{page.name} -> {target}" for page in pages for target in local_links(page) if not target.exists()]
    assert broken == []
