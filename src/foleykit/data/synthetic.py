"""Synthetic media and manifests for tests, benchmarks and smoke runs (no downloads).

:func:`make_synthetic_dataset` writes images (PNG), sine-tone audio (WAV) and short mp4 clips with
an AAC soundtrack (PyAV), plus a generic csv manifest naming them. Every file is a deterministic
function of its index, so two calls with the same arguments write identical media.
"""

from __future__ import annotations

import csv
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

LABELS = ("dog barking", "rain", "engine", "piano")


def _picture(i: int, width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + i)
    base = rng.integers(0, 256, size=3)
    img = np.empty((height, width, 3), np.uint8)
    img[:] = base
    x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
    img[y0:y0 + height // 3, x0:x0 + width // 3] = 255 - base
    return img


def _tone(i: int, seconds: float, sr: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * (180.0 + 40.0 * i) * t)).astype(np.float32)


def write_image(path: Path, i: int, size: tuple[int, int] = (96, 72)) -> Path:
    Image.fromarray(_picture(i, *size)).save(path)
    return path


def write_tone(path: Path, i: int, seconds: float = 2.0, sr: int = 16_000, silent: bool = False) -> Path:
    import soundfile as sf

    wave = np.zeros(int(seconds * sr), np.float32) if silent else _tone(i, seconds, sr)
    sf.write(str(path), wave, sr, subtype="PCM_16")
    return path


def write_video(path: Path, i: int, *, seconds: float = 3.0, fps: int = 25, size: tuple[int, int] = (64, 48),
                audio: bool = True, audio_sr: int = 44_100) -> Path:
    """An h264 mp4 whose frames drift in colour, with a sine soundtrack when ``audio``."""
    import av

    width, height = size
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.codec_context.options = {"threads": "1"}
        tb = Fraction(1, fps)
        vs.time_base = vs.codec_context.time_base = tb
        aus = c.add_stream("aac", rate=audio_sr, layout="mono") if audio else None
        base = _picture(i, width, height).astype(np.int16)
        for k in range(round(fps * seconds)):
            arr = np.clip(base + (k * 3) % 60, 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            frame.pts, frame.time_base = k, tb
            for p in vs.encode(frame):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if aus is not None:
            wave = _tone(i, seconds, audio_sr)
            af = av.AudioFrame.from_ndarray(wave[None], format="fltp", layout="mono")
            af.sample_rate, af.pts = audio_sr, 0
            for p in aus.encode(af):
                c.mux(p)
            for p in aus.encode():
                c.mux(p)
    return path


def make_synthetic_dataset(
    root: str | os.PathLike,
    *,
    n_images: int = 4,
    n_videos: int = 2,
    broken: bool = False,
    image_size: tuple[int, int] = (96, 72),
    audio_seconds: float = 2.0,
    video_seconds: float = 3.0,
) -> Path:
    """Write media under ``root`` and a generic csv manifest ``root/manifest.csv``; return its path.

    Image items pair a PNG with a WAV tone; video items are mp4s with their own soundtrack.
    ``broken`` adds items that must be skipped: a missing file, a corrupt image, a silent WAV and a
    video without audio.
    """
    root = Path(root)
    media = root / "media"
    media.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []
    n = 0
    for i in range(n_images):
        img = write_image(media / f"img{i:04d}.png", i, image_size)
        wav = write_tone(media / f"img{i:04d}.wav", i, audio_seconds)
        rows.append({"id": f"img{i:04d}", "image": img.name, "audio": wav.name,
                     "label": LABELS[i % len(LABELS)], "split": "train" if i % 5 else "val"})
        n += 1
    for j in range(n_videos):
        vid = write_video(media / f"vid{j:04d}.mp4", n + j, seconds=video_seconds)
        rows.append({"id": f"vid{j:04d}", "video": vid.name, "label": LABELS[j % len(LABELS)], "split": "train"})
    if broken:
        rows.append({"id": "missing", "image": "nope.png", "audio": "nope.wav", "label": "rain"})
        bad = media / "corrupt.png"
        bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
        rows.append({"id": "corrupt", "image": bad.name, "audio": f"img{0:04d}.wav", "label": "rain"})
        silent = write_tone(media / "silent.wav", 0, audio_seconds, silent=True)
        write_image(media / "silent.png", 99, image_size)
        rows.append({"id": "silent", "image": "silent.png", "audio": silent.name, "label": "rain"})
        mute = write_video(media / "mute.mp4", 98, seconds=video_seconds, audio=False)
        rows.append({"id": "mute", "video": mute.name, "label": "engine"})
    manifest = root / "manifest.csv"
    cols = ["id", "image", "video", "audio", "label", "split"]
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({c: ("media/" + r[c] if c in ("image", "video", "audio") and r.get(c) else r.get(c, ""))
                        for c in cols})
    return manifest
