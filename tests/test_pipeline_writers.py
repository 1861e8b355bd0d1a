"""The sources and objects writers stage the mix, the stems and every sidecar together
(``io.atomic.staged_outputs``): a failure part-way leaves the files an earlier run wrote intact."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import foleykit.io.audio as audio_io
from foleykit.errors import OutputError
from foleykit.pipelines.mapper import SoundResult
from foleykit.pipelines.sources import SourcesResult, write_sources_outputs

SR = 16_000


def _sound(seed: int) -> SoundResult:
    wave = np.random.default_rng(seed).uniform(-0.5, 0.5, SR // 4).astype(np.float32)
    return SoundResult(wave, SR, seed, {"source": {"kind": "text"}})


def _result(seed: int) -> SourcesResult:
    return SourcesResult(mix=_sound(seed), stems=[("rain", _sound(seed + 1)), ("dog", _sound(seed + 2))],
                         record={"seed": seed})


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_sources_writer_commits_mix_stems_and_sidecars(tmp_path):
    outputs, sidecars, notes = write_sources_outputs(_result(0), tmp_path / "mix.wav", record={"seed": 0},
                                                     stems_dir=tmp_path / "stems")
    assert outputs == [tmp_path / "mix.wav", tmp_path / "stems" / "rain.wav", tmp_path / "stems" / "dog.wav"]
    assert sidecars == [p.with_name(p.name + ".json") for p in outputs] and notes == []
    assert sorted(_digests(tmp_path)) == sorted(
        ["mix.wav", "mix.wav.json", "stems/rain.wav", "stems/rain.wav.json", "stems/dog.wav", "stems/dog.wav.json"]
    )  # no staging folder left behind


def test_failed_overwrite_keeps_the_earlier_run(tmp_path, monkeypatch):
    write_sources_outputs(_result(0), tmp_path / "mix.wav", record={"seed": 0}, stems_dir=tmp_path / "stems")
    before = _digests(tmp_path)
    real = audio_io.write_audio
    calls = []

    def fail_on_last_stem(path, *a, **k):
        calls.append(Path(path).name)
        if Path(path).name == "dog.wav":
            raise OutputError("disk full (injected)")
        return real(path, *a, **k)

    monkeypatch.setattr(audio_io, "write_audio", fail_on_last_stem)
    with pytest.raises(OutputError, match="injected"):
        write_sources_outputs(_result(7), tmp_path / "mix.wav", record={"seed": 7}, stems_dir=tmp_path / "stems",
                              overwrite=True)
    assert calls == ["mix.wav", "rain.wav", "dog.wav"]  # the new mix and first stem were written, then it failed
    assert _digests(tmp_path) == before  # ...and the earlier mix, stems and sidecars are untouched


def test_failed_rename_midway_restores_what_was_replaced(tmp_path, monkeypatch):
    """A rename that fails after the mix and its sidecar were replaced puts the earlier ones back."""
    import os

    write_sources_outputs(_result(0), tmp_path / "mix.wav", record={"seed": 0}, stems_dir=tmp_path / "stems")
    before = _digests(tmp_path)
    real_replace = os.replace
    renamed = []

    def replace(src, dst):
        if Path(dst).name == "rain.wav" and ".foleykit-stage" not in str(dst):  # its commit
            raise OSError(28, "No space left on device (injected)")
        if ".foleykit-stage" not in str(dst):  # a commit (not a write inside the staging folder)
            renamed.append(Path(dst).name)
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OutputError, match="injected"):
        write_sources_outputs(_result(7), tmp_path / "mix.wav", record={"seed": 7}, stems_dir=tmp_path / "stems",
                              overwrite=True)
    assert renamed[:2] == ["mix.wav.json", "mix.wav"]  # these were replaced before the failure...
    assert _digests(tmp_path) == before  # ...and are back as they were


def test_failed_first_write_into_a_new_stems_folder_removes_it(tmp_path, monkeypatch):
    monkeypatch.setattr(audio_io, "write_audio", lambda *a, **k: (_ for _ in ()).throw(OutputError("injected")))
    with pytest.raises(OutputError, match="injected"):
        write_sources_outputs(_result(0), tmp_path / "mix.wav", record={}, stems_dir=tmp_path / "stems")
    assert list(tmp_path.iterdir()) == []
