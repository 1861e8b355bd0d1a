"""BEATs (SS2A's SSMS tagger): the Kaldi fbank against a direct numpy computation of the recipe,
output semantics (sigmoid of the token-averaged logits), the released checkpoint layout, and SSMS
through the runner with the tiny stand-in."""

from __future__ import annotations

import warnings
from dataclasses import asdict, replace

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.special import expit
from transformers.audio_utils import mel_filter_bank

from foleykit.errors import InputError
from foleykit.evaluation import Protocol, evaluate
from foleykit.evaluation.audio_frontend import frontend_spec, prepare
from foleykit.evaluation.embedders import build_embedders
from foleykit.evaluation.embedders.beats import (
    FBANK_MEAN,
    FBANK_STD,
    BEATs,
    BEATsConfig,
    BeatsEmbedder,
    beats_fbank,
    kaldi_fbank,
    kaldi_mel_banks,
    relative_position_buckets,
)
from foleykit.evaluation.ssms import ssms
from foleykit.io.audio import load_audio

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SR = 16_000
TONE = (0.4 * np.sin(2 * np.pi * 1_000.0 * np.arange(2 * SR) / SR)).astype(np.float32)
NOISY = (TONE + 0.05 * np.random.default_rng(0).standard_normal(TONE.size)).astype(np.float32)


def _kaldi_reference(x: np.ndarray, frames: list[int]) -> np.ndarray:
    """Kaldi's fbank written out frame by frame: 25 ms povey frames every 10 ms, DC removed,
    pre-emphasis 0.97 (first sample against itself), zero-padded to 512, power spectrum, 128 Kaldi
    mel triangles from 20 Hz to 8 kHz (Nyquist bin unused), natural log floored at float32 eps."""
    length, hop, n_fft = 400, 160, 512
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / (length - 1))) ** 0.85

    def mel(f):
        return 1127.0 * np.log(1.0 + f / 700.0)

    lo, hi = mel(20.0), mel(8_000.0)
    step = (hi - lo) / 129
    banks = np.zeros((128, n_fft // 2 + 1))
    for m in range(128):
        left, centre, right = lo + m * step, lo + (m + 1) * step, lo + (m + 2) * step
        for k in range(n_fft // 2):
            f = mel(k * SR / n_fft)
            if left < f <= centre:
                banks[m, k] = (f - left) / (centre - left)
            elif centre < f < right:
                banks[m, k] = (right - f) / (right - centre)
    rows = []
    for i in frames:
        frame = x[i * hop : i * hop + length].astype(np.float64)
        frame = frame - frame.mean()
        emphasised = np.empty_like(frame)
        emphasised[0] = frame[0] - 0.97 * frame[0]
        emphasised[1:] = frame[1:] - 0.97 * frame[:-1]
        padded = np.zeros(n_fft)
        padded[:length] = emphasised * window
        power = np.abs(np.fft.rfft(padded)) ** 2
        rows.append(np.log(np.maximum(banks @ power, np.finfo(np.float32).eps)))
    return np.stack(rows)


def test_kaldi_fbank_matches_the_recipe_computed_directly():
    x = NOISY.astype(np.float64) * 2**15
    fb = kaldi_fbank(torch.from_numpy(x)).numpy()
    assert fb.shape == (1 + (x.size - 400) // 160, 128) == (198, 128)  # snip_edges: whole frames only
    picked = [0, 1, 97, 197]
    ref = _kaldi_reference(x, picked)
    assert np.allclose(fb[picked], ref, atol=2e-4, rtol=0)
    # BEATs' input: waveform x 2^15, then (x - 15.41663) / (2 * 6.55582)
    normed = beats_fbank(torch.from_numpy(NOISY.astype(np.float64))).numpy()
    assert np.allclose(normed[picked], (ref - FBANK_MEAN) / (2 * FBANK_STD), atol=2e-4, rtol=0)
    # the 1 kHz tone lands in the mel band whose centre is nearest 1 kHz
    mel_lo, mel_hi = 1127 * np.log1p(20 / 700), 1127 * np.log1p(8_000 / 700)
    centres = 700 * np.expm1((mel_lo + np.arange(1, 129) * (mel_hi - mel_lo) / 129) / 1127)
    assert abs(int(np.argmax(fb[97])) - int(np.argmin(np.abs(centres - 1_000)))) <= 1


def test_kaldi_mel_banks_match_transformers_kaldi_triangles():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # transformers warns about the empty Nyquist row
        ref = mel_filter_bank(
            num_frequency_bins=257,
            num_mel_filters=128,
            min_frequency=20,
            max_frequency=8_000,
            sampling_rate=SR,
            norm=None,
            mel_scale="kaldi",
            triangularize_in_mel_space=True,
        )
    assert np.allclose(kaldi_mel_banks(), ref, atol=1e-10)


def test_relative_position_buckets_by_hand():
    b = relative_position_buckets(40, num_buckets=32, max_distance=64)
    # 16 buckets per direction; offsets below 8 exact, keys after the query in 16..31
    assert b[10, 10] == 0 and b[10, 3] == 7 and b[3, 10] == 16 + 7
    assert b[10, 2] == 8  # offset 8: 8 + floor(log(8/8) / log(64/8) * 8)
    assert b[0, 16] == 16 + 8 + int(np.log(2) / np.log(8) * 8)  # offset +16 -> 16 + 10
    assert b[39, 0] == 8 + int(np.log(39 / 8) / np.log(8) * 8) and int(b.max()) <= 31
    assert torch.equal(b[5:, 5:], relative_position_buckets(35, 32, 64))  # depends on offset only


def test_outputs_are_sigmoid_of_token_averaged_logits():
    emb = BeatsEmbedder.tiny(seed=0)
    out = emb.embed(NOISY)
    assert out["logits"].shape == out["probabilities"].shape == (527,)
    assert out["embedding"].shape == (32,)
    p = out["probabilities"]
    assert np.all((p >= 0) & (p <= 1)) and p.std() > 1e-3
    with torch.no_grad():
        tokens, token_logits = emb.module(emb.fbank(NOISY))
    assert token_logits.shape == (1, (198 // 16) * (128 // 16), 527) == (1, 96, 527)
    mean_logits = token_logits.mean(dim=1)[0].numpy()
    assert np.allclose(out["logits"], mean_logits, atol=1e-6)
    assert np.allclose(p, expit(mean_logits), atol=1e-6)
    # sigmoid of the mean, not the mean of per-token sigmoids (the two differ for this model)
    assert not np.allclose(p, torch.sigmoid(token_logits).mean(dim=1)[0].numpy(), atol=1e-3)
    assert np.allclose(out["embedding"], tokens.mean(dim=1)[0].numpy(), atol=1e-6)


def test_peak_normalisation_makes_the_tagger_level_free_like_ss2a():
    emb = BeatsEmbedder.tiny(seed=0)
    assert np.allclose(emb.embed(NOISY)["logits"], emb.embed(3.0 * NOISY)["logits"], atol=1e-4)
    raw = BeatsEmbedder.tiny(seed=0, peak=None)
    assert raw.id != emb.id
    assert not np.allclose(raw.embed(NOISY)["logits"], raw.embed(3.0 * NOISY)["logits"], atol=1e-3)


def test_too_short_clip_is_a_clear_error():
    with pytest.raises(InputError, match=r"BEATs needs at least 2800 samples \(0.175 s\)"):
        BeatsEmbedder.tiny().embed(NOISY[:2_000])


def _release(emb: BeatsEmbedder, **cfg_extra) -> dict:
    """A checkpoint in the released layout: {"cfg": dict, "model": state dict, "label_dict": {i: MID}}."""
    return {
        "cfg": {**asdict(emb.config), **cfg_extra},
        "model": emb.module.state_dict(),
        "label_dict": {i: f"/m/{i:05d}" for i in range(527)},
    }


def test_released_layout_loads_one_to_one_and_gives_identical_outputs(tmp_path):
    tiny = BeatsEmbedder.tiny(seed=3)
    ckpt = _release(tiny, some_training_flag=True)
    # the shared bias table is listed under every layer, as in the released state dicts
    assert "encoder.layers.1.self_attn.relative_attention_bias.weight" in ckpt["model"]
    torch.save(ckpt, tmp_path / "BEATs_tiny.pt")
    loaded = BeatsEmbedder.from_checkpoint(tmp_path / "BEATs_tiny.pt")
    assert loaded.config == tiny.config
    a, b = tiny.embed(NOISY), loaded.embed(NOISY)
    for key in ("logits", "probabilities", "embedding"):
        assert np.array_equal(a[key], b[key])
    assert loaded.class_names[0] == "/m/00000" and len(loaded.class_names) == 527
    assert loaded.describe()["ignored_cfg_keys"] == ["some_training_flag"]
    assert loaded.id.startswith("beats:") and loaded.id != tiny.id

    # a file whose shared bias copies were dropped (as deduplicating savers do) still fits
    deduped = dict(ckpt["model"])
    del deduped["encoder.layers.1.self_attn.relative_attention_bias.weight"]
    torch.save({**ckpt, "model": deduped}, tmp_path / "deduped.pt")
    again = BeatsEmbedder.from_checkpoint(tmp_path / "deduped.pt")
    assert np.array_equal(again.embed(NOISY)["logits"], a["logits"])


def test_param_count_of_the_released_shape_is_beats_base():
    config = BEATsConfig(
        deep_norm=True,
        relative_position_embedding=True,
        gru_rel_pos=True,
        finetuned_model=True,
        max_distance=800,
    )
    model = BEATs(config)
    n = sum(p.numel() for p in model.parameters())
    assert 89e6 < n < 92e6  # BEATs is a ~90M-parameter ViT-base-sized encoder


def test_renamed_or_misshaped_key_is_a_one_line_error_naming_it(tmp_path):
    ckpt = _release(BeatsEmbedder.tiny(seed=1))
    renamed = dict(ckpt["model"])
    renamed["classifier.weight"] = renamed.pop("predictor.weight")
    torch.save({**ckpt, "model": renamed}, tmp_path / "renamed.pt")
    with pytest.raises(InputError) as err:
        BeatsEmbedder.from_checkpoint(tmp_path / "renamed.pt")
    msg = str(err.value)
    assert "\n" not in msg and "missing: predictor.weight" in msg and "unexpected: classifier.weight" in msg

    misshaped = dict(ckpt["model"])
    misshaped["encoder.pos_conv.0.weight_v"] = torch.zeros(32, 4, 16)
    torch.save({**ckpt, "model": misshaped}, tmp_path / "misshaped.pt")
    with pytest.raises(InputError) as err:
        BeatsEmbedder.from_checkpoint(tmp_path / "misshaped.pt")
    msg = str(err.value)
    assert "\n" not in msg and "wrong shape: encoder.pos_conv.0.weight_v (32, 4, 16) vs (32, 8, 16)" in msg


def test_checkpoints_that_cannot_tag_are_refused_with_the_reason(tmp_path):
    torch.save({"model": {}}, tmp_path / "nocfg.pt")
    with pytest.raises(InputError, match="not a released BEATs checkpoint.*has \\['model'\\]"):
        BeatsEmbedder.from_checkpoint(tmp_path / "nocfg.pt")

    pretrained = BEATs(replace(BEATsConfig.tiny(), finetuned_model=False))
    torch.save({"cfg": asdict(pretrained.config), "model": pretrained.state_dict()}, tmp_path / "pt.pt")
    with pytest.raises(InputError, match="no predictor .*finetuned_model=False"):
        BeatsEmbedder.from_checkpoint(tmp_path / "pt.pt")

    ckpt = _release(BeatsEmbedder.tiny())
    torch.save({**ckpt, "cfg": {**ckpt["cfg"], "activation_fn": "glu"}}, tmp_path / "glu.pt")
    with pytest.raises(InputError, match="unsupported BEATs configuration: activation_fn='glu'"):
        BeatsEmbedder.from_checkpoint(tmp_path / "glu.pt")

    torch.save({**ckpt, "cfg": _Opaque()}, tmp_path / "pickled.pt")
    with pytest.raises(InputError, match="cannot read BEATs checkpoint .* safely"):
        BeatsEmbedder.from_checkpoint(tmp_path / "pickled.pt")


class _Opaque:
    """An arbitrary pickled object: ``weights_only=True`` loading refuses it."""


def test_beats_role_building_and_default_tagger(tmp_path):
    built, _ = build_embedders({"beats": "tiny"}, ["tagger"])
    assert isinstance(built["tagger"], BeatsEmbedder) and built["tagger"] is built["beats"]
    built, _ = build_embedders({"panns": "tiny", "beats": "tiny"}, ["panns", "tagger"])
    assert built["tagger"] is built["beats"]  # a BEATs checkpoint is given only to tag with
    built, _ = build_embedders({"panns": "tiny", "beats": "tiny", "tagger": "panns"}, ["tagger"])
    assert built["tagger"] is built["panns"]
    _, missing = build_embedders({"tagger": "beats"}, ["tagger"])
    assert "no beats checkpoint given" in missing["tagger"] and "BEATs_iter3_plus_AS2M" in missing["tagger"]
    torch.save(_release(BeatsEmbedder.tiny(seed=2)), tmp_path / "b.pt")
    built, _ = build_embedders({"beats": {"checkpoint": str(tmp_path / "b.pt"), "peak": None}}, ["tagger"])
    assert built["tagger"].peak is None and built["tagger"].class_names[5] == "/m/00005"


SHORT = Protocol("test-2s", 2.0, True, "2 s clips, for tests")


def test_runner_computes_ssms_with_the_beats_tiny_tagger(tmp_path):
    rng = np.random.default_rng(1)
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    gen.mkdir()
    ref.mkdir()
    t = np.arange(2 * SR) / SR
    for i, name in enumerate(["bird", "car", "dog"]):
        for d, f in ((gen, 300 + 150 * i), (ref, 320 + 140 * i)):
            x = 0.3 * np.sin(2 * np.pi * f * t) + 0.05 * rng.standard_normal(t.size)
            sf.write(d / f"{name}.wav", x.astype(np.float32), SR)
    report = evaluate(
        gen, ref, out_dir=tmp_path / "out", metrics=["ssms", "kl_sigmoid"], embedders={"beats": "tiny"},
        protocol=SHORT, device="cpu", ssms_m=10, ssms_n=20, plots=False,
    )
    assert report["skipped"] == {}
    assert report["metrics"]["ssms"]["embedders"]["tagger"].startswith("beats-tiny:")
    # recompute from BEATs' probabilities: ranking by the stored logits is ranking by probabilities
    emb = BeatsEmbedder.tiny()
    spec = frontend_spec(SHORT, emb.sample_rate, emb.pad_mode, emb.max_seconds)
    probs = {
        side: {
            p.stem: emb.embed(prepare(*load_audio(p, mono=True), spec))["probabilities"] for p in d.iterdir()
        }
        for side, d in (("generated", gen), ("reference", ref))
    }
    expected = ssms(probs["reference"], probs["generated"], m=10, n=20)
    res = report["metrics"]["ssms"]
    assert res["f1"] == pytest.approx(expected.f1) and res["value"] == pytest.approx(10 * expected.f1)
    assert 0 < res["f1"] < 1 and (res["m"], res["n"], res["pairs"]) == (10, 20, 3)
    # KL-sigmoid sees BEATs' own probabilities: sum_c p (log p - log(q + 1e-6))
    kl = np.mean([
        np.sum(p * (np.log(p) - np.log(q + 1e-6)))
        for p, q in ((probs["reference"][n].astype(np.float64), probs["generated"][n].astype(np.float64))
                     for n in ("bird", "car", "dog"))
    ])
    assert report["metrics"]["kl_sigmoid"]["value"] == pytest.approx(kl, rel=1e-4, abs=1e-6)
