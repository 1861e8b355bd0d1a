"""The web app's gradio is pinned to one exact version (issue 5: "gradio, version pinned"), the one tested."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _gradio_requirements() -> dict[str, list[str]]:
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    return {name: [r for r in reqs if re.match(r"gradio(\W|$)", r.strip(), re.I)] for name, reqs in extras.items()}


def test_gradio_is_pinned_to_one_exact_version_everywhere():
    found = {name: reqs for name, reqs in _gradio_requirements().items() if reqs}
    assert "app" in found, "the app extra must require gradio"
    pins = set()
    for name, reqs in found.items():
        for req in reqs:
            m = re.fullmatch(r"gradio\s*==\s*(\d+(?:\.\d+){2})", req.strip(), re.I)
            assert m, f"extra {name!r}: {req!r} is not an exact pin (gradio==X.Y.Z)"
            pins.add(m.group(1))
    assert len(pins) == 1, f"gradio pinned to different versions: {sorted(pins)}"


def test_the_pinned_gradio_is_the_installed_one():
    try:
        installed = importlib.metadata.version("gradio")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("gradio is not installed (pip install 'foleykit[app]')")
    (pin,) = _gradio_requirements()["app"]
    assert pin.replace(" ", "") == f"gradio=={installed}", f"pyproject pins {pin}, the environment has {installed}"
