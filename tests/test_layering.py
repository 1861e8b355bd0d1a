"""Layering: a lower floor of foleykit never imports a higher one (every import in src/, read with ``ast``,
including the lazy ones inside functions).

    base (errors, seeding, devices, hub, memory) → io, data → encoders, generator → modules, model_sets, model_download
      → pipelines | training | evaluation (side by side: none imports another) → api, model_check
      → distributed, app → cli
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "foleykit"

#: The floor of each part of the package (its first name under ``foleykit``). A part missing here fails
#: the test: place it first.
LAYER = {
    "errors": 0, "seeding": 0, "devices": 0, "hub": 0, "memory": 0,
    "io": 1, "data": 1, "vocabulary": 1,  # vocabulary: word lists (package data) for the detector and the bridge
    "encoders": 2, "generator": 2,
    "modules": 3, "model_sets": 3,  # model_sets builds the tiny stand-ins of encoders, generator and modules
    "model_download": 3,  # plans and fetches a model set's files (hub, model_sets)
    "pipelines": 4, "training": 4, "evaluation": 4,
    "api": 5, "__init__": 5,  # the package's own __init__ is the API facade (foleykit.generate, ...)
    "model_check": 5,  # loads encoders, the generator and pipeline bundles of a model set (foleykit models check)
    "distributed": 6, "app": 6,
    "cli": 7,
}
#: Parts on one floor that still must not import each other.
SIDE_BY_SIDE = {"pipelines", "training", "evaluation"}

#: Known violations, each with its owner. Remove an entry when its fix lands.
ALLOWED: set[tuple[str, str]] = set()


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(rel: str, source: str) -> list[tuple[str, int]]:
    """(imported foleykit module, line) for every import in the file ``rel`` (relative to src/foleykit)."""
    path = Path("foleykit", rel)
    package = path.parent.parts  # a relative import counts from the file's package (its own, for __init__.py)
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "foleykit"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "foleykit":
                continue
            if module == "foleykit" and all(a.name == "__version__" for a in node.names):
                continue  # the version string, not the facade
            if module == "foleykit" or not node.module:  # from . import x: the submodules themselves
                out += [(f"{module}.{a.name}", node.lineno) for a in node.names]
            else:
                out.append((module, node.lineno))
    return out


def violations(files: dict[str, str]) -> list[str]:
    """Every import from a lower floor to a higher one (or between side-by-side parts) in ``files``
    ({path relative to src/foleykit: source})."""
    found = []
    for rel, source in sorted(files.items()):
        here = _part("foleykit." + rel.removesuffix(".py").replace("/", "."))
        if here not in LAYER:
            found.append(f"{rel}: part {here!r} has no floor in LAYER")
            continue
        for module, line in imports_of(rel, source):
            there = _part(module)
            if there == here or (rel, there) in ALLOWED:
                continue
            if there not in LAYER:
                found.append(f"{rel}:{line} imports {module}: part {there!r} has no floor in LAYER")
            elif LAYER[there] > LAYER[here] or (there in SIDE_BY_SIDE and here in SIDE_BY_SIDE):
                found.append(f"{rel}:{line} ({here}, floor {LAYER[here]}) imports {module} "
                             f"({there}, floor {LAYER[there]})")
    return found


def _tree() -> dict[str, str]:
    return {p.relative_to(SRC).as_posix(): p.read_text(encoding="utf-8") for p in SRC.rglob("*.py")}


def test_no_lower_floor_imports_a_higher_one():
    assert violations(_tree()) == []


def test_every_allowed_violation_still_exists():
    """An allow-list entry whose import is gone must go too (else it would hide a new one)."""
    tree = _tree()
    for rel, part in ALLOWED:
        assert any(_part(m) == part for m, _ in imports_of(rel, tree.get(rel, ""))), (rel, part)


@pytest.mark.parametrize(("rel", "source", "bad"), [
    ("io/audio.py", "from ..api import generate\n", True),
    ("training/trainer.py", "def f():\n    from ..distributed.batch import batch_generate\n", True),
    ("training/grounding.py", "from ..pipelines import objects\n", True),  # side by side
    ("modules/mapper.py", "import foleykit.cli\n", True),
    ("encoders/clip.py", "from .. import api\n", True),
    ("cli/train.py", "from ..training.accelerate_config import run_training\n", False),
    ("evaluation/report.py", "from .. import __version__\n", False),
    ("pipelines/mapper.py", "from ..modules.mapper import V2AMapper\nfrom . import sources\n", False),
])
def test_the_check_catches_an_upward_import(rel, source, bad):
    assert bool(violations({rel: source})) is bad
