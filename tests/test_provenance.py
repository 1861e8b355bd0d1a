"""Trainers refuse data made by other encoders than their model meets at inference (training/provenance.py),
and the README's mapper flow (extract with the mapper preset → train → generate) ends in a file."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from foleykit.cli import app
from foleykit.data.synthetic import make_synthetic_dataset
from foleykit.errors import InputError
from foleykit.training.provenance import check_provenance, read_provenance

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_check_provenance_names_both_clips():
    prov = {"clip": {"role": "clip", "model": "openai/clip-vit-large-patch14", "dim": 768}}
    with pytest.raises(InputError) as e:
        check_provenance("mapper", prov, "emb/")
    msg = str(e.value)
    assert "emb/" in msg and "'clip' (openai/clip-vit-large-patch14, 768-d)" in msg
    assert "'clip_mapper' (ViT-B/32, 512-d)" in msg and "--config extract_v2a_mapper" in msg and "\n" not in msg
    check_provenance("manifold", prov, "emb/")  # the manifold meets ViT-L/14: fine
    check_provenance("temporal", prov, "emb/")  # reads no CLIP
    check_provenance("mapper", None, "pairs.safetensors")  # nothing recorded: not checked


def test_readme_mapper_flow_and_refusal(tmp_path, tiny_cache_env):
    data = make_synthetic_dataset(tmp_path / "data", n_images=3, n_videos=1)
    common = ["--models", "tiny", "--device", "cpu", "-q"]
    # ViT-L/14 features (the extraction default) are refused by the mapper, naming both CLIPs
    assert invoke("extract", data, "-o", tmp_path / "emb-l", "--features", "clip_mean,clap", "--num-frames", 4,
                  *common).exit_code == 0
    prov = read_provenance(tmp_path / "emb-l")
    assert prov["clip"]["role"] == "clip" and prov["clip"]["dim"] == 768 and prov["clap"]["dim"] == 512
    res = invoke("train", "mapper", tmp_path / "emb-l", "-o", tmp_path / "bad", "--max-steps", 1)
    assert isinstance(res.exception, InputError) and "'clip_mapper'" in str(res.exception)
    assert not (tmp_path / "bad").exists()
    # the README's flow: the mapper preset, a short run, then generation with it
    res = invoke("extract", data, "-o", tmp_path / "emb", "--config", "extract_v2a_mapper", "--num-frames", 4,
                 "--workers", 0, *common)
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "emb" / "extraction.json").read_text())["provenance"]["clip"] == {
        "role": "clip_mapper", "model": read_provenance(tmp_path / "emb")["clip"]["model"], "dim": 512}
    res = invoke("train", "mapper", tmp_path / "emb", "-o", tmp_path / "my-mapper", "--kind", "regression_mlp",
                 "--width", 16, "--batch-size", 2, "--max-steps", 2, "--device", "cpu", "-q")
    assert res.exit_code == 0, res.output + repr(res.exception)
    res = invoke("generate", data.parent / "media" / "img0000.png", "-o", tmp_path / "s.wav", "--mapper", tmp_path / "my-mapper", "--models", "tiny",
                 "--duration", 1, "--steps", 2, "--device", "cpu", "-q", "--seed", 1)
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert (tmp_path / "s.wav").stat().st_size > 1000
