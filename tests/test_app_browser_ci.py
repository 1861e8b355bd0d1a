"""The browser test cannot pass CI by skipping: with ``CI=true`` a missing browser or playwright fails it.

Runs ``tests/test_app_browser.py`` in a child pytest with chromium pointed at a path that does not exist
(``FOLEYKIT_CHROMIUM``) and playwright made unimportable (a shadowing package on ``PYTHONPATH``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
BROWSER_TEST = TESTS / "test_app_browser.py"


def _run_browser_test(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    shadow = tmp_path / "shadow" / "playwright"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("playwright hidden by the test")\n')
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST")}
    env["PYTHONPATH"] = os.pathsep.join([str(shadow.parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["FOLEYKIT_CHROMIUM"] = str(tmp_path / "no-such-chromium")
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", str(BROWSER_TEST)],
        cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=300,
    )


def test_under_ci_a_missing_browser_or_playwright_fails_with_what_is_missing(tmp_path):
    res = _run_browser_test(tmp_path, "true")
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "CI=true but the browser test cannot run" in out
    assert "playwright is not installed" in out and "chromium is not installed" in out
    assert str(tmp_path / "no-such-chromium") in out
    assert " skipped" not in out and " passed" not in out
    # Every browser test is reported as not run-able (errors at setup), none silently dropped.
    assert out.count("ERROR tests/test_app_browser.py::") == 2, out


@pytest.mark.parametrize("ci", [None])
def test_without_ci_a_missing_browser_still_skips(tmp_path, ci):
    res = _run_browser_test(tmp_path, ci)
    out = res.stdout + res.stderr
    assert res.returncode in (0, 5), out  # 5: nothing collected (the module skipped itself)
    assert "1 skipped" in out and "chromium is not installed" in out
    assert "failed" not in out and "error" not in out.lower().replace("importerror", "")
