"""`foleykit models check`: each role of a set against its facts; a mismatched CLAP fails, named."""

from __future__ import annotations

import json

import pytest

from foleykit.model_check import AUDIOLDM_S_UNET_PARAMS_M, check_model_set

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _set_dir(root, tiny, **roles):
    refs = {k: str(tiny / v) for k, v in json.loads((tiny / "model_set.json").read_text()).items()}
    for k, v in roles.items():
        refs[k] = str(tiny / v)
    root.mkdir()
    (root / "model_set.json").write_text(json.dumps(refs))
    return root


def test_published_unet_size_is_the_audioldm_s_architecture():
    """185.04 M is what the AudioLDM-S architecture (real_size_configs, from the original config) counts."""
    import torch
    from diffusers import UNet2DConditionModel

    from foleykit.model_sets import real_size_configs

    with torch.device("meta"):
        unet = UNet2DConditionModel(**real_size_configs()["unet"])
    assert round(sum(p.numel() for p in unet.parameters()) / 1e6, 2) == AUDIOLDM_S_UNET_PARAMS_M


def test_tiny_set_passes_its_own_facts(tiny_cache_env):
    report = check_model_set("tiny")
    assert report.facts == "tiny" and report.ok, report.table()
    roles = {c.role for c in report.checks}
    assert {"clip", "clip_mapper", "audioldm", "clap", "clap_judge", "mapper", "ss2a", "prior", "detector", "sam"} <= roles
    space = [c for c in report.checks if c.role == "clap" and "space" in c.what][0]
    assert space.actual > 0.99
    judge = [c for c in report.checks if c.role == "clap_judge" and "independent" in c.what][0]
    assert abs(judge.actual) < 0.5


def test_real_facts_catch_a_model_of_the_wrong_size(tiny_models_dir):
    report = check_model_set(str(tiny_models_dir), facts="real", generate=False)
    failed = {(c.role, c.what) for c in report.failures}
    assert ("audioldm", "UNet parameters (M)") in failed
    assert ("clap", "HTSAT-tiny audio width") in failed
    assert not report.ok


def test_a_set_whose_clap_is_another_space_fails_naming_it(tiny_models_dir, tmp_path):
    wrong = _set_dir(tmp_path / "wrong", tiny_models_dir, clap="clap-htsat-unfused")
    report = check_model_set(str(wrong), facts="tiny", generate=False)
    assert not report.ok
    (bad,) = [c for c in report.failures if c.role == "clap"]
    assert "space" in bad.what and "clap-htsat-unfused" in bad.note and "import-audioldm-clap" in bad.note
    assert "clap-htsat-unfused" in report.table()


def test_a_broken_clap_folder_is_a_failed_load_row_not_a_crash(tiny_models_dir, tmp_path):
    """The audio tower loads on first use in the pipelines; the check loads it at once, so a truncated
    checkpoint is one failed row naming the problem."""
    import shutil

    broken = tmp_path / "broken-clap"
    shutil.copytree(tiny_models_dir / "audioldm-clap", broken)
    weights = next(broken.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:200])
    ms = _set_dir(tmp_path / "set", tiny_models_dir, clap=str(broken))  # an absolute path stays as it is
    report = check_model_set(str(ms), generate=False)
    (bad,) = [c for c in report.failures if c.role == "clap"]
    assert bad.what == "loads" and bad.note and "\n" not in bad.note


def test_a_judge_in_the_generators_space_is_not_independent(tiny_models_dir, tmp_path):
    same = _set_dir(tmp_path / "same", tiny_models_dir, clap_judge="audioldm-clap")
    report = check_model_set(str(same), facts="tiny", generate=False)
    assert [c.role for c in report.failures] == ["clap_judge"]


def run_cli(*args: str) -> int:
    from foleykit.cli import main

    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_prints_a_table_writes_json_and_fails_on_a_mismatch(tiny_models_dir, tiny_cache_env, tmp_path, capsys):
    out = tmp_path / "check.json"
    assert run_cli("models", "check", "tiny", "--json", str(out)) == 0
    assert "clap_judge" in capsys.readouterr().out and json.loads(out.read_text())["ok"] is True
    wrong = _set_dir(tmp_path / "wrong", tiny_models_dir, clap="clap-htsat-unfused")
    code = run_cli("models", "check", str(wrong), "--json", str(tmp_path / "w.json"), "--no-generate", "--facts", "tiny")
    cap = capsys.readouterr()
    assert code != 0 and "clap-htsat-unfused" in cap.out
    err = cap.err.strip().splitlines()
    assert len(err) == 1 and "clap (space agreement with the generator)" in err[0]
    assert json.loads((tmp_path / "w.json").read_text())["ok"] is False
