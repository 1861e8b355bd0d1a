"""`foleykit train mapper` end to end, and generating with the mapper it wrote."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from foleykit.cli import main


def run_cli(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture()
def pairs(tmp_path):
    g = torch.Generator().manual_seed(0)
    clip = torch.randn(200, 512, generator=g)
    w = torch.randn(512, 512, generator=g) / 512**0.5
    clap = torch.nn.functional.normalize(clip @ w, dim=-1)
    path = tmp_path / "pairs.safetensors"
    save_file({"clip": clip, "clap": clap}, str(path))
    return path


def test_train_then_generate_with_the_trained_mapper(pairs, tmp_path, tiny_models_dir, monkeypatch, capsys):
    monkeypatch.setenv("FOLEYKIT_MODELS", str(tiny_models_dir))
    out = tmp_path / "mapper"
    code = run_cli("train", "mapper", str(pairs), "-o", str(out), "--kind", "regression_mlp", "--width", "64",
                   "--epochs", "3", "--batch-size", "64", "--seed", "5", "--quiet")
    assert code == 0
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert json.loads((out / "config.json").read_text())["kind"] == "regression_mlp"
    assert "seed: 5" in capsys.readouterr().out

    # Refuses to overwrite a trained model without --overwrite, and leaves it intact.
    before = (out / "model.safetensors").read_bytes()
    assert run_cli("train", "mapper", str(pairs), "-o", str(out), "--epochs", "1", "--quiet") != 0
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == before

    from PIL import Image

    img = tmp_path / "img.png"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(img)
    wav = tmp_path / "o.wav"
    assert run_cli("generate", str(img), "-o", str(wav), "--mapper", str(out), "--duration", "1", "--steps", "1",
                   "--seed", "0", "--quiet") == 0
    side = json.loads((tmp_path / "o.wav.json").read_text())
    assert side["mapper"]["kind"] == "regression_mlp" and side["mapper"]["ref"] == str(out)


def test_bad_pairs_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    save_file({"clip": torch.randn(20, 8)}, str(bad))
    assert run_cli("train", "mapper", str(bad), "-o", str(tmp_path / "m"), "--quiet") != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "clap" in err[0]
    assert not (tmp_path / "m").exists()


def test_package_level_api_names():
    import foleykit

    assert callable(foleykit.generate) and callable(foleykit.train)
    assert not hasattr(foleykit, "train_mapper")  # one way to train: foleykit.train (the accelerate trainer)
    assert foleykit.resolve_model_set("default").clap_judge == "laion/clap-htsat-unfused"


def test_presets_set_the_diffusion_mapper_steps(pairs, tmp_path, tiny_models_dir, monkeypatch):
    """`fast` samples a diffusion mapper with the preset's 25 steps, `paper` with the mapper's 200."""
    monkeypatch.setenv("FOLEYKIT_MODELS", str(tiny_models_dir))
    out = tmp_path / "dmapper"
    assert run_cli("train", "mapper", str(pairs), "-o", str(out), "--kind", "diffusion_mlp", "--width", "64",
                   "--epochs", "1", "--batch-size", "64", "--seed", "1", "--quiet") == 0
    from PIL import Image

    from foleykit.modules.mapper import V2AMapper

    seen = []
    real_map = V2AMapper.map

    def spy(self, *a, steps=None, **kw):
        seen.append(steps)
        return real_map(self, *a, steps=steps, **kw)

    monkeypatch.setattr(V2AMapper, "map", spy)
    img = tmp_path / "img.png"
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(img)
    for preset, want in (("fast", 25), ("paper", 200)):
        wav = tmp_path / f"{preset}.wav"
        assert run_cli("generate", str(img), "-o", str(wav), "--mapper", str(out), "--preset", preset,
                       "--duration", "1", "--steps", "1", "--seed", "0", "--quiet") == 0
        side = json.loads((tmp_path / f"{preset}.wav.json").read_text())
        assert side["mapper"]["steps"] == want
    assert seen == [25, None]  # None: the mapper's own default (200 DDIM steps)
