"""Resumable, deterministic embedding extraction over a manifest, written in safetensors shards.

Layout of an extraction folder::

    extraction.json                  what was asked (features, config, models, manifest fingerprint),
                                     which shards exist, which items were skipped and why, complete?
    shards/shard-000000.safetensors  items [0, S) of the manifest, shard-000001 items [S, 2S), ...
    runs.jsonl                       one line per invocation (timings; not part of the result)

Shard ``k`` holds the manifest items ``[k*S, (k+1)*S)`` that could be read: one tensor per feature
(``clip`` [n, D], ``clip_frames`` [n, F, D], ``clip_patches`` [n, P, D], ``clap`` [n, 512];
``clip_crops`` adds ``clip_crops`` [n, M, D], ``crop_padding_mask`` [n, M] and ``crop_boxes``
[n, M, 4]) plus ``index`` [n] (manifest positions). Its metadata records the ids, the skipped items
with the reason, and notes on items kept with a caveat (zero crops). Shards are built in memory,
written to a temporary file, fsync'ed and renamed into place, so a shard file either exists complete
or not at all: a killed run loses at most the shards in flight, and rerunning the same command
continues with the missing ones. Work is a pure function of (manifest items of the shard, config,
models), batches are cut the same way every time and metadata is serialised canonically, so an
interrupted-and-resumed run produces byte-identical shards (same machine, same device and thread
count). A different manifest (fingerprint), config or model under an existing folder is refused
rather than mixed in.

Features (``ExtractionConfig.features``):

* ``clip``: CLIP global embedding of the image, or of the video frame at the window's centre.
* ``clip_frames``: CLIP of ``num_frames`` frames evenly spaced over the window (an image is tiled).
* ``clip_mean``: the mean of those frame embeddings (V2A-Mapper's best aggregation σ; an image's
  own embedding).
* ``clip_patches``: CLIP patch tokens in the joint space (the grounding module's keys/values).
* ``clap``: CLAP of the audio file, or of the video's audio track, over the item's window
  (``audio_seconds`` from its start; CLAP's 10-s windows are averaged beyond that). Always the
  generator's own CLAP space (:class:`~foleykit.encoders.generator_clap.GeneratorClap`: AudioLDM's
  converted audio tower, space-checked against the generator's text tower); ``extraction.json``
  records it under ``models.clap.space`` (CLAP, generator, probe agreement, space fingerprint), and
  trainers refuse ``clap`` targets of any other space (:mod:`foleykit.training.provenance`).
* ``clip_crops``: CLIP of the sound-source regions of the image (or of the video frame at the
  window's centre, the one ``clip`` embeds), as SS2A perceives them. The boxes are the manifest's
  ``boxes`` (VGG-SS annotations) when the item has any (the first ``max_crops``); otherwise the
  model set's OWLv2 detector finds them (``detector_*`` settings, the sources pipeline's defaults).
  Each box is cropped and letterboxed exactly as the sources pipeline does
  (:func:`foleykit.io.image.crop_box`) and embedded like ``clip`` (same encoder, normalisation and
  batching). Stored as ``clip_crops`` [M, D] zero-padded, ``crop_padding_mask`` [M] bool (True =
  empty slot, the Remixer's ``padding_mask`` convention) and ``crop_boxes`` [M, 4] (normalised
  x0, y0, x1, y1; zero for empty slots), M = ``max_crops``. An item without boxes and without a
  detection keeps zero crops (mask all True) and gets a note; it is not skipped. Crops are cut from
  the frame as decoded (longer side at most ``frame_max_side``). Detection runs in the main process
  (one image at a time, so batching cannot change it); manifest-box crops are prepared by the loader
  workers.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.manifests import Manifest, ManifestItem
from ..encoders.clap import CLAP_SAMPLE_RATE, clap_windows
from ..encoders.detector import (
    DEFAULT_MAX_DETECTIONS,
    DEFAULT_MIN_AREA,
    DEFAULT_NMS_IOU,
    DEFAULT_THRESHOLD,
)
from ..errors import InputError, OutputError
from ..io._checks import one_line

FORMAT = "foleykit-embeddings"
FORMAT_VERSION = 1
FEATURES = ("clip", "clip_frames", "clip_mean", "clip_patches", "clap", "clip_crops")
_FRAME_FEATURES = ("clip_frames", "clip_mean")
_SINGLE_FEATURES = ("clip", "clip_patches")
#: Most crop slots per item: the Remixer has 64 slots (slot 0 holds the global image in SS2A).
MAX_CROPS_LIMIT = 64
#: Run fields that only matter (and only count for the run's identity) with ``clip_crops``.
_CROP_FIELDS = ("max_crops", "detector_threshold", "detector_max_detections", "detector_nms_iou",
                "detector_min_area", "detector_size")
#: Tensors the ``clip_crops`` feature writes besides ``clip_crops``, with their storage dtype.
_CROP_SIDE_TENSORS = {"crop_padding_mask": "bool", "crop_boxes": "float32"}
SHARD_DIR = "shards"
INDEX_FILE = "extraction.json"
RUNS_FILE = "runs.jsonl"


# ------------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------------


@dataclass
class ExtractionConfig:
    """What to extract. Fields marked (run) are part of the run's identity: changing them under an
    existing folder is refused. Batch sizes, workers and device only change speed.
    """

    features: tuple[str, ...] = ("clip", "clap")  # (run)
    clip_role: str = "clip"  # (run) model-set role: "clip" (ViT-L/14, SS2A) or "clip_mapper" (ViT-B/32)
    num_frames: int = 64  # (run) frames per window for clip_frames / clip_mean (SS2A: 64)
    shard_size: int = 1024  # (run) items per shard
    normalize: bool = True  # (run) L2-normalise CLIP vectors (CLAP vectors are always unit)
    storage_dtype: str = "float32"  # (run) float32 | float16
    audio_seconds: float | None = 10.0  # (run) CLAP over [start, start + this); None = whole window
    frame_max_side: int | None = 448  # (run) downscale decoded frames to this longer side first
    require_frames: bool = True  # (run) skip videos whose window has fewer frames than num_frames
    reject_silent: bool = True  # (run) skip silent audio (peak below -80 dBFS)
    max_crops: int = DEFAULT_MAX_DETECTIONS  # (run) M: crop slots per item for clip_crops (1..64)
    detector_threshold: float = DEFAULT_THRESHOLD  # (run) OWLv2 score cut (items without manifest boxes)
    detector_max_detections: int | None = None  # (run) detections kept per item, <= max_crops (None = max_crops)
    detector_nms_iou: float = DEFAULT_NMS_IOU  # (run) class-agnostic NMS IoU
    detector_min_area: float = DEFAULT_MIN_AREA  # (run) smallest box kept, as a fraction of the image
    detector_size: int | None = None  # (run) OWLv2 input side (None = the checkpoint's, 960 for OWLv2 base)
    batch_size: int = 64  # images per CLIP forward (crops too)
    audio_batch_size: int = 16  # 10-s windows per CLAP forward
    num_workers: int = 0  # media-decoding processes (0 = in this process)
    prefetch_items: int = 4  # items each worker decodes ahead

    def __post_init__(self) -> None:
        self.features = tuple(self.features)
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown or not self.features:
            raise InputError(f"unknown feature(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(FEATURES)}")
        if len(set(self.features)) != len(self.features):
            raise InputError(f"features repeat: {', '.join(self.features)}")
        if self.clip_role not in ("clip", "clip_mapper"):
            raise InputError(f"clip_role must be 'clip' or 'clip_mapper', got {self.clip_role!r}")
        if self.storage_dtype not in ("float32", "float16"):
            raise InputError(f"storage_dtype must be float32 or float16, got {self.storage_dtype!r}")
        for name in ("num_frames", "shard_size", "batch_size", "audio_batch_size", "prefetch_items"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise InputError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise InputError(f"num_workers must be >= 0, got {self.num_workers!r}")
        if self.audio_seconds is not None and not self.audio_seconds > 0:
            raise InputError(f"audio_seconds must be positive or None, got {self.audio_seconds}")
        if self.frame_max_side is not None and self.frame_max_side < 16:
            raise InputError(f"frame_max_side must be at least 16, got {self.frame_max_side}")
        self._check_crop_fields()

    def _check_crop_fields(self) -> None:
        def integer(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def number(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        m = self.max_crops
        if not integer(m) or not 1 <= m <= MAX_CROPS_LIMIT:
            raise InputError(f"max_crops must be an integer from 1 to {MAX_CROPS_LIMIT} (crop slots per item), "
                             f"got {m!r}")
        if self.detector_max_detections is None:
            self.detector_max_detections = m  # the defaults (8 and 8) are the sources pipeline's
        d = self.detector_max_detections
        if not integer(d) or not 1 <= d <= m:
            raise InputError(f"detector_max_detections must be an integer from 1 to max_crops ({m}), got {d!r}")
        if not number(self.detector_threshold) or not 0.0 <= self.detector_threshold <= 1.0:
            raise InputError(f"detector_threshold must be in [0, 1], got {self.detector_threshold!r}")
        if not number(self.detector_nms_iou) or not 0.0 < self.detector_nms_iou <= 1.0:
            raise InputError(f"detector_nms_iou must be in (0, 1], got {self.detector_nms_iou!r}")
        if not number(self.detector_min_area) or not 0.0 <= self.detector_min_area < 1.0:
            raise InputError(f"detector_min_area must be in [0, 1), got {self.detector_min_area!r}")
        if self.detector_size is not None and (not integer(self.detector_size) or self.detector_size < 16):
            raise InputError(f"detector_size must be None or an integer of at least 16 pixels, "
                             f"got {self.detector_size!r}")

    RUN_FIELDS = ("features", "clip_role", "num_frames", "shard_size", "normalize", "storage_dtype",
                  "audio_seconds", "frame_max_side", "require_frames", "reject_silent", *_CROP_FIELDS)

    def run_fields(self) -> dict[str, Any]:
        d = asdict(self)
        out = {k: d[k] for k in self.RUN_FIELDS}
        out["features"] = list(self.features)
        if not self.needs_frames:
            out.pop("num_frames")  # irrelevant, so changing it is harmless
        if not self.needs_crops:
            for k in _CROP_FIELDS:  # likewise (and folders made before clip_crops existed keep their identity)
                out.pop(k)
        return out

    @property
    def needs_clip(self) -> bool:
        return any(f.startswith("clip") for f in self.features)

    @property
    def needs_frames(self) -> bool:
        return any(f in self.features for f in _FRAME_FEATURES)

    @property
    def needs_clap(self) -> bool:
        return "clap" in self.features

    @property
    def needs_crops(self) -> bool:
        return "clip_crops" in self.features

    @property
    def torch_storage_dtype(self) -> torch.dtype:
        return torch.float16 if self.storage_dtype == "float16" else torch.float32

    def tensor_dtype(self, name: str) -> str:
        """Storage dtype of a shard tensor: ``storage_dtype`` for embeddings, fixed for the crop side tensors."""
        return _CROP_SIDE_TENSORS.get(name, self.storage_dtype)


# ------------------------------------------------------------------------------------------------
# media loading (runs in loader workers): decode + model preprocessing, never model forward
# ------------------------------------------------------------------------------------------------


@dataclass
class LoadedItem:
    """One decoded and preprocessed item, or the reason it could not be."""

    index: int
    id: str
    single: torch.Tensor | None = None  # [1, 3, H, W] pixels for clip / clip_patches
    frames: torch.Tensor | None = None  # [F or 1, 3, H, W] pixels for clip_frames (1 = a still image)
    audio: dict[str, torch.Tensor] | None = None  # CLAP feature-extractor outputs, W windows
    crops: torch.Tensor | None = None  # [K, 3, H, W] pixels of the K <= max_crops source crops (clip_crops)
    crop_boxes: torch.Tensor | None = None  # [K, 4] their normalised boxes
    detect_image: Any = None  # the decoded frame (PIL) when its boxes must come from the detector
    notes: list[str] = field(default_factory=list)  # kept, with a caveat (e.g. zero crops)
    error: str | None = None


def read_video_audio(path: str | os.PathLike, start_s: float = 0.0, end_s: float | None = None) -> tuple[np.ndarray, int]:
    """The first audio track of a video as mono float32 at its own rate, cut to [start_s, end_s)
    (:func:`foleykit.io.video.read_video_audio`; imported here so PyAV loads only when needed)."""
    from ..io.video import read_video_audio as read

    return read(path, start_s, end_s)


def _silence_peak() -> float:
    from ..io.audio import SILENCE_PEAK

    return SILENCE_PEAK


class MediaLoader(torch.utils.data.Dataset):
    """Decodes and preprocesses the manifest items of a work list; picklable for loader workers."""

    def __init__(self, work: Sequence[tuple[int, ManifestItem]], config: ExtractionConfig,
                 clip_processor: Any = None, clap_feature_extractor: Any = None) -> None:
        self.work = list(work)
        self.config = config
        self.clip_processor = clip_processor
        self.clap_fe = clap_feature_extractor

    def __len__(self) -> int:
        return len(self.work)

    def __getitem__(self, k: int) -> LoadedItem:
        index, item = self.work[k]
        out = LoadedItem(index=index, id=item.id)
        try:
            self._load(item, out)
        except InputError as exc:
            out.error = one_line(exc)
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:  # decoders fail in many library-specific ways
            out.error = f"{type(exc).__name__}: {one_line(exc)}"
        if out.error is not None:
            out.single = out.frames = out.audio = out.crops = out.crop_boxes = out.detect_image = None
            out.notes = []
        return out

    def _pixels(self, images: list) -> torch.Tensor:
        return self.clip_processor(images=images, return_tensors="pt")["pixel_values"].float()

    def _load(self, item: ManifestItem, out: LoadedItem) -> None:
        cfg = self.config
        if cfg.needs_clip:
            single_needed = any(f in cfg.features for f in _SINGLE_FEATURES)
            if item.image:
                from ..io.image import load_image

                img = load_image(item.image)
                if cfg.frame_max_side is not None and max(img.size) > cfg.frame_max_side:
                    img = img.copy()
                    img.thumbnail((cfg.frame_max_side, cfg.frame_max_side))
                if single_needed or cfg.needs_frames:
                    px = self._pixels([img])
                    out.single = px if single_needed else None
                    out.frames = px if cfg.needs_frames else None
                if cfg.needs_crops:
                    self._crops(item, img, out)
            elif item.video:
                from ..io.video import probe_video, read_frames

                info = probe_video(item.video)
                start = item.start_s or 0.0
                end = info.duration_s if item.end_s is None else min(item.end_s, info.duration_s)
                if end <= start:
                    raise InputError(
                        f"window [{start:g}, {item.end_s}) s is outside video {item.video} ({info.duration_s:.2f} s)"
                    )
                if single_needed or cfg.needs_crops:
                    centre = read_frames(item.video, 1, start_s=start, end_s=end, max_side=cfg.frame_max_side)
                    if single_needed:
                        out.single = self._pixels(centre)
                    if cfg.needs_crops:
                        self._crops(item, centre[0], out)
                if cfg.needs_frames:
                    available = (end - start) * info.fps if info.fps > 0 else info.n_frames
                    if cfg.require_frames and available + 1e-6 < cfg.num_frames:
                        raise InputError(
                            f"video {item.video} has about {int(available)} frames in its window, fewer than "
                            f"the {cfg.num_frames} asked for"
                        )
                    out.frames = self._pixels(read_frames(item.video, cfg.num_frames, start_s=start, end_s=end,
                                                          max_side=cfg.frame_max_side))
            else:
                raise InputError("item has no image or video for the CLIP features")
        if cfg.needs_clap:
            start = item.start_s or 0.0
            end = item.end_s
            if cfg.audio_seconds is not None:
                end = start + cfg.audio_seconds if end is None else min(end, start + cfg.audio_seconds)
            if item.audio:
                from ..io.audio import load_audio

                wave, sr = load_audio(item.audio, mono=True, reject_silent=False)
                a = int(round(start * sr))
                b = wave.size if end is None else int(round(end * sr))
                wave = wave[a:b]
                if wave.size == 0:
                    raise InputError(f"audio file {item.audio} has no samples in the item's window")
                source = item.audio
            elif item.video:
                wave, sr = read_video_audio(item.video, start, end)
                source = item.video
            else:
                raise InputError("item has no audio or video for the CLAP feature")
            if cfg.reject_silent and float(np.abs(wave).max()) < _silence_peak():
                raise InputError(f"audio of {source} is silent (peak below -80 dBFS)")
            windows = clap_windows(wave, sr)
            feats = self.clap_fe(
                windows, sampling_rate=CLAP_SAMPLE_RATE, truncation="rand_trunc", padding="repeatpad",
                return_tensors="pt",
            )
            out.audio = {k: feats[k] for k in ("input_features", "is_longer") if k in feats}

    def _crops(self, item: ManifestItem, img: Any, out: LoadedItem) -> None:
        """Crops of the manifest's boxes, or (no boxes) the frame handed to the model side for detection."""
        if not item.boxes:
            out.detect_image = img
            return
        boxes = [_normalised_box(b) for b in item.boxes]
        limit = self.config.max_crops
        if len(boxes) > limit:
            out.notes.append(f"{len(boxes)} boxes in the manifest; the first {limit} (max_crops) were kept")
            boxes = boxes[:limit]
        w, h = img.size
        out.crops = crop_pixels(img, [(x0 * w, y0 * h, x1 * w, y1 * h) for x0, y0, x1, y1 in boxes],
                                self.clip_processor)
        out.crop_boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


def _normalised_box(box: Sequence[float]) -> tuple[float, float, float, float]:
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise InputError(f"manifest box {box!r} is not four numbers x0,y0,x1,y1") from None
    if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in (x0, y0, x1, y1)) or x1 <= x0 or y1 <= y0:
        raise InputError(f"manifest box {list(box)} is not a normalised box (0 <= x0 < x1 <= 1, 0 <= y0 < y1 <= 1)")
    return x0, y0, x1, y1


def crop_pixels(img: Any, boxes: Sequence[Sequence[float]], clip_processor: Any) -> torch.Tensor:
    """CLIP pixels [K, 3, H, W] of the crops of pixel ``boxes`` of ``img``, cut and letterboxed as the
    sources pipeline does (:func:`foleykit.io.image.crop_box`)."""
    from ..io.image import crop_box

    return clip_processor(images=[crop_box(img, b) for b in boxes], return_tensors="pt")["pixel_values"].float()


def _identity(x):
    return x


def iter_loaded(loader: MediaLoader, num_workers: int, prefetch: int) -> Iterator[LoadedItem]:
    """Items in work order, decoded by ``num_workers`` processes (0 = here)."""
    if num_workers == 0 or len(loader) <= 1:
        for k in range(len(loader)):
            yield loader[k]
        return
    dl = torch.utils.data.DataLoader(
        loader, batch_size=None, shuffle=False, num_workers=min(num_workers, len(loader)),
        collate_fn=_identity, prefetch_factor=prefetch, persistent_workers=False,
    )
    yield from dl


# ------------------------------------------------------------------------------------------------
# model side: fixed-size batches, cut identically every time
# ------------------------------------------------------------------------------------------------


def _pooled(out) -> torch.Tensor:
    return out.pooler_output if hasattr(out, "pooler_output") else out


class _Stream:
    """Rows queued for one model function, run in batches of exactly ``batch`` rows (the last of a
    shard excepted), so the arithmetic is the same however the items arrived."""

    def __init__(self, fn: Callable[[dict[str, torch.Tensor]], torch.Tensor], batch: int) -> None:
        self.fn = fn
        self.batch = batch
        self.pending: list[dict[str, torch.Tensor]] = []
        self.rows = 0
        self.outputs: list[torch.Tensor] = []
        self.compute_s = 0.0

    def add(self, inputs: dict[str, torch.Tensor]) -> None:
        self.pending.append(inputs)
        self.rows += next(iter(inputs.values())).shape[0]
        while self.rows >= self.batch:
            self._run(self.batch)

    def _run(self, n: int) -> None:
        keys = list(self.pending[0])
        cat = {k: torch.cat([p[k] for p in self.pending]) for k in keys}
        take = {k: v[:n] for k, v in cat.items()}
        rest = {k: v[n:] for k, v in cat.items()}
        t0 = time.perf_counter()
        out = self.fn(take)
        if out.is_cuda:
            torch.cuda.synchronize(out.device)
        self.compute_s += time.perf_counter() - t0
        self.outputs.append(out.float().cpu())
        self.pending = [rest] if rest[keys[0]].shape[0] else []
        self.rows -= n

    def finish(self) -> torch.Tensor | None:
        if self.rows:
            self._run(self.rows)
        out = torch.cat(self.outputs) if self.outputs else None
        self.outputs = []
        return out


@dataclass
class ShardSpec:
    """Shard ``shard`` = manifest positions [start, stop)."""

    shard: int
    start: int
    stop: int


@dataclass
class ShardResult:
    shard: int
    indices: list[int]
    ids: list[str]
    tensors: dict[str, torch.Tensor]
    skipped: list[dict[str, Any]]
    load_wait_s: float = 0.0
    compute_s: float = 0.0
    notes: list[dict[str, str]] = field(default_factory=list)  # {"id", "note"}: kept with a caveat


class ShardExtractor:
    """Holds the encoders (loaded once) and turns shards of manifest items into embedding tensors.

    Used as is by :func:`extract_embeddings` and inside each Ray actor (``foleykit.distributed``).
    """

    def __init__(self, config: ExtractionConfig, clip_encoder: Any = None, clap_encoder: Any = None,
                 detector: Any = None) -> None:
        """``detector``: a :class:`~foleykit.encoders.detector.SoundSourceDetector` for ``clip_crops``
        items without manifest boxes (None: every item must have boxes)."""
        self.config = config
        if config.needs_clip and clip_encoder is None:
            raise InputError("CLIP features asked for but no CLIP encoder given")
        if config.needs_clap and clap_encoder is None:
            raise InputError("the clap feature was asked for but no CLAP encoder given")
        self.clip = clip_encoder if config.needs_clip else None
        #: The CLAP given: a GeneratorClap (its space-checked audio tower is used, its space recorded) or,
        #: for benchmarks, a bare ClapEncoder (no space record: trainers refuse its targets).
        self.clap = clap_encoder if config.needs_clap else None
        self._clap_audio = getattr(self.clap, "audio_encoder", self.clap)  # raises: missing/other space
        self.detector = detector if config.needs_crops else None

    @classmethod
    def from_models(cls, config: ExtractionConfig, models: Any = None, *, device: str | torch.device = "auto",
                    dtype: str | torch.dtype | None = None) -> ShardExtractor:
        """Load the encoders of a model set (``"default"``, ``"tiny"``, a folder, or a ModelSet)."""
        from ..devices import resolve_device
        from ..model_sets import ModelSet, resolve_model_set

        ms = models if isinstance(models, ModelSet) else resolve_model_set(models)
        dev = resolve_device(device)
        clip = clap = detector = None
        if config.needs_clip:
            from ..encoders.clip import ClipEncoder

            clip = ClipEncoder.from_pretrained(getattr(ms, config.clip_role), device=dev, dtype=dtype)
        if config.needs_clap:  # training targets live in the generator's own CLAP space
            from ..encoders.generator_clap import GeneratorClap

            clap = GeneratorClap.from_pretrained(ms.audioldm, ms.clap, device=dev, dtype=dtype)
        if config.needs_crops and ms.extra.get("detector"):
            # As the sources pipeline loads it: the model set's detector role, on the CLIP device.
            from ..encoders.detector import SoundSourceDetector

            detector = SoundSourceDetector.from_pretrained(ms.extra["detector"], device=dev, dtype=dtype)
        return cls(config, clip, clap, detector)

    # identity ------------------------------------------------------------------------------------

    @staticmethod
    def _describe(encoder: Any) -> dict[str, Any] | None:
        if encoder is None:
            return None
        src = getattr(encoder, "loaded_from", None)
        cfg = encoder.model.config.to_dict() if hasattr(encoder.model.config, "to_dict") else {}
        cfg = {k: v for k, v in cfg.items() if not k.startswith("_") and k not in ("transformers_version",)}
        cfg_hash = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return {
            "ref": src.ref if src is not None else "in-memory",
            "revision": src.revision if src is not None else None,
            "class": type(encoder.model).__name__,
            "config_sha": cfg_hash,
            "dtype": str(encoder.dtype).removeprefix("torch."),
        }

    def model_identity(self) -> dict[str, Any]:
        ident = {"clip": self._describe(self.clip), "clap": self._describe(self._clap_audio)}
        if ident["clap"] is not None:
            space = getattr(self.clap, "space", None)
            ident["clap"]["space"] = None if space is None else {**space.record(), "fingerprint": self.clap.fingerprint}
        if self.config.needs_crops:  # only then, so folders without crops keep their identity
            det = self._describe(self.detector)
            if det is not None:  # what it looks for counts too
                vocab = json.dumps([self.detector.prompt_template, list(self.detector.vocabulary)])
                det["vocabulary_sha"] = hashlib.sha256(vocab.encode()).hexdigest()[:16]
            ident["detector"] = det
        return ident

    def feature_shapes(self) -> dict[str, list[int]]:
        """Per-item shape of each feature."""
        shapes: dict[str, list[int]] = {}
        for f in self.config.features:
            if f == "clip":
                shapes[f] = [self.clip.dim]
            elif f == "clip_frames":
                shapes[f] = [self.config.num_frames, self.clip.dim]
            elif f == "clip_mean":
                shapes[f] = [self.clip.dim]
            elif f == "clip_patches":
                shapes[f] = [self.clip.patch_grid ** 2, self.clip.dim]
            elif f == "clap":
                shapes[f] = [self._clap_audio.dim]
            elif f == "clip_crops":
                m = self.config.max_crops
                shapes[f] = [m, self.clip.dim]
                shapes["crop_padding_mask"] = [m]
                shapes["crop_boxes"] = [m, 4]
        return shapes

    def check_items(self, items: Iterable[ManifestItem]) -> None:
        """Refuse up front what would fail midway: ``clip_crops`` items without boxes and no detector."""
        if self.config.needs_crops and self.detector is None:
            missing = [it.id for it in items if not it.boxes]
            if missing:
                raise InputError(
                    f"clip_crops: {len(missing)} items have no boxes in the manifest (e.g. {missing[0]!r}) and the "
                    "model set has no 'detector' role to find them; use a model set with a detector or a manifest "
                    "with boxes"
                )

    def media_loader(self, work: Sequence[tuple[int, ManifestItem]]) -> MediaLoader:
        return MediaLoader(
            work, self.config,
            clip_processor=self.clip.processor if self.clip is not None else None,
            clap_feature_extractor=self._clap_audio.feature_extractor if self._clap_audio is not None else None,
        )

    # model functions -----------------------------------------------------------------------------

    def _clip_global(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        enc = self.clip
        px = inputs["pixel_values"].to(device=enc.device, dtype=enc.dtype)
        with torch.inference_mode():
            emb = _pooled(enc.model.get_image_features(pixel_values=px)).float()
        return F.normalize(emb, dim=-1) if self.config.normalize else emb

    def _clip_patches(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        enc = self.clip
        px = inputs["pixel_values"].to(device=enc.device, dtype=enc.dtype)
        vision = enc.model.vision_model
        with torch.inference_mode():
            hidden = vision(pixel_values=px).last_hidden_state[:, 1:]
            emb = enc.model.visual_projection(vision.post_layernorm(hidden)).float()
        return F.normalize(emb, dim=-1) if self.config.normalize else emb

    def _detect_crops(self, x: LoadedItem) -> None:
        """Boxes of the item's frame from the detector (best first), cropped and preprocessed for CLIP."""
        cfg = self.config
        img, x.detect_image = x.detect_image, None
        dets = self.detector.detect(
            img, threshold=cfg.detector_threshold, nms_iou=cfg.detector_nms_iou,
            max_detections=cfg.detector_max_detections, min_area=cfg.detector_min_area, image_size=cfg.detector_size,
        )
        if not dets:
            x.notes.append(f"no boxes in the manifest and no detection above {cfg.detector_threshold:g}: zero crops")
            return
        w, h = img.size
        x.crops = crop_pixels(img, [d.box for d in dets], self.clip.processor)
        x.crop_boxes = torch.tensor([[d.box[0] / w, d.box[1] / h, d.box[2] / w, d.box[3] / h] for d in dets],
                                    dtype=torch.float32)

    def _clap(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        enc = self._clap_audio
        feats = {k: v.to(enc.device) for k, v in inputs.items()}
        feats["input_features"] = feats["input_features"].to(enc.dtype)
        with torch.inference_mode():
            emb = _pooled(enc.model.get_audio_features(**feats)).float()
        return F.normalize(emb, dim=-1)

    # shards --------------------------------------------------------------------------------------

    def iter_shards(self, manifest: Manifest | Sequence[ManifestItem], specs: Sequence[ShardSpec],
                    progress: Callable[[int], None] | None = None) -> Iterator[ShardResult]:
        """Extract the given shards in order (media decoding overlaps the model work of earlier items)."""
        cfg = self.config
        items = manifest.items if isinstance(manifest, Manifest) else list(manifest)
        work = [(i, items[i]) for s in specs for i in range(s.start, s.stop)]
        self.check_items(it for _, it in work)
        stream = iter_loaded(self.media_loader(work), cfg.num_workers, cfg.prefetch_items)
        for spec in specs:
            streams = self._new_streams()
            ok: list[LoadedItem] = []
            skipped: list[dict[str, Any]] = []
            wait = detect_s = 0.0
            for _ in range(spec.start, spec.stop):
                t0 = time.perf_counter()
                loaded = next(stream)
                wait += time.perf_counter() - t0
                if loaded.error is not None:
                    skipped.append({"index": loaded.index, "id": loaded.id, "reason": loaded.error})
                else:
                    if loaded.detect_image is not None:
                        t0 = time.perf_counter()
                        self._detect_crops(loaded)
                        detect_s += time.perf_counter() - t0
                    self._feed(streams, loaded)
                    ok.append(loaded)
                if progress is not None:
                    progress(1)
            tensors = self._collect(streams, ok)
            yield ShardResult(
                shard=spec.shard, indices=[x.index for x in ok], ids=[x.id for x in ok], tensors=tensors,
                skipped=skipped, load_wait_s=wait, compute_s=detect_s + sum(s.compute_s for s in streams.values()),
                notes=[{"id": x.id, "note": n} for x in ok for n in x.notes],
            )

    def extract_shard(self, manifest: Manifest | Sequence[ManifestItem], spec: ShardSpec) -> ShardResult:
        return next(self.iter_shards(manifest, [spec]))

    def _new_streams(self) -> dict[str, _Stream]:
        cfg = self.config
        s: dict[str, _Stream] = {}
        if "clip" in cfg.features:
            s["clip"] = _Stream(self._clip_global, cfg.batch_size)
        if "clip_patches" in cfg.features:
            s["clip_patches"] = _Stream(self._clip_patches, cfg.batch_size)
        if cfg.needs_frames:
            s["frames"] = _Stream(self._clip_global, cfg.batch_size)
        if "clap" in cfg.features:
            s["clap"] = _Stream(self._clap, cfg.audio_batch_size)
        if cfg.needs_crops:  # a stream of its own: the other features' batches stay as they were
            s["crops"] = _Stream(self._clip_global, cfg.batch_size)
        return s

    @staticmethod
    def _feed(streams: dict[str, _Stream], x: LoadedItem) -> None:
        if "clip" in streams:
            streams["clip"].add({"pixel_values": x.single})
        if "clip_patches" in streams:
            streams["clip_patches"].add({"pixel_values": x.single})
        if "frames" in streams:
            streams["frames"].add({"pixel_values": x.frames})
        if "clap" in streams:
            streams["clap"].add(dict(x.audio))
        if "crops" in streams and x.crops is not None and x.crops.shape[0]:
            streams["crops"].add({"pixel_values": x.crops})

    def _collect(self, streams: dict[str, _Stream], ok: list[LoadedItem]) -> dict[str, torch.Tensor]:
        shapes = self.feature_shapes()
        cfg = self.config
        res: dict[str, torch.Tensor] = {}
        for name, stream in streams.items():
            flat = stream.finish()
            if not ok:
                continue
            if name in ("clip", "clip_patches"):
                res[name] = flat
            elif name == "crops":
                res.update(self._pad_crops(flat, ok, shapes["clip_crops"]))
            elif name == "frames":
                parts = flat.split([x.frames.shape[0] for x in ok])
                if "clip_frames" in cfg.features:
                    res["clip_frames"] = torch.stack(
                        [p.expand(cfg.num_frames, -1) if p.shape[0] == 1 else p for p in parts])
                if "clip_mean" in cfg.features:
                    res["clip_mean"] = torch.stack([p.mean(0) for p in parts])
            else:  # clap: average each item's unit window vectors, renormalise
                per = [x.audio["input_features"].shape[0] for x in ok]
                res[name] = F.normalize(torch.stack([p.mean(0) for p in flat.split(per)]), dim=-1)
        out = {}
        for name, shape in shapes.items():
            dt = getattr(torch, cfg.tensor_dtype(name))
            out[name] = (res[name] if ok else torch.zeros(0, *shape)).to(dt).contiguous()
        out["index"] = torch.tensor([x.index for x in ok], dtype=torch.int64)
        return out

    @staticmethod
    def _pad_crops(flat: torch.Tensor | None, ok: list[LoadedItem], shape: list[int]) -> dict[str, torch.Tensor]:
        """Per-item crop embeddings (concatenated in item order) into M zero-padded slots."""
        m, dim = shape
        emb = torch.zeros(len(ok), m, dim)
        padding = torch.ones(len(ok), m, dtype=torch.bool)
        boxes = torch.zeros(len(ok), m, 4)
        counts = [0 if x.crops is None else int(x.crops.shape[0]) for x in ok]
        parts = flat.split(counts) if flat is not None else [torch.zeros(0, dim)] * len(ok)
        for i, (x, k, part) in enumerate(zip(ok, counts, parts)):
            if k:
                emb[i, :k] = part
                padding[i, :k] = False
                boxes[i, :k] = x.crop_boxes
        return {"clip_crops": emb, "crop_padding_mask": padding, "crop_boxes": boxes}


# ------------------------------------------------------------------------------------------------
# durable writes
# ------------------------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(str(path), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_durable(target: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``target``, fsync it, rename it over ``target``
    and fsync the folder. On any failure (disk full included) the temporary file is removed and
    ``target`` is untouched."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            what = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or str(exc))
            raise OutputError(
                f"could not write {target} ({len(data) / 1e6:.1f} MB): {what}; nothing already written was "
                "changed; fix this and rerun the same command to continue"
            ) from None
        raise
    _fsync_dir(target.parent)


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def shard_bytes(result: ShardResult, run_key: str) -> bytes:
    """Canonical safetensors bytes of a shard (one metadata key, sorted JSON: deterministic)."""
    from safetensors.torch import save

    meta = {
        "format": f"{FORMAT}-shard",
        "version": FORMAT_VERSION,
        "run": run_key,
        "shard": result.shard,
        "ids": result.ids,
        "skipped": result.skipped,
    }
    if result.notes:
        meta["notes"] = result.notes
    return save(result.tensors, metadata={"foleykit": json.dumps(meta, sort_keys=True, ensure_ascii=True)})


def read_shard_meta(path: str | os.PathLike) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return json.loads(meta["foleykit"])


def shard_name(k: int) -> str:
    return f"shard-{k:06d}.safetensors"


# ------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------


@dataclass
class ExtractionResult:
    """What a call did. ``skipped`` lists every unreadable item (whole run), with the reason."""

    out_dir: Path
    num_items: int
    num_extracted: int
    skipped: list[dict[str, Any]]
    shards_written: int
    shards_reused: int
    complete: bool
    seconds: float
    load_wait_s: float = 0.0
    compute_s: float = 0.0
    num_noted: int = 0  # items kept with a note (clip_crops: zero crops, boxes over max_crops)

    @property
    def items_per_s(self) -> float:
        return self.num_extracted / self.seconds if self.seconds > 0 else 0.0


class ExtractionRun:
    """The driver side: plans shards, checks an existing folder, writes shards and the index.

    The same object drives the single-process path and the Ray path (which only replaces who
    computes a shard).
    """

    def __init__(self, manifest: Manifest, out_dir: str | os.PathLike, config: ExtractionConfig,
                 model_identity: dict[str, Any], feature_shapes: dict[str, list[int]], *,
                 restart: bool = False) -> None:
        self.manifest = manifest
        self.out_dir = Path(out_dir).expanduser()
        self.config = config
        self.models = model_identity
        self.shapes = feature_shapes
        n = len(manifest)
        s = config.shard_size
        self.specs = [ShardSpec(k, k * s, min(n, (k + 1) * s)) for k in range(math.ceil(n / s))]
        identity = {"manifest": manifest.fingerprint, "config": config.run_fields(), "models": model_identity}
        self.identity = identity
        self.run_key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        self._done: dict[int, dict[str, Any]] | None = None
        self._sha: dict[int, tuple[int, str]] = {}
        self._known_sha: dict[int, tuple[int | None, str]] = {}
        self._prepare(restart)

    @property
    def shard_dir(self) -> Path:
        return self.out_dir / SHARD_DIR

    def provenance(self) -> dict[str, Any]:
        """Which encoders made the features (CLIP role, model id, width; CLAP id, width), for the
        trainers' check (:mod:`foleykit.training.provenance`); not part of the run's identity."""
        from .provenance import encoder_record

        out: dict[str, Any] = {}
        clip_dims = [s[-1] for f, s in self.shapes.items() if f.startswith("clip")]
        if self.config.needs_clip:
            out["clip"] = encoder_record(self.config.clip_role, self.models.get("clip"),
                                         clip_dims[0] if clip_dims else None)
        if self.config.needs_clap:
            out["clap"] = encoder_record("clap", self.models.get("clap"), (self.shapes.get("clap") or [None])[-1])
        return out

    def _prepare(self, restart: bool) -> None:
        out = self.out_dir
        if out.exists() and not out.is_dir():
            raise OutputError(f"{out} exists and is not a folder")
        index = out / INDEX_FILE
        if restart and out.exists():
            if index.exists() or self.shard_dir.exists():
                shutil.rmtree(self.shard_dir, ignore_errors=True)
                with contextlib.suppress(FileNotFoundError):
                    index.unlink()
        if index.exists():
            try:
                old = json.loads(index.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise OutputError(f"{index} is unreadable ({one_line(exc)}); use a new folder or --restart") from None
            self._check_same_run(old)
            # Checksums recorded for shards still of the same size are reused, not recomputed.
            self._known_sha = {s["shard"]: (s.get("bytes"), s["sha256"]) for s in old.get("shards", [])}
        elif out.exists():
            # Without an index only our own leftovers may be there (shards are checked one by one).
            foreign = [p.name for p in out.iterdir() if not p.name.startswith(".")
                       and p.name not in (SHARD_DIR, RUNS_FILE)]
            if foreign:
                raise OutputError(f"{out} is not empty and holds no extraction ({', '.join(sorted(foreign)[:3])}); "
                                  "choose an empty or new folder")
        try:
            self.shard_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {self.shard_dir}: {exc.strerror or exc}") from None
        for stale in list(self.shard_dir.glob(".shard-*.part")) + list(out.glob(f".{INDEX_FILE}.*.part")):
            with contextlib.suppress(OSError):
                stale.unlink()  # temporary files of a killed run: never renamed, so never valid

    def _check_same_run(self, old: dict[str, Any]) -> None:
        if old.get("format") != FORMAT:
            raise OutputError(f"{self.out_dir / INDEX_FILE} is not a foleykit extraction index")
        if old.get("run_key") == self.run_key:
            return
        hint = "use a new output folder, or --restart to discard the existing shards"
        if old.get("manifest", {}).get("fingerprint") != self.manifest.fingerprint:
            raise InputError(
                f"{self.out_dir} was extracted from a manifest with fingerprint "
                f"{str(old.get('manifest', {}).get('fingerprint'))[:12]}…, this one is {self.manifest.fingerprint[:12]}…: "
                f"the manifest changed under a half-done extraction; {hint}"
            )
        if old.get("config") != self.config.run_fields():
            changed = sorted(k for k in set(old.get("config", {})) | set(self.config.run_fields())
                             if old.get("config", {}).get(k) != self.config.run_fields().get(k))
            raise InputError(f"{self.out_dir} was extracted with different settings ({', '.join(changed)}); {hint}")
        raise InputError(f"{self.out_dir} was extracted with different models ({old.get('models')}); {hint}")

    def done_shards(self) -> dict[int, dict[str, Any]]:
        """Shards on disk (verified to belong to this run) → their metadata; read once, then kept
        up to date by :meth:`write_shard` (so an index update costs no rereading)."""
        if self._done is None:
            self._done = self._scan()
        return self._done

    def _scan(self) -> dict[int, dict[str, Any]]:
        done: dict[int, dict[str, Any]] = {}
        for spec in self.specs:
            path = self.shard_dir / shard_name(spec.shard)
            if not path.exists():
                continue
            try:
                meta = read_shard_meta(path)
            except Exception as exc:  # noqa: BLE001 - an unreadable file is redone, not trusted
                path.unlink()
                _warn(f"{path} was unreadable ({one_line(exc)}); it will be extracted again")
                continue
            if meta.get("run") != self.run_key:
                raise InputError(
                    f"{path} belongs to another extraction (different manifest, settings or models); "
                    "use a new output folder, or --restart to discard the existing shards"
                )
            done[spec.shard] = meta
        for extra in self.shard_dir.glob("shard-*.safetensors"):
            k = int(extra.name[6:12]) if extra.name[6:12].isdigit() else -1
            if not 0 <= k < len(self.specs):
                raise InputError(f"{extra} is not a shard of this manifest ({len(self.specs)} shards); use a new folder")
        return done

    def pending(self) -> list[ShardSpec]:
        done = self.done_shards()
        return [s for s in self.specs if s.shard not in done]

    def write_shard(self, result: ShardResult) -> None:
        data = shard_bytes(result, self.run_key)
        write_durable(self.shard_dir / shard_name(result.shard), data)
        done = self.done_shards()
        done[result.shard] = {"ids": result.ids, "skipped": result.skipped, "run": self.run_key}
        if result.notes:
            done[result.shard]["notes"] = result.notes
        self._sha[result.shard] = (len(data), hashlib.sha256(data).hexdigest())

    def _shard_sha(self, k: int) -> tuple[int, str]:
        if k not in self._sha:
            path = self.shard_dir / shard_name(k)
            size = path.stat().st_size
            known = self._known_sha.get(k)
            self._sha[k] = (size, known[1]) if known and known[0] == size else (size, _sha256_file(path))
        return self._sha[k]

    def write_index(self) -> dict[str, Any]:
        done = self.done_shards()
        shards = []
        skipped: list[dict[str, Any]] = []
        n_ok = n_noted = 0
        for spec in self.specs:
            meta = done.get(spec.shard)
            if meta is None:
                continue
            size, sha = self._shard_sha(spec.shard)
            shards.append({
                "file": f"{SHARD_DIR}/{shard_name(spec.shard)}",
                "shard": spec.shard,
                "range": [spec.start, spec.stop],
                "items": len(meta["ids"]),
                "skipped": len(meta["skipped"]),
                "bytes": size,
                "sha256": sha,
            })
            n_ok += len(meta["ids"])
            n_noted += len({n["id"] for n in meta.get("notes", [])})
            skipped.extend(meta["skipped"])
        index = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "run_key": self.run_key,
            "manifest": {
                "fingerprint": self.manifest.fingerprint,
                "name": Path(self.manifest.source).name if self.manifest.source else None,
                "items": len(self.manifest),
            },
            "config": self.config.run_fields(),
            "models": self.models,
            "provenance": self.provenance(),
            "features": {name: {"shape": shape, "dtype": self.config.tensor_dtype(name)}
                         for name, shape in self.shapes.items()},
            "num_shards": len(self.specs),
            "shards": shards,
            "num_extracted": n_ok,
            "num_skipped": len(skipped),
            "skipped": skipped,
            "complete": len(shards) == len(self.specs),
        }
        if self.config.needs_crops:  # items kept with a note (e.g. zero crops); the notes are in the shards
            index["num_noted"] = n_noted
        write_durable(self.out_dir / INDEX_FILE, _json_bytes(index))
        return index

    def log_run(self, record: dict[str, Any]) -> None:
        with contextlib.suppress(OSError), open(self.out_dir / RUNS_FILE, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _warn(msg: str) -> None:
    import warnings

    warnings.warn(msg, stacklevel=3)


def extract_embeddings(
    manifest: Manifest,
    out_dir: str | os.PathLike,
    config: ExtractionConfig | None = None,
    *,
    models: Any = None,
    extractor: ShardExtractor | None = None,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = None,
    restart: bool = False,
    progress: bool = True,
    max_shards: int | None = None,
) -> ExtractionResult:
    """Extract ``config.features`` for every item of ``manifest`` into ``out_dir`` (resumable).

    Rerunning the same call continues where a killed run stopped and, once complete, does nothing.
    ``extractor`` injects ready encoders (benchmarks); otherwise they are loaded from ``models``
    (a model-set name, folder or ModelSet). ``max_shards`` stops after that many new shards.
    Unreadable items are skipped and listed (with the reason) in the result and in extraction.json.
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    if extractor is None:
        config = config or ExtractionConfig()
        extractor = ShardExtractor.from_models(config, models, device=device, dtype=dtype)
    elif config is not None and config != extractor.config:
        raise InputError("extract_embeddings: config differs from the given extractor's; pass one of them")
    config = extractor.config
    extractor.check_items(manifest)
    run = ExtractionRun(manifest, out_dir, config, extractor.model_identity(), extractor.feature_shapes(),
                        restart=restart)
    pending = run.pending()
    reused = len(run.specs) - len(pending)
    if max_shards is not None:
        pending = pending[:max_shards]
    run.write_index()
    total = sum(s.stop - s.start for s in pending)
    wait = compute = 0.0
    written = 0
    with tqdm(total=total, desc="extract", unit="item", disable=not progress, dynamic_ncols=True,
              smoothing=0.05) as bar:
        for result in extractor.iter_shards(manifest, pending, progress=bar.update):
            run.write_shard(result)
            run.write_index()
            written += 1
            wait += result.load_wait_s
            compute += result.compute_s
            bar.set_postfix(shard=f"{result.shard + 1}/{len(run.specs)}", skipped=len(result.skipped))
    index = run.write_index()
    seconds = time.perf_counter() - t_start
    res = ExtractionResult(
        out_dir=run.out_dir, num_items=len(manifest), num_extracted=index["num_extracted"],
        skipped=index["skipped"], shards_written=written, shards_reused=reused, complete=index["complete"],
        seconds=seconds, load_wait_s=wait, compute_s=compute, num_noted=index.get("num_noted", 0),
    )
    run.log_run({"shards_written": written, "shards_reused": reused, "seconds": round(seconds, 3),
                 "load_wait_s": round(wait, 3), "compute_s": round(compute, 3), "complete": res.complete,
                 "pid": os.getpid(), "time": time.time()})
    return res


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------


class EmbeddingStore:
    """Read an extraction folder: ids, features, per-item access (memory-mapped) or whole tensors."""

    def __init__(self, path: str | os.PathLike, *, require_complete: bool = True) -> None:
        self.path = Path(path).expanduser()
        index_path = self.path / INDEX_FILE
        if not index_path.is_file():
            raise InputError(f"{self.path} holds no {INDEX_FILE}: not an extraction folder")
        try:
            self.index = json.loads(index_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{index_path} is unreadable ({one_line(exc)})") from None
        if self.index.get("format") != FORMAT:
            raise InputError(f"{index_path} is not a foleykit extraction index")
        if require_complete and not self.index.get("complete"):
            raise InputError(
                f"{self.path}: the extraction is incomplete ({len(self.index['shards'])} of "
                f"{self.index['num_shards']} shards); rerun the extraction to finish it"
            )
        self.features: dict[str, dict[str, Any]] = self.index["features"]
        self._shards: list[tuple[Path, int]] = []
        self.ids: list[str] = []
        #: Items kept with a caveat, ``{"id", "note"}`` (``clip_crops``: zero crops, boxes over max_crops).
        self.notes: list[dict[str, str]] = []
        for s in self.index["shards"]:
            p = self.path / s["file"]
            meta = read_shard_meta(p)
            self._shards.append((p, len(meta["ids"])))
            self.ids.extend(meta["ids"])
            self.notes.extend(meta.get("notes", []))
        self._offsets = np.cumsum([0] + [n for _, n in self._shards])
        self._handles: dict[int, Any] = {}
        self.skipped: list[dict[str, Any]] = self.index["skipped"]
        self.manifest_fingerprint: str = self.index["manifest"]["fingerprint"]

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def _check(self, features: Iterable[str] | None) -> list[str]:
        names = list(self.features) if features is None else list(features)
        unknown = [f for f in names if f not in self.features and f != "index"]
        if unknown:
            raise InputError(f"{self.path} has no feature(s) {', '.join(unknown)} (has {', '.join(self.features)})")
        return names

    def load(self, features: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """Whole features as tensors [N, ...] in manifest order (plus ``index``)."""
        from safetensors.torch import load_file

        names = self._check(features)
        parts: dict[str, list[torch.Tensor]] = {n: [] for n in [*names, "index"]}
        for p, _ in self._shards:
            data = load_file(str(p))
            for n in parts:
                parts[n].append(data[n])
        return {n: torch.cat(v) if v else torch.zeros(0) for n, v in parts.items()}

    def get(self, i: int, features: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """Item ``i`` (0-based over extracted items), read through the shards' memory maps."""
        from safetensors import safe_open

        if not 0 <= i < len(self):
            raise IndexError(i)
        k = int(np.searchsorted(self._offsets, i, side="right") - 1)
        row = i - int(self._offsets[k])
        if k not in self._handles:
            self._handles[k] = safe_open(str(self._shards[k][0]), framework="pt")
        f = self._handles[k]
        return {n: f.get_slice(n)[row] for n in self._check(features)}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handles"] = {}  # file handles do not cross process boundaries
        return state


@dataclass
class StoreDataset(torch.utils.data.Dataset):
    """Map-style dataset over an :class:`EmbeddingStore`; ``rename`` maps batch keys → features."""

    store: EmbeddingStore
    rename: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        names = self.rename or {f: f for f in self.store.features}
        row = self.store.get(i, list(names.values()))
        return {key: row[feat].float() for key, feat in names.items()}
