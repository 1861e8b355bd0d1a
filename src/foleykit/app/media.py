"""Media helpers of the web app: upload checks, a still-image video for mp4 downloads, zipping stems."""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError, OutputError
from ..io.atomic import atomic_path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg"}


def check_upload(path: str | os.PathLike, *, max_bytes: int, allowed: set[str], what: str) -> Path:
    """Refuse a missing, empty, too large or wrongly typed upload (by suffix; content is checked on decode)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} upload is missing")
    size = p.stat().st_size
    if size == 0:
        raise InputError(f"{what} {p.name} is empty")
    if size > max_bytes:
        raise InputError(f"{what} {p.name} is {size / 2**20:.1f} MB, more than the {max_bytes / 2**20:.0f} MB limit")
    if p.suffix.lower() not in allowed:
        raise InputError(f"{what} {p.name}: unsupported type {p.suffix or '(none)'}; use {', '.join(sorted(allowed))}")
    return p


def fit_image(image: Image.Image, max_side: int) -> Image.Image:
    """Downscale so the longer side is at most ``max_side`` (clicks then refer to this image)."""
    w, h = image.size
    if max(w, h) <= max_side:
        return image
    scale = max_side / max(w, h)
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)


def still_video(image: Image.Image, seconds: float, out: str | os.PathLike, *, fps: int = 10) -> Path:
    """A silent H.264 mp4 showing ``image`` for ``seconds`` (to mux a soundtrack onto for images)."""
    import av

    out = Path(out)
    img = image.convert("RGB")
    w, h = img.size
    w2, h2 = w - w % 2, h - h % 2  # yuv420p needs even sizes
    if (w2, h2) != (w, h):
        img = img.crop((0, 0, w2, h2))
    frame_arr = np.asarray(img)
    n = max(1, math.ceil(seconds * fps))
    try:
        with atomic_path(out) as tmp:
            with av.open(str(tmp), "w", format="mp4") as dst:
                stream = dst.add_stream("libx264", rate=fps)
                stream.width, stream.height, stream.pix_fmt = w2, h2, "yuv420p"
                stream.options = {"crf": "23", "preset": "veryfast"}
                for _ in range(n):
                    frame = av.VideoFrame.from_ndarray(frame_arr, format="rgb24")
                    for packet in stream.encode(frame):
                        dst.mux(packet)
                for packet in stream.encode():
                    dst.mux(packet)
    except av.error.FFmpegError as exc:
        raise OutputError(f"could not encode a still video: {exc}") from exc
    return out


def zip_files(files: Sequence[Path], out: str | os.PathLike) -> Path:
    """Zip ``files`` (flat, by name) atomically."""
    out = Path(out)
    with atomic_path(out) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for f in files:
                zf.write(f, arcname=Path(f).name)
    return out
