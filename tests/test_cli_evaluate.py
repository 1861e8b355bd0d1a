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



def _clips(root, n: int, seconds: float = 1.0) -> None:
    rng = np.random.default_rng(1)
    for d in ("gen", "ref"):
        (root / d).mkdir()
        for i in range(n):
            sf.write(root / d / f"c{i}.wav", (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32), 16000)


def test_evaluate_cache_dir_ssms_options_and_benchmark(tmp_path, tiny_cache_env, capsys):
    _clips(tmp_path, 4)
    out, cache = tmp_path / "report", tmp_path / "emb-cache"
    args = ["evaluate", "--generated", str(tmp_path / "gen"), "--reference", str(tmp_path / "ref"),
            "--out", str(out), "--models", "tiny", "--metrics", "fad,ssms", "--protocol", "vggss-single",
            "--ssms-m", "3", "--ssms-n", "5", "--cache-dir", str(cache)]
    assert run_cli(*args) == 0, capsys.readouterr().err
    first = json.loads((out / "report.json").read_text())
    assert (first["metrics"]["ssms"]["m"], first["metrics"]["ssms"]["n"]) == (3, 5)
    assert first["benchmark"]["name"] == "vggss-single" and first["protocol"]["seconds"] == 10.24
    assert first["cache"]["hits"] == 0 and first["cache"]["misses"] > 0
    assert any(cache.glob("*.npz"))
    # a second process-level run reuses every embedding from disk
    assert run_cli(*args, "--overwrite") == 0, capsys.readouterr().err
    second = json.loads((out / "report.json").read_text())
    assert second["cache"]["misses"] == 0 and second["cache"]["hits"] == first["cache"]["misses"]
    assert second["metrics"]["fad"]["value"] == first["metrics"]["fad"]["value"]
    assert run_cli(*args[:-6], "--ssms-m", "0", "--overwrite") != 0
    assert "ssms_m must be a whole number" in capsys.readouterr().err


def test_protocol_command_lists_and_writes_manifests(tmp_path, capsys):
    assert run_cli("protocol") == 0
    listing = capsys.readouterr().out
    for name in ("vggsound-test", "vggsound-i2a", "vggss-single", "vggss-multi", "imagehear", "audiocaps-test"):
        assert f"{name}: " in listing
    assert "imagehear: ImageHear" in listing and "metrics clip_score;" in listing

    box = [0.1, 0.1, 0.5, 0.5]
    (tmp_path / "vggss.json").write_text(json.dumps([
        {"file": "aaaaaaaaaaa_000001", "class": "dog", "bbox": [box]},
        {"file": "bbbbbbbbbbb_000002", "class": "rain", "bbox": [box, box]},
        {"file": "ccccccccccc_000003", "class": "cat", "bbox": [box, box, box]},
    ]))
    out = tmp_path / "multi.jsonl"
    assert run_cli("protocol", "vggss-multi", str(tmp_path / "vggss.json"), "-o", str(out)) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in lines] == ["bbbbbbbbbbb_000002", "ccccccccccc_000003"]
    summary = json.loads(capsys.readouterr().out.splitlines()[0])
    assert summary["items"] == 2 and summary["frontend"]["seconds"] == 10.24
    assert run_cli("protocol", "vggss-multi", str(tmp_path / "vggss.json"), "-o", str(out)) != 0
    assert "--overwrite" in capsys.readouterr().err

    (tmp_path / "test.csv").write_text(
        "audiocap_id,youtube_id,start_time,caption\n1,xxxxxxxxxxx,30,a dog barks\n2,xxxxxxxxxxx,30,barking\n"
    )
    caps = tmp_path / "captions.csv"
    assert run_cli("protocol", "audiocaps-test", str(tmp_path / "test.csv"), "-o", str(tmp_path / "ac.jsonl"),
                   "--captions-out", str(caps)) == 0
    assert caps.read_text() == "name,caption\nxxxxxxxxxxx_000030,a dog barks\nxxxxxxxxxxx_000030,barking\n"
    assert run_cli("protocol", "vggss", str(tmp_path / "vggss.json"), "-o", str(tmp_path / "x.jsonl")) != 0
    assert "unknown benchmark protocol 'vggss'" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()
