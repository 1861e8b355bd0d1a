"""Atomic outputs: ``staged_outputs`` puts a file and its sidecar in place together or not at all."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from foleykit.errors import OutputError
from foleykit.io import atomic
from foleykit.io.atomic import staged_outputs


def _listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_both_files_appear_sidecar_first_with_plain_permissions(tmp_path, monkeypatch):
    out, side = tmp_path / "a.wav", tmp_path / "a.wav.json"
    renamed = []
    real_replace = os.replace

    def spy(src, dst):
        renamed.append(Path(dst).name)
        return real_replace(src, dst)

    with staged_outputs(side, out) as (s_side, s_out):
        assert s_out.name == "a.wav" and s_side.name == "a.wav.json" and s_out.parent == s_side.parent
        assert s_out.parent.parent == tmp_path and s_out.parent.name.startswith(".foleykit-stage.")
        s_out.write_bytes(b"audio")
        s_side.write_text("{}")
        assert not out.exists() and not side.exists()  # nothing visible before the commit
        monkeypatch.setattr(os, "replace", spy)
    monkeypatch.undo()
    assert renamed == ["a.wav.json", "a.wav"]
    assert out.read_bytes() == b"audio" and side.read_text() == "{}"
    assert _listing(tmp_path) == ["a.wav", "a.wav.json"]  # staging folder gone
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask


def test_an_error_while_staging_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="encoder died"):
        with staged_outputs(tmp_path / "a.wav.json", tmp_path / "a.wav") as (_, s_out):
            s_out.write_bytes(b"audio")  # the audio is staged ...
            raise RuntimeError("encoder died")  # ... and then something fails
    assert _listing(tmp_path) == []


def test_a_file_the_block_never_wrote_is_an_error_and_nothing_appears(tmp_path):
    with pytest.raises(OutputError, match="nothing was written"):
        with staged_outputs(tmp_path / "a.wav.json", tmp_path / "a.wav") as (_, s_out):
            s_out.write_bytes(b"audio")
    assert _listing(tmp_path) == []


@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_second_rename_rolls_back_the_first(tmp_path, monkeypatch, existing):
    out, side = tmp_path / "a.wav", tmp_path / "a.wav.json"
    if existing:  # --overwrite of an earlier pair: the earlier pair survives a failed replace
        out.write_bytes(b"old audio")
        side.write_text('{"old": true}')
    real_replace = os.replace

    def flaky(src, dst):
        if Path(dst) == out:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", flaky)
    with pytest.raises(OutputError, match="a.wav.*No space left"):
        with staged_outputs(side, out) as (s_side, s_out):
            s_out.write_bytes(b"new audio")
            s_side.write_text('{"new": true}')
    monkeypatch.undo()
    if existing:
        assert out.read_bytes() == b"old audio" and side.read_text() == '{"old": true}'
        assert _listing(tmp_path) == ["a.wav", "a.wav.json"]
    else:
        assert _listing(tmp_path) == []


def test_an_unwritable_directory_is_an_output_error(tmp_path):
    with pytest.raises(OutputError):
        with staged_outputs(tmp_path / "missing" / "a.wav"):
            pass
