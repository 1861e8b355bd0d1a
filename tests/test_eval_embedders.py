"""Embedder architectures: front ends against an independent implementation, public checkpoint key
layouts, checkpoint loading (round trips in the public layouts), tiny stand-ins and role building."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.audio_utils import mel_filter_bank

from foleykit.errors import InputError
from foleykit.evaluation.embedders import build_embedders
from foleykit.evaluation.embedders.panns import Cnn14, Cnn14Config, PannsEmbedder
from foleykit.evaluation.embedders.spectral import (
    slaney_mel_filterbank,
    vggish_examples,
    vggish_mel_filterbank,
)
from foleykit.evaluation.embedders.vggish import VGGish, VGGishConfig, VGGishEmbedder
from foleykit.evaluation.embedders.wav2clip import Wav2Clip, Wav2ClipConfig, Wav2ClipEmbedder

WAVE = (0.1 * np.random.default_rng(0).standard_normal(32_000)).astype(np.float32)


@pytest.mark.parametrize("sr,n_fft,fmax", [(16_000, 512, 8_000), (32_000, 1024, 14_000)])
def test_slaney_filterbank_matches_transformers(sr, n_fft, fmax):
    ref = mel_filter_bank(
        num_frequency_bins=n_fft // 2 + 1,
        num_mel_filters=64,
        min_frequency=50,
        max_frequency=fmax,
        sampling_rate=sr,
        norm="slaney",
        mel_scale="slaney",
    )
    assert np.allclose(slaney_mel_filterbank(sr, n_fft, 64, 50, fmax), ref, atol=1e-8)


def test_vggish_filterbank_and_framing():
    ref = mel_filter_bank(
        num_frequency_bins=257,
        num_mel_filters=64,
        min_frequency=125,
        max_frequency=7500,
        sampling_rate=16_000,
        norm=None,
        mel_scale="htk",
        triangularize_in_mel_space=True,
    )
    ref[0] = 0.0  # VGGish gives the DC bin no weight
    assert np.allclose(vggish_mel_filterbank(), ref, atol=1e-10)
    assert vggish_examples(np.zeros(160_000, np.float32)).shape == (10, 96, 64)  # 10 s -> 10 frames of 0.96 s
    assert vggish_examples(np.zeros(8_000, np.float32)).shape == (0, 96, 64)


def _meta_state(build) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in build().state_dict().items()}


def test_full_size_key_layouts_match_the_public_checkpoints():
    panns = _meta_state(lambda: Cnn14(Cnn14Config.preset("16k")))
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    expected = {"logmel_extractor.melW", "fc1.weight", "fc1.bias", "fc_audioset.weight", "fc_audioset.bias"}
    expected |= {f"bn0.{p}" for p in bn}
    for i in range(1, 7):
        expected |= {f"conv_block{i}.conv1.weight", f"conv_block{i}.conv2.weight"}
        expected |= {f"conv_block{i}.bn{j}.{p}" for j in (1, 2) for p in bn}
    assert set(panns) == expected
    assert panns["logmel_extractor.melW"] == (257, 64) and panns["fc_audioset.weight"] == (527, 2048)
    assert panns["conv_block6.conv2.weight"] == (2048, 2048, 3, 3)

    vggish = _meta_state(lambda: VGGish(VGGishConfig()))
    convs = [f"features.{i}" for i in (0, 3, 6, 8, 11, 13)] + [f"embeddings.{i}" for i in (0, 2, 4)]
    assert set(vggish) == {f"{m}.{p}" for m in convs for p in ("weight", "bias")}
    assert vggish["embeddings.0.weight"] == (4096, 512 * 4 * 6) and vggish["embeddings.4.weight"] == (
        128,
        4096,
    )

    w2c = _meta_state(lambda: Wav2Clip(Wav2ClipConfig()))
    assert w2c["encoder.conv1.weight"] == (64, 1, 7, 7)
    assert w2c["encoder.layer2.0.downsample.0.weight"] == (128, 64, 1, 1)
    assert w2c["encoder.layer4.1.bn2.running_var"] == (512,)
    assert w2c["transform.sequential.3.weight"] == (512, 512)
    assert not any(k.startswith(("encoder.fc", "transform.sequential.1")) for k in w2c)


def test_panns_checkpoint_round_trip_in_public_layout(tmp_path):
    tiny = PannsEmbedder.tiny(seed=3)
    state = dict(tiny.module.state_dict())
    state["spectrogram_extractor.stft.conv_real.weight"] = torch.zeros(257, 1, 512)  # fixed kernels: skipped
    torch.save({"model": state, "iteration": 10}, tmp_path / "cnn14.pth")
    loaded = PannsEmbedder.from_checkpoint(tmp_path / "cnn14.pth", config=Cnn14Config.tiny())
    a, b = tiny.embed(WAVE), loaded.embed(WAVE)
    assert np.allclose(a["embedding"], b["embedding"]) and np.allclose(a["logits"], b["logits"])
    assert a["logits"].shape == (527,)


def test_wav2clip_checkpoint_round_trip_in_release_layout(tmp_path):
    tiny = Wav2ClipEmbedder.tiny(seed=1, embedding_dim=24)
    sd = tiny.module.state_dict()
    release = {
        "audio_" + k: v for k, v in sd.items()
    }  # encoder.* -> audio_encoder.*, transform.* -> audio_transform.*
    release["audio_encoder.fc.weight"] = torch.zeros(1000, 16)
    release["audio_encoder.spectrogram.window"] = torch.hann_window(512)
    release["clip.visual.proj"] = torch.zeros(2)  # other towers of the Lightning module are ignored
    torch.save({"state_dict": release, "epoch": 3}, tmp_path / "w2c.ckpt")
    loaded = Wav2ClipEmbedder.from_checkpoint(tmp_path / "w2c.ckpt", config=Wav2ClipConfig.tiny(24))
    assert np.allclose(tiny.embed(WAVE)["embedding"], loaded.embed(WAVE)["embedding"], atol=1e-6)


def test_wav2clip_standardises_each_clip_on_its_own():
    emb = Wav2ClipEmbedder.tiny(seed=0)
    x = torch.from_numpy(WAVE)[None]
    with torch.no_grad():
        alone = emb.module(x)
        batched = emb.module(torch.cat([x, 5 * x + 0.3]))
    assert torch.allclose(alone[0], batched[0], atol=1e-5)


def test_vggish_is_frame_level_and_loads_plain_state_dicts(tmp_path):
    tiny = VGGishEmbedder.tiny(seed=2)
    torch.save(tiny.module.state_dict(), tmp_path / "vggish.pth")
    loaded = VGGishEmbedder.from_checkpoint(tmp_path / "vggish.pth", config=VGGishConfig.tiny())
    out = loaded.embed(WAVE)["embedding"]
    assert out.shape == (2, 16)  # 2 s -> two 0.96 s frames, one row each
    assert np.allclose(out, tiny.embed(WAVE)["embedding"])


def test_wrong_checkpoint_names_the_problem(tmp_path):
    torch.save({"model": {"fc1.weight": torch.zeros(3, 3)}}, tmp_path / "bad.pth")
    with pytest.raises(InputError, match=r"missing: .*wrong shape: fc1.weight"):
        PannsEmbedder.from_checkpoint(tmp_path / "bad.pth", config=Cnn14Config.tiny())


def test_tiny_stand_ins_are_deterministic():
    a, b = PannsEmbedder.tiny(seed=0), PannsEmbedder.tiny(seed=0)
    assert a.id == b.id and np.array_equal(a.embed(WAVE)["logits"], b.embed(WAVE)["logits"])
    assert PannsEmbedder.tiny(seed=1).id != a.id


def test_build_embedders_reports_missing_roles_and_aliases_the_tagger():
    panns = PannsEmbedder.tiny()
    built, missing = build_embedders({"panns": panns}, ["panns", "vggish", "tagger"])
    assert built["tagger"] is panns and built["panns"] is panns
    assert "no vggish checkpoint given" in missing["vggish"]
    built, missing = build_embedders({"tagger": VGGishEmbedder.tiny()}, ["tagger"])
    assert "tagger" not in built and "no class logits" in missing["tagger"]
    _, missing = build_embedders({"tagger": "tiny"}, ["tagger"])
    assert "the tagger must be one of panns, ast" in missing["tagger"]
    with pytest.raises(InputError, match="unknown embedder roles"):
        build_embedders({"pann": panns}, ["panns"])


def test_ast_tiny_is_a_tagger_with_class_names():
    ast = build_embedders("tiny", ["ast"])[0]["ast"]
    out = ast.embed(WAVE[:16_000])
    assert out["logits"].shape == (527,) and out["embedding"].shape == (32,)
    assert ast.tagger and len(ast.class_names) == 527
