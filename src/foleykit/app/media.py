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


#: Content types the app ever serves inline: the media it reads and writes. Anything else goes out as an
#: ``application/octet-stream`` attachment (see :class:`SafeServing`).
SAFE_INLINE_TYPES = {
    "image/png", "image/jpeg", "image/webp", "image/bmp", "image/tiff",
    "audio/wav", "audio/x-wav", "audio/wave", "audio/flac", "audio/x-flac", "audio/mpeg", "audio/ogg",
    "video/mp4", "video/quicktime", "video/webm", "video/x-matroska", "video/x-msvideo", "video/mpeg",
    "application/zip",
}


def sniff_media(path: str | os.PathLike) -> str | None:
    """``image``, ``video`` or ``audio`` by the file's first bytes (its signature), else None.

    Only the containers the app reads are recognised; the file name plays no part, so an HTML or SVG
    file renamed to ``.png`` is still refused."""
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*")):
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE" or head.startswith((b"fLaC", b"OggS", b"ID3")):
        return "audio"
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # an MPEG audio frame sync (mp3)
        return "audio"
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free"):  # mp4 / mov / m4v
        return "video"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # matroska / webm
        return "video"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video"
    if head.startswith((b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3", b"FLV", b"GIF87a", b"GIF89a",
                        b"\x30\x26\xb2\x75\x8e\x66\xcf\x11")):  # mpeg-ps/es, flv, gif, asf (wmv)
        return "video"
    return None


def check_upload(path: str | os.PathLike, *, max_bytes: int, allowed: set[str], what: str) -> Path:
    """Refuse a missing, empty, too large or wrongly typed upload. The type is read from the content
    (:func:`sniff_media`: an ``image``, ``video`` or ``audio`` upload must be one), and the name must
    carry one of the ``allowed`` suffixes; errors name the file by its upload name only."""
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
    kind = what.split()[0]
    if kind in ("image", "video", "audio") and sniff_media(p) != kind:
        raise InputError(f"{what} {p.name} is not a recognised {kind} format (its content was checked, not its name)")
    return p


def folder_size(path: str | os.PathLike) -> int:
    """Bytes of the regular files under ``path`` (links not followed)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            total += st.st_size
    return total


def _served_kind(url_path: str) -> str | None:
    """What a ``.../file=PATH`` request's file holds by its content (:func:`sniff_media`), if readable."""
    from urllib.parse import unquote

    try:
        return sniff_media(unquote(url_path.split("/file=", 1)[1]))
    except (OSError, IndexError, ValueError):
        return None


class SafeServing:
    """ASGI middleware of the app: a total size limit per upload request, and safe serving of files.

    * ``POST .../upload``: a request whose body is over ``max_request_bytes`` (all its files together;
      gradio's own limit is per file) is refused with 413, by its ``Content-Length`` or, without one,
      by counting the body as it arrives.
    * ``GET .../file=...``: a response whose type is not in :data:`SAFE_INLINE_TYPES` goes out as an
      ``application/octet-stream`` attachment; every file gets ``X-Content-Type-Options: nosniff`` and a
      ``Content-Security-Policy`` sandbox, so nothing served back can run script in the app's origin.
    """

    def __init__(self, app, max_request_bytes: int) -> None:
        self.app = app
        self.max_request_bytes = int(max_request_bytes)

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if scope.get("method") == "POST" and path.rstrip("/").endswith("/upload"):
            return await self._upload(scope, receive, send)
        if "/file=" in path:
            return await self.app(scope, receive, self._safe_send(send, _served_kind(path)))
        return await self.app(scope, receive, send)

    async def _upload(self, scope, receive, send):
        limit = self.max_request_bytes
        headers = dict(scope.get("headers") or [])
        try:
            length = int(headers.get(b"content-length", b"-1"))
        except ValueError:
            length = -1
        if length > limit:
            body = (f'{{"detail": "upload too large: {length / 2**20:.1f} MB in one request, the limit is '
                    f'{limit / 2**20:.0f} MB for all files together"}}').encode()
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # no Content-Length (chunked): stop reading, as if the client left
                    return {"type": "http.disconnect"}
            return message

        return await self.app(scope, counted, send)

    @staticmethod
    def _safe_send(send, kind: str | None):
        async def wrapped(message):
            if message.get("type") == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in (b"x-content-type-options", b"content-security-policy")]
                ctype = next((v.decode("latin-1") for k, v in headers if k.lower() == b"content-type"), "")
                ctype = ctype.split(";")[0].strip().lower()
                media = ctype.split("/")[0] in ("image", "audio", "video")
                if ctype not in SAFE_INLINE_TYPES or (media and ctype.split("/")[0] != kind):
                    # not one of our types, or a name that lies about the content (an SVG called .png)
                    disposition = next((v for k, v in headers if k.lower() == b"content-disposition"), b"")
                    filename = disposition.split(b";", 1)[1] if b";" in disposition else b""
                    headers = [(k, v) for k, v in headers if k.lower() not in (b"content-type", b"content-disposition")]
                    headers.append((b"content-type", b"application/octet-stream"))
                    headers.append((b"content-disposition", b"attachment" + (b";" + filename if filename else b"")))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"content-security-policy", b"sandbox; default-src 'none'; media-src 'self'"))
                message = {**message, "headers": headers}
            await send(message)

        return wrapped


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
