"""Audio I/O: loading (with every kind of bad file), resampling, writing, crossfading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from foleykit.errors import InputError, OutputError
from foleykit.io import audio as audio_mod
from foleykit.io.audio import crossfade_concat, load_audio, resample, write_audio


def sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(sr * seconds)) / sr)).astype(np.float32)


def peak_hz(wave: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / sr)[spectrum.argmax()])


@pytest.mark.parametrize(
    ("ext", "subtype"),
    [(".wav", "PCM_16"), (".flac", "PCM_16"), (".ogg", "VORBIS"), (".mp3", "MPEG_LAYER_III")],
)
def test_load_reads_formats_with_rate_and_duration(tmp_path, ext, subtype):
    p = tmp_path / f"tone{ext}"
    sf.write(p, sine(440, 22050, 1.5), 22050, subtype=subtype)
    wave, sr = load_audio(p)
    assert sr == 22050 and wave.dtype == np.float32 and wave.ndim == 1
    assert len(wave) / sr == pytest.approx(1.5, abs=0.05)
    assert peak_hz(wave, sr) == pytest.approx(440, abs=3)


def test_load_mixes_to_mono_or_keeps_channels_first(tmp_path):
    p = tmp_path / "stereo.wav"
    left, right = sine(440, 16000, 1.0, 0.4), sine(440, 16000, 1.0, 0.2)
    sf.write(p, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    mono, _ = load_audio(p)
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-6)
    both, _ = load_audio(p, mono=False)
    assert both.shape == (2, 16000)
    np.testing.assert_allclose(both[1], right, atol=1e-6)


def test_load_resamples_keeping_frequency(tmp_path):
    p = tmp_path / "tone.wav"
    sf.write(p, sine(1000, 44100, 1.0), 44100)
    wave, sr = load_audio(p, target_sr=16000)
    assert sr == 16000 and len(wave) == 16000
    assert peak_hz(wave, sr) == pytest.approx(1000, abs=2)


@pytest.mark.parametrize("shape", ["mono", "stereo"])
def test_resample_keeps_layout_length_and_pitch(shape):
    tone = sine(1000, 48000, 0.5)
    wave = tone if shape == "mono" else np.stack([tone, 0.5 * tone])
    out = resample(wave, 48000, 22050)
    assert out.shape[:-1] == wave.shape[:-1] and out.shape[-1] == 11025 and out.dtype == np.float32
    assert peak_hz(out if shape == "mono" else out[1], 22050) == pytest.approx(1000, abs=3)
    np.testing.assert_array_equal(resample(wave, 16000, 16000), wave)


def _write_bad(tmp_path: Path, kind: str) -> Path:
    p = tmp_path / "bad.wav"
    if kind == "missing":
        return p
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "garbage":
        p.write_bytes(b"definitely not RIFF audio " * 40)
    elif kind == "no_frames":
        sf.write(p, np.zeros((0,), np.float32), 16000)
    elif kind == "nan":
        wave = sine(440, 16000, 0.1)
        wave[5] = np.nan
        sf.write(p, wave, 16000, subtype="FLOAT")
    elif kind == "too_long":
        sf.write(p, np.zeros(16000 * 3, np.float32), 16000)
    elif kind == "directory":
        p.mkdir()
    return p


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "not found"),
        ("empty", "empty"),
        ("garbage", "not readable audio"),
        ("no_frames", "no audio frames"),
        ("nan", "NaN"),
        ("too_long", "limit"),
        ("directory", "directory"),
    ],
)
def test_bad_audio_raises_one_line_input_error_naming_the_file(tmp_path, kind, message):
    p = _write_bad(tmp_path, kind)
    with pytest.raises(InputError, match=message) as err:
        load_audio(p, max_seconds=2)
    assert str(p) in str(err.value) and "\n" not in str(err.value)


def test_length_limit_is_checked_before_decoding(tmp_path, monkeypatch):
    p = _write_bad(tmp_path, "too_long")
    monkeypatch.setattr(audio_mod.sf, "read", lambda *a, **k: pytest.fail("decoded a file over the limit"))
    with pytest.raises(InputError, match=r"3\.0 s long"):
        load_audio(p, max_seconds=2)


def test_silent_audio_is_refused_only_on_request(tmp_path):
    p = tmp_path / "silence.wav"
    sf.write(p, np.zeros(1600, np.float32), 16000)
    wave, _ = load_audio(p)
    assert not wave.any()
    with pytest.raises(InputError, match="silent"):
        load_audio(p, reject_silent=True)


def test_write_peak_normalizes_to_headroom_and_round_trips(tmp_path):
    out = write_audio(tmp_path / "out.wav", sine(440, 16000, 1.0, amp=0.1), 16000, headroom_db=1.0)
    assert out == tmp_path / "out.wav"
    info = sf.info(out)
    assert (info.samplerate, info.subtype, info.frames) == (16000, "PCM_16", 16000)
    back, sr = load_audio(out)
    assert np.abs(back).max() == pytest.approx(10 ** (-1 / 20), abs=1e-3)
    assert peak_hz(back, sr) == pytest.approx(440, abs=2)


def test_write_never_amplifies_silence(tmp_path):
    quiet = np.full(1000, 1e-6, np.float32)
    back, _ = load_audio(write_audio(tmp_path / "q.wav", quiet, 16000, subtype="FLOAT"))
    np.testing.assert_allclose(back, quiet)


def test_write_stereo_flac_float_wav_and_clip(tmp_path):
    stereo = np.stack([sine(440, 8000, 0.5), sine(660, 8000, 0.5)])
    back, _ = load_audio(write_audio(tmp_path / "s.flac", stereo, 8000), mono=False)
    assert back.shape == (2, 4000)
    loud = np.array([0.0, 2.0, -3.0, 0.5], np.float32)
    kept, _ = load_audio(write_audio(tmp_path / "f.wav", loud, 8000, normalize=None, subtype="FLOAT"))
    np.testing.assert_array_equal(kept, loud)
    clipped, _ = load_audio(write_audio(tmp_path / "c.wav", loud, 8000, normalize="clip", subtype="FLOAT"))
    np.testing.assert_array_equal(clipped, [0.0, 1.0, -1.0, 0.5])
    pcm, _ = load_audio(write_audio(tmp_path / "p.wav", loud, 8000, normalize=None))  # clips, never wraps
    assert pcm[1] > 0.99 and pcm[2] < -0.99


def test_write_refuses_bad_output_and_bad_samples(tmp_path):
    wave = sine(440, 8000, 0.1)
    with pytest.raises(OutputError, match=r"\.wav or \.flac"):
        write_audio(tmp_path / "out.mp3", wave, 8000)
    with pytest.raises(OutputError, match="does not exist"):
        write_audio(tmp_path / "nodir" / "out.wav", wave, 8000)
    with pytest.raises(OutputError, match="FLOAT"):
        write_audio(tmp_path / "out.flac", wave, 8000, subtype="FLOAT")
    bad = wave.copy()
    bad[3] = np.inf
    with pytest.raises(InputError, match="NaN or infinite"):
        write_audio(tmp_path / "out.wav", bad, 8000)
    with pytest.raises(InputError, match="transpose"):
        write_audio(tmp_path / "out.wav", np.zeros((800, 2), np.float32), 8000)
    with pytest.raises(InputError, match="normalize"):
        write_audio(tmp_path / "out.wav", wave, 8000, normalize="loudness")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_leaves_nothing_when_the_writer_raises(tmp_path, monkeypatch):
    target = tmp_path / "out.wav"
    target.write_bytes(b"previous result")

    def failing_write(path, *args, **kwargs):
        Path(path).write_bytes(b"half a file")
        raise RuntimeError("disk full")

    monkeypatch.setattr(audio_mod.sf, "write", failing_write)
    with pytest.raises(OutputError, match="disk full"):
        write_audio(target, sine(440, 8000, 0.1), 8000)
    assert target.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]


@pytest.mark.parametrize("curve", ["equal_power", "linear"])
def test_crossfade_length_and_shapes(curve):
    chunks = [np.ones(100, np.float32), np.ones(80, np.float32), np.ones(120, np.float32)]
    out = crossfade_concat(chunks, 20, curve=curve)
    assert out.shape == (300 - 2 * 20,)
    stereo = crossfade_concat([np.ones((2, 50), np.float32)] * 3, 10, curve=curve)
    assert stereo.shape == (2, 130)
    assert crossfade_concat(chunks, 0).shape == (300,)


def test_linear_crossfade_reconstructs_a_split_signal():
    tone = sine(440, 16000, 1.0)
    overlap, hop = 1600, 4000
    chunks = [tone[s : s + hop + overlap] for s in range(0, 16000 - overlap, hop)]
    out = crossfade_concat(chunks, overlap, curve="linear")
    assert len(out) == len(tone)
    np.testing.assert_allclose(out, tone, atol=1e-5)
    assert np.abs(np.diff(out)).max() < 0.1  # continuous: no jump at the seams


def test_equal_power_crossfade_keeps_uncorrelated_loudness():
    rng = np.random.default_rng(0)
    chunks = [rng.standard_normal(20000).astype(np.float32) for _ in range(2)]
    out = crossfade_concat(chunks, 8000, curve="equal_power")
    seam = out[20000 - 8000 : 20000]
    assert np.sqrt((seam**2).mean()) == pytest.approx(1.0, abs=0.05)
    linear_seam = crossfade_concat(chunks, 8000, curve="linear")[12000:20000]
    assert np.sqrt((linear_seam**2).mean()) < 0.85  # what equal-power avoids: a dip at each seam


def test_crossfade_refuses_bad_arguments():
    with pytest.raises(InputError, match="no chunks"):
        crossfade_concat([], 10)
    with pytest.raises(InputError, match="fewer than"):
        crossfade_concat([np.ones(100), np.ones(15), np.ones(100)], 10)
    with pytest.raises(InputError, match="shape"):
        crossfade_concat([np.ones(100), np.ones((2, 100))], 10)


def test_written_files_get_umask_permissions(tmp_path):
    """Atomic writes go through mkstemp (0600); the final file must have ordinary permissions."""
    import os
    import stat

    from foleykit.io.audio import write_audio

    old = os.umask(0o022)
    try:
        out = write_audio(tmp_path / "perm.wav", np.zeros(160, np.float32), 16000)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
