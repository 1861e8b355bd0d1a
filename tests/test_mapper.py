"""V2A-Mapper: configs, schedule, the four variants learning a hidden map, sampling, save/load, pair files."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from foleykit.api import train
from foleykit.errors import InputError
from foleykit.modules.mapper import KINDS, MapperConfig, V2AMapper, cosine_alphas_cumprod
from foleykit.training.accelerate_config import load_training_data

DV, DA = 32, 24  # small, and different, so a swapped dimension cannot pass unnoticed


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pairs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CLAP = normalize(CLIP @ W + 0.05·noise) for one hidden random W shared by every call."""
    w = torch.randn(DV, DA, generator=torch.Generator().manual_seed(1234))
    g = torch.Generator().manual_seed(seed)
    clip = F.normalize(torch.randn(n, DV, generator=g), dim=-1)
    clap = F.normalize(clip @ w + 0.05 * torch.randn(n, DA, generator=g), dim=-1)
    return clip, clap


@pytest.fixture(scope="module")
def data() -> dict[str, torch.Tensor]:
    train_clip, train_clap = _pairs(1200, seed=1)
    test_clip, test_clap = _pairs(300, seed=2)
    return {"clip": train_clip, "clap": train_clap, "test_clip": test_clip, "test_clap": test_clap}


def _small(kind: str, **overrides) -> MapperConfig:
    kw = dict(kind=kind, clip_dim=DV, clap_dim=DA, width=64, depth=2, heads=4, head_dim=16,
              default_inference_steps=25)
    kw.update(overrides)
    return MapperConfig(**kw)


def train_mapper(tmp_path, clip, clap, config: MapperConfig, *, epochs: int, batch_size: int = 448, lr: float = 1.1e-4,
                 val_fraction: float = 0.1, seed: int | None = 0, val_steps: int | None = None,
                 mixed_precision: str = "no", run: str = "run"):
    """The one training path (foleykit.train → the accelerate Trainer + MapperTask) on pairs in memory."""
    return train("mapper", {"clip": clip, "clap": clap}, tmp_path / run, model=dataclasses.asdict(config),
                 options={"val_sample_steps": val_steps},
                 trainer={"epochs": epochs, "batch_size": batch_size, "optimizer": {"lr": lr},
                          "val_fraction": val_fraction, "mixed_precision": mixed_precision, "tensorboard": False,
                          "log_every_steps": 1000},
                 seed=seed, device="cpu", progress=False)


@torch.no_grad()
def held_out_cosine(model: V2AMapper, clip, clap, generator=None, steps=None) -> float:
    """Mean cosine of mapped CLIP to the true CLAP (what the paper's Fig. 3 histograms track)."""
    model.eval()
    return (model.map(clip, steps=steps, generator=generator) * F.normalize(clap, dim=-1)).sum(-1).mean().item()


def _untrained(config: MapperConfig, seed: int = 0) -> V2AMapper:
    torch.manual_seed(seed)
    return V2AMapper(config).eval()


# --- configuration -----------------------------------------------------------------------------------


def test_defaults_are_the_papers_best_settings():
    c = MapperConfig()
    assert c.kind == "diffusion_transformer"
    assert (c.clip_dim, c.clap_dim, c.depth, c.heads, c.head_dim, c.mlp_ratio) == (512, 512, 12, 12, 64, 4)
    assert (c.num_train_timesteps, c.noise_schedule, c.default_inference_steps) == (1000, "cosine", 200)
    assert (c.cond_drop_prob, c.guidance_scale, c.normalise_output) == (0.1, 0.9, True)
    assert MapperConfig(kind="regression_transformer").depth == 8
    assert MapperConfig(kind="regression_mlp").depth == 1
    assert MapperConfig(kind="diffusion_mlp").depth == 1
    assert MapperConfig(kind="regression_transformer", depth=3).depth == 3


def test_regression_mlp_matches_paper_block_and_size():
    """Linear→SiLU→LayerNorm blocks; D=1, E=4 has 2.10 M parameters in the paper's Tab. 7."""
    model = V2AMapper(MapperConfig(kind="regression_mlp"))
    layers = [type(m) for m in model.mlp.net]
    assert layers == [torch.nn.Linear, torch.nn.SiLU, torch.nn.LayerNorm, torch.nn.Linear]
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == 2.10


@pytest.mark.parametrize(
    "bad", [dict(kind="gan"), dict(depth=0), dict(cond_drop_prob=1.0), dict(noise_schedule="linear"),
            dict(guidance_scale=-1.0), dict(default_inference_steps=2000)]
)
def test_bad_config_is_an_input_error(bad):
    with pytest.raises(InputError):
        MapperConfig(**bad)


def test_cosine_schedule_matches_closed_form():
    T, s = 1000, 0.008
    abar = cosine_alphas_cumprod(T)

    def f(t: float) -> float:
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    for t in (1, 10, 250, 500, 750, 990):
        assert abar[t - 1].item() == pytest.approx(f(t) / f(0), rel=1e-9, abs=1e-12)
    assert torch.all(abar[1:] < abar[:-1])  # strictly more noise at every step
    assert 0 < abar[-1].item() < 1e-6  # clipped last beta: almost, but not exactly, pure noise
    model = V2AMapper(_small("diffusion_transformer"))
    assert torch.allclose(model.alphas_cumprod.double(), abar, rtol=1e-6)
    assert "alphas_cumprod" not in model.state_dict()  # derived from the config, not stored


# --- learning ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["regression_mlp", "regression_transformer"])
def test_regression_variants_learn_the_hidden_map(data, kind, tmp_path):
    result = train_mapper(tmp_path, data["clip"], data["clap"], _small(kind), epochs=12, batch_size=128, lr=1e-3)
    held_out = held_out_cosine(result.model, data["test_clip"], data["test_clap"])
    assert held_out >= 0.9, held_out
    assert result.history[-1]["val_cosine"] >= 0.9
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


@pytest.mark.parametrize("kind", ["diffusion_transformer", "diffusion_mlp"])
def test_diffusion_variants_learn_the_hidden_map(data, kind, tmp_path):
    config = _small(kind)
    result = train_mapper(tmp_path, data["clip"], data["clap"], config, epochs=15, batch_size=128, lr=1e-3,
                          val_steps=5)

    def held_out(model: V2AMapper) -> float:
        return held_out_cosine(model, data["test_clip"], data["test_clap"], torch.Generator().manual_seed(7))

    trained, untrained = held_out(result.model), held_out(_untrained(config))
    # Predicting the mean CLAP direction scores this; a mapper that ignored the image could reach it.
    mean_dir = F.normalize(data["clap"].mean(0), dim=0)
    baseline = (data["test_clap"] @ mean_dir).mean().item()
    assert trained >= untrained + 0.3, (trained, untrained)
    assert trained >= 0.8 and trained >= baseline + 0.5, (trained, baseline)


def test_diffusion_mapper_models_a_one_to_many_mapping(tmp_path):
    """The paper's reason for a diffusion mapper: when an image fits two sounds, regression returns their
    blurred average, while diffusion samples land on one sound or the other, and on both across images."""
    g = torch.Generator().manual_seed(0)
    modes = F.normalize(torch.randn(2, DA, generator=g), dim=-1)
    clip = F.normalize(torch.randn(1000, DV, generator=g), dim=-1)
    clap = modes[torch.randint(0, 2, (1000,), generator=g)]  # independent of the image
    test_clip = F.normalize(torch.randn(200, DV, generator=g), dim=-1)
    kw = dict(epochs=6, batch_size=128, lr=1e-3, val_fraction=0.0)
    closeness = {}
    for kind in ("diffusion_mlp", "regression_mlp"):
        model = train_mapper(tmp_path, clip, clap, _small(kind), run=kind, **kw).model.eval()
        cos = model.map(test_clip, generator=torch.Generator().manual_seed(1)) @ modes.T
        closeness[kind] = cos.max(-1).values.mean().item()
        if kind == "diffusion_mlp":
            share = (cos[:, 0] > cos[:, 1]).float().mean().item()
            assert 0.2 <= share <= 0.8, share
    assert closeness["diffusion_mlp"] >= 0.95 and closeness["regression_mlp"] <= 0.85, closeness


# --- sampling ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_map_output_is_unit_float32_and_normalises_its_input(kind):
    model = _untrained(_small(kind))
    clip = torch.randn(5, DV, dtype=torch.float64)
    out = model.map(clip, steps=4, generator=torch.Generator().manual_seed(0))
    assert out.shape == (5, DA) and out.dtype == torch.float32
    assert torch.allclose(out.norm(dim=-1), torch.ones(5), atol=1e-5)
    scaled = model.map(7.5 * clip, steps=4, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, scaled, atol=1e-5)


@pytest.mark.parametrize("kind", ["diffusion_transformer", "diffusion_mlp"])
def test_diffusion_map_is_deterministic_per_seed(kind):
    model = _untrained(_small(kind))
    clip = torch.randn(4, DV)

    def run(seed: int) -> torch.Tensor:
        return model.map(clip, steps=6, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(3), run(3))
    assert (run(3) - run(4)).abs().max() > 1e-3


def test_ddim_sampler_follows_the_deterministic_path():
    """With an oracle that always predicts x0 = c, DDIM (η = 0) must keep the initial noise direction:
    every x_t it shows the network is sqrt(ᾱ_t)·c·sqrt(d) + sqrt(1-ᾱ_t)·ε, on evenly spaced steps."""
    model = _untrained(_small("diffusion_mlp"))
    c = F.normalize(torch.randn(DA), dim=0)
    seen: list[tuple[torch.Tensor, int]] = []

    def oracle(clip, noisy_clap, timesteps, drop_condition=None):
        seen.append((noisy_clap.clone(), int(timesteps[0])))
        return c.expand(clip.shape[0], -1)

    model.forward = oracle
    gen = torch.Generator().manual_seed(0)
    out = model.map(torch.randn(2, DV), steps=5, guidance_scale=0.9, generator=gen)
    assert torch.allclose(out, c.expand(2, -1), atol=1e-6)
    assert [t for _, t in seen] == [999, 749, 500, 250, 0]
    abar, scale = model.alphas_cumprod, math.sqrt(DA)
    z = torch.randn((2, DA), generator=torch.Generator().manual_seed(0))
    eps = (z - abar[999].sqrt() * c * scale) / (1 - abar[999]).sqrt()
    for x_t, t in seen:
        assert torch.allclose(x_t, (abar[t].sqrt() * c * scale + (1 - abar[t]).sqrt() * eps).repeat(2, 1),
                              atol=1e-4)


def test_regression_map_ignores_sampling_arguments():
    model = _untrained(_small("regression_transformer"))
    clip = torch.randn(3, DV)
    a = model.map(clip, steps=3, guidance_scale=5.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, model.map(clip))


def test_guidance_zero_is_unconditional_and_one_is_conditional():
    model = _untrained(_small("diffusion_transformer"))
    a, b = torch.randn(3, DV), torch.randn(3, DV)

    def run(clip: torch.Tensor, scale: float) -> torch.Tensor:
        return model.map(clip, steps=5, guidance_scale=scale, generator=torch.Generator().manual_seed(0))

    assert torch.allclose(run(a, 0.0), run(b, 0.0), atol=1e-5)  # the image no longer matters
    assert (run(a, 1.0) - run(b, 1.0)).abs().max() > 1e-3
    assert (run(a, 0.9) - run(a, 1.0)).abs().max() > 1e-5  # 0.9 really mixes in the unconditional


@pytest.mark.parametrize("kwargs", [dict(steps=0), dict(steps=1001), dict(guidance_scale=-0.5)])
def test_bad_sampling_arguments_are_input_errors(kwargs):
    with pytest.raises(InputError):
        _untrained(_small("diffusion_mlp")).map(torch.randn(2, DV), **kwargs)


def test_wrong_clip_dimension_is_an_input_error():
    with pytest.raises(InputError, match=str(DV)):
        _untrained(_small("regression_mlp")).map(torch.randn(2, DV + 1))


# --- losses ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_training_loss_is_a_reproducible_scalar_that_reaches_every_weight(kind):
    model = _untrained(_small(kind)).train()
    clip, clap = _pairs(64, seed=5)
    loss = model.training_loss(clip, clap, torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert 0 < loss.item() <= 4.0  # squared distance between unit vectors
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    again = model.training_loss(clip, clap, torch.Generator().manual_seed(0))
    assert again.item() == loss.item()


# --- save / load -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(tmp_path, kind):
    model = _untrained(_small(kind, guidance_scale=1.3), seed=1)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["kind"] == kind
    assert (tmp_path / "model.safetensors").is_file()
    torch.manual_seed(99)  # a different random init, so equal outputs prove the weights were loaded
    loaded = V2AMapper.from_pretrained(tmp_path)
    assert isinstance(loaded.config, MapperConfig) and loaded.config == model.config
    clip = torch.randn(3, DV)
    gen = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    assert torch.equal(model.map(clip, steps=5, generator=gen()), loaded.map(clip, steps=5, generator=gen()))


def test_loading_incomplete_weights_fails(tmp_path):
    _untrained(_small("diffusion_transformer")).save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    weights.pop("null_cond")
    save_file(weights, tmp_path / "model.safetensors")
    with pytest.raises(RuntimeError, match="null_cond"):
        V2AMapper.from_pretrained(tmp_path)


# --- training loop and pair files --------------------------------------------------------------------


def test_training_is_seeded_logs_each_epoch_and_writes_the_model(data, tmp_path):
    config = _small("regression_mlp")
    kw = dict(epochs=3, batch_size=256, seed=11)
    first = train_mapper(tmp_path, data["clip"], data["clap"], config, run="a", **kw)
    second = train_mapper(tmp_path, data["clip"], data["clap"], config, run="b", **kw)
    assert first.seed == 11 and len(first.history) == 3
    assert first.history == second.history
    lines = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [line for line in lines if line["kind"] == "epoch"] == first.history
    loaded = V2AMapper.from_pretrained(first.final_dir)
    assert loaded.config == config
    assert all(torch.equal(v, first.model.state_dict()[k]) for k, v in loaded.state_dict().items())


def test_training_without_validation_draws_a_seed(tmp_path):
    clip, clap = _pairs(100, seed=4)
    result = train_mapper(tmp_path, clip, clap, _small("regression_mlp"), epochs=2, val_fraction=0.0, seed=-1)
    assert isinstance(result.seed, int) and result.seed >= 0
    assert not any(k.startswith("val_") for k in result.history[-1])


def test_training_in_bfloat16_keeps_float32_weights(data, tmp_path):
    result = train_mapper(tmp_path, data["clip"][:300], data["clap"][:300], _small("diffusion_transformer"), epochs=2,
                          mixed_precision="bf16", val_steps=3)
    last = result.history[-1]
    assert result.autocast_dtype == "bfloat16"
    assert math.isfinite(last["train_loss"]) and math.isfinite(last["val_loss"]) and -1 <= last["val_cosine"] <= 1
    assert next(result.model.parameters()).dtype == torch.float32


@pytest.mark.parametrize(
    "clip_shape, clap_shape, kwargs, message",
    [((50, DV + 1), (50, DA), {}, "clip_dim"), ((50, DV), (49, DA), {}, "differ in length"),
     ((50, DV), (50, DA), dict(mixed_precision="fp32"), "mixed_precision"),
     ((50, DV), (50, DA), dict(val_fraction=1.0), "val_fraction"), ((50, DV), (50, DA), dict(epochs=0), "epochs")],
)
def test_training_rejects_bad_input(tmp_path, clip_shape, clap_shape, kwargs, message):
    kw = dict(epochs=1) | kwargs
    with pytest.raises(InputError, match=message):
        train_mapper(tmp_path, torch.randn(*clip_shape), torch.randn(*clap_shape), _small("regression_mlp"), **kw)
    assert not (tmp_path / "run").exists()


PAIRS = {"clip": "clip", "clap": "clap"}


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".npz"])
def test_pair_files_are_read_in_every_format(tmp_path, suffix):
    clip, clap = _pairs(20, seed=3)
    path = tmp_path / f"pairs{suffix}"
    if suffix == ".safetensors":
        save_file({"clip": clip, "clap": clap.half()}, path)
    elif suffix == ".pt":
        torch.save({"clip": clip, "clap": clap}, path)
    else:
        np.savez(path, clip=clip.numpy(), clap=clap.numpy())
    dataset, _, shapes = load_training_data(path, PAIRS, embeddings=("clip", "clap"))
    got = dataset.tensors
    assert got["clip"].dtype == got["clap"].dtype == torch.float32 and shapes == {"clip": (DV,), "clap": (DA,)}
    assert torch.equal(got["clip"], clip)
    assert torch.allclose(got["clap"], clap, atol=1e-3)


def _nan_clap() -> dict[str, torch.Tensor]:
    clip, clap = _pairs(20, seed=3)
    clap[4, 2] = float("nan")
    return {"clip": clip, "clap": clap}


@pytest.mark.parametrize(
    "tensors, message",
    [
        ({"clip": torch.randn(20, DV)}, "missing tensor 'clap'"),
        ({"clip": torch.randn(20, DV), "clap": torch.randn(19, DA)}, "differ in length"),
        (_nan_clap(), "NaN"),
        ({"clip": torch.randn(20, DV, 2), "clap": torch.randn(20, DA)}, r"must have shape \[N, D\]"),
        ({"clip": torch.zeros(20, DV), "clap": torch.randn(20, DA)}, "zeros"),
    ],
)
def test_bad_pair_files_are_refused(tmp_path, tensors, message):
    path = tmp_path / "pairs.safetensors"
    save_file(tensors, path)
    with pytest.raises(InputError, match=message):
        train("mapper", path, tmp_path / "run", device="cpu", progress=False)
    assert not (tmp_path / "run").exists()


def test_missing_corrupt_and_unknown_pair_files_are_refused(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_training_data(tmp_path / "nope.safetensors", PAIRS)
    corrupt = tmp_path / "pairs.safetensors"
    corrupt.write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="cannot read"):
        load_training_data(corrupt, PAIRS)
    unknown = tmp_path / "pairs.csv"
    unknown.write_text("1,2\n")
    with pytest.raises(InputError, match="unsupported"):
        load_training_data(unknown, PAIRS)
