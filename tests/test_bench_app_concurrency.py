"""``benchmarks/bench_app_concurrency.py --smoke`` runs: concurrent clients of mixed methods all complete
and the page keeps answering (the benchmark's figures themselves live in BENCHMARKS.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")


def test_app_concurrency_benchmark_smoke(tiny_models_dir, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import bench_app_concurrency
    finally:
        sys.path.pop(0)
    result = bench_app_concurrency.main(["--smoke", "--models", str(tiny_models_dir),
                                         "--out", str(tmp_path / "r.json")])
    load = result["load"]
    assert load["completed"] == load["clients"] == 2, load["clients_detail"]
    assert load["page_probe_s"]["failed"] == 0 and load["page_after_load"]["status"] == 200
    assert (tmp_path / "r.json").is_file()
