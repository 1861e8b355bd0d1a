"""The evaluation front end (deterministic length, DC, resampling), the embedding cache and file pairing."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from foleykit.errors import InputError
from foleykit.evaluation.audio_frontend import PROTOCOLS, fit_length, frontend_spec, load_clip, prepare
from foleykit.evaluation.cache import EmbeddingCache
from foleykit.evaluation.pairing import AUDIO_EXTENSIONS, list_files, require_same_names


def test_protocol_lengths():
    assert frontend_spec(PROTOCOLS["ssv2a"], 16_000, "zero").num_samples == 163_840
    assert frontend_spec(PROTOCOLS["v2a-mapper"], 16_000, "zero").num_samples == 160_000
    mmaudio = frontend_spec(PROTOCOLS["mmaudio"], 16_000, "zero")
    assert (mmaudio.num_samples, mmaudio.pad) == (128_000, "none")  # av-benchmark truncates, never pads
    assert frontend_spec(PROTOCOLS["ssv2a"], 48_000, "repeat", max_seconds=10).num_samples == 480_000


def test_fit_length_modes():
    x = np.arange(1, 4, dtype=np.float32)
    assert fit_length(x, 7, "zero").tolist() == [1, 2, 3, 0, 0, 0, 0]
    assert fit_length(x, 7, "repeat").tolist() == [1, 2, 3, 1, 2, 3, 1]
    assert fit_length(x, 7, "none").tolist() == [1, 2, 3]
    assert fit_length(np.arange(10.0), 4, "zero").tolist() == [0, 1, 2, 3]


def test_prepare_removes_dc_and_resamples_deterministically():
    t = np.arange(22_050) / 22_050
    wave = (0.5 + 0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    spec = frontend_spec(PROTOCOLS["v2a-mapper"], 16_000, "zero")
    out = prepare(wave, 22_050, spec)
    assert out.shape == (160_000,) and out.dtype == np.float32
    assert abs(float(out[:16_000].mean())) < 1e-3  # the 0.5 offset is gone
    assert np.array_equal(out, prepare(wave, 22_050, spec))


def test_load_clip_averages_channels(tmp_path):
    stereo = np.stack([np.full(8000, 0.5), np.full(8000, -0.5)], axis=1).astype(np.float32)
    sf.write(tmp_path / "s.wav", stereo, 8000)
    out = load_clip(tmp_path / "s.wav", frontend_spec(PROTOCOLS["v2a-mapper"], 8000, "zero"))
    assert np.allclose(out, 0.0, atol=1e-6)


def test_cache_computes_once_and_notices_edits(tmp_path):
    f = tmp_path / "a.wav"
    f.write_bytes(b"x")
    cache = EmbeddingCache(tmp_path / "cache")
    calls = []

    def compute():
        calls.append(1)
        return {"embedding": np.arange(3.0)}

    cache.get_or_compute(f, "emb-1", compute)
    cache.get_or_compute(f, "emb-1", compute)
    assert len(calls) == 1 and (cache.hits, cache.misses) == (1, 1)
    cache.get_or_compute(f, "emb-2", compute)  # another embedder: its own entry
    assert len(calls) == 2
    fresh = EmbeddingCache(tmp_path / "cache")  # from disk, a later run
    assert np.array_equal(fresh.get(f, "emb-1")["embedding"], np.arange(3.0))
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert fresh.get(f, "emb-1") is None  # edited file: stale entry not reused


def test_pairing_lists_unmatched_files(tmp_path):
    (tmp_path / "gen").mkdir()
    (tmp_path / "ref").mkdir()
    for name in ("a.wav", "b.wav", "extra_gen.wav"):
        (tmp_path / "gen" / name).write_bytes(b"x")
    for name in ("a.flac", "b.wav", "extra_ref.wav", "notes.txt"):
        (tmp_path / "ref" / name).write_bytes(b"x")
    gen = list_files(tmp_path / "gen", AUDIO_EXTENSIONS, "generated")
    ref = list_files(tmp_path / "ref", AUDIO_EXTENSIONS, "reference")
    assert sorted(ref) == ["a", "b", "extra_ref"]  # a.flac pairs with a.wav; notes.txt ignored
    with pytest.raises(InputError) as err:
        require_same_names(gen, ref, "generated", "reference")
    assert "extra_gen" in str(err.value) and "extra_ref" in str(err.value)


def test_two_files_with_one_name_is_an_error(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"x")
    (tmp_path / "a.flac").write_bytes(b"x")
    with pytest.raises(InputError, match="several files per name: a"):
        list_files(tmp_path, AUDIO_EXTENSIONS, "generated")
