"""`foleykit generate` end to end on the tiny stand-ins: files, durations, seeds, sidecars, bad input."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from foleykit.cli import main

FAST = ["--models", "tiny", "--steps", "2", "--quiet"]


@pytest.fixture(scope="module", autouse=True)
def tiny_cache(tiny_models_dir, tmp_path_factory):
    """Point FOLEYKIT_CACHE at a cache that already holds the tiny set (built once per session)."""
    from foleykit.model_sets import TINY_VERSION

    cache = tmp_path_factory.mktemp("fk-cache")
    (cache / f"tiny-v{TINY_VERSION}").symlink_to(tiny_models_dir, target_is_directory=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("FOLEYKIT_CACHE", str(cache))
    yield cache
    mp.undo()


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("in") / "scene.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """A 3 s, 25 fps h264 clip with a sine audio track."""
    path = tmp_path_factory.mktemp("in") / "clip.mp4"
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        for i in range(75):
            frame = np.full((48, 64, 3), (i * 3) % 255, dtype=np.uint8)
            for pkt in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
    return path


def run_cli(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_image_to_wav_with_sidecar_and_seed_reproduction(scene, tmp_path, capsys):
    out = tmp_path / "out.wav"
    assert run_cli("generate", str(scene), "-o", str(out), "--seed", "3", "--duration", "4", *FAST) == 0
    wave, sr = sf.read(out)
    assert sr == 16000 and wave.shape == (4 * 16000,)
    assert np.isfinite(wave).all() and wave.std() > 1e-4
    assert "seed: 3" in capsys.readouterr().out
    side = json.loads((tmp_path / "out.wav.json").read_text())
    assert side["seed"] == 3
    assert side["parameters"]["duration"] == 4.0
    assert side["models"]["audioldm"]["revision"] == "local"
    assert "torch" in side["versions"] and "diffusers" in side["versions"]

    again = tmp_path / "again.wav"
    other = tmp_path / "other.wav"
    assert run_cli("generate", str(scene), "-o", str(again), "--seed", "3", "--duration", "4", *FAST) == 0
    assert run_cli("generate", str(scene), "-o", str(other), "--seed", "4", "--duration", "4", *FAST) == 0
    assert sha(out) == sha(again)
    assert sha(out) != sha(other)


def test_random_seed_is_reported(scene, tmp_path, capsys):
    out = tmp_path / "r.flac"
    assert run_cli("generate", str(scene), "-o", str(out), "--duration", "1", *FAST) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("seed: ")]
    seed = int(printed[0].split()[1])
    assert json.loads((tmp_path / "r.flac.json").read_text())["seed"] == seed
    assert sf.info(out).format == "FLAC"


def _stream_durations(path: Path) -> dict[str, float]:
    with av.open(str(path)) as c:
        out = {}
        for s in c.streams:
            out[s.type] = float(s.duration * s.time_base) if s.duration else float(c.duration / av.time_base)
        return out


def test_video_to_mp4_keeps_video_and_adds_matching_audio(video, tmp_path):
    out = tmp_path / "out.mp4"
    assert run_cli("generate", str(video), "-o", str(out), "--seed", "1", "--frames", "4", *FAST) == 0
    durs = _stream_durations(out)
    assert set(durs) == {"video", "audio"}
    assert abs(durs["audio"] - 3.0) <= 0.05
    with av.open(str(video)) as a, av.open(str(out)) as b:
        src = [bytes(p) for p in a.demux(a.streams.video[0]) if p.size]
        dst = [bytes(p) for p in b.demux(b.streams.video[0]) if p.size]
    assert src == dst  # the original video stream, copied


def test_video_to_wav_has_video_length(video, tmp_path):
    out = tmp_path / "x.wav"
    assert run_cli("generate", str(video), "-o", str(out), "--seed", "1", "--frames", "4", *FAST) == 0
    info = sf.info(out)
    assert info.samplerate == 16000
    assert abs(info.duration - 3.0) <= 0.05


def _bad(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("make_input, extra, needle", [
    (lambda d: _bad(d, "zero.jpg", b""), [], "empty"),
    (lambda d: _bad(d, "corrupt.png", b"\x89PNG\r\n\x1a\nthis is not a png"), [], "corrupt.png"),
    (lambda d: _bad(d, "notes.jpg", b"just some text, not an image"), [], "notes.jpg"),
    (lambda d: _bad(d, "novideo.mp4", b"\x00\x00\x00\x18ftypmp42garbage"), [], "novideo.mp4"),
    (lambda d: d / "missing.jpg", [], "missing.jpg"),
])
def test_bad_inputs_fail_with_one_line_and_no_output(tmp_path, capsys, make_input, extra, needle):
    src = make_input(tmp_path)
    out = tmp_path / "out.wav"
    code = run_cli("generate", str(src), "-o", str(out), "--seed", "0", "--duration", "1", *FAST, *extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and err[0].startswith("foleykit: error:") and needle in err[0]
    assert not out.exists() and not (tmp_path / "out.wav.json").exists()
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


def test_absurd_pixel_count_is_refused(tmp_path, capsys):
    # A PNG header claiming 100000 x 100000 pixels: refused before decoding.
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    src = _bad(tmp_path, "huge.png", png)
    code = run_cli("generate", str(src), "-o", str(tmp_path / "o.wav"), "--duration", "1", *FAST)
    assert code != 0 and "pixel" in capsys.readouterr().err.lower()


@pytest.mark.parametrize("args, needle", [
    (["--duration", "0"], "duration"),
    (["--duration", "-3"], "duration"),
    (["--duration", "100000"], "duration"),
    (["--preset", "slowest"], "preset"),
    (["--candidates", "0"], "candidates"),
    (["--device", "cuda"], "cuda"),
])
def test_impossible_parameters(scene, tmp_path, capsys, args, needle):
    out = tmp_path / "o.wav"
    code = run_cli("generate", str(scene), "-o", str(out), *FAST, *args)
    err = capsys.readouterr().err
    assert code != 0 and needle in err.lower() and not out.exists()


def test_output_paths_are_checked(scene, tmp_path, capsys):
    assert run_cli("generate", str(scene), "-o", str(scene), *FAST) != 0
    assert "same file" in capsys.readouterr().err
    assert run_cli("generate", str(scene), "-o", str(tmp_path / "nodir" / "o.wav"), *FAST) != 0
    assert "does not exist" in capsys.readouterr().err
    assert run_cli("generate", str(scene), "-o", str(tmp_path / "o.mp4"), *FAST) != 0  # mp4 needs a video input
    assert ".wav" in capsys.readouterr().err
    existing = tmp_path / "keep.wav"
    existing.write_bytes(b"precious")
    assert run_cli("generate", str(scene), "-o", str(existing), "--duration", "1", *FAST) != 0
    assert "--overwrite" in capsys.readouterr().err and existing.read_bytes() == b"precious"


def test_unwritable_output_directory(scene, tmp_path, capsys):
    """/sys refuses new files even to root: the error is one line, found before generating."""
    target = Path("/sys/foleykit-test.wav")
    if not Path("/sys").is_dir():
        pytest.skip("no /sys on this system")
    assert run_cli("generate", str(scene), "-o", str(target), "--duration", "1", *FAST) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("writ" in err[0] or "denied" in err[0].lower())
    assert not target.exists()


def test_console_script_exit_code_and_stderr(tmp_path):
    """The installed entry point: one stderr line and a non-zero exit for a user error."""
    proc = subprocess.run([sys.executable, "-m", "foleykit.cli", "generate", str(tmp_path / "nope.jpg"),
                           "-o", str(tmp_path / "o.wav"), "--models", "tiny"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "nope.jpg" in proc.stderr
