"""Sound Source Remixer: padding invariance, reference mode, token dropout, save/load, and learning a mix."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from foleykit.api import train
from foleykit.errors import InputError
from foleykit.modules.remixer import RemixerConfig, SoundSourceRemixer

SMALL = dict(
    manifold_dim=6,
    clip_dim=10,
    clap_dim=8,
    embed_dim=16,
    num_layers=2,
    num_heads=4,
    max_sources=9,
    dropout=0.0,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is several times faster than two when the cores are shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _remixer(**overrides) -> SoundSourceRemixer:
    torch.manual_seed(0)
    model = SoundSourceRemixer(RemixerConfig(**{**SMALL, **overrides})).eval()
    with torch.no_grad():  # a fresh FeedForward is the identity; give it weight so the test sees it
        for layer in model.encoder.layers:
            layer.feed_forward.linear2.weight.normal_(0, 0.3)
    return model


def _real_tokens(n: int = 3):
    g = torch.Generator().manual_seed(5)
    return torch.randn(2, n, 6, generator=g), torch.randn(2, n, 10, generator=g)


def test_padding_tokens_leave_the_output_unchanged():
    model = _remixer()
    codes, clips = _real_tokens(3)
    reference = model(codes, clips)
    g = torch.Generator().manual_seed(6)
    for extra in (1, 6):
        pad_codes = torch.cat([codes, 50 * torch.randn(2, extra, 6, generator=g)], dim=1)
        pad_clips = torch.cat([clips, 50 * torch.randn(2, extra, 10, generator=g)], dim=1)
        mask = torch.zeros(2, 3 + extra, dtype=torch.bool)
        mask[:, 3:] = True
        out = model(pad_codes, pad_clips, mask)
        assert torch.allclose(out.mu, reference.mu, atol=1e-5)
        assert torch.allclose(out.logvar, reference.logvar, atol=1e-5)
        # Without the mask the same garbage does change the mix: the mask is what protects it.
        assert not torch.allclose(model(pad_codes, pad_clips).mu, reference.mu, atol=1e-3)


def test_padding_can_sit_anywhere_and_differ_per_item():
    model = _remixer()
    codes, clips = _real_tokens(3)
    mixed_codes = torch.stack(
        [torch.cat([codes[0, :1], torch.randn(2, 6), codes[0, 1:]]), torch.cat([codes[1], torch.randn(2, 6)])]
    )
    mixed_clips = torch.stack(
        [
            torch.cat([clips[0, :1], torch.randn(2, 10), clips[0, 1:]]),
            torch.cat([clips[1], torch.randn(2, 10)]),
        ]
    )
    mask = torch.tensor([[False, True, True, False, False], [False, False, False, True, True]])
    assert torch.allclose(model(mixed_codes, mixed_clips, mask).mu, model(codes, clips).mu, atol=1e-5)


def test_reference_mode_treats_padding_as_zero_slots_up_to_max_sources():
    model = _remixer(key_softmax="features", attend_to_padding=True)
    codes, clips = _real_tokens(3)
    mask = torch.tensor([[False, False, False, True]] * 2)
    garbage = model(
        torch.cat([codes, torch.randn(2, 1, 6)], 1), torch.cat([clips, torch.randn(2, 1, 10)], 1), mask
    )
    explicit_zeros = model(F.pad(codes, (0, 0, 0, 6)), F.pad(clips, (0, 0, 0, 6)))  # 9 = max_sources slots
    assert torch.allclose(garbage.mu, explicit_zeros.mu, atol=1e-5)
    assert torch.allclose(model(codes, clips).mu, explicit_zeros.mu, atol=1e-5)


def test_token_dropout_only_in_training_and_reproducible_per_generator():
    model = _remixer(token_dropout=0.5)
    codes, clips = _real_tokens(4)
    eval_out = model(codes, clips, generator=torch.Generator().manual_seed(0)).mu
    assert torch.equal(eval_out, model(codes, clips, generator=torch.Generator().manual_seed(1)).mu)
    model.train()
    a = model(codes, clips, generator=torch.Generator().manual_seed(0)).mu
    b = model(codes, clips, generator=torch.Generator().manual_seed(0)).mu
    c = model(codes, clips, generator=torch.Generator().manual_seed(1)).mu
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_sample_is_normalised_and_mean_mode_is_deterministic():
    model = _remixer()
    codes, clips = _real_tokens(3)
    out = model.sample(codes, clips, num_samples=0)
    assert torch.allclose(out.norm(dim=-1), torch.ones(2))
    assert torch.allclose(out, F.normalize(model(codes, clips).mu, dim=-1))
    s1 = model.sample(codes, clips, num_samples=4, generator=torch.Generator().manual_seed(3))
    s2 = model.sample(codes, clips, num_samples=4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(s1, s2) and not torch.allclose(s1, out)


def test_save_and_load_round_trip(tmp_path):
    model = _remixer(source_code="manifold+clap")
    model.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").is_file() and (tmp_path / "model.safetensors").is_file()
    loaded = SoundSourceRemixer.from_pretrained(tmp_path)
    assert loaded.config == model.config
    codes, clips = torch.randn(2, 3, 6 + 8), torch.randn(2, 3, 10)
    assert torch.equal(loaded(codes, clips).mu, model(codes, clips).mu)


def test_bad_inputs_raise_input_error():
    model = _remixer()
    with pytest.raises(InputError, match="at most 9"):
        model(torch.randn(1, 10, 6), torch.randn(1, 10, 10))
    with pytest.raises(InputError, match="features"):
        model(torch.randn(1, 3, 5), torch.randn(1, 3, 10))
    with pytest.raises(InputError, match="source_code"):
        RemixerConfig(source_code="generator")  # type: ignore[arg-type]


def _scenes(n: int, seed: int, types: int = 6, slots: int = 6):
    """Scenes of 1-4 distinct source types; the target is the normalised sum of their CLAPs."""
    g = torch.Generator().manual_seed(0)
    clip_types = F.normalize(torch.randn(types, 10, generator=g), dim=-1)
    clap_types = F.normalize(torch.randn(types, 8, generator=g), dim=-1)
    code_types = torch.randn(types, 6, generator=g)
    g = torch.Generator().manual_seed(seed)
    codes, clips = (
        torch.randn(n, slots, 6, generator=g),
        torch.randn(n, slots, 10, generator=g),
    )  # garbage padding
    padding, target = torch.ones(n, slots, dtype=torch.bool), torch.zeros(n, 8)
    for i in range(n):
        count = int(torch.randint(1, 5, (1,), generator=g))
        chosen = torch.randperm(types, generator=g)[:count]
        codes[i, :count] = code_types[chosen] + 0.05 * torch.randn(count, 6, generator=g)
        clips[i, :count] = clip_types[chosen]
        padding[i, :count] = False
        target[i] = F.normalize(clap_types[chosen].sum(0), dim=-1)
    return codes, clips, padding, target


def test_remixer_learns_the_clap_of_a_mixture(tmp_path):
    codes, clips, padding, target = _scenes(600, seed=0)
    test = _scenes(200, seed=1)
    config = RemixerConfig(**{**SMALL, "embed_dim": 32, "max_sources": 6, "token_dropout": 0.0})
    scenes = {"codes": codes, "clips": clips, "target_clap": target, "padding_mask": padding}
    result = train("remixer", scenes, tmp_path / "run", model=dataclasses.asdict(config),
                   trainer={"epochs": 8, "batch_size": 50, "optimizer": {"lr": 3e-3}, "val_fraction": 0.1,
                            "tensorboard": False},
                   seed=0, device="cpu", progress=False)
    assert result.seed == 0 and len(result.history) == 8
    model = result.model.eval()
    baseline = F.cosine_similarity(F.normalize(target.mean(0), dim=-1)[None], test[3]).mean().item()
    with torch.no_grad():  # the mean prediction (no draw) on held-out scenes
        pred = model.sample(test[0], test[1], test[2], num_samples=0)
    cosine = F.cosine_similarity(pred, test[3], dim=-1).mean().item()
    assert cosine > 0.95, cosine
    assert cosine > baseline + 0.3
    assert result.history[-1]["val_cosine"] > 0.9
