"""Importing the released SS2A checkpoint layout into our modules.

The released files cannot be downloaded here, so the tests use (a) a stand-in of the released MLP
encoders written from the reference notes' description (§2.2), to check that *their* forward and ours
agree after the key mapping, and (b) state dicts exported in the documented layout (§1.5) from our
own modules, to check that a released-layout file loads and gives the same outputs as the same
weights loaded natively.
"""

import re

import pytest
import torch
from torch import nn

from foleykit.errors import InputError
from foleykit.modules import ss2a_checkpoint as ck
from foleykit.modules.manifold import CMSSManifold, ManifoldConfig
from foleykit.modules.remixer import RemixerConfig, SoundSourceRemixer
from foleykit.modules.temporal import TemporalAggregator, TemporalConfig

CLIP, CLAP, MANIFOLD = 12, 8, 6
MANIFOLD_CONFIG = ManifoldConfig(
    clip_dim=CLIP,
    clap_dim=CLAP,
    manifold_dim=MANIFOLD,
    projector_widths=(16, 20, 16, 24),
    reconstructor_widths=(16, 16, 16, 16, 16),
    residual=True,
    dropout=0.1,
)


# --- a stand-in for the released encoders, from the notes: Sequential(Linear(in, l0, bias), MLP(layers)),
# residual blocks [Linear, LN, Dropout, GELU, Linear, LN, Dropout] + Linear shortcut then GELU, leftover
# layers [Linear, LN, Dropout, GELU], heads out_mu / out_sigma.


class _TheirResWrapper(nn.Module):
    def __init__(self, a: int, b: int, c: int, with_dropout: bool):
        super().__init__()
        drop = [nn.Dropout(0.1)] if with_dropout else []
        self.mod = nn.Sequential(
            nn.Linear(a, b), nn.LayerNorm(b), *drop, nn.GELU(), nn.Linear(b, c), nn.LayerNorm(c), *drop
        )
        self.proj = nn.Linear(a, c)

    def forward(self, x):
        return self.mod(x) + self.proj(x)


class _TheirMLP(nn.Module):
    def __init__(self, layers, with_dropout: bool):
        super().__init__()
        mods: list[nn.Module] = []
        i = 0
        while i + 2 < len(layers):
            mods += [_TheirResWrapper(layers[i], layers[i + 1], layers[i + 2], with_dropout), nn.GELU()]
            i += 2
        while i + 1 < len(layers):
            mods += [nn.Linear(layers[i], layers[i + 1]), nn.LayerNorm(layers[i + 1])]
            mods += [nn.Dropout(0.1)] if with_dropout else []
            mods += [nn.GELU()]
            i += 1
        self.model = nn.Sequential(*mods)

    def forward(self, x):
        return self.model(x)


class _TheirEncoder(nn.Module):
    def __init__(self, in_dim, layers, out_dim, bias: bool, with_dropout: bool):
        super().__init__()
        self.model = nn.Sequential(nn.Linear(in_dim, layers[0], bias=bias), _TheirMLP(layers, with_dropout))
        self.out_mu = nn.Linear(layers[-1], out_dim)
        self.out_sigma = nn.Linear(layers[-1], out_dim)

    def forward(self, x):
        h = self.model(x)
        return self.out_mu(h), self.out_sigma(h)


class _TheirManifold(nn.Module):
    def __init__(self, with_dropout: bool):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.ones([]) * 2.5)
        self.self_logit_scale = nn.Parameter(torch.ones([]))
        self.clip_encoder = _TheirEncoder(
            CLIP, MANIFOLD_CONFIG.projector_widths, MANIFOLD, False, with_dropout
        )
        self.clap_encoder = _TheirEncoder(
            CLAP, MANIFOLD_CONFIG.projector_widths, MANIFOLD, False, with_dropout
        )


def _randomise_norms(module: nn.Module) -> None:
    """LayerNorms start at (1, 0); give them values so a swapped weight/bias would show."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)


@pytest.mark.parametrize("with_dropout", [True, False])
def test_released_mlp_layout_imports_with_identical_outputs(with_dropout):
    torch.manual_seed(0)
    theirs = _TheirManifold(with_dropout).eval()
    generator = _TheirEncoder(MANIFOLD, MANIFOLD_CONFIG.reconstructor_widths, CLAP, True, with_dropout).eval()
    _randomise_norms(theirs)
    _randomise_norms(generator)
    ours = CMSSManifold(MANIFOLD_CONFIG).eval()
    ours.load_state_dict(
        ck.manifold_state_from_released(theirs.state_dict(), generator.state_dict(), MANIFOLD_CONFIG)
    )
    x, a, e = torch.randn(5, CLIP), torch.randn(5, CLAP), torch.randn(5, MANIFOLD)
    for our_out, (mu, logvar) in (
        (ours.encode_clips(x), theirs.clip_encoder(x)),
        (ours.encode_claps(a), theirs.clap_encoder(a)),
        (ours.reconstruct(e), generator(e)),
    ):
        assert torch.allclose(our_out.mu, mu, atol=1e-6)
        assert torch.allclose(our_out.logvar, logvar, atol=1e-6)
    assert ours.logit_scale.item() == pytest.approx(2.5)


def _native_models() -> tuple[CMSSManifold, SoundSourceRemixer]:
    torch.manual_seed(1)
    manifold = CMSSManifold(MANIFOLD_CONFIG).eval()
    remixer = SoundSourceRemixer(
        RemixerConfig(
            manifold_dim=MANIFOLD,
            clip_dim=CLIP,
            clap_dim=CLAP,
            source_code="manifold+clap",
            embed_dim=16,
            num_layers=2,
            num_heads=4,
            ffn_multiplier=2,
            max_sources=7,
            token_dropout=0.2,
            key_softmax="features",
            attend_to_padding=True,  # what the released weights were trained with
        )
    ).eval()
    for module in (manifold, remixer):
        _randomise_norms(module)
    with torch.no_grad():
        for layer in remixer.encoder.layers:
            layer.feed_forward.linear2.weight.normal_(0, 0.3)
    return manifold, remixer


def test_released_checkpoint_file_loads_and_matches_native_weights(tmp_path):
    manifold, remixer = _native_models()
    path = tmp_path / "ssv2a.pth"
    torch.save(ck.released_state_from_modules(manifold, remixer, timestamp="2024-12-10"), path)
    config = ck.released_config_from_configs(manifold.config, remixer.config)
    loaded = ck.load_released_ss2a(path, config)  # torch.load(weights_only=True) inside
    assert loaded.timestamp == "2024-12-10"
    assert loaded.manifold.config == manifold.config
    assert loaded.remixer.config == remixer.config
    x, a = torch.randn(3, CLIP), torch.randn(3, CLAP)
    assert torch.equal(loaded.manifold.fold_clips(x), manifold.fold_clips(x))
    assert torch.equal(loaded.manifold.fold_claps(a), manifold.fold_claps(a))
    assert torch.equal(
        loaded.manifold.to_clap(manifold.fold_clips(x)), manifold.to_clap(manifold.fold_clips(x))
    )
    codes, clips = torch.randn(2, 4, MANIFOLD + CLAP), torch.randn(2, 4, CLIP)
    mask = torch.tensor([[False, False, True, True], [False, False, False, True]])
    assert torch.equal(loaded.remixer(codes, clips, mask).mu, remixer(codes, clips, mask).mu)
    assert torch.equal(loaded.remixer(codes, clips, mask).logvar, remixer(codes, clips, mask).logvar)
    # Opting out of reference mode keeps the weights but switches to our attention and padding mask.
    ours = ck.load_released_ss2a(path, config, reference_compatible=False)
    assert ours.remixer.config.key_softmax == "tokens" and not ours.remixer.config.attend_to_padding


def test_exported_keys_follow_the_documented_layout():
    manifold, remixer = _native_models()
    data = ck.released_state_from_modules(manifold, remixer)
    assert set(data) == {"timestamp", "manifold_state", "generator_state", "remixer_state"}
    m, g, r = data["manifold_state"], data["generator_state"], data["remixer_state"]
    assert {
        "logit_scale",
        "self_logit_scale",
        "clip_encoder.model.0.weight",
        "clap_encoder.out_mu.weight",
        "clip_encoder.out_sigma.bias",
    } <= set(m)
    assert "clip_encoder.model.0.bias" not in m  # the projectors' first Linear has no bias
    assert {
        "clip_encoder.model.1.model.0.mod.0.weight",
        "clip_encoder.model.1.model.0.mod.1.weight",
        "clip_encoder.model.1.model.0.mod.4.weight",
        "clip_encoder.model.1.model.0.mod.5.bias",
        "clip_encoder.model.1.model.0.proj.weight",
    } <= set(m)
    assert {"model.0.weight", "model.0.bias", "out_mu.weight", "out_sigma.weight"} <= set(g)
    assert r["styler.in_proj.weight"].shape == (16, MANIFOLD + CLAP + CLIP)  # manifold+generator guidance
    assert r["styler.pred_token"].shape == (2, 16)
    for key in (
        "esa.query",
        "esa.key",
        "esa.value",
        "esa.highway",
        "esa.norm",
        "ffn.linear1",
        "ffn.linear2",
        "ffn.norm",
    ):
        assert f"styler.style_encoder.encoder.1.{key}.weight" in r
    assert {
        "styler.head_mu.model.0.weight",
        "styler.head_mu.model.1.weight",
        "styler.head_sigma.model.1.bias",
        "styler.out_mu.weight",
        "styler.out_sigma.bias",
    } <= set(r)


def test_temporal_checkpoint_round_trip(tmp_path):
    config = TemporalConfig(
        clap_dim=16, num_frames=8, num_heads=4, position_resolution=32, key_softmax="features"
    )
    torch.manual_seed(2)
    native = TemporalAggregator(config).eval()
    with torch.no_grad():
        native.encoder.layers[0].feed_forward.linear2.weight.normal_(0, 0.3)
    state = ck.released_temporal_state(native)
    assert state["pe.pe"].shape == (32, 1, 16) and state["pred_token"].shape == (2, 16)
    assert "encoder.encoder.0.esa.highway.weight" in state and "head_sigma.model.0.weight" in state
    path = tmp_path / "agg.pth"
    torch.save(state, path)
    loaded = ck.load_released_temporal(path, config=config)
    frames = torch.randn(2, 8, 16)
    assert torch.equal(loaded(frames).mu, native(frames).mu)


def test_default_temporal_config_is_the_released_architecture():
    shapes = ck._expected_shapes(TemporalAggregator, ck.RELEASED_TEMPORAL_CONFIG)
    assert shapes["position_table"] == (1024, 512)
    assert shapes["encoder.layers.0.feed_forward.linear1.weight"] == (1024, 512)
    assert "encoder.layers.1.attention.query.weight" not in shapes


def test_shape_mismatch_names_the_key_and_both_shapes():
    manifold, remixer = _native_models()
    data = ck.released_state_from_modules(manifold, remixer)
    data["remixer_state"]["styler.in_proj.weight"] = torch.zeros(16, 99)
    with pytest.raises(
        InputError,
        match=re.escape("'styler.in_proj.weight' has shape (16, 99) but our config expects (16, 26)"),
    ):
        ck.remixer_state_from_released(data["remixer_state"], remixer.config)
    data = ck.released_state_from_modules(manifold, remixer)
    data["manifold_state"]["clap_encoder.out_mu.weight"] = torch.zeros(7, 24)
    with pytest.raises(InputError, match=r"'clap_encoder\.out_mu\.weight' has shape \(7, 24\).*\(6, 24\)"):
        ck.manifold_state_from_released(data["manifold_state"], data["generator_state"], manifold.config)


def test_unknown_missing_and_structural_mismatches_are_input_errors():
    manifold, remixer = _native_models()
    data = ck.released_state_from_modules(manifold, remixer)
    extra = {**data["remixer_state"], "styler.mystery.weight": torch.zeros(2)}
    with pytest.raises(InputError, match="unrecognised key 'styler.mystery.weight'"):
        ck.remixer_state_from_released(extra, remixer.config)
    missing = {k: v for k, v in data["remixer_state"].items() if k != "styler.pred_token"}
    with pytest.raises(InputError, match="lacks weights for readout_tokens"):
        ck.remixer_state_from_released(missing, remixer.config)
    with pytest.raises(InputError, match="MLP has"):
        fewer_layers = ManifoldConfig(**{**MANIFOLD_CONFIG.__dict__, "reconstructor_widths": (16, 16, 16)})
        ck.manifold_state_from_released(data["manifold_state"], data["generator_state"], fewer_layers)
    with pytest.raises(InputError, match="no generator_state"):
        ck.manifold_state_from_released(data["manifold_state"], None, manifold.config)


class _NotAWeight:
    pass


def test_files_that_are_not_weights_only_are_refused(tmp_path):
    path = tmp_path / "ssv2a.pth"
    torch.save({"manifold_state": _NotAWeight()}, path)
    config = ck.released_config_from_configs(*[m.config for m in _native_models()])
    with pytest.raises(InputError, match="weights-only"):
        ck.load_released_ss2a(path, config)
    with pytest.raises(InputError, match="does not exist"):
        ck.load_released_ss2a(tmp_path / "missing.pth", config)


def test_released_config_schema_maps_to_our_configs():
    config = {
        "checkpoints": "x",
        "clip_dim": 768,
        "clap_dim": 512,
        "manifold_dim": 256,
        "manifold": {
            "arch": "mlp",
            "variational": True,
            "layers": [512, 512, 512],
            "resnet": True,
            "dropout": 0.1,
        },
        "generator": {
            "arch": "mlp",
            "variational": True,
            "layers": [512, 512],
            "resnet": True,
            "dropout": 0.1,
        },
        "remixer": {
            "slot": 64,
            "guidance": "generator",
            "cfg": 0.15,
            "styler": {
                "arch": "transformer",
                "variational": True,
                "embed_dim": 256,
                "num_layers": 4,
                "nhead": 8,
                "dropout": 0.1,
                "exp_rate": 2,
            },
        },
    }
    manifold_config, remixer_config = ck.configs_from_released(config)
    assert manifold_config.manifold_dim == 256 and manifold_config.reconstructor_widths == (512, 512)
    assert remixer_config.source_code == "clap" and remixer_config.source_dim == 512
    assert (remixer_config.embed_dim, remixer_config.num_layers, remixer_config.ffn_multiplier) == (256, 4, 2)
    assert remixer_config.token_dropout == 0.15 and remixer_config.max_sources == 64
    config["manifold"]["arch"] = "moe"
    with pytest.raises(InputError, match="'mlp'"):
        ck.configs_from_released(config)
