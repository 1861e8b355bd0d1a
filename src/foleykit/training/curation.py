"""Single-source curation (the SS2A paper's VGGSS3 idea) over detection results.

A clip is *single-source* when the set of object classes detected in its sampled frames is one
class, and that class is seen in enough of the frames. The released SSV2A code keeps, per video,
the frames whose detected class set equals the clip's signature set (YOLO at 4 fps, confidence 0.5);
the curated VGGSS3 set itself was never released. This module does the same over any detector:

* ``detector``: a callable ``frames -> per-frame detections`` (a detection is ``(label, score)``, a
  dict with ``label``/``score`` (and optionally ``box``), or an object with those attributes); or
* ``detections``: precomputed results ``{item id: [per-frame detections, ...]}`` (e.g. from a
  detector run elsewhere, read with :func:`read_detections_jsonl`).

Each clip gets a :class:`ClipDecision` with a reason code:

``kept``               one class, visible in at least ``min_frame_fraction`` of the sampled frames
``no_source``          nothing detected above ``min_score`` in any frame
``multiple_classes``   more than one class detected across the frames (the detail lists them)
``unstable``           one class, but seen in too few frames
``too_many_instances`` more than ``max_instances`` boxes of the class in one frame (off by default)
``label_mismatch``     the class does not map to the clip's label (only with ``label_map``)
``unreadable``         the media could not be decoded (the detail says why)

:func:`curate` runs over a manifest resumably (decisions are appended per chunk, fsync'ed, and
deduplicated on resume) and writes ``decisions.jsonl``, the kept items as a foleykit manifest
(``curated.jsonl``, with the source class and the frames that show it) and ``report.json``
(counts per reason and examples).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..data.manifests import Manifest, ManifestItem
from ..errors import InputError, OutputError
from ..io._checks import one_line
from .extraction import write_durable

REASONS = ("kept", "no_source", "multiple_classes", "unstable", "too_many_instances", "label_mismatch", "unreadable")
FORMAT = "foleykit-curation"

Detection = Any  # (label, score) | {"label", "score", ...} | object with .label/.score
Detector = Callable[[list[Any]], Sequence[Sequence[Detection]]]


@dataclass
class CurationConfig:
    """How frames are sampled and what counts as single-source.

    Frames: ``fps`` per second of the window (SSV2A: 4), capped at ``max_frames``; or exactly
    ``num_frames`` when set. An image is one frame.
    """

    fps: float | None = 4.0
    num_frames: int | None = None
    max_frames: int = 40
    min_score: float = 0.5
    min_frame_fraction: float = 1.0
    max_instances: int | None = None
    ignore_classes: tuple[str, ...] = ()
    label_map: dict[str, str] | None = None  # detector class -> dataset label (None: no label check)
    frame_max_side: int | None = 640
    chunk_size: int = 64  # decisions made durable this many clips at a time

    def __post_init__(self) -> None:
        self.ignore_classes = tuple(self.ignore_classes)
        if self.num_frames is None and (self.fps is None or not self.fps > 0):
            raise InputError("give fps > 0 or num_frames")
        if self.num_frames is not None and self.num_frames < 1:
            raise InputError(f"num_frames must be positive, got {self.num_frames}")
        if not 0.0 < self.min_frame_fraction <= 1.0:
            raise InputError(f"min_frame_fraction must be in (0, 1], got {self.min_frame_fraction}")
        if not 0.0 <= self.min_score <= 1.0:
            raise InputError(f"min_score must be in [0, 1], got {self.min_score}")
        if self.max_frames < 1 or self.chunk_size < 1:
            raise InputError("max_frames and chunk_size must be positive")

    def frames_for(self, duration_s: float) -> int:
        if self.num_frames is not None:
            return self.num_frames
        return max(1, min(self.max_frames, math.floor(duration_s * float(self.fps) + 1e-9)))


@dataclass
class ClipDecision:
    id: str
    kept: bool
    reason: str
    detail: str = ""
    source_class: str | None = None
    frames: int = 0
    frames_with_source: list[int] = field(default_factory=list)  # indices of frames showing only the class
    classes: dict[str, int] = field(default_factory=dict)  # class -> frames it was detected in

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _parse(det: Detection) -> tuple[str, float]:
    if isinstance(det, Mapping):
        return str(det["label"]), float(det.get("score", 1.0))
    if isinstance(det, (tuple, list)):
        return str(det[0]), float(det[1]) if len(det) > 1 else 1.0
    return str(det.label), float(getattr(det, "score", 1.0))


def decide(item: ManifestItem, frame_detections: Sequence[Sequence[Detection]], config: CurationConfig) -> ClipDecision:
    """The single-source decision for one clip from its per-frame detections (pure function)."""
    n = len(frame_detections)
    if n == 0:
        return ClipDecision(item.id, False, "unreadable", "no frames", frames=0)
    per_frame: list[Counter] = []
    for dets in frame_detections:
        c: Counter = Counter()
        for d in dets:
            label, score = _parse(d)
            if score >= config.min_score and label not in config.ignore_classes:
                c[label] += 1
        per_frame.append(c)
    classes: Counter = Counter()
    for c in per_frame:
        classes.update(set(c))
    base = dict(frames=n, classes=dict(sorted(classes.items())))
    if not classes:
        return ClipDecision(item.id, False, "no_source", f"nothing above score {config.min_score} in {n} frames", **base)
    if len(classes) > 1:
        detail = ", ".join(f"{k} ({v}/{n} frames)" for k, v in sorted(classes.items(), key=lambda kv: (-kv[1], kv[0])))
        return ClipDecision(item.id, False, "multiple_classes", detail, **base)
    (cls,) = classes
    showing = [i for i, c in enumerate(per_frame) if set(c) == {cls}]
    base["source_class"] = cls
    base["frames_with_source"] = showing
    if len(showing) < config.min_frame_fraction * n - 1e-9:
        return ClipDecision(item.id, False, "unstable",
                            f"{cls} seen in {len(showing)}/{n} frames, need {config.min_frame_fraction:.0%}", **base)
    if config.max_instances is not None:
        most = max(c[cls] for c in per_frame)
        if most > config.max_instances:
            return ClipDecision(item.id, False, "too_many_instances",
                                f"{most} {cls} boxes in one frame (max {config.max_instances})", **base)
    if config.label_map is not None:
        mapped = config.label_map.get(cls)
        if mapped is None or mapped not in item.labels:
            return ClipDecision(item.id, False, "label_mismatch",
                                f"detected {cls} ({mapped or 'unmapped'}) but the clip is labelled {', '.join(item.labels) or '(none)'}",
                                **base)
    return ClipDecision(item.id, True, "kept", f"{cls} in {len(showing)}/{n} frames", **base)


def sample_frames(item: ManifestItem, config: CurationConfig) -> list[Any]:
    """The frames curation looks at: the image, or frames evenly spaced over the video window."""
    if item.image:
        from ..io.image import load_image

        img = load_image(item.image)
        if config.frame_max_side and max(img.size) > config.frame_max_side:
            img = img.copy()
            img.thumbnail((config.frame_max_side, config.frame_max_side))
        return [img]
    if item.video:
        from ..io.video import probe_video, read_frames

        info = probe_video(item.video)
        start = item.start_s or 0.0
        end = info.duration_s if item.end_s is None else min(item.end_s, info.duration_s)
        if end <= start:
            raise InputError(f"window [{start:g}, {item.end_s}) s is outside video {item.video}")
        return read_frames(item.video, config.frames_for(end - start), start_s=start, end_s=end,
                           max_side=config.frame_max_side)
    raise InputError("item has no image or video")


def owlv2_detector(models: Any = None, *, vocabulary: Sequence[str] | None = None, threshold: float = 0.2,
                   device: str = "auto", dtype: str | None = None, image_size: int | None = None) -> Detector:
    """A detector callable over foleykit's OWLv2 (the model set's ``detector`` role; open vocabulary,
    default: the shared list of sounding objects). ``threshold`` is OWLv2's score cut (its scores
    run lower than YOLO's: keep ``CurationConfig.min_score`` at or below it)."""
    from ..encoders.detector import SoundSourceDetector
    from ..errors import ModelNotAvailableError
    from ..model_sets import ModelSet, resolve_model_set

    ms = models if isinstance(models, ModelSet) else resolve_model_set(models)
    ref = ms.extra.get("detector")
    if ref is None:
        raise ModelNotAvailableError(f"model set {ms.name} has no detector")
    det = SoundSourceDetector.from_pretrained(ref, device=device, dtype=dtype, vocabulary=vocabulary,
                                              image_size=image_size)

    def detect(frames: list[Any]) -> list[list[Any]]:
        return [det.detect(f, threshold=threshold) for f in frames]

    return detect


def read_detections_jsonl(path: str | os.PathLike) -> dict[str, list[list[Detection]]]:
    """Precomputed detections: one ``{"id": ..., "frames": [[{"label", "score"}, ...], ...]}`` per line."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"detections file not found: {p}")
    out: dict[str, list[list[Detection]]] = {}
    bad: list[str] = []
    for n, line in enumerate(p.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            frames = rec["frames"]
            if not isinstance(frames, list) or not all(isinstance(f, list) for f in frames):
                raise ValueError("'frames' must be a list of per-frame lists")
            for f in frames:
                for d in f:
                    _parse(d)
            out[str(rec["id"])] = frames
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            bad.append(f"line {n}: {one_line(exc)}")
    if bad:
        raise InputError(f"{p}: {len(bad)} bad lines: {'; '.join(bad[:8])}")
    return out


@dataclass
class CurationReport:
    total: int
    kept: int
    dropped: dict[str, int]
    examples: dict[str, list[str]]
    out_dir: Path
    decisions: list[ClipDecision]

    def summary(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in self.dropped.items() if v)
        return f"kept {self.kept} of {self.total} clips" + (f"; dropped: {parts}" if parts else "")


def curate(
    manifest: Manifest,
    out_dir: str | os.PathLike,
    *,
    detector: Detector | None = None,
    detections: Mapping[str, Sequence[Sequence[Detection]]] | None = None,
    config: CurationConfig | None = None,
    restart: bool = False,
    progress: bool = True,
) -> CurationReport:
    """Decide every clip of ``manifest`` (resumable); write decisions, curated manifest and report."""
    from tqdm.auto import tqdm

    if (detector is None) == (detections is None):
        raise InputError("give exactly one of detector (a callable) or detections (precomputed results)")
    config = config or CurationConfig()
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    state_path, decisions_path = out / "curation.json", out / "decisions.jsonl"
    identity = {"format": FORMAT, "manifest": manifest.fingerprint,
                "config": {k: v for k, v in asdict(config).items() if k not in ("chunk_size",)}}
    if restart:
        for p in (state_path, decisions_path):
            if p.exists():
                p.unlink()
    if state_path.exists():
        old = json.loads(state_path.read_text())
        if old != json.loads(json.dumps(identity)):
            what = "of another manifest" if old.get("manifest") != manifest.fingerprint else "made with other settings"
            raise InputError(f"{out} holds a curation {what}; use a new folder or --restart")
    else:
        write_durable(state_path, (json.dumps(identity, indent=1, sort_keys=True) + "\n").encode())

    done: dict[str, ClipDecision] = {}
    if decisions_path.exists():
        for line in decisions_path.read_text().splitlines():
            try:
                d = ClipDecision(**json.loads(line))
            except (json.JSONDecodeError, TypeError):
                continue  # the torn last line of a killed run
            if d.id in manifest:
                done[d.id] = d
        # Rewrite without the torn line (and duplicates) before appending to it again.
        write_durable(decisions_path, "".join(json.dumps(d.to_dict(), sort_keys=True) + "\n"
                                              for d in done.values()).encode())
    todo = [it for it in manifest if it.id not in done]
    with tqdm(total=len(todo), desc="curate", unit="clip", disable=not progress) as bar:
        for start in range(0, len(todo), config.chunk_size):
            chunk = todo[start:start + config.chunk_size]
            made = [_decide_one(it, detector, detections, config) for it in chunk]
            _append_durable(decisions_path, "".join(json.dumps(d.to_dict(), sort_keys=True) + "\n" for d in made))
            for d in made:
                done[d.id] = d
            bar.update(len(chunk))
            bar.set_postfix(kept=sum(d.kept for d in done.values()))

    ordered = [done[it.id] for it in manifest]
    counts = Counter(d.reason for d in ordered)
    examples: dict[str, list[str]] = {}
    for d in ordered:
        if not d.kept and len(examples.setdefault(d.reason, [])) < 5:
            examples[d.reason].append(f"{d.id}: {d.detail}")
    kept_items = [
        replace(it, extra={**it.extra, "source_class": d.source_class, "source_frames": d.frames_with_source,
                           "curation_frames": d.frames})
        for it, d in zip(manifest, ordered) if d.kept
    ]
    report = {
        "format": FORMAT, "manifest": manifest.fingerprint, "total": len(ordered), "kept": counts.get("kept", 0),
        "dropped": {r: counts.get(r, 0) for r in REASONS if r != "kept"}, "examples": examples,
        "config": identity["config"],
    }
    if kept_items:
        Manifest(kept_items, source=str(out / "curated.jsonl"), format="jsonl").write_jsonl(out / "curated.jsonl")
    elif (out / "curated.jsonl").exists():
        (out / "curated.jsonl").unlink()
    write_durable(out / "report.json", (json.dumps(report, indent=1, sort_keys=True) + "\n").encode())
    return CurationReport(total=len(ordered), kept=report["kept"], dropped=report["dropped"], examples=examples,
                          out_dir=out, decisions=ordered)


def _decide_one(item: ManifestItem, detector: Detector | None, detections, config: CurationConfig) -> ClipDecision:
    try:
        if detections is not None:
            if item.id not in detections:
                return ClipDecision(item.id, False, "unreadable", "no detections given for this clip")
            frames = detections[item.id]
        else:
            images = sample_frames(item, config)
            frames = detector(images)
            if len(frames) != len(images):
                raise InputError(f"the detector returned {len(frames)} results for {len(images)} frames")
        return decide(item, frames, config)
    except InputError as exc:
        return ClipDecision(item.id, False, "unreadable", one_line(exc))
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # decoders and detectors fail in library-specific ways
        return ClipDecision(item.id, False, "unreadable", f"{type(exc).__name__}: {one_line(exc)}")


def _append_durable(path: Path, text: str) -> None:
    """Append whole lines and fsync, so a kill leaves at most a torn last line (ignored on resume)."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise OutputError(f"could not append to {path}: {exc.strerror or exc}; rerun to continue") from None


def curated_counts(decisions: Iterable[ClipDecision]) -> dict[str, int]:
    c = Counter(d.reason for d in decisions)
    return {r: c.get(r, 0) for r in REASONS}
