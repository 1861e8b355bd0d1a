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

pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
    """Issue 2's exact command, at the preset's own steps: `foleykit generate scene.jpg -o out.wav
    --models tiny --seed 3 --duration 4`."""
    assert scene.name == "scene.jpg"
    exact = ["--models", "tiny", "--seed", "3", "--duration", "4"]
    out = tmp_path / "out.wav"
    assert run_cli("generate", str(scene), "-o", str(out), *exact) == 0
    wave, sr = sf.read(out)
    assert sr == 16000 and wave.shape == (4 * 16000,)
    assert np.isfinite(wave).all() and wave.std() > 1e-4
    assert "seed: 3" in capsys.readouterr().out
    side = json.loads((tmp_path / "out.wav.json").read_text())
    assert side["seed"] == 3
    assert side["parameters"]["duration"] == 4.0
    assert side["models"]["audioldm"]["revision"] == "local"
    assert "torch" in side["versions"] and "diffusers" in side["versions"]
    assert side["generator"]["num_inference_steps"] == 10  # the fast preset's own, no --steps override

    again = tmp_path / "again" / "out.wav"
    other = tmp_path / "other" / "out.wav"
    again.parent.mkdir()
    other.parent.mkdir()
    assert run_cli("generate", str(scene), "-o", str(again), *exact) == 0
    assert run_cli("generate", str(scene), "-o", str(other), *exact[:3], "4", *exact[4:]) == 0
    assert sha(out) == sha(again)
    assert sha(out) != sha(other)
    assert json.loads((other.parent / "out.wav.json").read_text())["seed"] == 4


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


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    """A 12 s clip (longer than one 10.24 s diffusion window) with its own AAC soundtrack."""
    from foleykit.data.synthetic import write_video

    return write_video(tmp_path_factory.mktemp("in") / "long.mp4", 2, seconds=12.0, fps=10, audio=True)


def test_video_longer_than_one_window_to_mp4(long_video, tmp_path):
    """Two diffusion windows, crossfaded: the soundtrack covers all 12 s, the video is copied untouched."""
    out = tmp_path / "long_foley.mp4"
    assert run_cli("generate", str(long_video), "-o", str(out), "--seed", "5", "--frames", "4", *FAST) == 0
    with av.open(str(out)) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1  # the input's own audio was replaced
        assert c.streams.audio[0].rate == 48000
    durs = _stream_durations(out)
    assert abs(durs["audio"] - 12.0) <= 0.05
    assert abs(durs["video"] - 12.0) <= 0.05
    with av.open(str(long_video)) as a, av.open(str(out)) as b:
        src = [bytes(p) for p in a.demux(a.streams.video[0]) if p.size]
        dst = [bytes(p) for p in b.demux(b.streams.video[0]) if p.size]
    assert len(src) == 120 and src == dst
    side = json.loads((tmp_path / "long_foley.mp4.json").read_text())
    assert side["generator"]["windows"] == [[0.0, 10.0], [9.5, 19.5]]
    assert abs(side["output"]["duration_s"] - 12.0) <= 1e-3
    with av.open(str(out)) as c:  # the decoded soundtrack is sound all the way, not padding
        pcm = np.concatenate([f.to_ndarray()[0] for f in c.decode(audio=0)])
    tail = pcm[-48000:]
    assert np.isfinite(pcm).all() and tail.std() > 1e-4


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


@pytest.fixture()
def default_models_offline(monkeypatch, tmp_path_factory):
    """``--models default`` with the hub offline and an empty HF cache: every default model is missing."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("empty-hf-cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return ["--models", "default", "--quiet"]


def _audio_only_mp4(d: Path) -> Path:
    """A real mp4 holding an AAC track and no video stream."""
    path = d / "audio_only.mp4"
    with av.open(str(path), "w") as c:
        stream = c.add_stream("aac", rate=44100, layout="mono")
        wave = (0.3 * np.sin(2 * np.pi * 220 * np.arange(88200) / 44100)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(wave[None], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 44100, 0
        for pkt in stream.encode(frame):
            c.mux(pkt)
        for pkt in stream.encode():
            c.mux(pkt)
    with av.open(str(path)) as c:
        assert len(c.streams.audio) == 1 and len(c.streams.video) == 0
    return path


def _zero_frame_avi(d: Path) -> Path:
    """A video file with a video stream that holds no frames (mp4 would drop such a track; avi keeps it)."""
    path = d / "zero_frames.avi"
    with av.open(str(path), "w") as c:
        vs = c.add_stream("mpeg4", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        c.start_encoding()
    with av.open(str(path)) as c:
        assert len(c.streams.video) == 1
        assert sum(1 for _ in c.decode(video=0)) == 0
    return path


def _too_long_video(d: Path) -> Path:
    """A 601 s clip at 1 fps: longer than the 600 s foleykit makes."""
    path = d / "too_long.mp4"
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=1)
        vs.width, vs.height, vs.pix_fmt = 16, 16, "yuv420p"
        black = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        for _ in range(601):
            for pkt in vs.encode(black):
                c.mux(pkt)
        for pkt in vs.encode():
            c.mux(pkt)
    return path


@pytest.mark.parametrize("make_input, needle", [
    (_audio_only_mp4, "no video stream"),
    (_zero_frame_avi, "no decodable video frames"),
    (lambda d: _bad(d, "empty.mp4", b""), "empty"),
    (_too_long_video, "601.0 s long"),
])
@pytest.mark.parametrize("suffix", [".mp4", ".wav"])
def test_bad_videos_are_reported_before_any_model_loads(tmp_path, capsys, default_models_offline, make_input,
                                                        needle, suffix):
    """With every default model missing, the bad video is what the one error line names."""
    src = make_input(tmp_path)
    out = tmp_path / f"out{suffix}"
    code = run_cli("generate", str(src), "-o", str(out), "--seed", "0", *default_models_offline)
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and err[0].startswith("foleykit: error:"), err
    assert src.name in err[0] and needle in err[0] and "model" not in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]  # no output, no sidecar, no staging


@pytest.mark.parametrize("make_input", [
    lambda d: _bad(d, "scene.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00 truncated jpeg"),
    lambda d: _bad(d, "scene.png", b"\x89PNG\r\n\x1a\nthis is not a png"),
])
def test_corrupt_image_is_reported_not_the_missing_default_model(tmp_path, capsys, default_models_offline,
                                                                 make_input):
    src = make_input(tmp_path)
    out = tmp_path / "out.wav"
    code = run_cli("generate", str(src), "-o", str(out), "--seed", "0", *default_models_offline)
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and src.name in err[0] and "model" not in err[0], err
    assert not out.exists() and not (tmp_path / "out.wav.json").exists()


def test_default_models_are_really_missing_in_these_tests(scene, tmp_path, capsys, default_models_offline):
    """The control for the two tests above: a good image under the same setup fails on the model."""
    out = tmp_path / "out.wav"
    assert run_cli("generate", str(scene), "-o", str(out), "--seed", "0", *default_models_offline) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model" in err[0] and "offline" in err[0], err
    assert not out.exists()


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
    (["--dtype", "fp16", "--device", "cpu"], "float16 is not supported on cpu"),
    (["--dtype", "int8"], "unknown dtype 'int8'"),
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
    assert run_cli("generate", str(scene), "-o", str(tmp_path / "o.ogg"), *FAST) != 0  # not a format we write
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


@pytest.mark.parametrize(("native_bf16", "want"), [(True, "bfloat16"), (False, "float32")])
def test_default_dtype_is_auto_and_the_sidecar_records_it(scene, tmp_path, monkeypatch, native_bf16, want):
    """No --dtype: bf16 where the CPU has it natively (faked here), fp32 elsewhere; --dtype overrides."""
    import foleykit.api
    import foleykit.devices

    monkeypatch.setattr(foleykit.devices, "cpu_has_native_bf16", lambda: native_bf16)
    foleykit.api.clear_pipelines()  # pipelines are cached per (…, dtype="auto")
    try:
        out = tmp_path / "a.wav"
        assert run_cli("generate", str(scene), "-o", str(out), "--duration", "1", "--device", "cpu", *FAST) == 0
        side = json.loads((tmp_path / "a.wav.json").read_text())
        assert side["generator"]["dtype"] == want and side["parameters"]["dtype"] == "auto"
        out = tmp_path / "b.wav"
        assert run_cli("generate", str(scene), "-o", str(out), "--duration", "1", "--device", "cpu", "--dtype", "fp32",
                       *FAST) == 0
        assert json.loads((tmp_path / "b.wav.json").read_text())["generator"]["dtype"] == "float32"
    finally:
        foleykit.api.clear_pipelines()
