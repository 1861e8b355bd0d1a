"""Data builders (training/builders.py): AudioLDM's mel against closed forms; remixer scenes and temporal
windows laid out as the trainers read them, with the extraction's provenance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from foleykit.errors import InputError
from foleykit.training.builders import audioldm_mel


def _slaney_hz_to_mel(f: float) -> float:  # Slaney's Auditory Toolbox mel scale (librosa htk=False)
    return f / (200.0 / 3) if f < 1000 else 15.0 + math.log(f / 1000.0) / (math.log(6.4) / 27.0)


def test_audioldm_mel_of_a_sine_peaks_at_its_mel_band():
    sr, f0 = 16000, 1000.0
    t = np.arange(sr) / sr
    mel = audioldm_mel(0.5 * np.sin(2 * np.pi * f0 * t), frames=100)
    assert mel.shape == (100, 64)  # 1 s at hop 160 (STFT 1024, reflect-padded by 432 each side): 100 frames
    # 64 bands evenly spaced on the Slaney mel scale from 0 to 8 kHz: band k is centred at mel (k+1)*step
    step = _slaney_hz_to_mel(8000.0) / 65
    expected = round(_slaney_hz_to_mel(f0) / step) - 1
    peak = int(mel[10:90].mean(0).argmax())
    assert abs(peak - expected) <= 1
    silence = audioldm_mel(np.zeros(sr), frames=120)  # padded past the audio at the log floor
    assert torch.allclose(silence, torch.full((120, 64), math.log(1e-5)))


def test_remixer_scenes_and_temporal_windows(tmp_path, tiny_models_dir):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from foleykit.data.manifests import read_manifest
    from foleykit.data.synthetic import make_synthetic_dataset
    from foleykit.modules.manifold import CMSSManifold, ManifoldConfig
    from foleykit.modules.remixer import RemixerConfig, SoundSourceRemixer
    from foleykit.training.builders import build_remixer_scenes, build_temporal_windows
    from foleykit.training.extraction import EmbeddingStore, ExtractionConfig, extract_embeddings
    from foleykit.training.provenance import METADATA_KEY, read_provenance

    m = read_manifest(make_synthetic_dataset(tmp_path / "d", n_images=2, n_videos=1))
    cfg = ExtractionConfig(features=("clip", "clip_frames", "clip_crops", "clap"), num_frames=3, max_crops=2)
    extract_embeddings(m, tmp_path / "emb", cfg, models=tiny_models_dir, device="cpu", progress=False)
    torch.manual_seed(0)
    CMSSManifold(ManifoldConfig(manifold_dim=16, projector_widths=(32,), reconstructor_widths=(32,))).save_pretrained(
        tmp_path / "b" / "manifold")
    SoundSourceRemixer(RemixerConfig(manifold_dim=16, embed_dim=32, num_layers=1, num_heads=2)).save_pretrained(
        tmp_path / "b" / "remixer")
    with pytest.raises(InputError, match="no trained"):
        build_temporal_windows(tmp_path / "emb", tmp_path / "w.safetensors", ss2a=tmp_path / "nowhere")

    scenes = load_file(str(build_remixer_scenes(tmp_path / "emb", tmp_path / "s.safetensors",
                                                manifold=tmp_path / "b" / "manifold")))
    ext = EmbeddingStore(tmp_path / "emb").load(["clip", "clip_crops", "crop_padding_mask", "clap"])
    assert torch.equal(scenes["clips"][:, 0], ext["clip"]) and torch.equal(scenes["clips"][:, 1:], ext["clip_crops"])
    assert not scenes["padding_mask"][:, 0].any() and torch.equal(scenes["padding_mask"][:, 1:], ext["crop_padding_mask"])
    assert torch.equal(scenes["target_clap"], ext["clap"]) and scenes["codes"].shape == (3, 3, 16)
    assert read_provenance(tmp_path / "s.safetensors") == read_provenance(tmp_path / "emb")
    with safe_open(str(tmp_path / "s.safetensors"), framework="pt") as f:
        assert METADATA_KEY in f.metadata()

    windows = load_file(str(build_temporal_windows(tmp_path / "emb", tmp_path / "w.safetensors", ss2a=tmp_path / "b")))
    assert windows["frame_claps"].shape == (3, 3, 512)
    torch.testing.assert_close(windows["frame_claps"].norm(dim=-1), torch.ones(3, 3))
    assert torch.equal(windows["target_clap"], ext["clap"])
