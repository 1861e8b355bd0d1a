"""Reading the per-clip annotations some metrics need: captions (CLAP score) and labels (ACC).

Both are CSV files with a header, keyed by clip name (a file name; its extension is ignored), and
may hold several rows per clip: AudioCaps has five captions per clip, AudioSet several labels.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..errors import InputError

NAME_COLUMNS = ("name", "filename", "file", "audio", "id")
CAPTION_COLUMNS = ("caption", "text")
LABEL_COLUMNS = ("labels", "label")
#: Separator of several labels in one cell (commas already separate the CSV's columns).
LABEL_SEPARATOR = ";"


def _pick(header: list[str], choices: tuple[str, ...], path: Path, what: str) -> str:
    lowered = {h.strip().lower(): h for h in header}
    for choice in choices:
        if choice in lowered:
            return lowered[choice]
    raise InputError(
        f"{path}: no {what} column; expected one of {', '.join(choices)} in the header, got {header}"
    )


def _read(path: str | os.PathLike, value_columns: tuple[str, ...], what: str) -> dict[str, list[str]]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"{what} file not found: {p}")
    with p.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None:
            raise InputError(f"{p} is empty; expected a CSV with a header")
        name_col = _pick(list(reader.fieldnames), NAME_COLUMNS, p, "clip name")
        value_col = _pick(list(reader.fieldnames), value_columns, p, what)
        out: dict[str, list[str]] = {}
        for row in reader:
            name, value = (row.get(name_col) or "").strip(), (row.get(value_col) or "").strip()
            if name and value:
                out.setdefault(Path(name).stem, []).append(value)
    if not out:
        raise InputError(f"{p} has no rows with both a clip name and a {what}")
    return out


def read_captions(path: str | os.PathLike) -> dict[str, list[str]]:
    """``{clip name: [caption, ...]}`` from a CSV with ``name`` and ``caption`` columns."""
    return _read(path, CAPTION_COLUMNS, "caption")


def read_labels(path: str | os.PathLike) -> dict[str, list[str]]:
    """``{clip name: [label, ...]}`` from a CSV with ``name`` and ``labels`` (``;``-separated) columns."""
    rows = _read(path, LABEL_COLUMNS, "label")
    return {
        name: [lab.strip() for cell in cells for lab in cell.split(LABEL_SEPARATOR) if lab.strip()]
        for name, cells in rows.items()
    }
