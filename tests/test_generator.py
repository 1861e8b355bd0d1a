"""The AudioLDM generator on tiny stand-ins: shapes, determinism, guidance, ranking, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from foleykit.errors import InputError
from foleykit.generator.long_audio import generate_long, plan_windows
from foleykit.generator.pipeline import AudioLDMGenerator
from foleykit.generator.presets import PRESETS


@pytest.fixture(scope="module")
def generator(tiny_models_dir):
    return AudioLDMGenerator.from_pretrained(str(tiny_models_dir / "audioldm-s-full-v2"), device="cpu")


def _cond(n=1, seed=0):
    return torch.randn(n, 512, generator=torch.Generator().manual_seed(seed))


def test_waveform_shape_rate_and_finiteness(generator):
    out = generator(_cond(2), duration_s=1.5, seed=1, num_inference_steps=2, progress=False)
    assert out.sample_rate == 16000
    assert out.waveforms.shape == (2, 24000)
    assert out.waveforms.dtype == np.float32
    assert np.isfinite(out.waveforms).all() and out.waveforms.std() > 0


def test_same_seed_same_audio_other_seed_differs(generator):
    a = generator(_cond(), duration_s=1.0, seed=7, num_inference_steps=2, progress=False).waveforms
    b = generator(_cond(), duration_s=1.0, seed=7, num_inference_steps=2, progress=False).waveforms
    c = generator(_cond(), duration_s=1.0, seed=8, num_inference_steps=2, progress=False).waveforms
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_batch_item_does_not_depend_on_batch(generator):
    """Item i uses seed+i, so a clip is the same alone or in a batch."""
    conds = _cond(2, seed=3)
    both = generator(conds, duration_s=1.0, seed=11, num_inference_steps=2, progress=False).waveforms
    first = generator(conds[:1], duration_s=1.0, seed=11, num_inference_steps=2, progress=False).waveforms
    np.testing.assert_allclose(both[0], first[0], atol=1e-5)


def test_condition_changes_output(generator):
    a = generator(_cond(seed=1), duration_s=1.0, seed=5, num_inference_steps=2, progress=False).waveforms
    b = generator(_cond(seed=2), duration_s=1.0, seed=5, num_inference_steps=2, progress=False).waveforms
    assert not np.allclose(a, b)


def test_unconditional_is_clap_text_of_empty_string(generator):
    u = generator.unconditional_embedding()
    assert u.shape == (512,)
    assert torch.isclose(u.norm(), torch.tensor(1.0), atol=1e-5)
    tok = generator.tokenizer([""], padding="max_length", max_length=generator.tokenizer.model_max_length,
                              return_tensors="pt")
    ref = generator.text_encoder(**tok).text_embeds[0]
    assert torch.allclose(u, ref / ref.norm(), atol=1e-5)


def test_guidance_one_equals_conditional_only(generator):
    """guidance 1.0 must skip the unconditional branch; guidance 0 is the unconditional model."""
    g1 = generator(_cond(), duration_s=1.0, seed=4, num_inference_steps=2, guidance_scale=1.0, progress=False)
    g0 = generator(_cond(), duration_s=1.0, seed=4, num_inference_steps=2, guidance_scale=0.0, progress=False)
    neg = generator(generator.unconditional_embedding()[None], duration_s=1.0, seed=4, num_inference_steps=2,
                    guidance_scale=1.0, progress=False)
    assert not np.allclose(g1.waveforms, g0.waveforms)
    np.testing.assert_allclose(g0.waveforms, neg.waveforms, atol=1e-5)


def test_ranking_keeps_the_best_candidate(generator, tiny_models_dir):
    from foleykit.encoders.clap import ClapEncoder

    clap = ClapEncoder.from_pretrained(str(tiny_models_dir / "audioldm-clap"))  # AudioLDM's own CLAP
    cond = _cond()
    out = generator(cond, duration_s=1.0, seed=2, num_inference_steps=2, num_candidates=3, ranker=clap, progress=False)
    assert out.waveforms.shape == (1, 16000)
    # Recompute every candidate alone: candidate k uses seed 2+k.
    cands = [generator(cond, duration_s=1.0, seed=2 + k, num_inference_steps=2, progress=False).waveforms[0] for k in range(3)]
    sims = (clap.embed_audio(cands, 16000) * torch.nn.functional.normalize(cond, dim=-1)).sum(-1)
    best = int(sims.argmax())
    np.testing.assert_allclose(out.waveforms[0], cands[best], atol=1e-5)
    assert out.scores[0] == pytest.approx(float(sims.max()), abs=1e-4)


def test_presets_match_the_papers():
    p = PRESETS["paper"]
    assert (p.scheduler, p.num_inference_steps, p.eta, p.guidance_scale) == ("ddim", 200, 1.0, 2.5)
    assert PRESETS["fast"].num_inference_steps < p.num_inference_steps


@pytest.mark.parametrize("kwargs", [
    dict(duration_s=0), dict(duration_s=-1), dict(duration_s=11), dict(num_inference_steps=0),
    dict(guidance_scale=float("nan")), dict(num_candidates=0), dict(preset="slow"), dict(scheduler="nope"),
])
def test_bad_parameters_raise_input_error(generator, kwargs):
    base = dict(duration_s=1.0, num_inference_steps=1, progress=False, seed=0)
    base.update(kwargs)
    with pytest.raises(InputError):
        generator(_cond(), **base)


def test_bad_conditions_raise_input_error(generator):
    with pytest.raises(InputError):
        generator(torch.randn(1, 256), duration_s=1.0, num_inference_steps=1, progress=False)
    with pytest.raises(InputError):
        generator(torch.full((1, 512), float("nan")), duration_s=1.0, num_inference_steps=1, progress=False)


def test_window_plan_covers_duration():
    assert plan_windows(4.0) == [(0.0, 4.0)]
    w = plan_windows(25.0, window_s=10.0, overlap_s=0.5)
    assert w[0][0] == 0.0 and w[-1][1] >= 25.0
    assert all(abs((b[0] - a[0]) - 9.5) < 1e-9 for a, b in zip(w, w[1:]))
    with pytest.raises(InputError):
        plan_windows(10_000)


def test_long_audio_is_joined_to_exact_length(generator):
    out = generate_long(generator, _cond(), 12.0, window_s=3.0, overlap_s=0.5, seed=1,
                        num_inference_steps=1, progress=False)
    # 12 s > one window, so several 3 s windows were crossfaded and cut to 12 s.
    assert out.waveforms.shape == (1, 12 * 16000)
    assert np.isfinite(out.waveforms).all()
    assert len(out.settings["windows"]) == 5


@pytest.mark.parametrize("unet_channels_last", [True, False])
def test_cpu_fast_path_matches_stock_modules(tiny_models_dir, monkeypatch, unet_channels_last):
    """The re-laid-out (channels-last, vocoder as 2-d convs) modules compute the same waveform, with the
    UNet converted (CPUs without AVX-512) or left as it is (AVX-512)."""
    import foleykit.generator.pipeline as gp

    monkeypatch.setattr(gp, "unet_channels_last_pays", lambda dtype=torch.float32: unet_channels_last)
    ref = str(tiny_models_dir / "audioldm-s-full-v2")
    stock = AudioLDMGenerator.from_pretrained(ref, device="cpu", cpu_fast_path=False)
    fast = AudioLDMGenerator.from_pretrained(ref, device="cpu", cpu_fast_path=True)
    kw = dict(duration_s=1.0, seed=5, num_inference_steps=3, progress=False)
    a = stock(_cond(2, seed=3), **kw).waveforms
    b = fast(_cond(2, seed=3), **kw).waveforms
    assert a.shape == b.shape and np.abs(a).max() > 0
    np.testing.assert_allclose(b, a, atol=1e-4)

    # the fast path really changed the layouts (otherwise this test would compare a thing with itself)
    def first_conv(module):
        return next(m for m in module.modules() if isinstance(m, torch.nn.Conv2d)).weight

    cl = torch.channels_last
    assert first_conv(fast.vae.decoder).is_contiguous(memory_format=cl)
    assert first_conv(fast.unet).is_contiguous(memory_format=cl) == unet_channels_last
    assert not first_conv(stock.unet).is_contiguous(memory_format=cl)
    assert not first_conv(stock.vae.decoder).is_contiguous(memory_format=cl)


def test_cpu_decode_runs_clip_by_clip_and_equals_the_batched_stock_modules(tiny_models_dir):
    """On CPU the VAE and vocoder see one clip at a time (one clip's activations at peak); the
    waveforms are those of the stock modules run on the whole batch at once."""
    ref = str(tiny_models_dir / "audioldm-s-full-v2")
    gen = AudioLDMGenerator.from_pretrained(ref, device="cpu")
    stock = AudioLDMGenerator.from_pretrained(ref, device="cpu", cpu_fast_path=False)
    latents = torch.randn(gen.latent_shape(3, 1.0), generator=torch.Generator().manual_seed(2))
    seen = []
    real = gen.vae.decode
    gen.vae.decode = lambda z, *a, **k: (seen.append(z.shape[0]), real(z, *a, **k))[1]
    waves = gen.decode(latents, 1.0)
    assert seen == [1, 1, 1] and waves.shape == (3, 16000)
    with torch.no_grad():
        mel = stock.vae.decode(latents / stock.vae.config.scaling_factor).sample.squeeze(1)
        expected = stock.vocoder(mel).numpy()[:, :16000]
    np.testing.assert_allclose(waves, expected, atol=1e-4)
    assert np.abs(expected).max() > 0


def test_fast_preset_samples_the_mapper_with_fewer_steps():
    assert PRESETS["fast"].mapper_steps is not None and PRESETS["fast"].mapper_steps < 200
    assert PRESETS["paper"].mapper_steps is None  # the mapper's own (paper) default of 200


def test_bfloat16_generator_same_noise_records_dtype(tiny_models_dir):
    """bf16 modules, float32 sampler: the UNet's first input is the float32 run's noise rounded to
    bf16 (same seed, same noise in every dtype); the settings record the dtype used."""
    ref = str(tiny_models_dir / "audioldm-s-full-v2")
    runs = {}
    for name in ("float32", "bfloat16"):
        gen = AudioLDMGenerator.from_pretrained(ref, device="cpu", dtype=name)
        seen = []
        gen.unet.register_forward_pre_hook(lambda _m, args, kw: seen.append(args[0].detach().clone()), with_kwargs=True)
        out = gen(_cond(1, seed=2), duration_s=1.0, seed=9, num_inference_steps=2, progress=False)
        runs[name] = (gen, out, seen[0])
    g16, out16, first16 = runs["bfloat16"]
    _, out32, first32 = runs["float32"]
    assert next(g16.unet.parameters()).dtype == torch.bfloat16 and g16.vocoder.dtype == torch.bfloat16
    assert first16.dtype == torch.bfloat16
    assert torch.equal(first16.float(), first32.to(torch.bfloat16).float())
    assert out16.settings["dtype"] == "bfloat16" and out32.settings["dtype"] == "float32"
    assert out16.settings["device"] == "cpu"
    assert out16.waveforms.dtype == np.float32 and np.isfinite(out16.waveforms).all()
    assert out16.waveforms.shape == out32.waveforms.shape


def test_per_call_setup_is_done_once_per_generator(tiny_models_dir, monkeypatch):
    """Scheduler construction, weight re-layout and the unconditional embedding's tokenizer run at
    load (once), not per call; each call still gets its own scheduler state."""
    import foleykit.generator.pipeline as gp

    counts = {"sched": 0, "relayout": 0}
    real_make, real_cl = gp.make_scheduler, gp._channels_last_inplace

    def make(*a, **k):
        counts["sched"] += 1
        return real_make(*a, **k)

    def relayout(*a, **k):
        counts["relayout"] += 1
        return real_cl(*a, **k)

    monkeypatch.setattr(gp, "make_scheduler", make)
    monkeypatch.setattr(gp, "_channels_last_inplace", relayout)
    gen = AudioLDMGenerator.from_pretrained(str(tiny_models_dir / "audioldm-s-full-v2"), device="cpu")
    after_load = dict(counts)
    assert after_load["sched"] == len({p.scheduler for p in PRESETS.values()}) and after_load["relayout"] >= 1
    assert gen._uncond is not None
    tokenizer_calls = []
    real_tok = gen.tokenizer
    gen.tokenizer = lambda *a, **k: tokenizer_calls.append(a) or real_tok(*a, **k)
    for preset in ("fast", "paper", "fast"):
        gen(_cond(), duration_s=1.0, seed=1, preset=preset, num_inference_steps=2, progress=False)
    assert counts == after_load and tokenizer_calls == []
    a, b = gen.scheduler_for("dpmsolver++", 3), gen.scheduler_for("dpmsolver++", 5)
    assert a is not b and len(a.timesteps) == 3 and len(b.timesteps) == 5
