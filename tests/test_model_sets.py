"""Model sets: tiny stand-ins in hub layout, deterministic; missing models fail fast offline."""

from __future__ import annotations

import json
import socket
import time

import pytest
import torch

from foleykit.errors import InputError, ModelNotAvailableError
from foleykit.hub import resolve_pretrained
from foleykit.model_sets import DEFAULT_MODELS, build_tiny_model_set, resolve_model_set


def test_tiny_set_has_hub_layout(tiny_models_dir):
    ms = resolve_model_set(str(tiny_models_dir))
    for sub in ("unet", "vae", "vocoder", "scheduler", "text_encoder", "tokenizer"):
        assert (tiny_models_dir / "audioldm-s-full-v2" / sub).is_dir()
    assert (tiny_models_dir / "audioldm-s-full-v2" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (tiny_models_dir / "clip-vit-large-patch14" / "model.safetensors").is_file()
    assert (tiny_models_dir / "clap-htsat-unfused" / "preprocessor_config.json").is_file()
    assert json.loads((tiny_models_dir / "model_set.json").read_text())["clip"] == "clip-vit-large-patch14"
    assert ms.mapper is not None


def test_tiny_models_are_the_real_classes(tiny_models_dir):
    from diffusers import UNet2DConditionModel
    from transformers import ClapModel, CLIPModel

    unet = UNet2DConditionModel.from_pretrained(tiny_models_dir / "audioldm-s-full-v2" / "unet")
    assert unet.config.class_embed_type == "simple_projection"
    assert unet.config.projection_class_embeddings_input_dim == 512
    assert unet.config.class_embeddings_concat
    assert CLIPModel.from_pretrained(tiny_models_dir / "clip-vit-large-patch14").config.projection_dim == 768
    assert ClapModel.from_pretrained(tiny_models_dir / "clap-htsat-unfused").config.projection_dim == 512


def test_tiny_build_is_deterministic(tmp_path, tiny_models_dir):
    from safetensors.torch import load_file

    other = build_tiny_model_set(tmp_path / "again")
    for rel in ("audioldm-s-full-v2/unet/diffusion_pytorch_model.safetensors", "clap-htsat-unfused/model.safetensors"):
        a, b = load_file(tiny_models_dir / rel), load_file(other / rel)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_default_set_names_the_papers_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("FOLEYKIT_CACHE", str(tmp_path))
    monkeypatch.delenv("FOLEYKIT_AUDIOLDM_CLAP", raising=False)
    ms = resolve_model_set("default")
    assert ms.clip == "openai/clip-vit-large-patch14"
    assert ms.clip_mapper == "openai/clip-vit-base-patch32"
    # AudioLDM's own CLAP is not on the hub: absent until converted; LAION's CLAP only judges.
    assert ms.clap is None
    assert ms.clap_judge == "laion/clap-htsat-unfused"
    assert ms.audioldm == DEFAULT_MODELS["audioldm"] == "cvssp/audioldm-s-full-v2"
    (tmp_path / "audioldm-clap").mkdir()
    (tmp_path / "audioldm-clap" / "config.json").write_text("{}")
    assert resolve_model_set("default").clap == str(tmp_path / "audioldm-clap")
    monkeypatch.setenv("FOLEYKIT_AUDIOLDM_CLAP", str(tmp_path / "elsewhere"))
    assert resolve_model_set("default").clap is None


def test_unknown_model_set_is_an_input_error():
    with pytest.raises(InputError, match="unknown model set"):
        resolve_model_set("no-such-set")


def test_missing_model_offline_fails_fast_with_ways_out(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    t = time.monotonic()
    with pytest.raises(ModelNotAvailableError) as err:
        resolve_pretrained("cvssp/audioldm-s-full-v2")
    assert time.monotonic() - t < 5
    msg = str(err.value)
    assert "cvssp/audioldm-s-full-v2" in msg and "--models tiny" in msg and "\n" not in msg


def test_network_is_blocked_in_tests():
    with pytest.raises(Exception) as err:
        socket.create_connection(("huggingface.co", 443), timeout=2)
    assert "network" in str(err.value).lower() or isinstance(err.value, OSError)
    s = socket.socket()
    try:
        with pytest.raises(RuntimeError, match="network connection"):
            s.connect(("93.184.216.34", 80))
    finally:
        s.close()


def test_component_downloads_are_restricted_to_their_subfolder():
    """Loading Karlo's prior must not fetch its multi-GB decoder weights."""
    from fnmatch import fnmatch

    from foleykit.hub import _ALLOW_PATTERNS, _patterns

    pats = _patterns("prior", _ALLOW_PATTERNS)
    wanted = ["prior/diffusion_pytorch_model.safetensors", "prior/config.json", "model_index.json"]
    unwanted = ["decoder/diffusion_pytorch_model.safetensors", "super_res_first/diffusion_pytorch_model.safetensors"]
    assert all(any(fnmatch(f, p) for p in pats) for f in wanted)
    assert not any(fnmatch(f, p) for f in unwanted for p in pats)
