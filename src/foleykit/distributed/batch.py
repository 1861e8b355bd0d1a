"""Batch generation over a manifest: one sound per item, resumable with ``skip_existing``.

Each item's output is ``<out_dir>/<id>.wav`` (``.mp4`` muxes the sound onto a video item) with the
usual JSON sidecar, written atomically by :func:`foleykit.api.generate`, so an existing output is a
finished one. The seed of an item is derived from the base seed and the item id, so an item gets the
same sound whichever process or machine generates it, and however the work is split.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..data.manifests import Manifest, ManifestItem
from ..errors import FoleykitError, InputError
from ..io._checks import one_line

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class BatchGenerateConfig:
    """Generation settings shared by every item (see ``foleykit generate`` for their meaning)."""

    method: str = "mapper"
    models: str | None = None
    mapper: str | None = None
    seed: int = 0
    duration: float | None = None
    steps: int | None = None
    preset: str = "fast"
    guidance: float | None = None
    candidates: int = 1
    frames: int = 16
    device: str = "auto"
    dtype: str | None = None
    suffix: str = ".wav"
    skip_existing: bool = True

    def __post_init__(self) -> None:
        if self.suffix not in (".wav", ".flac", ".mp4"):
            raise InputError(f"output suffix must be .wav, .flac or .mp4, got {self.suffix!r}")
        if self.seed < 0:
            raise InputError("batch generation needs a fixed base seed (>= 0) so items are reproducible")


def item_seed(base_seed: int, item_id: str) -> int:
    """A per-item seed: a hash of (base seed, id), independent of the order and of the worker."""
    digest = hashlib.sha256(f"{base_seed}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def output_path(out_dir: Path, item: ManifestItem, suffix: str) -> Path:
    name = _UNSAFE.sub("_", item.id).strip("._") or "item"
    if name != item.id:  # keep distinct ids distinct after sanitising
        name = f"{name}-{hashlib.sha1(item.id.encode()).hexdigest()[:8]}"
    return out_dir / f"{name}{suffix}"


@dataclass
class ItemStatus:
    id: str
    status: str  # generated | skipped | failed
    output: str | None = None
    seed: int | None = None
    reason: str | None = None
    seconds: float = 0.0


class BatchWorker:
    """Generates items one by one with a pipeline loaded once (in the constructor)."""

    def __init__(self, config: BatchGenerateConfig, out_dir: str | os.PathLike) -> None:
        from ..api import load_pipeline

        self.config = config
        self.out_dir = Path(out_dir).expanduser()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        load_pipeline(config.method, config.models, config.mapper, config.device, config.dtype)

    def run(self, items: Sequence[ManifestItem]) -> list[ItemStatus]:
        return [self.run_one(it) for it in items]

    def run_one(self, item: ManifestItem) -> ItemStatus:
        from ..api import generate

        cfg = self.config
        suffix = cfg.suffix if (cfg.suffix != ".mp4" or (item.video and not item.image)) else ".wav"
        out = output_path(self.out_dir, item, suffix)
        seed = item_seed(cfg.seed, item.id)
        if cfg.skip_existing and out.exists():
            return ItemStatus(item.id, "skipped", str(out), seed)
        source = item.image or item.video
        if not source:
            return ItemStatus(item.id, "failed", None, seed, "item has no image or video")
        t0 = time.perf_counter()
        try:
            generate(source, out, method=cfg.method, models=cfg.models, mapper=cfg.mapper, seed=seed,
                     duration=cfg.duration, steps=cfg.steps, preset=cfg.preset, guidance=cfg.guidance,
                     candidates=cfg.candidates, frames=cfg.frames, device=cfg.device, dtype=cfg.dtype,
                     overwrite=True, progress=False)
        except FoleykitError as exc:
            return ItemStatus(item.id, "failed", None, seed, one_line(exc), time.perf_counter() - t0)
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - one bad item must not end a dataset-sized run
            return ItemStatus(item.id, "failed", None, seed, f"{type(exc).__name__}: {one_line(exc)}",
                              time.perf_counter() - t0)
        return ItemStatus(item.id, "generated", str(out), seed, None, time.perf_counter() - t0)


@dataclass
class BatchReport:
    total: int
    generated: int
    skipped: int
    failed: int
    statuses: list[ItemStatus] = field(default_factory=list)
    seconds: float = 0.0
    report_path: Path | None = None


def write_report(out_dir: Path, manifest: Manifest, statuses: Iterable[ItemStatus], config: BatchGenerateConfig,
                 seconds: float) -> BatchReport:
    from ..training.extraction import write_durable

    by_id = {s.id: s for s in statuses}
    ordered = [by_id[it.id] for it in manifest if it.id in by_id]
    counts = {k: sum(s.status == k for s in ordered) for k in ("generated", "skipped", "failed")}
    report = {
        "format": "foleykit-batch-generate",
        "manifest": manifest.fingerprint,
        "config": asdict(config),
        "total": len(ordered),
        **counts,
        "failures": [{"id": s.id, "reason": s.reason} for s in ordered if s.status == "failed"],
        "seconds": round(seconds, 3),
    }
    path = out_dir / "batch_report.json"
    write_durable(path, (json.dumps(report, indent=1, sort_keys=True) + "\n").encode())
    return BatchReport(total=len(ordered), statuses=ordered, seconds=seconds, report_path=path, **counts)


def batch_generate(manifest: Manifest, out_dir: str | os.PathLike, config: BatchGenerateConfig | None = None, *,
                   progress: bool = True) -> BatchReport:
    """Generate a sound for every item of ``manifest`` in this process."""
    from tqdm.auto import tqdm

    config = config or BatchGenerateConfig()
    out = Path(out_dir).expanduser()
    t0 = time.perf_counter()
    worker = BatchWorker(config, out)
    statuses = []
    for item in tqdm(manifest.items, desc="generate", unit="item", disable=not progress):
        statuses.append(worker.run_one(item))
    return write_report(out, manifest, statuses, config, time.perf_counter() - t0)
