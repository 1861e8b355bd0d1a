"""Batch generation over a manifest: one sound per item, resumable with ``skip_existing``.

Each item's output is ``<out_dir>/<id>.wav`` (``.mp4`` muxes the sound onto a video item) with the
usual JSON sidecar, written atomically by :func:`foleykit.api.generate`, so an existing output is a
finished one. The seed of an item is derived from the base seed and the item id, so an item gets the
same sound whichever process or machine generates it, and however the work is split.

A folder holds one batch run. Its fingerprint (the manifest's fingerprint, the generation settings,
the model set and the trained mapper's weights) is written to ``batch_run.json`` before any item,
to each item's sidecar (``"batch"``) and to ``batch_report.json``. With ``skip_existing`` a rerun
under different settings is refused with one line, instead of mixing two runs' outputs; an output
whose sidecar lacks this run's fingerprint (a run killed mid-item) is made again, not skipped.
``skip_existing=False`` regenerates every item and takes the folder over.
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
RUN_FILE = "batch_run.json"
REPORT_FILE = "batch_report.json"
#: Settings that do not change what an item sounds like (not in the fingerprint).
_RUNTIME_SETTINGS = ("device", "skip_existing", "models", "mapper", "threads")


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
    frames: int | None = None  # video frames per window; None = generate's default (sources 64, else 16)
    device: str = "auto"
    dtype: str | None = None
    suffix: str = ".wav"
    skip_existing: bool = True
    ss2a: str | None = None  # sources: a trained SS2A bundle folder (or the released ssv2a.pth)
    grounding: str | None = None  # objects: a trained grounding module folder
    #: torch intra-op threads while generating (None: the process's). Float sums are ordered by the
    #: thread count, so the single-process and Ray paths give bit-identical files when this is equal
    #: (Ray actors default to one thread per CPU they reserve).
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.suffix not in (".wav", ".flac", ".mp4"):
            raise InputError(f"output suffix must be .wav, .flac or .mp4, got {self.suffix!r}")
        if self.seed < 0:
            raise InputError("batch generation needs a fixed base seed (>= 0) so items are reproducible")
        if self.frames is None:  # as `foleykit generate` (and so the fingerprint names the number used)
            self.frames = 64 if self.method == "sources" else 16


#: Manifest columns (generic csv columns, or ``extra`` keys of a jsonl item) with per-item prompts.
PROMPT_COLUMNS = {"clicks": "clicks", "boxes": "boxes", "texts": "texts"}


def _split_prompts(value, sep: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [",".join(str(v) for v in x) if isinstance(x, (list, tuple)) else str(x) for x in value]
    return [v.strip() for v in str(value).split(sep) if v.strip()]


def item_prompts(item: ManifestItem, method: str) -> dict[str, list[str]]:
    """The item's own clicks / boxes / texts for ``objects`` and ``sources``, from manifest columns:
    ``clicks`` ``X,Y;X,Y``, ``boxes`` ``X0,Y0,X1,Y1;...`` (pixels; sources may add ``@WEIGHT``) and
    ``texts`` ``rain|dog barking`` (a jsonl item may give lists in ``extra``)."""
    if method not in ("objects", "sources"):
        return {}
    extra = item.extra or {}
    out = {"clicks": _split_prompts(extra.get("clicks"), ";"), "boxes": _split_prompts(extra.get("boxes"), ";"),
           "texts": _split_prompts(extra.get("texts"), "|")}
    if method == "sources" and out["clicks"]:
        raise InputError(f"item {item.id}: clicks need method 'objects'")
    return {k: v for k, v in out.items() if v}


def item_seed(base_seed: int, item_id: str) -> int:
    """A per-item seed: a hash of (base seed, id), independent of the order and of the worker."""
    digest = hashlib.sha256(f"{base_seed}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def output_path(out_dir: Path, item: ManifestItem, suffix: str) -> Path:
    name = _UNSAFE.sub("_", item.id).strip("._") or "item"
    if name != item.id:  # keep distinct ids distinct after sanitising
        name = f"{name}-{hashlib.sha1(item.id.encode()).hexdigest()[:8]}"
    return out_dir / f"{name}{suffix}"


def item_output(out_dir: Path, item: ManifestItem, config: BatchGenerateConfig) -> Path:
    """Where ``item``'s sound goes (``.mp4`` only for video items; images get ``.wav``)."""
    suffix = config.suffix if (config.suffix != ".mp4" or (item.video and not item.image)) else ".wav"
    return output_path(out_dir, item, suffix)


def _file_digest(paths: Iterable[Path]) -> str | None:
    h, seen = hashlib.sha256(), False
    for f in paths:
        if f.is_file():
            seen = True
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest() if seen else None


def _models_identity(models: str | None) -> dict:
    """The model set as names and references (hub ids or folders); the tiny set by its version."""
    from ..model_sets import TINY_VERSION, resolve_model_set

    name = str(models if models is not None else os.environ.get("FOLEYKIT_MODELS", "default"))
    if name in ("tiny", "debug"):
        return {"name": "tiny", "version": TINY_VERSION}
    ident = resolve_model_set(name).to_dict()
    if ident.get("mapper") and Path(str(ident["mapper"])).is_dir():  # a trained mapper inside the set
        ident["mapper_weights"] = _file_digest(Path(str(ident["mapper"])) / n for n in ("config.json", "model.safetensors"))
    return ident


def batch_fingerprint(manifest: Manifest, config: BatchGenerateConfig) -> dict:
    """``{"value": sha256, "manifest", "settings", "models", "mapper"}``: what a folder's outputs were
    made from. Device and ``skip_existing`` are left out: they do not change what an item is."""
    settings = {k: v for k, v in asdict(config).items() if k not in _RUNTIME_SETTINGS}
    mapper = None
    if config.mapper:
        folder = Path(config.mapper).expanduser()
        mapper = {"ref": str(config.mapper),
                  "weights": _file_digest(folder / n for n in ("config.json", "model.safetensors")) if folder.is_dir() else None}
    parts = {"manifest": manifest.fingerprint, "settings": settings, "models": _models_identity(config.models),
             "mapper": mapper}
    value = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return {"value": value, **parts}


def _differences(old: dict, new: dict) -> list[str]:
    out = []
    if old.get("manifest") != new["manifest"]:
        out.append(f"manifest {str(old.get('manifest'))[:12]} -> {new['manifest'][:12]}")
    old_settings = old.get("settings") or {}
    for k, v in new["settings"].items():
        if old_settings.get(k) != v:
            out.append(f"{k} {old_settings.get(k)!r} -> {v!r}")
    for k in ("models", "mapper"):
        if old.get(k) != new[k]:
            out.append(k)
    return out or ["fingerprint"]


def _sidecar_fingerprint(output: Path) -> str | None:
    try:
        side = json.loads(output.with_name(output.name + ".json").read_text())
    except (OSError, ValueError):
        return None
    batch = side.get("batch") if isinstance(side, dict) else None
    return batch.get("fingerprint") if isinstance(batch, dict) else None


def prepare_batch_run(manifest: Manifest, out_dir: str | os.PathLike, config: BatchGenerateConfig) -> dict:
    """Check that ``out_dir`` may take this run, record its fingerprint there, and return it.

    With ``skip_existing``, a folder whose recorded run differs (manifest, settings, models), or that
    holds outputs of this manifest made by no recorded run, is refused with one line.
    """
    from ..training.extraction import write_durable

    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file; give a folder for the batch outputs")
    fp = batch_fingerprint(manifest, config)
    record_path = out / RUN_FILE
    if config.skip_existing:
        old = None
        if record_path.is_file():
            try:
                old = json.loads(record_path.read_text())["fingerprint"]
            except (OSError, ValueError, KeyError, TypeError):
                old = {}
        if old is not None and old.get("value") != fp["value"]:
            raise InputError(
                f"{out} holds a batch run with other settings ({'; '.join(_differences(old, fp))}); use a new "
                "folder, or --no-skip-existing to regenerate every item with these settings")
        if old is None and out.is_dir():
            foreign = [it.id for it in manifest if item_output(out, it, config).exists()
                       and _sidecar_fingerprint(item_output(out, it, config)) != fp["value"]]
            if foreign:
                raise InputError(
                    f"{out} holds {len(foreign)} outputs (e.g. {foreign[0]}) that no recorded batch run made; use a "
                    "new folder, or --no-skip-existing to regenerate every item with these settings")
    out.mkdir(parents=True, exist_ok=True)
    write_durable(record_path, (json.dumps({"format": "foleykit-batch-run", "fingerprint": fp}, indent=1,
                                           sort_keys=True, default=str) + "\n").encode())
    return fp


@dataclass
class ItemStatus:
    id: str
    status: str  # generated | skipped | failed
    output: str | None = None
    seed: int | None = None
    reason: str | None = None
    seconds: float = 0.0


class BatchWorker:
    """Generates items one by one with a pipeline loaded once (in the constructor).

    ``fingerprint`` (from :func:`prepare_batch_run`) goes into each sidecar; with it, an existing
    output is skipped only when its sidecar carries the same fingerprint.
    """

    def __init__(self, config: BatchGenerateConfig, out_dir: str | os.PathLike, fingerprint: str | None = None) -> None:
        from ..api import load_pipeline

        self.config = config
        self.fingerprint = fingerprint
        self.out_dir = Path(out_dir).expanduser()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if config.threads:
            import torch

            torch.set_num_threads(config.threads)
        # the same arguments as foleykit.api.generate passes, so its cached pipeline is this one
        if config.method == "objects":
            load_pipeline("objects", config.models, None, config.device, config.dtype, config.grounding)
        elif config.method == "sources":
            load_pipeline("sources", config.models, None, config.device, config.dtype, None, config.ss2a)
        else:
            load_pipeline(config.method, config.models, config.mapper, config.device, config.dtype)

    def run(self, items: Sequence[ManifestItem]) -> list[ItemStatus]:
        return [self.run_one(it) for it in items]

    def run_one(self, item: ManifestItem) -> ItemStatus:
        from ..api import generate

        cfg = self.config
        out = item_output(self.out_dir, item, cfg)
        seed = item_seed(cfg.seed, item.id)
        if cfg.skip_existing and out.exists() and (self.fingerprint is None or _sidecar_fingerprint(out) == self.fingerprint):
            return ItemStatus(item.id, "skipped", str(out), seed)
        source = item.image or item.video
        if not source:
            return ItemStatus(item.id, "failed", None, seed, "item has no image or video")
        t0 = time.perf_counter()
        try:
            prompts = item_prompts(item, cfg.method)
            res = generate(source, out, method=cfg.method, models=cfg.models, mapper=cfg.mapper, seed=seed,
                           duration=cfg.duration, steps=cfg.steps, preset=cfg.preset, guidance=cfg.guidance,
                           candidates=cfg.candidates, frames=cfg.frames, device=cfg.device, dtype=cfg.dtype,
                           overwrite=True, progress=False, **prompts,
                           **({"ss2a": cfg.ss2a} if cfg.method == "sources" else {}),
                           **({"grounding": cfg.grounding} if cfg.method == "objects" else {}))
            if self.fingerprint is not None:
                self._stamp(res.sidecar or out.with_name(out.name + ".json"), seed)
        except FoleykitError as exc:
            return ItemStatus(item.id, "failed", None, seed, one_line(exc), time.perf_counter() - t0)
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - one bad item must not end a dataset-sized run
            return ItemStatus(item.id, "failed", None, seed, f"{type(exc).__name__}: {one_line(exc)}",
                              time.perf_counter() - t0)
        return ItemStatus(item.id, "generated", str(out), seed, None, time.perf_counter() - t0)

    def _stamp(self, sidecar: Path, seed: int) -> None:
        """Add this run's fingerprint to the item's sidecar (atomically): the mark of a finished item."""
        from ..io.atomic import write_bytes_atomic

        record = json.loads(Path(sidecar).read_text())
        record["batch"] = {"fingerprint": self.fingerprint, "base_seed": self.config.seed, "item_seed": seed,
                           "run_file": RUN_FILE}
        write_bytes_atomic(Path(sidecar), (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())


@dataclass
class BatchReport:
    total: int
    generated: int
    skipped: int
    failed: int
    statuses: list[ItemStatus] = field(default_factory=list)
    seconds: float = 0.0
    report_path: Path | None = None
    fingerprint: dict | None = None  # what the folder's outputs were made from (batch_fingerprint)


def write_report(out_dir: Path, manifest: Manifest, statuses: Iterable[ItemStatus], config: BatchGenerateConfig,
                 seconds: float, fingerprint: dict | None = None) -> BatchReport:
    from ..training.extraction import write_durable

    by_id = {s.id: s for s in statuses}
    ordered = [by_id[it.id] for it in manifest if it.id in by_id]
    counts = {k: sum(s.status == k for s in ordered) for k in ("generated", "skipped", "failed")}
    report = {
        "format": "foleykit-batch-generate",
        "manifest": manifest.fingerprint,
        "config": asdict(config),
        "fingerprint": fingerprint,
        "total": len(ordered),
        **counts,
        "failures": [{"id": s.id, "reason": s.reason} for s in ordered if s.status == "failed"],
        "seconds": round(seconds, 3),
    }
    path = out_dir / REPORT_FILE
    write_durable(path, (json.dumps(report, indent=1, sort_keys=True) + "\n").encode())
    return BatchReport(total=len(ordered), statuses=ordered, seconds=seconds, report_path=path,
                       fingerprint=fingerprint, **counts)


def batch_generate(manifest: Manifest, out_dir: str | os.PathLike, config: BatchGenerateConfig | None = None, *,
                   progress: bool = True) -> BatchReport:
    """Generate a sound for every item of ``manifest`` in this process."""
    from tqdm.auto import tqdm

    config = config or BatchGenerateConfig()
    out = Path(out_dir).expanduser()
    t0 = time.perf_counter()
    fp = prepare_batch_run(manifest, out, config)
    import torch

    threads = torch.get_num_threads()
    try:
        worker = BatchWorker(config, out, fingerprint=fp["value"])
        statuses = []
        for item in tqdm(manifest.items, desc="generate", unit="item", disable=not progress):
            statuses.append(worker.run_one(item))
    finally:
        torch.set_num_threads(threads)  # config.threads applies to this batch only
    return write_report(out, manifest, statuses, config, time.perf_counter() - t0, fingerprint=fp)
