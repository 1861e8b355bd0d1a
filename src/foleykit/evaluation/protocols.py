"""Benchmark protocols: which clips, which audio front end and which metrics make one of the papers' tables.

A :class:`BenchmarkProtocol` names a test set, the reader that builds its manifest from the public
annotation file (:mod:`foleykit.data.manifests`), the deterministic front end its audio goes through
(:mod:`.audio_frontend`: mono = mean of channels, DC removed, soxr HQ, then the clip length) and the
metrics it supports. ``evaluate(..., protocol=NAME)`` / ``foleykit evaluate --protocol NAME`` run
under it; ``foleykit protocol NAME SOURCE -o manifest.jsonl`` writes its manifest.

| name | source | front end | from |
|---|---|---|---|
| ``vggsound-test`` | ``vggsound.csv`` (or ``test.csv``) | 10 s | V2A-Mapper Tab. 1: 15,446 clips |
| ``vggsound-test-mmaudio`` | the same | 8 s, truncated only | MMAudio Tab. 1 (its own 15,221-clip list) |
| ``vggsound-i2a`` | ``vggsound.csv`` minus ``vggss.json`` | 10.24 s | SS2A Tab. 1: 10,288 clips |
| ``vggss-single`` | ``vggss.json``, entries with one box | 10.24 s | SS2A Tab. 2: 455 held-out pairs |
| ``vggss-multi`` | ``vggss.json``, entries with 2+ boxes | 10.24 s | SS2A Tab. 2: 38 held-out pairs |
| ``imagehear`` | the folder of ImageHear images | 10.24 s | V2A-Mapper / SS2A: 101 images, CS only |
| ``audiocaps-test`` | AudioCaps ``test.csv`` | 10 s | 975 clips x 5 captions |

VGG-SS has no official split. SS2A held out a random 500 of its 5,158 clips (455 single-source and
38 multi-source) and did not publish the ids. Here, single- and multi-source are told apart by the
number of usable annotated boxes (one sounding source per box; the broken boxes that
:func:`~foleykit.data.manifests.read_vggss_json` drops do not count). Pass ``ids`` to keep a
held-out subset. On the whole file the split is 4,619 single-source and 539 multi-source entries.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..data.manifests import (
    Manifest,
    ManifestItem,
    _raise_rows,
    read_audiocaps_csv,
    read_vggss_json,
    read_vggsound_csv,
)
from ..errors import InputError
from .audio_frontend import PROTOCOLS, Protocol
from .pairing import IMAGE_EXTENSIONS

#: ImageHear's 30 classes (file stem = class + index), per im2wav's ``Data/ImageHear``.
IMAGEHEAR_CLASSES = (
    "accordion", "bass", "bells", "bird", "bongo", "car", "cat", "chicken", "cow", "cricket",
    "dog", "drums", "duck", "flute", "frog", "guitar", "gun", "harmonica", "horse", "lion",
    "motorcycle", "people", "piano", "police", "rain", "saxophone", "sheep", "train", "trumpet",
    "waterfall",
)  # fmt: skip
_IMAGEHEAR_NAME = re.compile(r"^(?P<cls>[A-Za-z][A-Za-z _-]*?)[ _-]?(?P<index>\d*)$")
_SHOWN = 8

_PAIRED = ("fd", "fad", "c_fad", "kl_softmax", "kl_sigmoid", "is", "ssms")
_SS2A_METRICS = ("fad", "c_fad", "clip_score", "ssms")


@dataclass(frozen=True)
class BenchmarkProtocol:
    """A test set with its front end and metrics. ``expected_items``: the size the papers report."""

    name: str
    dataset: str
    source: str
    frontend: Protocol
    metrics: tuple[str, ...]
    reference_audio: bool
    expected_items: int | None
    papers: str
    note: str

    def frontend_settings(self) -> dict[str, Any]:
        """The deterministic front end its audio gets: mono, DC removal, resampler, clip length, padding."""
        f = self.frontend
        return {
            "frontend": f.name,
            "mono": f.mono,
            "dc_removal": f.dc_removal,
            "resampler": f.resampler,
            "seconds": f.seconds,
            "pad_short_clips": f.pad,
        }

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["metrics"] = list(self.metrics)
        out["frontend"] = self.frontend_settings()
        return out

    def build(self, source: str | os.PathLike, **options: Any) -> Manifest:
        """The protocol's manifest from its ``source`` file or folder (``options`` go to the builder)."""
        return _BUILDERS[self.name](source, **options)


BENCHMARKS: dict[str, BenchmarkProtocol] = {
    b.name: b
    for b in (
        BenchmarkProtocol(
            "vggsound-test", "VGGSound test split", "vggsound.csv (or test.csv)",
            PROTOCOLS["v2a-mapper"], _PAIRED + ("clip_score",), True, 15_446,
            "V2A-Mapper Tab. 1 (FD, FAD, CS)",
            "CS pairs each clip with its frame(s): images named like the clip",
        ),
        BenchmarkProtocol(
            "vggsound-test-mmaudio", "VGGSound test split, 8 s", "vggsound.csv (or test.csv)",
            PROTOCOLS["mmaudio"], ("fd", "fad", "kl_softmax", "is"), True, 15_221,
            "MMAudio Tab. 1 (FD_PANNs, FD_VGG, KL_PANNs, IS)",
            "MMAudio evaluates its own 15,221-clip list (sets/vgg-test.tsv); the official split has 15,446",
        ),
        BenchmarkProtocol(
            "vggsound-i2a", "VGGSound test split minus VGG-SS", "vggsound.csv + exclude=vggss.json",
            PROTOCOLS["ssv2a"], _SS2A_METRICS, True, 10_288,
            "SS2A Tab. 1 (V-FAD, C-FAD, CS, SSMS)",
            "SS2A's image-to-audio test: the VGGSound test clips that are not in VGG-SS",
        ),
        BenchmarkProtocol(
            "vggss-single", "VGG-SS single-source", "vggss.json",
            PROTOCOLS["ssv2a"], _SS2A_METRICS, True, 455,
            "SS2A Tab. 2, single-source (V-FAD, C-FAD, CS, SSMS)",
            "entries with one usable box; SS2A's 455 are a random held-out subset whose ids are unpublished",
        ),
        BenchmarkProtocol(
            "vggss-multi", "VGG-SS multi-source", "vggss.json",
            PROTOCOLS["ssv2a"], _SS2A_METRICS, True, 38,
            "SS2A Tab. 2, multi-source (V-FAD, C-FAD, CS, SSMS)",
            "entries with 2+ usable boxes; CS averages one crop per source (images <id>_<k>.png);"
            " SS2A's 38 are a random held-out subset whose ids are unpublished",
        ),
        BenchmarkProtocol(
            "imagehear", "ImageHear", "the folder of ImageHear images (<class><index>.jpg)",
            PROTOCOLS["ssv2a"], ("clip_score",), False, 101,
            "V2A-Mapper Tab. 1, SS2A Tab. 2 (CS only)",
            "no reference audio, and 101 clips cannot support a Fréchet distance: CLIP score only;"
            " 10.24 s as SS2A's CS code (V2A-Mapper generated 10 s)",
        ),
        BenchmarkProtocol(
            "audiocaps-test", "AudioCaps test split", "AudioCaps test.csv",
            PROTOCOLS["v2a-mapper"], ("fd", "fad", "c_fad", "kl_softmax", "kl_sigmoid", "is", "clap_score"),
            True, 975,
            "Sounding that Object Tab. 1 (FAD, KL, IS; its ACC needs AudioSet labels the csv lacks)",
            "captions for the CLAP score: write them with --captions-out",
        ),
    )
}


def get_benchmark(name: str | BenchmarkProtocol) -> BenchmarkProtocol:
    if isinstance(name, BenchmarkProtocol):
        return name
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise InputError(f"unknown benchmark protocol {name!r}; choose one of {', '.join(BENCHMARKS)}") from None


def resolve_protocol(protocol: str | Protocol | BenchmarkProtocol) -> tuple[Protocol, BenchmarkProtocol | None]:
    """``(front end, benchmark or None)`` for a benchmark name, a front-end name or either object."""
    if isinstance(protocol, BenchmarkProtocol):
        return protocol.frontend, protocol
    if isinstance(protocol, Protocol):
        return protocol, None
    if protocol in BENCHMARKS:
        return BENCHMARKS[protocol].frontend, BENCHMARKS[protocol]
    if protocol in PROTOCOLS:
        return PROTOCOLS[protocol], None
    raise InputError(
        f"unknown evaluation protocol {protocol!r}; choose a benchmark ({', '.join(BENCHMARKS)}) "
        f"or a front end ({', '.join(PROTOCOLS)})"
    )


# ------------------------------------------------------------------------------------------------
# builders
# ------------------------------------------------------------------------------------------------


def _listing(ids: list[str]) -> str:
    return ", ".join(ids[:_SHOWN]) + (f" (+{len(ids) - _SHOWN} more)" if len(ids) > _SHOWN else "")


def _count_note(n: int, protocol: str) -> list[str]:
    expected = BENCHMARKS[protocol].expected_items
    if expected is None or n == expected:
        return []
    return [f"{n} items; the published {protocol} set has {expected}"]


def _with(manifest: Manifest, items: list[ManifestItem], notes: list[str]) -> Manifest:
    return Manifest(items, source=manifest.source, format=manifest.format,
                    notes=list(manifest.notes) + notes, row_name=manifest.row_name)


def build_vggsound_test(
    path: str | os.PathLike,
    *,
    exclude: str | os.PathLike | None = None,
    protocol: str = "vggsound-test",
    video_dir: str | os.PathLike | None = None,
    audio_dir: str | os.PathLike | None = None,
    **options: Any,
) -> Manifest:
    """VGGSound's test split; ``exclude`` (a VGG-SS json) drops VGG-SS clips, as SS2A's I2A test does."""
    m = read_vggsound_csv(path, split="test", video_dir=video_dir, audio_dir=audio_dir, **options)
    notes: list[str] = []
    items = list(m)
    if exclude is not None:
        vggss = set(read_vggss_json(exclude).ids)
        items = [it for it in m if it.id not in vggss]
        absent = len(vggss) - (len(m) - len(items))
        notes.append(
            f"{len(m) - len(items)} VGG-SS clips removed"
            + (f" ({absent} VGG-SS ids are not in this test split)" if absent else "")
        )
        if not items:
            raise InputError(f"{path}: no test clips are left after removing the VGG-SS clips of {exclude}")
    return _with(m, items, notes + _count_note(len(items), protocol))


def build_vggsound_i2a(path: str | os.PathLike, *, exclude: str | os.PathLike | None = None, **options: Any) -> Manifest:
    """SS2A's image-to-audio test: VGGSound test minus the clips of VGG-SS (``exclude`` = ``vggss.json``)."""
    if exclude is None:
        raise InputError("vggsound-i2a is the VGGSound test split minus VGG-SS: pass the VGG-SS json to exclude")
    return build_vggsound_test(path, exclude=exclude, protocol="vggsound-i2a", **options)


def build_vggss(
    path: str | os.PathLike,
    *,
    sources: str,
    ids: Iterable[str] | None = None,
    **options: Any,
) -> Manifest:
    """VGG-SS entries with one usable box (``sources="single"``) or several (``"multi"``).

    Each item's ``extra["sources"]`` holds its box count. Entries left without a usable box belong to
    neither split and are named in the notes, as are entries that a dropped box moved from multi- to
    single-source.
    """
    if sources not in ("single", "multi"):
        raise InputError(f"VGG-SS split must be 'single' or 'multi', got {sources!r}")
    m = read_vggss_json(path, **options)
    if ids is not None:
        m = m.select(ids=[i.strip() for i in ids if i.strip()])
    no_box = [it.id for it in m if not it.boxes]
    moved = [it.id for it in m if len(it.boxes) == 1 and it.extra.get("dropped_boxes")]
    want_multi = sources == "multi"
    items = [replace(it, extra={**it.extra, "sources": len(it.boxes)})
             for it in m if it.boxes and (len(it.boxes) > 1) == want_multi]
    notes = []
    if no_box:
        notes.append(f"{len(no_box)} entries have no usable box and are in neither split: {_listing(no_box)}")
    if moved:
        notes.append(f"{len(moved)} entries are single-source only after dropping broken boxes: {_listing(moved)}")
    if not items:
        raise InputError(f"{m.source}: no {sources}-source entries (of {len(m)})")
    return _with(m, items, notes + _count_note(len(items), f"vggss-{sources}"))


def build_imagehear(
    folder: str | os.PathLike,
    *,
    image_dir: str | os.PathLike | None = None,
) -> Manifest:
    """ImageHear: one item per image, its class taken from the file name (``dog1.jpg`` -> ``dog``).

    Names that are not ``<class><index>`` and two images with the same stem are errors, listed
    together; unknown classes, other files and a count other than 101 images / 30 classes are notes.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InputError(f"ImageHear folder not found: {root}")
    base = Path(image_dir).expanduser() if image_dir is not None else root
    files = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    others = [p.name for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS]
    problems: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    items: list[ManifestItem] = []
    for p in images:
        match = _IMAGEHEAR_NAME.match(p.stem)
        if match is None:
            problems.append((p.name, "name is not <class><index> (e.g. dog1.jpg)"))
            continue
        if p.stem in seen:
            problems.append((p.name, f"same name as {seen[p.stem]}"))
            continue
        seen[p.stem] = p.name
        cls = match["cls"].strip(" _-").lower()
        items.append(ManifestItem(
            id=p.stem, image=str(base / p.name), labels=(cls,), split="test",
            extra={"index": int(match["index"])} if match["index"] else {},
        ))
    if problems:
        _raise_rows(str(root), problems, what="bad image names")
    if not items:
        raise InputError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    classes = sorted({it.labels[0] for it in items})
    unknown = [c for c in classes if c not in IMAGEHEAR_CLASSES]
    notes = _count_note(len(items), "imagehear")
    if len(classes) != len(IMAGEHEAR_CLASSES):
        notes.append(f"{len(classes)} classes; ImageHear has {len(IMAGEHEAR_CLASSES)}")
    if unknown:
        notes.append(f"classes not in ImageHear: {_listing(unknown)}")
    if others:
        notes.append(f"{len(others)} non-image files ignored: {_listing(others)}")
    return Manifest(items, source=str(root), format="imagehear", notes=notes)


def build_audiocaps_test(path: str | os.PathLike, **options: Any) -> Manifest:
    """AudioCaps' test csv, the captions of a clip grouped (5 per clip in v1 and v2.0)."""
    m = read_audiocaps_csv(path, split="test", **options)
    odd = [it.id for it in m if len(it.captions) != 5]
    notes = [f"{len(odd)} clips do not have 5 captions: {_listing(odd)}"] if odd else []
    return _with(m, list(m), notes + _count_note(len(m), "audiocaps-test"))


_BUILDERS: dict[str, Callable[..., Manifest]] = {
    "vggsound-test": build_vggsound_test,
    "vggsound-test-mmaudio": lambda path, **kw: build_vggsound_test(path, protocol="vggsound-test-mmaudio", **kw),
    "vggsound-i2a": build_vggsound_i2a,
    "vggss-single": lambda path, **kw: build_vggss(path, sources="single", **kw),
    "vggss-multi": lambda path, **kw: build_vggss(path, sources="multi", **kw),
    "imagehear": build_imagehear,
    "audiocaps-test": build_audiocaps_test,
}


def build_manifest(protocol: str | BenchmarkProtocol, source: str | os.PathLike, **options: Any) -> Manifest:
    """The manifest of ``protocol`` built from ``source``; unknown options are one-line errors."""
    bench = get_benchmark(protocol)
    try:
        return bench.build(source, **options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise InputError(f"protocol {bench.name}: {exc}") from None
        raise


def write_captions_csv(manifest: Manifest, path: str | os.PathLike) -> Path:
    """``name,caption`` rows (one per caption) for the CLAP score, named by item id."""
    import csv
    import io

    from ..io.atomic import atomic_path

    rows = [(it.id, c) for it in manifest for c in it.captions]
    if not rows:
        raise InputError(f"{manifest.source or 'manifest'} has no captions to write")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("name", "caption"))
    writer.writerows(rows)
    out = Path(path).expanduser()
    with atomic_path(out) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    return out
