"""`foleykit evaluate` end to end on tiny random embedders (offline)."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from foleykit.cli import main


def run_cli(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_evaluate_writes_report_and_lists_skipped(tmp_path, tiny_cache_env, capsys):
    rng = np.random.default_rng(0)
    for d in ("gen", "ref"):
        (tmp_path / d).mkdir()
        for i in range(11):
            sf.write(tmp_path / d / f"c{i}.wav", (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    out = tmp_path / "report"
    code = run_cli("evaluate", "--generated", str(tmp_path / "gen"), "--reference", str(tmp_path / "ref"),
                   "--out", str(out), "--models", "tiny",
                   "--metrics", "fad,kl_softmax,is,clap_score")
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert set(report["metrics"]) == {"fad", "kl_softmax", "is"}
    assert "captions" in report["skipped"]["clap_score"]
    assert (out / "report.md").is_file()
    printed = capsys.readouterr().out
    assert "clap_score: skipped" in printed
    # A second run refuses to overwrite the report without --overwrite.
    assert run_cli("evaluate", "--generated", str(tmp_path / "gen"), "--out", str(out)) != 0
    assert "--overwrite" in capsys.readouterr().err

