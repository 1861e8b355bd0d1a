"""The mapper path writes its output and sidecar together: a failure after the audio is staged (or
between the two renames) leaves neither, and an earlier pair being overwritten survives intact."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

import foleykit.api as fk
import foleykit.io.sidecar as sidecar_io
from foleykit.errors import OutputError

pytestmark = pytest.mark.usefixtures("one_torch_thread", "tiny_cache_env")

FAST = dict(models="tiny", steps=2, duration=1.0, seed=0, device="cpu", progress=False)


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("in") / "scene.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    from foleykit.data.synthetic import write_video

    return write_video(tmp_path_factory.mktemp("in") / "clip.mp4", 0, seconds=1.0, audio=False)


def _fail_after_audio_is_staged(monkeypatch, out: Path) -> list[Path]:
    """Make the sidecar writer fail once the audio has been written to its staging file."""
    staged: list[Path] = []

    def failing_sidecar(path, record):
        path = Path(path)
        assert path.name == out.name and path.parent != out.parent and path.stat().st_size > 0
        staged.append(path)
        raise OutputError("could not write sidecar: disk full (injected)")

    monkeypatch.setattr(sidecar_io, "write_sidecar", failing_sidecar)  # what the one writer calls
    return staged


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp4"])
def test_failure_after_the_audio_is_staged_leaves_no_output(scene, clip, tmp_path, monkeypatch, suffix):
    src = clip if suffix == ".mp4" else scene
    out = tmp_path / f"out{suffix}"
    staged = _fail_after_audio_is_staged(monkeypatch, out)
    with pytest.raises(OutputError, match="injected"):
        fk.generate(src, out, **FAST)
    assert len(staged) == 1 and not staged[0].exists()
    assert list(tmp_path.iterdir()) == []  # no output, no sidecar, no staging folder


def test_failure_between_the_renames_leaves_neither(scene, tmp_path, monkeypatch):
    out = tmp_path / "out.wav"
    real_replace = os.replace

    def fail_on_output(src, dst):
        if Path(dst) == out:
            raise OSError(5, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_output)
    with pytest.raises(OutputError, match="Input/output error"):
        fk.generate(scene, out, **FAST)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_overwrite_that_fails_keeps_the_earlier_pair(scene, tmp_path, monkeypatch):
    out = tmp_path / "out.wav"
    first = fk.generate(scene, out, **FAST)
    before = (out.read_bytes(), first.sidecar.read_bytes())
    _fail_after_audio_is_staged(monkeypatch, out)
    with pytest.raises(OutputError):
        fk.generate(scene, out, **{**FAST, "seed": 1}, overwrite=True)
    monkeypatch.undo()
    assert (out.read_bytes(), first.sidecar.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav", "out.wav.json"]


@pytest.mark.parametrize("suffix", [".wav", ".mp4"])
def test_success_writes_the_pair_with_final_paths(scene, clip, tmp_path, suffix):
    src = clip if suffix == ".mp4" else scene
    out = tmp_path / f"out{suffix}"
    res = fk.generate(src, out, **FAST)
    assert res.outputs == [out] and res.sidecar == tmp_path / f"out{suffix}.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out{suffix}", f"out{suffix}.json"]
    side = json.loads(res.sidecar.read_text())
    assert side["output"]["path"] == str(out.resolve()) and side["seed"] == 0
    if suffix == ".wav":
        assert sf.info(out).samplerate == 16000 and sf.info(out).frames == 16000
