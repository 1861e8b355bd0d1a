"""The README's first quick-start command, `make demo`, run for real on the tiny stand-ins.

The Makefile's own `demo` recipe runs (its two `foleykit generate` lines unchanged) with this
environment's `foleykit` (BIN) and the install step marked done (`-o STAMP`), in a scratch folder
holding a link to `examples/`, with `FOLEYKIT_MODELS=tiny` as the README says for offline machines.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

av = pytest.importorskip("av")

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _make(work: Path, *args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    stamp = work / "installed.stamp"  # never built: -o marks the install step as done
    return subprocess.run(
        ["make", "--no-print-directory", "-f", str(REPO / "Makefile"), "demo", f"BIN={BIN}", f"STAMP={stamp}",
         "-o", str(stamp), *args],
        cwd=work, env=env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture()
def demo_dir(tmp_path) -> Path:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    if not (BIN / "foleykit").is_file():
        pytest.skip(f"no foleykit console script beside {sys.executable}")
    (tmp_path / "examples").symlink_to(REPO / "examples", target_is_directory=True)
    return tmp_path


def test_make_demo_runs_the_two_generate_commands_on_tiny_models(demo_dir, tiny_cache_env):
    env = dict(os.environ, FOLEYKIT_MODELS="tiny", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    planned = _make(demo_dir, "-n", env=env, timeout=30)
    assert planned.returncode == 0, planned.stderr
    commands = [line.split("foleykit ", 1)[1] for line in planned.stdout.splitlines() if "foleykit generate" in line]
    assert commands == [
        "generate examples/scene.jpg -o out/scene.wav --seed 0 --overwrite",
        "generate examples/street.mp4 -o out/street.mp4 --seed 0 --overwrite",
    ]

    proc = _make(demo_dir, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = demo_dir / "out"
    assert "wrote out/scene.wav (10.00 s, 16000 Hz, mono)" in proc.stdout

    info = sf.info(out / "scene.wav")
    assert info.samplerate == 16000 and info.frames == 10 * 16000 and info.channels == 1
    wave, _ = sf.read(out / "scene.wav")
    assert abs(wave).max() > 0 and wave.std() > 1e-4
    side = json.loads((out / "scene.wav.json").read_text())
    assert side["seed"] == 0 and side["models"]["model_set"] == "tiny"

    street = REPO / "examples" / "street.mp4"
    with av.open(str(street)) as a:
        src_duration = float(a.streams.video[0].duration * a.streams.video[0].time_base)
        src_packets = [bytes(p) for p in a.demux(a.streams.video[0]) if p.size]
    with av.open(str(out / "street.mp4")) as b:
        audio = b.streams.audio[0]
        assert len(b.streams.audio) == 1 and audio.rate == 48000
        audio_duration = float(audio.duration * audio.time_base)
        dst_packets = [bytes(p) for p in b.demux(b.streams.video[0]) if p.size]
    assert abs(audio_duration - src_duration) <= 0.05
    assert src_packets == dst_packets
    side = json.loads((out / "street.mp4.json").read_text())
    assert side["seed"] == 0 and side["input_kind"] == "video"
    assert sorted(p.name for p in out.iterdir()) == ["scene.wav", "scene.wav.json", "street.mp4", "street.mp4.json"]
