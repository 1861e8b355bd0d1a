"""Dataset manifests: readers for the public formats, validation that names bad rows, fingerprints.

A :class:`Manifest` is an ordered list of :class:`ManifestItem` (one clip or image each: an id, media
paths, an optional time window, labels, captions, boxes, split). Extraction, curation, training and
batch generation all iterate over one; its :attr:`Manifest.fingerprint` (a SHA-256 of its content)
is stored with every derived artefact, so a manifest changed under a half-done run is detected.

Readers (all raise :class:`~foleykit.errors.InputError` with the file name and the offending lines):

* :func:`read_vggsound_csv` — ``hche11/VGGSound`` ``vggsound.csv`` (no header: YouTube id, start
  second, label, train/test) or its ``test.csv`` (``<ytid>_<start6>.mp4,<label>``).
* :func:`read_vggss_json` — ``hche11/Localizing-Visual-Sounds-the-Hard-Way`` ``vggss.json``
  (``file``, ``class``, ``bbox`` normalised ``[xmin, ymin, xmax, ymax]``); the known broken boxes
  (a -2.88e16 sentinel, inverted or degenerate boxes) are clamped/dropped and counted in ``notes``.
* :func:`read_audiocaps_csv` — ``cdjkim/audiocaps`` ``{train,val,test}.csv``
  (``audiocap_id, youtube_id, start_time, caption``); the 5 captions of a val/test clip are grouped.
* :func:`read_generic_csv` — any csv with a header naming ``image`` / ``video`` / ``audio`` paths and
  optionally ``id``, ``caption(s)``, ``label(s)``, ``split``, ``start_s``, ``end_s``.
* :func:`read_manifest_jsonl` — foleykit's own JSON-lines form (what curation writes).

Downloaded VGGSound / AudioCaps media are usually 10-s clips named ``<ytid>_<start:06d>.<ext>``;
``*_pattern`` arguments change that. With ``trimmed=False`` the files are whole YouTube videos and
the item's window is ``[start, start + clip_seconds)``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io.atomic import atomic_path

MANIFEST_FORMAT_VERSION = 1
#: At most this many bad rows are spelled out in an error message (the count says how many more).
MAX_ROWS_IN_MESSAGE = 8
_YTID = re.compile(r"^[A-Za-z0-9_-]+$")
_LIST_SEP = "|"

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ManifestItem:
    """One example. Paths are strings (resolved against the manifest's root when read).

    ``start_s``/``end_s`` bound the window inside the media file (None = whole file). ``row`` is the
    1-based line (csv/jsonl) or entry (json) it came from, for messages; it is not part of the
    fingerprint.
    """

    id: str
    image: str | None = None
    video: str | None = None
    audio: str | None = None
    start_s: float | None = None
    end_s: float | None = None
    labels: tuple[str, ...] = ()
    captions: tuple[str, ...] = ()
    split: str | None = None
    boxes: tuple[Box, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    row: int | None = field(default=None, compare=False)

    @property
    def label(self) -> str | None:
        """The single label, or None when the item has none or several."""
        return self.labels[0] if len(self.labels) == 1 else None

    @property
    def visual(self) -> str | None:
        """The visual media path: the image if any, else the video."""
        return self.image or self.video

    def to_dict(self, *, with_row: bool = False) -> dict[str, Any]:
        """JSON-able dict with only the fields that are set (stable key order)."""
        out: dict[str, Any] = {"id": self.id}
        for key in ("image", "video", "audio", "start_s", "end_s", "split"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.labels:
            out["labels"] = list(self.labels)
        if self.captions:
            out["captions"] = list(self.captions)
        if self.boxes:
            out["boxes"] = [list(b) for b in self.boxes]
        if self.extra:
            out["extra"] = self.extra
        if with_row and self.row is not None:
            out["row"] = self.row
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], row: int | None = None) -> ManifestItem:
        boxes = tuple(tuple(float(v) for v in b) for b in data.get("boxes", ()))
        return cls(
            id=str(data["id"]),
            image=data.get("image"),
            video=data.get("video"),
            audio=data.get("audio"),
            start_s=None if data.get("start_s") is None else float(data["start_s"]),
            end_s=None if data.get("end_s") is None else float(data["end_s"]),
            labels=tuple(str(x) for x in data.get("labels", ())),
            captions=tuple(str(x) for x in data.get("captions", ())),
            split=data.get("split"),
            boxes=boxes,  # type: ignore[arg-type]
            extra=dict(data.get("extra", {})),
            row=row if row is not None else data.get("row"),
        )


@dataclass
class Manifest:
    """An ordered, validated list of items with unique ids."""

    items: list[ManifestItem]
    source: str | None = None
    format: str = "foleykit"
    notes: list[str] = field(default_factory=list)
    row_name: str = "line"  # what ``ManifestItem.row`` counts: csv/jsonl lines, or json "entry"

    def __post_init__(self) -> None:
        seen: dict[str, ManifestItem] = {}
        problems: list[tuple[str, str]] = []
        for item in self.items:
            if item.id in seen:
                problems.append((self.where(item), f"duplicate id {item.id!r} (first at {self.where(seen[item.id])})"))
            else:
                seen[item.id] = item
        if problems:
            _raise_rows(self.source or "manifest", problems)
        self._index = {item.id: i for i, item in enumerate(self.items)}
        self._fingerprint: str | None = None

    def where(self, item: ManifestItem) -> str:
        """Where an item came from, for messages: ``line 7`` / ``entry 3`` / ``item 'id'``."""
        return f"{self.row_name} {item.row}" if item.row is not None else f"item {item.id!r}"

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[ManifestItem]:
        return iter(self.items)

    def __getitem__(self, i: int) -> ManifestItem:
        return self.items[i]

    def index_of(self, item_id: str) -> int:
        try:
            return self._index[item_id]
        except KeyError:
            raise InputError(f"{self.source or 'manifest'} has no item with id {item_id!r}") from None

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]

    @property
    def fingerprint(self) -> str:
        """SHA-256 over the items' content (ids, paths, windows, labels, captions, boxes, extra), in order.

        Row numbers, the file name and the notes do not count: the same items read from a moved or
        reformatted file give the same fingerprint; any changed, added, removed or reordered item
        gives another.
        """
        if self._fingerprint is None:
            h = hashlib.sha256(f"foleykit-manifest-v{MANIFEST_FORMAT_VERSION}\n".encode())
            for item in self.items:
                h.update(json.dumps(item.to_dict(), sort_keys=True, ensure_ascii=True, allow_nan=False).encode())
                h.update(b"\n")
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def select(self, *, split: str | None = None, ids: Iterable[str] | None = None) -> Manifest:
        """The items of one split and/or with the given ids (manifest order kept)."""
        keep = self.items
        if split is not None:
            keep = [it for it in keep if it.split == split]
        if ids is not None:
            wanted = set(ids)
            missing = sorted(wanted - set(self._index))
            if missing:
                raise InputError(f"{self.source or 'manifest'} has no items with ids {', '.join(missing[:5])}")
            keep = [it for it in keep if it.id in wanted]
        return Manifest(list(keep), source=self.source, format=self.format, notes=list(self.notes),
                        row_name=self.row_name)

    def missing_files(self) -> list[tuple[ManifestItem, str]]:
        """(item, reason) for every item whose media files do not exist or are empty."""
        out = []
        for item in self.items:
            paths = [(k, getattr(item, k)) for k in ("image", "video", "audio") if getattr(item, k)]
            if not paths:
                out.append((item, "no image, video or audio path"))
                continue
            for kind, p in paths:
                path = Path(p)
                if not path.is_file():
                    out.append((item, f"{kind} file not found: {p}"))
                    break
                if path.stat().st_size == 0:
                    out.append((item, f"{kind} file is empty: {p}"))
                    break
        return out

    def check_files(self) -> None:
        """Raise one InputError naming the rows whose media are missing or empty."""
        bad = self.missing_files()
        if bad:
            _raise_rows(self.source or "manifest", [(self.where(it), reason) for it, reason in bad],
                        what="items with missing media")

    def to_jsonl(self, relative_to: str | os.PathLike | None = None) -> str:
        """JSON lines; with ``relative_to`` (a folder) media paths are written relative to it, so the
        manifest works from any current folder (:func:`read_manifest_jsonl` resolves them against its own)."""
        def item_dict(it: ManifestItem) -> dict[str, Any]:
            d = it.to_dict()
            if relative_to is not None:
                for key in ("image", "video", "audio"):
                    if d.get(key):
                        d[key] = os.path.relpath(Path(d[key]).expanduser().resolve(), Path(relative_to).resolve())
            return d

        return "".join(json.dumps(item_dict(it), sort_keys=True, ensure_ascii=False) + "\n" for it in self.items)

    def write_jsonl(self, path: str | os.PathLike) -> Path:
        """Write foleykit's JSON-lines form atomically (one item per line), media paths relative to
        the file's folder."""
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(self.to_jsonl(relative_to=path.expanduser().parent), encoding="utf-8")
        return path


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def _duplicate_rows(items: Sequence[ManifestItem], row_name: str) -> list[tuple[str, str]]:
    """(where, problem) for every item whose id repeats an earlier one's."""
    seen: dict[str, ManifestItem] = {}
    out = []
    for item in items:
        if item.id in seen:
            out.append((f"{row_name} {item.row}", f"duplicate id {item.id!r} (first at {row_name} {seen[item.id].row})"))
        else:
            seen[item.id] = item
    return out


def _raise_rows(source: str, problems: Sequence[tuple[str, str]], what: str = "bad rows") -> None:
    shown = "; ".join(f"{where}: {msg}" for where, msg in problems[:MAX_ROWS_IN_MESSAGE])
    more = len(problems) - MAX_ROWS_IN_MESSAGE
    tail = f"; ... and {more} more" if more > 0 else ""
    raise InputError(f"{source}: {len(problems)} {what}: {shown}{tail}")


def _read_text(path: str | os.PathLike, kind: str) -> tuple[Path, str]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"{kind} file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise InputError(f"{p}: the {kind} file is empty")
    return p, text


def _csv_rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """(1-based line number, cells) for each non-blank csv record."""
    reader = csv.reader(io.StringIO(text), skipinitialspace=False)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(f"line {reader.line_num}: malformed csv ({exc})") from None
        line = reader.line_num
        if not cells or all(not c.strip() for c in cells):
            continue
        yield line, [c.strip() for c in cells]


def _int(value: str, name: str) -> int:
    try:
        f = float(value)
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a number") from None
    if not math.isfinite(f) or f != int(f):
        raise ValueError(f"{name} {value!r} is not a whole number")
    if f < 0:
        raise ValueError(f"{name} {value!r} is negative")
    return int(f)


def _float(value: str, name: str) -> float:
    try:
        f = float(value)
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a number") from None
    if not math.isfinite(f):
        raise ValueError(f"{name} {value!r} is not finite")
    return f


def _media(folder: str | os.PathLike | None, pattern: str, **fields: Any) -> str | None:
    if folder is None:
        return None
    return str(Path(folder).expanduser() / pattern.format(**fields))


def _clip_id(ytid: str, start: int) -> str:
    return f"{ytid}_{start:06d}"


# ------------------------------------------------------------------------------------------------
# VGGSound
# ------------------------------------------------------------------------------------------------


def read_vggsound_csv(
    path: str | os.PathLike,
    *,
    video_dir: str | os.PathLike | None = None,
    audio_dir: str | os.PathLike | None = None,
    video_pattern: str = "{id}.mp4",
    audio_pattern: str = "{id}.wav",
    split: str | None = None,
    trimmed: bool = True,
    clip_seconds: float = 10.0,
) -> Manifest:
    """VGGSound's ``vggsound.csv`` (``ytid,start,label,split``, no header) or ``test.csv``
    (``<ytid>_<start6>.mp4,label``). Ids are ``<ytid>_<start:06d>``; media paths are built from the
    folders and patterns (fields ``id``, ``ytid``, ``start``); ``split`` keeps one split.
    """
    p, text = _read_text(path, "VGGSound csv")
    items: list[ManifestItem] = []
    problems: list[tuple[str, str]] = []
    for line, cells in _csv_rows(text):
        if line == 1 and cells[0].lower().lstrip("# ") in ("youtube id", "youtube_id", "ytid", "id", "file"):
            continue  # a header some copies add
        try:
            if len(cells) == 2 and cells[0].lower().endswith(".mp4"):
                stem = cells[0][:-4]
                if "_" not in stem:
                    raise ValueError(f"file {cells[0]!r} is not <youtube id>_<start>.mp4")
                ytid, start_text = stem.rsplit("_", 1)
                label, row_split = cells[1], "test"
            elif len(cells) == 4:
                ytid, start_text, label, row_split = cells
            else:
                raise ValueError(
                    f"expected 4 columns (youtube id, start seconds, label, split) or 2 (file, label), got {len(cells)}"
                )
            if not _YTID.match(ytid):
                raise ValueError(f"youtube id {ytid!r} has characters other than letters, digits, '-' and '_'")
            start = _int(start_text, "start second")
            if not label:
                raise ValueError("label is empty")
            row_split = row_split.lower()
            if row_split not in ("train", "test"):
                raise ValueError(f"split {row_split!r} is neither 'train' nor 'test'")
        except ValueError as exc:
            problems.append((f"line {line}", str(exc)))
            continue
        if split is not None and row_split != split:
            continue
        cid = _clip_id(ytid, start)
        fields = {"id": cid, "ytid": ytid, "start": start}
        items.append(
            ManifestItem(
                id=cid,
                video=_media(video_dir, video_pattern, **fields),
                audio=_media(audio_dir, audio_pattern, **fields),
                start_s=None if trimmed else float(start),
                end_s=None if trimmed else float(start) + clip_seconds,
                labels=(label,),
                split=row_split,
                extra={"youtube_id": ytid, "youtube_start_s": start},
                row=line,
            )
        )
    problems += _duplicate_rows(items, "line")  # every bad row in one pass, duplicates too
    if problems:
        _raise_rows(str(p), problems)
    if not items:
        raise InputError(f"{p}: no clips{'' if split is None else f' in split {split!r}'}")
    return Manifest(items, source=str(p), format="vggsound")


# ------------------------------------------------------------------------------------------------
# VGG-SS
# ------------------------------------------------------------------------------------------------


def clamp_box(box: Sequence[float]) -> tuple[Box | None, str | None]:
    """Clamp a normalised ``[xmin, ymin, xmax, ymax]`` box to [0, 1].

    Returns ``(box, note)``: ``note`` says what was fixed (None when nothing was). A box that is
    inverted or has no area after clamping is dropped (``box`` None): VGG-SS's official evaluator
    rasterises it to an empty region, so it never counted.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    clamped = tuple(min(1.0, max(0.0, v)) for v in (x0, y0, x1, y1))
    note = None if clamped == (x0, y0, x1, y1) else "clamped to [0, 1]"
    cx0, cy0, cx1, cy1 = clamped
    if cx1 <= cx0 or cy1 <= cy0:
        return None, "inverted or empty box dropped"
    return (cx0, cy0, cx1, cy1), note


def read_vggss_json(
    path: str | os.PathLike,
    *,
    video_dir: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    audio_dir: str | os.PathLike | None = None,
    video_pattern: str = "{id}.mp4",
    image_pattern: str = "{id}.jpg",
    audio_pattern: str = "{id}.wav",
) -> Manifest:
    """VGG-SS annotations: a JSON list of ``{"file", "class", "bbox": [[xmin, ymin, xmax, ymax], ...]}``
    with coordinates normalised to [0, 1]. Broken boxes are clamped or dropped (:func:`clamp_box`);
    how many is in ``manifest.notes`` and in each touched item's ``extra``.
    """
    p, text = _read_text(path, "VGG-SS json")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, list):
        raise InputError(f"{p}: expected a JSON list of {{file, class, bbox}} entries, got {type(data).__name__}")
    items: list[ManifestItem] = []
    problems: list[tuple[str, str]] = []
    clamped = dropped = 0
    for n, entry in enumerate(data, start=1):
        where = f"entry {n}"
        try:
            if not isinstance(entry, dict):
                raise ValueError(f"is a {type(entry).__name__}, not an object")
            if isinstance(entry.get("file"), str) and entry["file"].strip():
                where = f"entry {n} ({entry['file'].strip()})"
            missing = [k for k in ("file", "class", "bbox") if k not in entry]
            if missing:
                raise ValueError(f"missing {', '.join(missing)}")
            file, label, boxes = entry["file"], entry["class"], entry["bbox"]
            if not isinstance(file, str) or not file.strip():
                raise ValueError("'file' is not a non-empty string")
            if not isinstance(label, str) or not label.strip():
                raise ValueError("'class' is not a non-empty string")
            if not isinstance(boxes, list):
                raise ValueError("'bbox' is not a list of boxes")
            kept: list[Box] = []
            fixes: dict[str, int] = {}
            for b in boxes:
                if (not isinstance(b, (list, tuple)) or len(b) != 4
                        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in b)):
                    raise ValueError(f"box {b!r} is not [xmin, ymin, xmax, ymax]")
                if not all(math.isfinite(float(v)) for v in b):
                    raise ValueError(f"box {b!r} has a non-finite coordinate")
                box, note = clamp_box(b)
                if box is None:
                    dropped += 1
                    fixes["dropped_boxes"] = fixes.get("dropped_boxes", 0) + 1
                    continue
                if note is not None:
                    clamped += 1
                    fixes["clamped_boxes"] = fixes.get("clamped_boxes", 0) + 1
                kept.append(box)
        except ValueError as exc:
            problems.append((where, str(exc)))
            continue
        fid = file.strip().removesuffix(".mp4").removesuffix(".jpg")
        fields = {"id": fid}
        items.append(
            ManifestItem(
                id=fid,
                image=_media(image_dir, image_pattern, **fields),
                video=_media(video_dir, video_pattern, **fields),
                audio=_media(audio_dir, audio_pattern, **fields),
                labels=(label.strip(),),
                split="test",
                boxes=tuple(kept),
                extra=fixes,
                row=n,
            )
        )
    problems += _duplicate_rows(items, "entry")  # every bad row in one pass, duplicates too
    if problems:
        _raise_rows(str(p), problems, what="bad entries")
    if not items:
        raise InputError(f"{p}: no entries")
    notes = []
    if clamped or dropped:
        notes.append(f"{clamped} boxes clamped to [0, 1], {dropped} inverted or empty boxes dropped")
    return Manifest(items, source=str(p), format="vggss", notes=notes, row_name="entry")


# ------------------------------------------------------------------------------------------------
# AudioCaps
# ------------------------------------------------------------------------------------------------


def read_audiocaps_csv(
    path: str | os.PathLike,
    *,
    audio_dir: str | os.PathLike | None = None,
    video_dir: str | os.PathLike | None = None,
    audio_pattern: str = "{id}.wav",
    video_pattern: str = "{id}.mp4",
    split: str | None = None,
    group_captions: bool = True,
    trimmed: bool = True,
    clip_seconds: float = 10.0,
) -> Manifest:
    """AudioCaps ``audiocap_id,youtube_id,start_time,caption`` (header required). With
    ``group_captions`` the rows of one clip (5 in val/test) become one item with 5 captions, in file
    order; otherwise each row is an item with id ``<ytid>_<start:06d>_<audiocap_id>``.
    ``split`` is recorded on the items (AudioCaps files hold one split each).
    """
    p, text = _read_text(path, "AudioCaps csv")
    rows = _csv_rows(text)
    try:
        header_line, header = next(rows)
    except StopIteration:
        raise InputError(f"{p}: the AudioCaps csv is empty") from None
    cols = [c.lower() for c in header]
    need = ("audiocap_id", "youtube_id", "start_time", "caption")
    missing = [c for c in need if c not in cols]
    if missing:
        raise InputError(f"{p}: line {header_line}: header lacks {', '.join(missing)} (has {', '.join(cols)})")
    pos = {c: cols.index(c) for c in need}
    problems: list[tuple[str, str]] = []
    groups: dict[tuple[str, int], dict[str, Any]] = {}
    seen_caps: dict[int, int] = {}
    for line, cells in rows:
        try:
            if len(cells) < len(cols):
                raise ValueError(f"expected {len(cols)} columns, got {len(cells)}")
            cap_id = _int(cells[pos["audiocap_id"]], "audiocap_id")
            ytid = cells[pos["youtube_id"]]
            if not _YTID.match(ytid):
                raise ValueError(f"youtube id {ytid!r} has characters other than letters, digits, '-' and '_'")
            start = _int(cells[pos["start_time"]], "start_time")
            caption = cells[pos["caption"]]
            if not caption:
                raise ValueError("caption is empty")
            if cap_id in seen_caps:
                raise ValueError(f"duplicate audiocap_id {cap_id} (first at line {seen_caps[cap_id]})")
            seen_caps[cap_id] = line
        except ValueError as exc:
            problems.append((f"line {line}", str(exc)))
            continue
        key = (ytid, start) if group_captions else (f"{ytid}#{cap_id}", start)
        g = groups.setdefault(key, {"ytid": ytid, "start": start, "line": line, "captions": [], "cap_ids": []})
        g["captions"].append(caption)
        g["cap_ids"].append(cap_id)
    if problems:
        _raise_rows(str(p), problems)
    items = []
    for g in groups.values():
        cid = _clip_id(g["ytid"], g["start"])
        if not group_captions:
            cid = f"{cid}_{g['cap_ids'][0]}"
        fields = {"id": _clip_id(g["ytid"], g["start"]), "ytid": g["ytid"], "start": g["start"]}
        items.append(
            ManifestItem(
                id=cid,
                audio=_media(audio_dir, audio_pattern, **fields),
                video=_media(video_dir, video_pattern, **fields),
                start_s=None if trimmed else float(g["start"]),
                end_s=None if trimmed else float(g["start"]) + clip_seconds,
                captions=tuple(g["captions"]),
                split=split,
                extra={"youtube_id": g["ytid"], "youtube_start_s": g["start"], "audiocap_ids": g["cap_ids"]},
                row=g["line"],
            )
        )
    if not items:
        raise InputError(f"{p}: no captions")
    return Manifest(items, source=str(p), format="audiocaps")


# ------------------------------------------------------------------------------------------------
# generic csv
# ------------------------------------------------------------------------------------------------

_GENERIC_KNOWN = ("id", "image", "video", "audio", "caption", "captions", "label", "labels", "split", "start_s", "end_s")


def read_generic_csv(path: str | os.PathLike, *, root: str | os.PathLike | None = None) -> Manifest:
    """A csv with a header. Media columns ``image``, ``video``, ``audio`` (at least one; relative
    paths are taken from ``root``, default the csv's folder); optional ``id`` (default: the stem of
    the first media path), ``caption``/``captions`` and ``label``/``labels`` (several separated by
    ``|``), ``split``, ``start_s``/``end_s`` (seconds). Other columns are kept in ``extra``.
    """
    p, text = _read_text(path, "manifest csv")
    base = Path(root).expanduser() if root is not None else p.parent
    rows = _csv_rows(text)
    try:
        header_line, header = next(rows)
    except StopIteration:
        raise InputError(f"{p}: the csv is empty") from None
    cols = [c.lower() for c in header]
    dupes = sorted({c for c in cols if cols.count(c) > 1})
    if dupes:
        raise InputError(f"{p}: line {header_line}: header repeats column(s) {', '.join(dupes)}")
    media_cols = [c for c in ("image", "video", "audio") if c in cols]
    if not media_cols:
        raise InputError(
            f"{p}: line {header_line}: header needs at least one of image, video, audio "
            f"(has {', '.join(cols)})"
        )
    items: list[ManifestItem] = []
    problems: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for line, cells in rows:
        try:
            if len(cells) != len(cols):
                raise ValueError(f"expected {len(cols)} columns, got {len(cells)}")
            row = dict(zip(cols, cells))
            media: dict[str, str | None] = {}
            for c in ("image", "video", "audio"):
                v = row.get(c, "")
                media[c] = str(base / v) if v and not Path(v).is_absolute() else (v or None)
            if not any(media.values()):
                raise ValueError(f"no media path (columns {', '.join(media_cols)} are all empty)")
            item_id = row.get("id") or Path(next(v for v in media.values() if v)).stem
            if item_id in seen:
                raise ValueError(f"duplicate id {item_id!r} (first at line {seen[item_id]})")
            start = _float(row["start_s"], "start_s") if row.get("start_s") else None
            end = _float(row["end_s"], "end_s") if row.get("end_s") else None
            if start is not None and start < 0:
                raise ValueError(f"start_s {start} is negative")
            if start is not None and end is not None and end <= start:
                raise ValueError(f"end_s {end} is not after start_s {start}")
            if end is not None and end <= 0:
                raise ValueError(f"end_s {end} is not positive")
            labels = [x.strip() for x in (row.get("labels") or row.get("label") or "").split(_LIST_SEP) if x.strip()]
            captions = [x.strip() for x in (row.get("captions") or "").split(_LIST_SEP) if x.strip()]
            if row.get("caption"):
                captions.insert(0, row["caption"])
            extra = {c: v for c, v in row.items() if c not in _GENERIC_KNOWN and v != ""}
        except ValueError as exc:
            problems.append((f"line {line}", str(exc)))
            continue
        seen[item_id] = line
        items.append(
            ManifestItem(
                id=item_id, image=media["image"], video=media["video"], audio=media["audio"],
                start_s=start, end_s=end, labels=tuple(labels), captions=tuple(captions),
                split=row.get("split") or None, extra=extra, row=line,
            )
        )
    if problems:
        _raise_rows(str(p), problems)
    if not items:
        raise InputError(f"{p}: no rows after the header")
    return Manifest(items, source=str(p), format="csv")


# ------------------------------------------------------------------------------------------------
# foleykit jsonl, dispatch
# ------------------------------------------------------------------------------------------------


#: Media looked up as ``<media_dir>/<id><suffix>`` for items that name none (protocol manifests).
MEDIA_SUFFIXES = {"video": (".mp4", ".mkv", ".webm", ".mov", ".avi"), "image": (".jpg", ".jpeg", ".png"),
                  "audio": (".wav", ".flac")}


def find_media(media_dir: str | os.PathLike, item_id: str) -> dict[str, str]:
    """``{"video"|"image"|"audio": path}`` of the files named ``<id>.<suffix>`` in ``media_dir``."""
    root = Path(media_dir).expanduser()
    found: dict[str, str] = {}
    for kind, suffixes in MEDIA_SUFFIXES.items():
        for suffix in suffixes:
            cand = root / f"{item_id}{suffix}"
            if cand.is_file():
                found[kind] = str(cand)
                break
    return found


def read_manifest_jsonl(path: str | os.PathLike, *, media_dir: str | os.PathLike | None = None) -> Manifest:
    """foleykit's JSON-lines manifest (:meth:`Manifest.write_jsonl`): one item object per line.

    Relative media paths are taken from the manifest's folder. An item naming no media (a protocol
    manifest, ``foleykit protocol``) takes ``<media_dir>/<id>.mp4|.jpg|.png|.wav|...``.
    """
    p, text = _read_text(path, "manifest jsonl")
    base = p.parent
    if media_dir is not None and not Path(media_dir).expanduser().is_dir():
        raise InputError(f"--media-dir {media_dir}: not a folder")
    items: list[ManifestItem] = []
    problems: list[tuple[str, str]] = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
                raise ValueError("not an object with a non-empty string 'id'")
            for key in ("image", "video", "audio"):
                if isinstance(data.get(key), str) and data[key] and not Path(data[key]).expanduser().is_absolute():
                    data[key] = os.path.normpath(base / data[key])
            if media_dir is not None and not any(data.get(k) for k in ("image", "video", "audio")):
                data.update(find_media(media_dir, data["id"]))
                if not any(data.get(k) for k in ("image", "video", "audio")):
                    raise ValueError(f"no {data['id']}.mp4/.jpg/.png/.wav (or similar) in {media_dir}")
            item = ManifestItem.from_dict(data, row=line)
            if not (item.image or item.video or item.audio):
                raise ValueError("no image, video or audio path (a protocol manifest: give --media-dir)")
        except (ValueError, TypeError) as exc:
            problems.append((f"line {line}", str(exc).split("\n")[0]))
            continue
        items.append(replace(item, row=line))
    problems += _duplicate_rows(items, "line")  # every bad row in one pass, duplicates too
    if problems:
        _raise_rows(str(p), problems)
    if not items:
        raise InputError(f"{p}: no items")
    return Manifest(items, source=str(p), format="jsonl")


FORMATS = ("auto", "vggsound", "vggss", "audiocaps", "csv", "jsonl")


def detect_format(path: str | os.PathLike) -> str:
    """Guess the manifest format from the extension and the first line."""
    p = Path(path).expanduser()
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        return "jsonl"
    if suffix == ".json":
        return "vggss"
    if suffix != ".csv":
        raise InputError(f"{p}: cannot tell the manifest format from {suffix!r}; pass the format (one of {', '.join(FORMATS[1:])})")
    try:
        with open(p, encoding="utf-8-sig") as f:
            first = f.readline()
    except OSError as exc:
        raise InputError(f"cannot read manifest {p}: {exc.strerror or exc}") from None
    cells = [c.strip().lower() for c in next(csv.reader([first]), [])]
    if "audiocap_id" in cells:
        return "audiocaps"
    if any(c in ("image", "video", "audio") for c in cells):
        return "csv"
    if (len(cells) == 4 and cells[1].isdigit()) or (len(cells) == 2 and cells[0].endswith(".mp4")):
        return "vggsound"
    raise InputError(f"{p}: cannot tell which csv manifest this is from its first line; pass the format")


def read_manifest(path: str | os.PathLike, format: str = "auto", **options: Any) -> Manifest:
    """Read any supported manifest; ``options`` go to the format's reader (media folders, patterns)."""
    if format not in FORMATS:
        raise InputError(f"unknown manifest format {format!r}; choose one of {', '.join(FORMATS)}")
    fmt = detect_format(path) if format == "auto" else format
    readers = {
        "vggsound": read_vggsound_csv,
        "vggss": read_vggss_json,
        "audiocaps": read_audiocaps_csv,
        "csv": read_generic_csv,
        "jsonl": read_manifest_jsonl,
    }
    try:
        return readers[fmt](path, **options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise InputError(f"manifest format {fmt}: {exc}") from None
        raise
