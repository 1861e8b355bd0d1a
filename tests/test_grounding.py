"""GroundingModule: attention definition, override, save/load."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from foleykit.errors import InputError
from foleykit.modules.grounding import GroundingConfig, GroundingModule

SMALL = dict(text_dim=24, patch_dim=40, grid_h=3, grid_w=4, attn_dim=16, mlp_hidden_dim=32, out_dim=20)


@pytest.fixture
def model() -> GroundingModule:
    torch.manual_seed(0)
    m = GroundingModule(GroundingConfig(**SMALL))
    with torch.no_grad():  # make positional encodings large enough to matter in the checks
        m.pos_k.normal_()
        m.pos_v.normal_()
    return m.eval()


def _inputs(b: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, SMALL["text_dim"], generator=g), torch.randn(b, 12, SMALL["patch_dim"], generator=g)


def test_defaults_match_clap_clip_and_audioldm() -> None:
    c = GroundingConfig()
    assert (c.text_dim, c.patch_dim, c.num_patches, c.out_dim) == (512, 768, 256, 512)


def test_attention_equals_its_definition(model: GroundingModule) -> None:
    text, patches = _inputs()
    cond, weights = model(text, patches)

    q = text @ model.q_proj.weight.T + model.q_proj.bias
    k = patches @ model.k_proj.weight.T + model.k_proj.bias + model.pos_k
    v = patches @ model.v_proj.weight.T + model.v_proj.bias + model.pos_v
    scores = (q[:, None, :] @ k.transpose(1, 2))[:, 0] / math.sqrt(SMALL["attn_dim"])  # q Kᵀ / √d_k
    expected_w = torch.softmax(scores, dim=-1)
    attended = (expected_w[:, None, :] @ v)[:, 0]
    h = F.gelu(attended @ model.mlp[0].weight.T + model.mlp[0].bias)
    expected_cond = F.normalize(h @ model.mlp[3].weight.T + model.mlp[3].bias, dim=-1)

    torch.testing.assert_close(weights, expected_w)
    torch.testing.assert_close(cond, expected_cond)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2))
    torch.testing.assert_close(cond.norm(dim=-1), torch.ones(2))


def test_positional_encodings_enter_keys_and_values(model: GroundingModule) -> None:
    text, patches = _inputs()
    cond, weights = model(text, patches)
    with torch.no_grad():
        model.pos_k.zero_()
    cond_k, weights_k = model(text, patches)
    assert not torch.allclose(weights, weights_k)
    with torch.no_grad():
        model.pos_v.zero_()
    _, weights_v = model(text, patches)
    cond_v, _ = model(None, patches, attention_override=weights_k)
    torch.testing.assert_close(weights_v, weights_k)  # pos_v does not change the weights...
    assert not torch.allclose(cond_v, cond_k)  # ...but does change what is attended


def test_override_replaces_weights(model: GroundingModule) -> None:
    text, patches = _inputs()
    cond, weights = model(text, patches)
    same, used = model(None, patches, attention_override=weights)
    torch.testing.assert_close(same, cond)
    torch.testing.assert_close(used, weights)

    one_hot = torch.zeros(12)
    one_hot[5] = 1.0
    other, used = model(text, patches, attention_override=one_hot)
    assert used.shape == (1, 12)
    assert (other - cond).norm(dim=-1).min() > 1e-3
    # one-hot weights select exactly one patch's value
    v = model.values(patches)[:, 5]
    torch.testing.assert_close(other, F.normalize(model.mlp(v), dim=-1))


def test_one_image_many_prompts_broadcasts(model: GroundingModule) -> None:
    text, patches = _inputs(3)
    cond, weights = model(text, patches[:1])
    ref, _ = model(text[1:2], patches[:1])
    assert cond.shape == (3, SMALL["out_dim"]) and weights.shape == (3, 12)
    torch.testing.assert_close(cond[1:2], ref)


def test_grid_layout_patches_accepted(model: GroundingModule) -> None:
    text, patches = _inputs()
    a, _ = model(text, patches)
    b, _ = model(text, patches.reshape(2, 3, 4, SMALL["patch_dim"]))
    torch.testing.assert_close(a, b)


def test_bad_inputs_raise_input_error(model: GroundingModule) -> None:
    text, patches = _inputs()
    with pytest.raises(InputError, match="text embedding is required"):
        model(None, patches)
    with pytest.raises(InputError, match="patch embeddings"):
        model(text, patches[:, :5])
    with pytest.raises(InputError, match="attention weights"):
        model(None, patches, attention_override=torch.ones(2, 7))
    with pytest.raises(InputError, match="positive integer"):
        GroundingConfig(grid_h=0)


def test_attention_stats_tracked_only_in_training(model: GroundingModule) -> None:
    text, patches = _inputs()
    with pytest.raises(InputError, match="no recorded attention statistics"):
        model.reference_attention_stats()
    model.train()
    _, w = model(text, patches)
    mean, var = model.reference_attention_stats()
    assert mean == pytest.approx(1 / 12)
    assert var == pytest.approx(float(w.detach().var(-1, unbiased=False).mean()), rel=1e-5)
    model.eval()
    model(text * 3, patches)
    assert model.reference_attention_stats()[1] == pytest.approx(var, rel=1e-6)


def test_save_load_round_trip(model: GroundingModule, tmp_path) -> None:
    text, patches = _inputs()
    model.train()
    model(text, patches)  # record statistics
    model.eval()
    model.set_null_condition(torch.arange(SMALL["out_dim"], dtype=torch.float32))
    cond, _ = model(text, patches)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").is_file() and (tmp_path / "model.safetensors").is_file()
    assert json.loads((tmp_path / "config.json").read_text())["grid_w"] == 4

    loaded = GroundingModule.from_pretrained(tmp_path).eval()
    assert isinstance(loaded.config, GroundingConfig) and loaded.config == model.config
    cond2, _ = loaded(text, patches)
    torch.testing.assert_close(cond2, cond)
    torch.testing.assert_close(loaded.null_cond, model.null_cond)
    assert loaded.null_cond.norm() == pytest.approx(1.0)
    assert loaded.reference_attention_stats() == pytest.approx(model.reference_attention_stats())
