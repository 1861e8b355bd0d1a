"""`--method sources` on video: the CLI writes an mp4 (video stream copied, new audio of the video's
length) or a wav, and the temporal aggregator gets timestamp positions per window."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from foleykit.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = ["--method", "sources", "--models", "tiny", "--steps", "2", "--frames", "4", "--quiet", "--seed", "1"]


def _write_video(path: Path, seconds: float, fps: int) -> Path:
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        for i in range(int(seconds * fps)):
            frame = np.full((48, 64, 3), (i * 7) % 255, dtype=np.uint8)
            frame[:, : 8 + i % 40] = 255 - frame[0, 0]
            for pkt in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
    return path


@pytest.fixture(scope="module")
def clip3s(tmp_path_factory) -> Path:
    return _write_video(tmp_path_factory.mktemp("in") / "clip.mp4", 3.0, 25)


def run_cli(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _stream_durations(path: Path) -> dict[str, float]:
    with av.open(str(path)) as c:
        return {s.type: float(s.duration * s.time_base) if s.duration else float(c.duration / av.time_base)
                for s in c.streams}


def test_cli_video_to_mp4_and_wav_through_sources(clip3s, tmp_path, tiny_cache_env):
    out = tmp_path / "out.mp4"
    assert run_cli("generate", str(clip3s), "--text", "engine", "-o", str(out), *FAST) == 0
    durs = _stream_durations(out)
    assert set(durs) == {"video", "audio"}
    assert abs(durs["audio"] - 3.0) <= 0.05
    with av.open(str(clip3s)) as a, av.open(str(out)) as b:
        src = [bytes(p) for p in a.demux(a.streams.video[0]) if p.size]
        dst = [bytes(p) for p in b.demux(b.streams.video[0]) if p.size]
    assert src and src == dst  # the original video stream, copied packet for packet
    side = json.loads((tmp_path / "out.mp4.json").read_text())
    assert side["method"] == "sources" and side["input_kind"] == "video"
    assert side["video"]["frames_per_window"] == 4 and side["video"]["windows"] == [[0.0, 3.0]]
    assert side["video"]["last_position"] == [pytest.approx(3 * 0.3, abs=1e-4)]  # 3 s: positions k * 0.3
    assert [s["kind"] for s in side["sources"]] == ["text"]

    wav = tmp_path / "out.wav"
    assert run_cli("generate", str(clip3s), "-o", str(wav), *FAST) == 0
    info = sf.info(wav)
    assert info.samplerate == 16000 and info.channels == 1 and abs(info.duration - 3.0) <= 0.05
    wave, _ = sf.read(wav)
    assert np.isfinite(wave).all() and wave.std() > 1e-4
    assert json.loads((tmp_path / "out.wav.json").read_text())["input_kind"] == "video"


def test_window_positions_are_frame_times_full_window_matches_indices(tmp_path, tiny_cache_env):
    """A 12 s video → windows [0, 10] (full) and [9.5, 12] (2.5 s). The full window gets the released
    positions 0..3 and the same window CLAP as index positions; the short one is compressed in time."""
    from foleykit.api import load_pipeline

    video = _write_video(tmp_path / "long.mp4", 12.0, 4)
    pipe = load_pipeline("sources", "tiny", None, "auto", None, None, None)
    agg = pipe.ss2a.temporal
    assert agg is not None
    seen = {}
    real = agg.aggregate

    def spy(frame_claps, positions=None, *args, **kwargs):
        out = real(frame_claps, positions, *args, **kwargs)
        seen.update(positions=positions.clone(), out=out.clone(), by_index=real(frame_claps).clone())
        return out

    agg.aggregate = spy
    try:
        res = pipe(video, detect=False, frames=4, num_inference_steps=1, cycle_rounds=1, cycle_samples=2, seed=0,
                   progress=False)
    finally:
        agg.aggregate = real
    assert res.record["video"]["windows"] == [[0.0, 10.0], [9.5, 19.5]]
    pos = seen["positions"]
    assert pos.shape == (2, 4)
    assert torch.equal(pos[0], torch.arange(4, dtype=torch.float32))  # released index convention
    assert torch.allclose(pos[1], torch.arange(4) * 0.25)  # 2.5 s of a 10 s window
    assert torch.equal(seen["out"][0], seen["by_index"][0])
    assert not torch.allclose(seen["out"][1], seen["by_index"][1], atol=1e-5)
    assert res.mix.waveform.shape == (12 * 16000,)
