"""Pairing generated and reference items by file name (stem), with errors that list what is unmatched.

Published tools pair by position (``os.listdir`` order, csv order) or drop missing files inside a
loop, which silently misaligns everything after the first gap. Here pairing is always by name, and
any mismatch stops the run with the names in the message.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..errors import InputError

#: Extensions soundfile (libsndfile) decodes without ffmpeg.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
#: Videos whose soundtrack is the clip (reference sets of video datasets).
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi")

_SHOWN = 8


def _names(items: Iterable[str]) -> str:
    items = sorted(items)
    shown = ", ".join(items[:_SHOWN])
    return shown + (f" (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else "")


def list_files(directory: str | os.PathLike, extensions: tuple[str, ...], what: str) -> dict[str, Path]:
    """``{stem: path}`` for the files of ``directory`` with one of ``extensions`` (not recursive).

    Two files with one stem (``a.wav`` and ``a.flac``) are an error: either could be meant.
    """
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise InputError(f"{what} directory not found: {root}")
    found: dict[str, Path] = {}
    clashes: set[str] = set()
    for path in sorted(root.iterdir()):
        if path.is_file() and path.suffix.lower() in extensions and not path.name.startswith("."):
            if path.stem in found:
                clashes.add(path.stem)
            found[path.stem] = path
    if clashes:
        raise InputError(f"{what} directory {root} has several files per name: {_names(clashes)}")
    if not found:
        raise InputError(f"{what} directory {root} has no files ending in {', '.join(extensions)}")
    return found


def require_same_names(
    a: Mapping[str, object], b: Mapping[str, object], a_what: str, b_what: str
) -> list[str]:
    """The shared names, sorted; an error naming every unmatched item on either side."""
    only_a, only_b = set(a) - set(b), set(b) - set(a)
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} in {a_what} without a match in {b_what}: {_names(only_a)}")
        if only_b:
            parts.append(f"{len(only_b)} in {b_what} without a match in {a_what}: {_names(only_b)}")
        raise InputError("files are paired by name, but " + "; ".join(parts))
    return sorted(a)
