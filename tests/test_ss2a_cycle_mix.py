"""Cycle Mix: padding is excluded, results are deterministic per seed, and the criteria select as defined."""

import math

import pytest
import torch

from foleykit.errors import InputError
from foleykit.modules.cycle_mix import (
    SourceSlots,
    cycle_mix,
    manifold_codes,
    pack_sources,
    remixer_source_codes,
    stack_slots,
)
from foleykit.modules.manifold import CMSSManifold, ManifoldConfig
from foleykit.modules.remixer import RemixerConfig, SoundSourceRemixer

CLIP, CLAP, MANIFOLD = 12, 8, 6


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is several times faster than two when the cores are shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _models(source_code: str = "manifold") -> tuple[CMSSManifold, SoundSourceRemixer]:
    torch.manual_seed(0)
    manifold = CMSSManifold(
        ManifoldConfig(
            clip_dim=CLIP,
            clap_dim=CLAP,
            manifold_dim=MANIFOLD,
            projector_widths=(16, 16, 16),
            reconstructor_widths=(16, 16, 16),
        )
    )
    remixer = SoundSourceRemixer(
        RemixerConfig(
            manifold_dim=MANIFOLD,
            clip_dim=CLIP,
            clap_dim=CLAP,
            embed_dim=16,
            num_layers=2,
            num_heads=4,
            max_sources=10,
            source_code=source_code,
        )
    )
    with torch.no_grad():  # spread the variational heads so candidates differ visibly
        remixer.logvar_head.out.bias.fill_(0.0)
    return manifold, remixer


def _scene_pair() -> tuple[SourceSlots, SourceSlots]:
    """Two batches with the same two scenes, one with zero padding, one with garbage in the padding."""
    g = torch.Generator().manual_seed(1)
    kw = dict(max_sources=10, clip_dim=CLIP, clap_dim=CLAP)
    clean = stack_slots(
        [
            pack_sources(
                torch.randn(3, CLIP, generator=g),
                torch.randn(1, CLAP, generator=g),
                torch.randn(CLIP, generator=g),
                **kw,
            ),
            pack_sources(torch.randn(2, CLIP, generator=g), None, None, **kw),
        ]
    )
    assert clean.audio_claps is not None and clean.is_audio is not None
    padded = clean.padding_mask
    dirty = SourceSlots(
        clean.clips.masked_fill(padded[..., None], 0.0)
        + 30 * torch.randn(clean.clips.shape, generator=g) * padded[..., None],
        padded,
        clean.audio_claps + 30 * torch.randn(clean.audio_claps.shape, generator=g) * padded[..., None],
        clean.is_audio | padded,  # is_audio on an empty slot must not matter either
    )
    return clean, dirty


@pytest.mark.parametrize("source_code", ["manifold", "manifold+clap"])
def test_padding_slots_do_not_change_the_mix(source_code):
    manifold, remixer = _models(source_code)
    clean, dirty = _scene_pair()
    a = cycle_mix(manifold, remixer, clean, rounds=3, samples=4, generator=torch.Generator().manual_seed(0))
    b = cycle_mix(manifold, remixer, dirty, rounds=3, samples=4, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(a.clap, b.clap, atol=1e-5)
    assert torch.allclose(a.score, b.score, atol=1e-5)
    # Empty slots and the feedback slot (0) are never scored.
    unscored = clean.padding_mask.clone()
    unscored[:, 0] = True
    assert torch.equal(torch.isnan(a.track_similarity), unscored)


def test_deterministic_per_seed_and_seed_sensitive():
    manifold, remixer = _models()
    clean, _ = _scene_pair()
    runs = [
        cycle_mix(manifold, remixer, clean, rounds=2, samples=6, generator=torch.Generator().manual_seed(s))
        for s in (3, 3, 4)
    ]
    assert torch.equal(runs[0].clap, runs[1].clap)
    assert not torch.allclose(runs[0].clap, runs[2].clap)
    assert torch.allclose(runs[0].clap.norm(dim=-1), torch.ones(2))


def test_modules_are_put_back_in_their_modes():
    manifold, remixer = _models()
    manifold.train()
    remixer.eval()
    cycle_mix(
        manifold, remixer, _scene_pair()[0], rounds=1, samples=2, generator=torch.Generator().manual_seed(0)
    )
    assert manifold.training and not remixer.training


def test_score_is_the_criterion_over_scored_tracks():
    manifold, remixer = _models()
    clean, _ = _scene_pair()
    for criterion in ("spread", "relevance"):
        result = cycle_mix(
            manifold,
            remixer,
            clean,
            rounds=2,
            samples=5,
            criterion=criterion,
            generator=torch.Generator().manual_seed(0),
        )
        for b in range(2):
            sims = [x for x in result.track_similarity[b].tolist() if not math.isnan(x)]
            mean = sum(sims) / len(sims)
            expected = (
                mean
                if criterion == "relevance"
                else math.sqrt(sum((x - mean) ** 2 for x in sims) / len(sims))
            )
            assert result.score[b].item() == pytest.approx(expected, abs=1e-5)


def test_with_one_round_the_criteria_choose_among_the_same_candidates():
    """Round 0 draws identical candidates whatever the criterion, so the spread pick has the lower std
    and the relevance pick the higher mean."""
    manifold, remixer = _models()
    clean, _ = _scene_pair()
    spread = cycle_mix(
        manifold,
        remixer,
        clean,
        rounds=1,
        samples=8,
        criterion="spread",
        generator=torch.Generator().manual_seed(0),
    )
    relevance = cycle_mix(
        manifold,
        remixer,
        clean,
        rounds=1,
        samples=8,
        criterion="relevance",
        generator=torch.Generator().manual_seed(0),
    )

    def stats(result, b):
        sims = torch.tensor([x for x in result.track_similarity[b].tolist() if not math.isnan(x)])
        return sims.std(correction=0).item(), sims.mean().item()

    for b in range(2):
        s_std, s_mean = stats(spread, b)
        r_std, r_mean = stats(relevance, b)
        assert s_std <= r_std + 1e-6 and r_mean >= s_mean - 1e-6
    assert not torch.allclose(spread.clap, relevance.clap)  # the criteria really differ here


def test_audio_sources_take_their_code_from_clap_each_in_its_own_slot():
    manifold, _ = _models()
    manifold.eval()
    g = torch.Generator().manual_seed(2)
    audio = torch.randn(2, CLAP, generator=g)
    slots = pack_sources(
        torch.randn(1, CLIP, generator=g), audio, None, max_sources=10, clip_dim=CLIP, clap_dim=CLAP
    )
    assert slots.padding_mask.tolist() == [[True, False, False, False]]
    assert slots.is_audio is not None and slots.is_audio.tolist() == [[False, False, True, True]]
    assert torch.equal(slots.clips[0, 2:], torch.zeros(2, CLIP))  # v = 0 for audio sources (paper)
    codes = manifold_codes(manifold, slots)
    assert torch.allclose(codes[0, 2:], manifold.fold_claps(audio))
    assert torch.allclose(codes[0, 1], manifold.fold_clips(slots.clips[0, 1]))
    both = remixer_source_codes(manifold, codes, "manifold+clap")
    assert both.shape[-1] == MANIFOLD + CLAP and torch.allclose(both[..., MANIFOLD:], manifold.to_clap(codes))


def test_bad_arguments_are_input_errors():
    manifold, remixer = _models()
    clean, _ = _scene_pair()
    with pytest.raises(InputError, match="criterion"):
        cycle_mix(manifold, remixer, clean, criterion="loudest")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="feedback slot"):
        cycle_mix(manifold, remixer, clean, feedback_slot=99)
    with pytest.raises(InputError, match="at most 9"):
        pack_sources(torch.randn(10, CLIP), None, max_sources=10, clip_dim=CLIP, clap_dim=CLAP)


def _quiet_manifold(manifold: CMSSManifold) -> CMSSManifold:
    """Near-zero manifold variances: tracks are their means, while the Remixer's candidates still vary."""
    with torch.no_grad():
        for mlp in (manifold.clip_projector, manifold.clap_projector, manifold.reconstructor):
            mlp.logvar_head.weight.zero_()
            mlp.logvar_head.bias.fill_(-40.0)
    return manifold


def test_a_lone_global_source_is_scored_against_its_own_track_and_rounds_improve():
    """One image and nothing else (e.g. ``--no-detect``): the feedback slot is the only source. It used
    to be unscored, so every candidate scored 0 and the first draw always won."""
    manifold, remixer = _models()
    manifold = _quiet_manifold(manifold)
    g = torch.Generator().manual_seed(5)
    global_clip = torch.randn(CLIP, generator=g)
    slots = pack_sources(None, None, global_clip, max_sources=10, clip_dim=CLIP, clap_dim=CLAP)
    assert slots.num_slots == 1 and not slots.padding_mask.any()
    manifold.eval()
    own_track = manifold.to_clap(manifold.fold_clips(global_clip))  # χ(v(global))

    runs = {
        rounds: cycle_mix(manifold, remixer, slots, rounds=rounds, samples=6, criterion="spread",
                          generator=torch.Generator().manual_seed(0))
        for rounds in (1, 6)
    }
    for res in runs.values():
        # Spread of one similarity is always 0, so the scene is ranked by relevance to the global track.
        assert res.criterion_used == ("relevance",)
        sim = res.track_similarity[0, 0].item()
        assert math.isfinite(sim)
        assert sim == pytest.approx(torch.dot(res.clap[0], own_track).item(), abs=1e-4)
        assert res.score[0].item() == pytest.approx(sim, abs=1e-5)
    # Round 0 draws the same candidates in both runs; later rounds (with feedback) found a better mix.
    assert runs[6].score[0] > runs[1].score[0] + 1e-4
    assert not torch.allclose(runs[6].clap, runs[1].clap)

    # The fallback ranks exactly as the relevance criterion does (same draws, same picks).
    relevance = cycle_mix(manifold, remixer, slots, rounds=6, samples=6, criterion="relevance",
                          generator=torch.Generator().manual_seed(0))
    assert relevance.criterion_used == ("relevance",)
    assert torch.allclose(relevance.clap, runs[6].clap) and torch.allclose(relevance.score, runs[6].score)


def test_one_scored_track_falls_back_to_relevance_but_two_keep_the_spread():
    manifold, remixer = _models()
    g = torch.Generator().manual_seed(6)
    kw = dict(max_sources=10, clip_dim=CLIP, clap_dim=CLAP)
    one = pack_sources(torch.randn(1, CLIP, generator=g), None, torch.randn(CLIP, generator=g), **kw)
    two = pack_sources(torch.randn(2, CLIP, generator=g), None, torch.randn(CLIP, generator=g), **kw)
    res = cycle_mix(manifold, remixer, stack_slots([one, two]), rounds=3, samples=5, criterion="spread",
                    generator=torch.Generator().manual_seed(0))
    assert res.criterion_used == ("relevance", "spread")
    sims0 = res.track_similarity[0]
    assert torch.isnan(sims0[0]) and torch.isnan(sims0[2:]).all()  # the feedback slot and padding unscored
    assert res.score[0].item() == pytest.approx(sims0[1].item(), abs=1e-5)  # relevance = its cosine
    s1 = res.track_similarity[1, 1:]
    assert res.score[1].item() == pytest.approx(s1.std(correction=0).item(), abs=1e-5)
    # The feedback slot stays unscored whenever another source exists.
    assert torch.isnan(res.track_similarity[1, 0])
