"""The dataset-scale CLI commands (extract, curate, batch-generate, train) through foleykit's typer app."""

from __future__ import annotations

import json

import pytest
import torch
import typer
from typer.testing import CliRunner

from foleykit.cli import app as cli_app
from foleykit.data.synthetic import make_synthetic_dataset
from foleykit.errors import InputError


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    return cli_app


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("cli"), n_images=3, n_videos=1, broken=True)


def invoke(app, args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_extract_and_resume(app, data, tmp_path, tiny_models_dir):
    args = ["extract", data, "-o", tmp_path / "emb", "--features", "clip_mean,clap", "--num-frames", 4,
            "--shard-size", 3, "--models", tiny_models_dir, "--device", "cpu", "-q"]
    res = invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "extracted 4 of 8 items (3 shards written, 0 already done)" in res.output
    assert "skipped 4 unreadable items:" in res.output and "missing: image file not found" in res.output
    again = invoke(app, args)
    assert "(0 shards written, 3 already done)" in again.output
    index = json.loads((tmp_path / "emb" / "extraction.json").read_text())
    assert index["config"]["features"] == ["clip_mean", "clap"] and index["config"]["num_frames"] == 4


def test_extract_named_config_and_bad_manifest(app, tmp_path, tiny_models_dir):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,image\na,a.png\na,b.png\n")
    res = invoke(app, ["extract", bad, "-o", tmp_path / "o", "--config", "extract_v2a_mapper", "--models",
                       tiny_models_dir, "-q"])
    assert isinstance(res.exception, InputError)
    assert "line 3: duplicate id 'a' (first at line 2)" in str(res.exception)
    res = invoke(app, ["extract", bad, "-o", tmp_path / "o", "--image-dir", tmp_path, "-q"])
    assert "--image-dir does not apply to csv manifests" in str(res.exception)


def test_curate_from_detections(app, data, tmp_path):
    dets = tmp_path / "dets.jsonl"
    dets.write_text("".join(json.dumps({"id": i, "frames": [[{"label": lab, "score": 0.9}]]}) + "\n"
                            for i, lab in [("img0000", "dog"), ("img0001", "dog"), ("img0002", "cat")]))
    res = invoke(app, ["curate", data, "-o", tmp_path / "cur", "--detections", dets, "--num-frames", 1, "-q"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "kept 3 of 8 clips; dropped: unreadable 5" in res.output
    assert "unreadable: e.g. vid0000: no detections given for this clip" in res.output


def test_batch_generate_skip_existing(app, data, tmp_path, tiny_models_dir):
    from foleykit.data import read_manifest

    few = read_manifest(data).select(ids=["img0000", "missing"])
    few.write_jsonl(tmp_path / "few.jsonl")
    args = ["batch-generate", tmp_path / "few.jsonl", "-o", tmp_path / "gen", "--models", tiny_models_dir,
            "--steps", 2, "--duration", 1, "--device", "cpu", "--seed", 5, "-q"]
    res = invoke(app, args)
    assert res.exit_code == 1, res.output + repr(res.exception)  # an item failed: non-zero, with a summary
    assert "generated 1, skipped 0 existing, failed 1 of 2 items" in res.output
    assert "failed missing: input" in res.output and "1 of 2 items failed (most often: input" in res.output
    first = (tmp_path / "gen" / "img0000.wav").read_bytes()
    res = invoke(app, args)
    assert res.exit_code == 1
    assert "generated 0, skipped 1 existing, failed 1 of 2 items" in res.output
    assert (tmp_path / "gen" / "img0000.wav").read_bytes() == first


def test_train_manifold_command(app, tmp_path):
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    save_file({"clip": torch.randn(24, 16, generator=g), "clap": torch.randn(24, 12, generator=g)},
              str(tmp_path / "pairs.safetensors"))
    args = ["train", "manifold", "--data", tmp_path / "pairs.safetensors", "-o", tmp_path / "run", "--epochs", 2,
            "--batch-size", 8, "--set", "model.projector_widths=[16]", "--set", "model.reconstructor_widths=[16]",
            "--set", "model.manifold_dim=8", "--set", "trainer.tensorboard=false",
            "--set", "model.clip_dim=null", "--set", "model.clap_dim=null", "-q"]
    res = invoke(app, args + ["--max-steps", 3])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "stopped at step 3 (--max-steps)" in res.output
    res = invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert f"wrote {tmp_path / 'run' / 'final'}" in res.output
    from foleykit.modules.manifold import CMSSManifold

    assert CMSSManifold.from_pretrained(tmp_path / "run" / "final").config.manifold_dim == 8
    res = invoke(app, ["train", "remixer", "--config", "manifold_ss2a"])
    assert "is for task 'manifold', not 'remixer'" in str(res.exception)
    res = invoke(app, ["train", "manifold", "--data", tmp_path / "pairs.safetensors", "-o", tmp_path / "run2", "-q"])
    assert "model.clip_dim is 768 but the data's clip has 16 features" in str(res.exception)


def test_curate_with_the_owlv2_detector(app, data, tmp_path, tiny_models_dir):
    from foleykit.data import read_manifest

    few = read_manifest(data).select(ids=["img0000", "vid0000", "corrupt"])
    few.write_jsonl(tmp_path / "few.jsonl")
    res = invoke(app, ["curate", tmp_path / "few.jsonl", "-o", tmp_path / "cur", "--detector", "owlv2", "--models",
                       tiny_models_dir, "--device", "cpu", "--num-frames", 2, "--min-score", 0.0, "-q"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    report = json.loads((tmp_path / "cur" / "report.json").read_text())
    assert report["total"] == 3 and report["dropped"]["unreadable"] == 1  # the corrupt image
    decisions = [json.loads(x) for x in (tmp_path / "cur" / "decisions.jsonl").read_text().splitlines()]
    assert {d["id"]: d["frames"] for d in decisions}["vid0000"] == 2
