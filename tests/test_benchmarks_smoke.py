"""Every benchmark script runs its ``--smoke`` mode (tiny stand-ins, seconds): a benchmark that breaks
fails here, not on the day someone needs its figures. Nothing is timed or compared to a figure; the
checks are that each script finishes, prints its report, and writes no result file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"

# script -> strings its smoke report must contain
EXPECTED = {
    "bench_generate.py": ["| guided UNet step (batch 2) |", "bf16 vs fp32, `fast` schedule", "Cold start:",
                          "Same settings check", "Where the time goes", "| unet_step |", "smoke run"],
    "bench_generate_variants.py": ["| unet_step | stock |", "| unet_step | cl+int8_linear |", "| vocoder | conv1d_as_cl_2d |"],
    "bench_click.py": ['"click_total"', '"tiny SAM stand-in'],
    "bench_sources.py": ['"fraction_of_fast_generation"', '"cycle_mix"'],
    "bench_training_free.py": ['"route_no_detect_image_plus_text"', '"read_from_disk_cache_each_run"'],
    "bench_evaluate.py": ['"all 10 metrics (tagger = PANNs)"', '"cached"'],
    "bench_training.py": ["V2A-Mapper trainer", "CMSS manifold trainer", "smoke run"],
}

# scripts whose --smoke runs in a test of their own (it needs a running app server)
SMOKED_ELSEWHERE = {"bench_app_concurrency.py": "test_bench_app_concurrency.py",
                    "bench_app_memory.py": "test_bench_app_memory.py"}


def test_every_benchmark_script_has_a_smoke_test():
    assert {p.name for p in BENCH.glob("bench_*.py")} == set(EXPECTED) | set(SMOKED_ELSEWHERE)
    for test in SMOKED_ELSEWHERE.values():
        assert "--smoke" in (ROOT / "tests" / test).read_text()


def _run_bench(script: str, *args: str) -> subprocess.CompletedProcess:
    """``python benchmarks/<script> <args>`` offline, one thread, this checkout's foleykit; must exit 0."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_benchmark_smoke(script, tiny_cache_env):
    results = BENCH / "results"
    before = set(results.iterdir()) if results.is_dir() else set()
    proc = _run_bench(script, "--smoke")
    out = proc.stdout
    for needle in EXPECTED[script]:
        assert needle in out, f"{script} --smoke printed no {needle!r}:\n{out[-2000:]}"
    if out.lstrip().startswith("{"):  # the JSON-printing scripts print one parsable object
        json.loads(out)
    after = set(results.iterdir()) if results.is_dir() else set()
    assert after == before, f"{script} --smoke wrote result files: {sorted(after - before)}"


#: The bf16 machine's command lines (BENCHMARKS.md, issue 15) in smoke form, so that they cannot rot before a
#: CPU with native bf16 runs them: bf16 end to end (ours and diffusers' pipeline), the alternated paper A/B,
#: and every layout variant in bf16.
BF16_MACHINE = {
    "generate_bf16": ["bench_generate.py", "--smoke", "--dtype", "bf16"],
    "paper_ab_bf16": ["bench_generate.py", "--smoke", "--dtype", "bf16", "--paper-ab", "2", "--ab-rounds", "2"],
    "variants_bf16": ["bench_generate_variants.py", "--smoke", "--dtype", "bf16"],
}


@pytest.mark.parametrize("name", sorted(BF16_MACHINE))
def test_bf16_machine_commands_smoke(name, tiny_cache_env):
    proc = _run_bench(*BF16_MACHINE[name])
    assert "bfloat16" in proc.stdout  # the runs really were in bf16
    assert "smoke run" in proc.stdout
