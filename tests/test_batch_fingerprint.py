"""`foleykit batch-generate --skip-existing` resumes only the same run: the folder records a fingerprint
(manifest + generation settings + models) and refuses a rerun with other settings (through foleykit.cli.app)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from foleykit.cli import app
from foleykit.data import read_manifest
from foleykit.data.synthetic import make_synthetic_dataset
from foleykit.errors import InputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(res):
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res.output


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch-fp")
    m = read_manifest(make_synthetic_dataset(root / "data", n_images=3, n_videos=0, broken=False))
    m.select(ids=["img0000", "img0001"]).write_jsonl(root / "two.jsonl")
    m.select(ids=["img0000", "img0001", "img0002"]).write_jsonl(root / "three.jsonl")
    return root / "two.jsonl", root / "three.jsonl"


def test_rerun_with_other_settings_is_refused_not_mixed(manifests, tmp_path, tiny_models_dir):
    two, three = manifests
    gen = tmp_path / "gen"
    common = ["-o", gen, "--models", tiny_models_dir, "--duration", 1, "--device", "cpu", "-q"]
    out = ok(invoke("batch-generate", two, *common, "--steps", 2, "--seed", 5))
    assert "generated 2, skipped 0 existing, failed 0 of 2 items" in out
    record = json.loads((gen / "batch_run.json").read_text())["fingerprint"]
    assert record["settings"]["steps"] == 2 and record["settings"]["seed"] == 5
    assert f"run fingerprint: {record['value'][:16]}" in out
    assert json.loads((gen / "batch_report.json").read_text())["fingerprint"] == record
    side = json.loads((gen / "img0001.wav.json").read_text())
    assert side["batch"]["fingerprint"] == record["value"] and side["seed"] == side["batch"]["item_seed"]

    assert "generated 0, skipped 2 existing" in ok(invoke("batch-generate", two, *common, "--steps", 2, "--seed", 5))
    before = {p.name: p.read_bytes() for p in gen.iterdir()}
    for extra, what in ((["--steps", 3, "--seed", 5], "steps 2 -> 3"), (["--steps", 2, "--seed", 6], "seed 5 -> 6"),
                        (["--steps", 2, "--seed", 5, "--preset", "paper"], "preset 'fast' -> 'paper'")):
        res = invoke("batch-generate", two, *common, *extra)
        assert isinstance(res.exception, InputError), res.output
        msg = str(res.exception)
        assert "holds a batch run with other settings" in msg and what in msg and "--no-skip-existing" in msg
        assert "\n" not in msg
    res = invoke("batch-generate", three, *common, "--steps", 2, "--seed", 5)  # another manifest
    assert isinstance(res.exception, InputError) and "manifest " in str(res.exception)
    assert {p.name: p.read_bytes() for p in gen.iterdir()} == before  # nothing touched by the refusals

    # --no-skip-existing takes the folder over with the new settings; then the new run resumes.
    out = ok(invoke("batch-generate", two, *common, "--steps", 3, "--seed", 5, "--no-skip-existing"))
    assert "generated 2, skipped 0 existing" in out
    new = json.loads((gen / "batch_run.json").read_text())["fingerprint"]
    assert new["settings"]["steps"] == 3 and new["value"] != record["value"]
    assert json.loads((gen / "img0000.wav.json").read_text())["batch"]["fingerprint"] == new["value"]
    assert "generated 0, skipped 2 existing" in ok(invoke("batch-generate", two, *common, "--steps", 3, "--seed", 5))

    # An output without this run's mark (a run killed between the sound and its sidecar) is made again.
    side_path = gen / "img0001.wav.json"
    side = json.loads(side_path.read_text())
    del side["batch"]
    side_path.write_text(json.dumps(side))
    assert "generated 1, skipped 1 existing" in ok(invoke("batch-generate", two, *common, "--steps", 3, "--seed", 5))
    assert json.loads(side_path.read_text())["batch"]["fingerprint"] == new["value"]


def test_unrecorded_outputs_are_refused(manifests, tmp_path, tiny_models_dir):
    two, _ = manifests
    gen = tmp_path / "gen"
    gen.mkdir()
    (gen / "img0000.wav").write_bytes(b"made by hand")
    res = invoke("batch-generate", two, "-o", gen, "--models", tiny_models_dir, "--steps", 2, "--duration", 1,
                 "--device", "cpu", "-q")
    assert isinstance(res.exception, InputError)
    assert "holds 1 outputs (e.g. img0000) that no recorded batch run made" in str(res.exception)
    assert sorted(p.name for p in gen.iterdir()) == ["img0000.wav"]
