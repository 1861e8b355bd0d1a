"""Input checks shared by the audio, image and video loaders."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError


#: File suffixes read as video (anything else given as a picture is read as an image).
VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".wmv", ".flv", ".gif"}


def one_line(exc: BaseException) -> str:
    """An exception's message flattened to one line, for user-facing errors."""
    return " ".join(str(exc).split()) or type(exc).__name__


def check_input_file(path: str | os.PathLike, kind: str) -> Path:
    """Fail with one clear line if ``path`` is missing, a directory, or empty (0 bytes)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{kind} file not found: {p}")
    if p.is_dir():
        raise InputError(f"{kind} path is a directory, not a file: {p}")
    if p.stat().st_size == 0:
        raise InputError(f"{kind} file is empty (0 bytes): {p}")
    return p
