"""Loudness normalisation of outputs (ITU-R BS.1770): files read back measure the target, the true
peak stays under -1 dBTP, stems keep their relative levels when asked, the default is unchanged.

References independent of our code path: the standard's calibration (a 997 Hz sine of amplitude A in
one channel reads 20·log10(A) − 3.01 LUFS), pyloudnorm on the file as written (read back with
soundfile), and an 8x-oversampled peak for the true peak."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from foleykit.errors import InputError
from foleykit.io.outputs import level_outputs, write_sound

SR = 16000


def _measure(path) -> float:
    import pyloudnorm

    data, sr = sf.read(str(path), dtype="float64")
    return float(pyloudnorm.Meter(sr).integrated_loudness(data))


def _noise(seconds=3.0, level=0.05, seed=0):
    return (level * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


@pytest.mark.parametrize("target", [-23.0, -16.0])
def test_a_997_hz_sine_gets_the_amplitude_the_standard_calibrates(tmp_path, target):
    t = np.arange(int(4 * SR)) / SR
    wave = (0.5 * np.sin(2 * np.pi * 997 * t)).astype(np.float32)
    lv = level_outputs(wave, [], SR, loudness=target)
    out = write_sound(tmp_path / "sine.wav", lv.mix, SR, normalize=lv.normalize)
    assert out is None
    data, _ = sf.read(str(tmp_path / "sine.wav"), dtype="float64")
    expected_amplitude = 10 ** ((target + 3.01) / 20)  # BS.1770-4 calibration
    measured_amplitude = math.sqrt(2) * float(np.sqrt(np.mean(data[SR:-SR] ** 2)))
    assert 20 * math.log10(measured_amplitude / expected_amplitude) == pytest.approx(0.0, abs=0.1)
    assert _measure(tmp_path / "sine.wav") == pytest.approx(target, abs=0.5)


def test_noise_mono_and_stereo_files_measure_the_target(tmp_path):
    for name, wave in (("mono.wav", _noise()), ("stereo.wav", np.stack([_noise(seed=1), 0.5 * _noise(seed=2)]))):
        lv = level_outputs(wave, [], SR, loudness=-23.0)
        write_sound(tmp_path / name, lv.mix, SR, normalize=lv.normalize)
        assert _measure(tmp_path / name) == pytest.approx(-23.0, abs=0.5), name
        assert lv.record["mix"]["target_lufs"] == -23.0


def test_the_true_peak_stays_under_minus_one_dbtp_and_the_shortfall_is_said(tmp_path):
    wave = _noise(level=0.002)
    wave[::4000] = 0.9  # sparse clicks: loud peaks, little loudness
    lv = level_outputs(wave, [], SR, loudness=-14.0)
    write_sound(tmp_path / "clicks.wav", lv.mix, SR, normalize=lv.normalize)
    data, _ = sf.read(str(tmp_path / "clicks.wav"), dtype="float64")
    true_peak = 20 * math.log10(np.abs(resample_poly(data, 8, 1)).max())
    assert true_peak <= -1.0 + 0.1
    assert _measure(tmp_path / "clicks.wav") < -14.0 - 1.0  # it could not reach the target ...
    assert "limited" in lv.record["mix"]["note"]  # ... and says so


def test_stems_relative_keeps_the_stems_levels_and_the_mix_meets_the_target(tmp_path):
    quiet, loud = _noise(level=0.02, seed=3), _noise(level=0.08, seed=4)
    mix = quiet + loud
    lv = level_outputs(mix, [quiet, loud], SR, loudness=-20.0, stems_relative=True)
    for name, w in (("mix.wav", lv.mix), ("quiet.wav", lv.stems[0]), ("loud.wav", lv.stems[1])):
        write_sound(tmp_path / name, w, SR, normalize=lv.normalize)
    assert _measure(tmp_path / "mix.wav") == pytest.approx(-20.0, abs=0.5)
    gap = _measure(tmp_path / "loud.wav") - _measure(tmp_path / "quiet.wav")
    assert gap == pytest.approx(20 * math.log10(4), abs=0.3)  # 12 dB apart before, 12 dB apart after

    # Without stems_relative, each stem is brought to the target on its own.
    lv = level_outputs(mix, [quiet, loud], SR, loudness=-20.0)
    for name, w in (("q2.wav", lv.stems[0]), ("l2.wav", lv.stems[1])):
        write_sound(tmp_path / name, w, SR, normalize=lv.normalize)
        assert _measure(tmp_path / name) == pytest.approx(-20.0, abs=0.5)


def test_the_default_is_peak_normalisation_and_bad_targets_are_refused(tmp_path):
    wave = _noise()
    lv = level_outputs(wave, [wave], SR)
    assert lv.normalize == "peak" and lv.record == {} and lv.mix is not None
    write_sound(tmp_path / "peak.wav", lv.mix, SR, normalize=lv.normalize)
    data, _ = sf.read(str(tmp_path / "peak.wav"), dtype="float64")
    assert 20 * math.log10(np.abs(data).max()) == pytest.approx(-1.0, abs=0.01)  # as before: -1 dBFS peak
    for bad in (0.0, -100.0, float("nan")):
        with pytest.raises(InputError, match="LUFS"):
            level_outputs(wave, [], SR, loudness=bad)
    with pytest.raises(InputError, match="at least 0.4 s"):
        level_outputs(wave[: SR // 10], [], SR, loudness=-23.0)


def test_generate_writes_the_target_loudness_and_records_it(tiny_models_dir, tmp_path):
    import json

    from PIL import Image

    from foleykit import api

    img = tmp_path / "scene.png"
    Image.new("RGB", (64, 48), (90, 140, 200)).save(img)
    res = api.generate(img, tmp_path / "out.wav", models=str(tiny_models_dir), seed=2, duration=1.5, steps=2,
                       device="cpu", loudness=-23.0, progress=False)
    assert _measure(res.outputs[0]) == pytest.approx(-23.0, abs=0.5)
    levels = json.loads(res.sidecar.read_text())["output"]["levels"]
    assert levels["mix"]["target_lufs"] == -23.0 and levels["standard"].startswith("ITU-R BS.1770")
