"""``benchmarks/bench_app_memory.py --smoke`` runs the app's handlers with all three methods in both modes,
and the shared component cache really is shared (the figures at real sizes live in BENCHMARKS.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("gradio")


def test_app_memory_benchmark_smoke(tiny_models_dir, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import bench_app_memory
    finally:
        sys.path.pop(0)
    result = bench_app_memory.main(["--smoke", "--models", str(tiny_models_dir), "--out", str(tmp_path / "r.json")])
    share, own = result["share"], result["own"]
    assert [s["method"] for s in share["stages"]] == ["mapper", "objects", "sources"]
    # Sharing: one generator, one CLIP ViT-L/14 (objects and sources), one generator CLAP in the process.
    roles = [c.split(":")[0] for c in share["components"]]
    assert roles.count("audioldm") == 1 and roles.count("generator_clap") == 1
    assert "sam" in roles and "detector" in roles  # a click (objects) and detection (sources) ran
    assert sorted(roles).count("clip") == 2  # ViT-L/14 and the mapper's ViT-B/32: two models, each once
    # Without sharing each method kept its own copies alive: clearly more weights at the end.
    assert own["weights_mib"] > 1.5 * share["weights_mib"]
    assert (tmp_path / "r.json").is_file()
