"""Video I/O: probing, timestamp-based frame picking (CFR, VFR, windows, seeking), muxing."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from foleykit.errors import InputError, OutputError  # noqa: E402
from foleykit.io import video  # noqa: E402
from foleykit.io.video import mux_audio, probe_video, read_frames, segment_centres  # noqa: E402

W, H = 64, 48
N_BITS = 8  # the frame index is drawn as 8 black/white vertical stripes, which survive h264


def index_image(i: int) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    stripe = W // N_BITS
    for b in range(N_BITS):
        if i >> b & 1:
            img[:, b * stripe : (b + 1) * stripe] = 255
    return img


def decode_index(img) -> int:
    arr = np.asarray(img.convert("L"), dtype=np.float32)
    stripe = arr.shape[1] // N_BITS
    return sum(1 << b for b in range(N_BITS) if arr[:, b * stripe + 2 : (b + 1) * stripe - 2].mean() > 128)


def make_video(
    path: Path,
    *,
    fps: int = 25,
    seconds: float = 3.0,
    audio: bool = False,
    codec: str = "libx264",
    times_ms: list[int] | None = None,
    gop: int | None = None,
    rotation: int = 0,
    faststart: bool = False,
) -> Path:
    """Frames whose picture encodes their index; ``times_ms`` gives VFR timestamps; ``faststart`` puts
    the index (moov) before the data, as web videos have it."""
    with av.open(str(path), "w", options={"movflags": "+faststart"} if faststart else {}) as c:
        vs = c.add_stream(codec, rate=fps)
        vs.width, vs.height = W, H
        vs.pix_fmt = "yuv420p" if codec == "libx264" else "bgr24"
        if gop:
            vs.codec_context.gop_size = gop
        if times_ms:  # without B-frames the mp4 muxer derives exact VFR durations from the dts
            vs.codec_context.max_b_frames = 0
        if rotation:
            vs.set_display_rotation(rotation)
        tb = Fraction(1, 1000) if times_ms else Fraction(1, fps)
        vs.time_base = vs.codec_context.time_base = tb
        pts = times_ms or list(range(round(fps * seconds)))
        if audio:
            aus = c.add_stream("aac", rate=44100, layout="mono")
        for i, t in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(index_image(i), format="rgb24")
            frame.pts, frame.time_base = t, tb
            for p in vs.encode(frame):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if audio:
            n = int(44100 * seconds)
            wave = (0.3 * np.sin(2 * np.pi * 220 * np.arange(n) / 44100)).astype(np.float32)
            af = av.AudioFrame.from_ndarray(wave[None], format="fltp", layout="mono")
            af.sample_rate, af.pts = 44100, 0
            for p in aus.encode(af):
                c.mux(p)
            for p in aus.encode():
                c.mux(p)
    return path


VFR_MS = [0, 40, 60, 160, 180, 200, 400, 420, 500, 900, 940, 1000, 1500, 1520, 1540, 1900, 2400, 2440, 2900]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("video")
    return {
        "h264_audio": make_video(d / "a25.mp4", audio=True),
        "h264": make_video(d / "v25.mp4"),
        "h264_30": make_video(d / "v30.mp4", fps=30),
        "gop10": make_video(d / "gop10.mp4", gop=10),
        "vfr": make_video(d / "vfr.mp4", times_ms=VFR_MS),
        "raw_avi": make_video(d / "raw.avi", codec="rawvideo"),
    }


def test_probe_reports_stream_facts(media):
    info = probe_video(media["h264_audio"])
    assert info.duration_s == pytest.approx(3.0, abs=0.05)
    assert info.fps == pytest.approx(25)
    assert (info.width, info.height, info.n_frames) == (W, H, 75)
    assert info.has_audio and info.codec == "h264" and info.rotation == 0

    info30 = probe_video(media["h264_30"])
    assert info30.fps == pytest.approx(30) and info30.n_frames == 90 and not info30.has_audio
    assert info30.duration_s == pytest.approx(3.0, abs=0.05)


@pytest.mark.parametrize(
    ("key", "fps", "n"), [("h264", 25, 5), ("h264_30", 30, 7), ("h264", 25, 75), ("h264_30", 30, 4)]
)
def test_read_frames_picks_the_frame_on_screen_at_segment_centres(media, key, fps, n):
    frames = read_frames(media[key], n)
    expected = [math.floor(t * fps + 1e-9) for t in segment_centres(n, 0.0, 3.0)]
    assert [decode_index(f) for f in frames] == expected
    assert all(f.mode == "RGB" and f.size == (W, H) for f in frames)


def test_more_frames_than_the_video_has_repeats_frames(media):
    frames = read_frames(media["h264"], 150)
    assert [decode_index(f) for f in frames] == [k // 2 for k in range(150)]


def test_read_frames_vfr_uses_timestamps_not_frame_counts(media):
    n = 12
    frames = read_frames(media["vfr"], n, end_s=2.9)
    expected = [
        max(i for i, ms in enumerate(VFR_MS) if ms <= t * 1000 + 1e-6) for t in segment_centres(n, 0.0, 2.9)
    ]
    assert [decode_index(f) for f in frames] == expected


def test_window_and_seeking_pick_the_same_frames(media, monkeypatch):
    monkeypatch.setattr(video, "_SEEK_GAP_S", 0.05)  # force a keyframe seek for nearly every target
    for start, end, n in [(2.0, 3.0, 4), (0.0, 3.0, 6), (1.05, 1.45, 3), (0.0, 3.0, 30)]:
        frames = read_frames(media["gop10"], n, start_s=start, end_s=end)
        assert [decode_index(f) for f in frames] == [
            math.floor(t * 25 + 1e-9) for t in segment_centres(n, start, end)
        ]


def test_max_side_downscales(media):
    (frame,) = read_frames(media["h264"], 1, max_side=32)
    assert frame.size == (32, 24)


@pytest.fixture(scope="module")
def rotated(tmp_path_factory) -> Path:
    """0.4 s whose display matrix says: turn 90 degrees counter-clockwise (as phones record)."""
    if not hasattr(av.video.stream.VideoStream, "set_display_rotation"):
        pytest.skip("this PyAV cannot write a display rotation")
    return make_video(tmp_path_factory.mktemp("rot") / "rot.mp4", seconds=0.4, rotation=90)


def test_display_rotation_is_applied(rotated):
    info = probe_video(rotated)
    assert info.rotation == 90 and (info.width, info.height) == (H, W)
    (frame,) = read_frames(rotated, 1, start_s=0.2, end_s=0.24)  # frame 5: bits 0 and 2 set
    assert frame.size == (H, W)
    # Rotated 90 degrees counter-clockwise, the leftmost stripe (bit 0, white) is now the bottom rows.
    grey = np.asarray(frame.convert("L"), dtype=np.float32)
    assert grey[-6:].mean() > 200 and grey[-14:-10].mean() < 50


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        (b"", "empty"),
        (b"this is not a video at all\n" * 20, "not a readable media file"),
    ],
)
def test_bad_files_raise_input_error_naming_the_file(tmp_path, content, message):
    p = tmp_path / "clip.mp4"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(InputError, match=message) as err:
        probe_video(p)
    assert str(p) in str(err.value) and "\n" not in str(err.value)


def test_truncated_file_raises_input_error(media, tmp_path):
    data = media["h264_audio"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: cut off
    with pytest.raises(InputError, match="not a readable media file") as err:
        probe_video(cut)
    assert str(cut) in str(err.value)


def test_a_truncated_faststart_mp4_is_as_long_as_what_decodes_in_probe_frames_and_mux(tmp_path):
    """A faststart mp4 cut in half still has its full index: the container claims 4 s. Its usable
    duration is what decodes, counted here by decoding the file directly until it fails."""
    full = make_video(tmp_path / "full.mp4", seconds=4.0, fps=25, gop=10, faststart=True, audio=True)
    data = full.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # really faststart
    cut = tmp_path / "upload.mp4"
    cut.write_bytes(data[: len(data) // 2])

    decoded = []  # the reference: frame indices (drawn in each picture) that decode, in order
    with av.open(str(cut)) as c:
        try:
            for frame in c.decode(c.streams.video[0]):
                decoded.append(decode_index(frame.to_image()))
        except av.error.FFmpegError:
            pass
    assert 10 < len(decoded) < 90
    usable = (max(decoded) + 1) / 25

    info = probe_video(cut)
    assert info.claimed_duration_s == pytest.approx(4.0, abs=0.05)
    assert info.duration_s == pytest.approx(usable, abs=1 / 25 + 1e-6)
    assert "upload.mp4" in info.note and f"{info.duration_s:.2f} s" in info.note and str(tmp_path) not in info.note
    assert probe_video(full).claimed_duration_s is None and probe_video(full).note is None

    # The last frame of the usable span is a real frame near its end, not a stale repeat.
    last = read_frames(cut, 1, start_s=info.duration_s - 0.03, end_s=info.duration_s)[0]
    assert decode_index(last) >= max(decoded) - 1

    out = mux_audio(cut, np.zeros(16000 * 4, np.float32), 16000, tmp_path / "with-sound.mp4")
    with av.open(str(out.path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        v_end = float(v.duration * v.time_base)
        a_end = float(a.duration * a.time_base)
    assert v_end == pytest.approx(usable, abs=2 / 25) and a_end == pytest.approx(usable, abs=0.05)


def test_audio_only_still_image_and_frameless_files_are_refused(tmp_path):
    import soundfile as sf
    from PIL import Image

    wav = tmp_path / "sound.wav"
    sf.write(wav, np.zeros(1600, np.float32), 16000)
    with pytest.raises(InputError, match="no video stream"):
        probe_video(wav)

    png = tmp_path / "still.png"
    Image.fromarray(index_image(3)).save(png)
    with pytest.raises(InputError, match="still image"):
        probe_video(png)

    empty = tmp_path / "noframes.avi"  # a header with a video stream and no frames
    with av.open(str(empty), "w") as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        c.start_encoding()
    with pytest.raises(InputError, match=r"no decodable video frames|zero duration") as err:
        probe_video(empty)
    assert str(empty) in str(err.value)


def test_read_frames_rejects_bad_requests(media):
    with pytest.raises(InputError, match="n_frames"):
        read_frames(media["h264"], 0)
    with pytest.raises(InputError, match="empty or outside"):
        read_frames(media["h264"], 2, start_s=5.0)


def _packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


def _audio_of(path: Path) -> tuple[np.ndarray, int, float]:
    with av.open(str(path)) as c:
        (stream,) = c.streams.audio
        duration = float(stream.duration * stream.time_base)
        wave = np.concatenate([f.to_ndarray() for f in c.decode(stream)], axis=1)
        return wave, stream.codec_context.sample_rate, duration


@pytest.mark.parametrize(
    ("seconds", "sr", "shape"),
    [(1.0, 16000, "mono"), (5.0, 44100, "stereo")],
)
def test_mux_copies_video_packets_and_fits_audio_to_video(media, tmp_path, seconds, sr, shape):
    n = int(seconds * sr)
    tone = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(n) / sr).astype(np.float32)
    audio = tone if shape == "mono" else np.stack([tone, tone])
    out = tmp_path / "out.mp4"
    result = mux_audio(media["h264_audio"], audio, sr, out)
    assert result.path == out and result.video_copied
    # the file lasts as long as the shorter of sound and video: a 1 s sound cuts the 3 s video
    length = min(seconds, 3.0)
    assert result.note == (None if seconds >= 3 else "video cut to the sound's 1.00 s (of 3.00 s)")

    original = _packets(media["h264_audio"])
    kept = _packets(out)
    assert kept == original[:len(kept)]  # bit-identical packets, a prefix when cut
    assert len(kept) == (len(original) if seconds >= 3 else 25)  # 25 fps: the frames shown in [0, 1) s
    with av.open(str(out)) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1  # original audio dropped
        astream = c.streams.audio[0]
        assert astream.codec_context.name == "aac" and astream.codec_context.channels == 2
    wave, rate, duration = _audio_of(out)
    assert rate == 48000
    assert duration == pytest.approx(length, abs=0.05)
    assert wave.shape[0] == 2 and wave.shape[1] / 48000 == pytest.approx(length, abs=0.05)
    audible = np.sqrt((wave[:, 4800:43200] ** 2).mean())
    assert audible == pytest.approx(0.5 / math.sqrt(2), rel=0.1)
    if seconds >= 3:
        assert np.sqrt((wave[:, 96000:] ** 2).mean()) > 0.3  # trimmed real audio to the video's end
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


def test_mux_keeps_display_rotation(rotated, tmp_path):
    out = mux_audio(rotated, np.zeros(8000, np.float32), 16000, tmp_path / "rot.mp4").path
    assert probe_video(out).rotation == 90
    assert read_frames(out, 1)[0].size == (H, W)


def test_reencode_turns_rotated_frames_upright(rotated, tmp_path, monkeypatch):
    def cannot_copy(*args, **kwargs):
        raise ValueError("'mp4' format does not support this codec")

    monkeypatch.setattr(video, "_copy_video", cannot_copy)
    result = mux_audio(rotated, np.zeros(8000, np.float32), 16000, tmp_path / "re.mp4")
    assert not result.video_copied
    info = probe_video(result.path)
    assert info.rotation == 0 and (info.width, info.height) == (H, W)
    direct, reencoded = read_frames(rotated, 3), read_frames(result.path, 3)
    for a, b in zip(direct, reencoded, strict=True):
        assert np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).mean() < 10


def test_mux_reencodes_a_codec_mp4_cannot_hold(media, tmp_path):
    out = tmp_path / "from_raw.mp4"
    result = mux_audio(media["raw_avi"], np.zeros(48000, np.float32), 16000, out)
    assert not result.video_copied and "libx264" in result.note and "rawvideo" in result.note
    info = probe_video(out)
    assert info.codec == "h264" and info.duration_s == pytest.approx(3.0, abs=0.05) and info.n_frames == 75
    frames = read_frames(out, 5)
    assert [decode_index(f) for f in frames] == [7, 22, 37, 52, 67]


def test_mux_refuses_bad_outputs_and_audio(media, tmp_path):
    src = media["h264"]
    with pytest.raises(OutputError, match="mp4"):
        mux_audio(src, np.zeros(100, np.float32), 16000, tmp_path / "out.mkv")
    with pytest.raises(OutputError, match="same file"):
        mux_audio(src, np.zeros(100, np.float32), 16000, src)
    bad = np.zeros(16000, np.float32)
    bad[10] = np.nan
    with pytest.raises(InputError, match="NaN"):
        mux_audio(src, bad, 16000, tmp_path / "nan.mp4")
    with pytest.raises(InputError, match="mono or stereo"):
        mux_audio(src, np.zeros((3, 100), np.float32), 16000, tmp_path / "three.mp4")
    assert list(tmp_path.iterdir()) == []


def test_failed_mux_leaves_no_file(media, tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("encoder crashed")

    monkeypatch.setattr(video, "_copy_video", explode)
    with pytest.raises(RuntimeError):
        mux_audio(media["h264"], np.zeros(100, np.float32), 16000, tmp_path / "out.mp4")
    assert list(tmp_path.iterdir()) == []
