"""Issue 12 in the CLI: `generate --loudness/--stems-relative`, the per-request source budget (stated in
--help, refused in one line without echoing long texts), a truncated faststart mp4 used for what decodes
(note printed, mp4 as long as its picture), and `app --auth` checked before anything loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from foleykit.cli import main

FAST = ["--models", "tiny", "--steps", "2", "--quiet"]

pytestmark = pytest.mark.usefixtures("one_torch_thread", "tiny_cache_env")


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture()
def scene(tmp_path) -> Path:
    path = tmp_path / "scene.png"
    arr = np.zeros((96, 128, 3), np.uint8)
    arr[:48] = (150, 190, 235)
    arr[48:] = (110, 150, 80)
    Image.fromarray(arr).save(path)
    return path


def _lufs(path: Path) -> float:
    import pyloudnorm

    data, sr = sf.read(str(path), dtype="float64")
    return float(pyloudnorm.Meter(sr).integrated_loudness(data))


def test_loudness_target_for_the_mix_and_relative_stems(scene, tmp_path, capsys):
    code, out, err = run_cli(capsys, "generate", str(scene), "-o", str(tmp_path / "a.wav"), *FAST, "--duration", "1.5",
                             "--seed", "3", "--loudness", "-20")
    assert code == 0, err
    assert _lufs(tmp_path / "a.wav") == pytest.approx(-20.0, abs=0.5)

    code, out, err = run_cli(capsys, "generate", str(scene), "-o", str(tmp_path / "blend.wav"), *FAST,
                             "--duration", "1.5", "--seed", "3", "--text", "rain", "--text", "wind",
                             "--stems", str(tmp_path / "stems"), "--loudness", "-23", "--stems-relative")
    assert code == 0, err
    assert _lufs(tmp_path / "blend.wav") <= -23.0 + 0.5
    stems = sorted((tmp_path / "stems").glob("*.wav"))
    assert len(stems) == 2
    code, _, err = run_cli(capsys, "generate", str(scene), "-o", str(tmp_path / "b.wav"), *FAST, "--loudness", "3")
    assert code == 1 and "LUFS" in err and len(err.strip().splitlines()) == 1


def test_the_source_budget_is_stated_and_enforced_without_echoing_texts(scene, tmp_path, capsys, monkeypatch):
    from foleykit import api
    from foleykit.app.main import AppConfig

    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = run_cli(capsys, "generate", "--help")
    assert code == 0 and f"at most {api.MAX_PROMPTS} sources" in " ".join(out.split())
    assert f"at most {api.MAX_TEXT_CHARS} characters" in " ".join(out.split())
    code, out, _ = run_cli(capsys, "app", "--help")
    assert code == 0 and f"at most {AppConfig().max_sources} sources" in " ".join(out.split())
    assert f"at most {AppConfig().max_text_chars} characters" in " ".join(out.split())

    many = [a for i in range(api.MAX_PROMPTS + 1) for a in ("--text", f"thing {i}")]
    code, _, err = run_cli(capsys, "generate", str(scene), "-o", str(tmp_path / "x.wav"), *FAST, *many)
    assert code == 1 and f"too many sources: {api.MAX_PROMPTS + 1}" in err and len(err.strip().splitlines()) == 1
    long_text = "z" * 5000 + "UNIQUE-TAIL"
    code, _, err = run_cli(capsys, "generate", str(scene), "-o", str(tmp_path / "x.wav"), *FAST, "--text", long_text)
    assert code == 1 and "5011 characters" in err and "UNIQUE-TAIL" not in err and len(err) < 300
    assert not (tmp_path / "x.wav").exists()


def test_a_truncated_faststart_mp4_is_used_for_what_decodes(tmp_path, capsys):
    av = pytest.importorskip("av")
    full = tmp_path / "full.mp4"
    with av.open(str(full), "w", options={"movflags": "+faststart"}) as dst:
        st = dst.add_stream("libx264", rate=10)
        st.width, st.height, st.pix_fmt = 64, 48, "yuv420p"
        st.codec_context.gop_size = 5
        for i in range(40):
            arr = np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8)
            for pkt in st.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                dst.mux(pkt)
        for pkt in st.encode():
            dst.mux(pkt)
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    decoded = 0
    with av.open(str(cut)) as c:
        try:
            for _ in c.decode(c.streams.video[0]):
                decoded += 1
        except av.error.FFmpegError:
            pass
    usable = decoded / 10

    code, out, err = run_cli(capsys, "generate", str(cut), "-o", str(tmp_path / "out.mp4"), *FAST)
    assert code == 0, err
    assert "claims 4.00 s" in err and "cut.mp4" in err
    with av.open(str(tmp_path / "out.mp4")) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert float(v.duration * v.time_base) == pytest.approx(usable, abs=0.21)
        assert float(a.duration * a.time_base) == pytest.approx(usable, abs=0.05)
    assert f"({usable:.2f} s" in out or abs(float(out.split("(")[1].split(" s")[0]) - usable) < 0.11


def test_app_auth_is_checked_before_anything_loads(capsys):
    code, _, err = run_cli(capsys, "app", "--auth", "nopassword", "--models", "tiny")
    assert code == 1 and "USER:PASSWORD" in err and len(err.strip().splitlines()) == 1
