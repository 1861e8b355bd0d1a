"""``evaluate``: score a folder of generated audio against a folder of reference audio.

One pass over the files: each file is decoded once, checked (unreadable, empty, NaN/inf are
errors; silence, upsampling and short clips are warnings), and run through each embedder the
requested metrics need, once (the cache shares outputs between metrics, and across runs when
``cache_dir`` is given). Then every metric is computed from the stored outputs, and ``report.json``,
``report.md`` and plots are written to ``out_dir``. A metric that cannot run (no embedder, no
images/captions/labels, too few clips) is listed under ``skipped`` with the reason.
"""

from __future__ import annotations

import os
import platform
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..devices import resolve_device
from ..errors import FoleykitError, InputError, OutputError
from ..io._checks import one_line
from ..io.audio import SILENCE_PEAK, load_audio
from ..seeding import resolve_seed
from .acc import DEFAULT_EXCLUDED, AccMode, acc, label_indices
from .annotations import read_captions, read_labels
from .audio_frontend import FrontendSpec, Protocol, frontend_spec, prepare
from .cache import EmbeddingCache
from .clap_score import clap_score
from .clip_score import clip_score, match_images
from .embedders import build_embedders
from .embedders.base import AudioEmbedder
from .frechet import FrechetWarning, frechet_distance, pool_frames
from .kl_is import IS_SEED, IS_SPLITS, inception_score, kl_divergence
from .pairing import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, list_files, require_same_names
from .protocols import BenchmarkProtocol, resolve_protocol
from .published import published_for
from .report import write_report
from .ssms import ssms

#: Bump when the per-file checks change, so cached check results are not reused.
_CHECK_ID = "file-check-v1"
_SHORT_TOLERANCE_S = 0.05


@dataclass(frozen=True)
class MetricInfo:
    label: str
    roles: tuple[str, ...]
    lower_is_better: bool
    needs: str | None = None  # an input besides the audio: images_dir / captions_csv / labels_csv
    paired: bool = True  # needs the reference set


METRICS: dict[str, MetricInfo] = {
    "fd": MetricInfo("FD (PANNs CNN14, 2048-d)", ("panns",), True),
    "fad": MetricInfo("FAD (VGGish frames)", ("vggish",), True),
    "c_fad": MetricInfo("C-FAD (CLAP)", ("clap",), True),
    "kl_softmax": MetricInfo("KL softmax (ref ‖ gen)", ("tagger",), True),
    "kl_sigmoid": MetricInfo("KL sigmoid (ref ‖ gen)", ("tagger",), True),
    "is": MetricInfo("IS", ("tagger",), False, paired=False),
    "ssms": MetricInfo("SSMS (0-10 scale)", ("tagger",), False),
    "acc": MetricInfo("ACC", ("tagger",), False, needs="labels_csv", paired=False),
    "clap_score": MetricInfo("CLAP score (x100)", ("clap",), False, needs="captions_csv", paired=False),
    "clip_score": MetricInfo(
        "CLIP score (x100)", ("wav2clip", "clip_image"), False, needs="images_dir", paired=False
    ),
}
DEFAULT_METRICS = tuple(METRICS)

Outputs = dict[str, dict[str, dict[str, np.ndarray]]]  # role -> side -> clip -> named arrays


class _Clip:
    """A file decoded at most once, however many embedders miss the cache."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._audio: tuple[np.ndarray, int] | None = None

    def audio(self) -> tuple[np.ndarray, int]:
        if self._audio is None:
            if self.path.suffix.lower() in VIDEO_EXTENSIONS:  # a video's own soundtrack
                from ..io.video import read_video_audio

                self._audio = read_video_audio(self.path)
            else:
                self._audio = load_audio(self.path, mono=True)
        return self._audio

    def check(self) -> dict[str, np.ndarray]:
        wave, sr = self.audio()
        return {
            "sample_rate": np.array(sr),
            "frames": np.array(wave.shape[0]),
            "peak": np.array(np.abs(wave).max()),
        }


def evaluate(
    generated_dir: str | os.PathLike,
    reference_dir: str | os.PathLike | None,
    *,
    out_dir: str | os.PathLike,
    images_dir: str | os.PathLike | None = None,
    captions_csv: str | os.PathLike | None = None,
    labels_csv: str | os.PathLike | None = None,
    metrics: Sequence[str] | None = None,
    embedders: str | Mapping[str, Any] | None = None,
    protocol: str | Protocol | BenchmarkProtocol = "v2a-mapper",
    seed: int | None = IS_SEED,
    device: str = "auto",
    model_set: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    ssms_m: int = 10,
    ssms_n: int = 10,
    is_splits: int = IS_SPLITS,
    acc_mode: AccMode = "sigmoid",
    acc_exclude: Sequence[str] = DEFAULT_EXCLUDED,
    plots: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate ``generated_dir`` against ``reference_dir`` (files paired by name); returns the report.

    ``embedders``: ``"tiny"`` (random weights, offline: exercises everything, measures nothing),
    ``"default"``/None (hub models; PANNs, VGGish and Wav2CLIP need checkpoints), or a mapping
    role -> embedder object / checkpoint / hub id (see :mod:`foleykit.evaluation.embedders`).
    ``seed`` shuffles the IS splits (2020 = audioldm_eval / av-benchmark; None draws one); fewer
    than 10 splits only make sense for small sets, whose IS is shaky anyway.
    ``reference_dir`` may be None (e.g. ImageHear): only the unpaired metrics then run.
    ``protocol``: a front end (``v2a-mapper`` 10 s, ``ssv2a`` 10.24 s, ``mmaudio`` 8 s) or a benchmark
    (:data:`~foleykit.evaluation.protocols.BENCHMARKS`, e.g. ``vggss-single``), which brings its front
    end, its metrics (the default; others requested are skipped with the reason) and only its own
    published numbers. ``cache_dir`` keeps embeddings on disk for later runs.
    Embedders run in float32 on ``device``: half precision would move the numbers.
    """
    started = time.perf_counter()
    proto, bench = resolve_protocol(protocol)
    wanted = list((bench.metrics if bench else DEFAULT_METRICS) if metrics is None else metrics)
    unknown = [m for m in wanted if m not in METRICS]
    if unknown:
        raise InputError(f"unknown metrics {unknown}; choose from {', '.join(METRICS)}")
    for name, value in (("ssms_m", ssms_m), ("ssms_n", ssms_n)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a whole number of labels >= 1, got {value!r}")
    seed_used = resolve_seed(seed)
    out = _check_out_dir(out_dir, [generated_dir, reference_dir])

    sides = {"generated": list_files(generated_dir, AUDIO_EXTENSIONS + VIDEO_EXTENSIONS, "generated audio")}
    if reference_dir is not None:  # reference audio may be the soundtrack of videos (<name>.mp4)
        sides["reference"] = list_files(reference_dir, AUDIO_EXTENSIONS + VIDEO_EXTENSIONS, "reference audio")
        require_same_names(
            sides["generated"],
            sides["reference"],
            f"generated ({generated_dir})",
            f"reference ({reference_dir})",
        )
    names = sorted(sides["generated"])

    extra = {"images_dir": images_dir, "captions_csv": captions_csv, "labels_csv": labels_csv}
    skipped: dict[str, str] = {}
    for metric in wanted:
        info = METRICS[metric]
        if bench is not None and metric not in bench.metrics:
            skipped[metric] = f"not part of the {bench.name} protocol (it supports {', '.join(bench.metrics)})"
        elif info.paired and reference_dir is None:
            skipped[metric] = "needs a reference directory"
        elif info.needs and extra[info.needs] is None:
            skipped[metric] = f"needs {info.needs}"
    active = [m for m in wanted if m not in skipped]
    annotations = _read_annotations(active, names, images_dir, captions_csv, labels_csv)

    roles = {role for m in active for role in METRICS[m].roles}
    built, unavailable = build_embedders(
        embedders, roles, device=str(resolve_device(device)), model_set=model_set
    )
    asked = set(embedders) if isinstance(embedders, Mapping) else set()
    refused = sorted(r for r in roles if r in unavailable and r in asked)
    if refused:  # an embedder the user named that cannot be built is an error, not a skipped metric
        raise InputError(f"embedder {refused[0]} ({embedders[refused[0]]}): {unavailable[refused[0]]}")
    for metric in active:
        lacking = [r for r in METRICS[metric].roles if r in unavailable]
        if lacking:
            skipped[metric] = "; ".join(f"no {r} embedder: {unavailable[r]}" for r in lacking)
    active = [m for m in active if m not in skipped]

    audio_roles = sorted({r for m in active for r in METRICS[m].roles if isinstance(built[r], AudioEmbedder)})
    specs = {
        r: frontend_spec(proto, built[r].sample_rate, built[r].pad_mode, built[r].max_seconds)
        for r in audio_roles
    }
    cache = EmbeddingCache(cache_dir)
    t0 = time.perf_counter()
    outputs, file_notes = _embed_all(sides, {r: built[r] for r in audio_roles}, specs, proto, cache, progress)
    embed_s = time.perf_counter() - t0

    results: dict[str, dict[str, Any]] = {}
    per_clip: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    for metric in active:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FrechetWarning)  # kept in the result, shown in report.md
                results[metric], clip_values = _compute(
                    metric,
                    outputs,
                    list(sides),
                    annotations,
                    built,
                    cache,
                    seed=seed_used,
                    ssms_m=ssms_m,
                    ssms_n=ssms_n,
                    is_splits=is_splits,
                    acc_mode=acc_mode,
                    acc_exclude=acc_exclude,
                )
        except FoleykitError as exc:
            skipped[metric] = f"could not be computed: {one_line(exc)}"
            continue
        results[metric] |= {
            "label": METRICS[metric].label,
            "lower_is_better": METRICS[metric].lower_is_better,
            "embedders": {r: built[r].id for r in METRICS[metric].roles},
        }
        if clip_values:
            per_clip[metric] = clip_values
    metrics_s = time.perf_counter() - t0

    report = {
        "generated_dir": str(Path(generated_dir).resolve()),
        "reference_dir": str(Path(reference_dir).resolve()) if reference_dir is not None else None,
        "clips": len(names),
        "protocol": proto.to_dict(),
        "benchmark": bench.to_dict() if bench is not None else None,
        "seed": seed_used,
        "metrics": {m: results[m] for m in wanted if m in results},
        "skipped": {m: skipped[m] for m in wanted if m in skipped},
        "embedders": {
            r: e.describe() | ({"frontend": specs[r].key} if r in specs else {}) for r, e in built.items()
        },
        "unavailable_embedders": unavailable,
        "files": file_notes,
        "cache": cache.stats(),
        "timing_s": {"embedding": round(embed_s, 3), "metrics": round(metrics_s, 3)},
        "published": [
            p.to_dict() for p in published_for(list(results), dataset=bench.name if bench is not None else None)
        ],
        "versions": _versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "per_clip": per_clip,
    }
    stand_ins = sorted(r for r, e in built.items() if _is_stand_in(e, embedders, r))
    if stand_ins:
        report["stand_in_embedders"] = stand_ins
        report["banner"] = (f"Stand-in embedders with random weights ({', '.join(stand_ins)}): these numbers "
                            "measure nothing and cannot be compared with the papers' numbers.")
    report["timing_s"]["total"] = round(time.perf_counter() - started, 3)
    if not results:
        reasons = "; ".join(f"{m}: {why}" for m, why in report["skipped"].items())
        raise InputError(f"no metric could be computed ({reasons or 'none asked for'})")
    out.mkdir(parents=True, exist_ok=True)
    write_report(report, out, outputs=outputs if plots else None)
    return report


def _is_stand_in(embedder: Any, spec: Any, role: str) -> bool:
    """A random-weight stand-in: built from ``"tiny"`` (the spec or the role's), or from the tiny model set."""
    item = spec if not isinstance(spec, Mapping) else spec.get(role)
    return item == "tiny" or "tiny" in str(getattr(embedder, "id", "")).lower()


def _versions() -> dict[str, str]:
    import scipy
    import torch
    import transformers

    from .. import __version__

    return {
        "foleykit": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def _check_out_dir(out_dir: str | os.PathLike, inputs: Sequence[str | os.PathLike | None]) -> Path:
    """Refuse an unusable output directory before any work; it is only created when the report is written."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise OutputError(f"output directory {out} is a file")
    for inp in inputs:
        if inp is not None and out.resolve() == Path(inp).expanduser().resolve():
            raise OutputError(f"output directory {out} is an input directory; choose another one")
    existing = next(p for p in (out, *out.resolve().parents) if p.exists())
    if not os.access(existing, os.W_OK):
        raise OutputError(f"output directory {out} cannot be written ({existing} is not writable)")
    return out


def _read_annotations(
    active: list[str],
    names: list[str],
    images_dir: str | os.PathLike | None,
    captions_csv: str | os.PathLike | None,
    labels_csv: str | os.PathLike | None,
) -> dict[str, dict[str, list[Any]]]:
    """Images / captions / labels per generated clip; every clip must have some (extra rows are fine)."""
    found: dict[str, dict[str, list[Any]]] = {}
    sources: dict[str, tuple[str, Callable[[], dict[str, list[Any]]]]] = {
        "clip_score": (
            "images",
            lambda: match_images(names, list_files(images_dir, IMAGE_EXTENSIONS, "image")),
        ),
        "clap_score": ("captions", lambda: read_captions(captions_csv)),
        "acc": ("labels", lambda: read_labels(labels_csv)),
    }
    for metric, (kind, read) in sources.items():
        if metric in active:
            table = read()
            lacking = [n for n in names if n not in table]
            if lacking:
                shown = ", ".join(lacking[:8]) + (f" (+{len(lacking) - 8} more)" if len(lacking) > 8 else "")
                raise InputError(f"{len(lacking)} generated clips have no {kind} for {metric}: {shown}")
            found[kind] = {n: table[n] for n in names}
    return found


def _embed_all(
    sides: dict[str, dict[str, Path]],
    embedders: dict[str, AudioEmbedder],
    specs: dict[str, FrontendSpec],
    protocol: Protocol,
    cache: EmbeddingCache,
    progress: bool,
) -> tuple[Outputs, dict[str, Any]]:
    """Every file through every embedder once; per-file problems gathered into one error."""
    outputs: Outputs = {role: {side: {} for side in sides} for role in embedders}
    problems: list[str] = []
    notes: dict[str, list[str]] = {"silent": [], "low_sample_rate": [], "short": []}
    rates: dict[str, dict[int, int]] = {side: {} for side in sides}
    lowest_rate = min((e.sample_rate for e in embedders.values()), default=0)
    items = [(side, name, path) for side, files in sides.items() for name, path in sorted(files.items())]
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="evaluate", unit="file")
    for side, name, path in items:
        clip = _Clip(path)
        try:
            check = cache.get_or_compute(path, _CHECK_ID, clip.check)
            for role, emb in embedders.items():
                spec = specs[role]
                outputs[role][side][name] = cache.get_or_compute(
                    path,
                    f"{emb.id}|{spec.key}",
                    lambda emb=emb, spec=spec, clip=clip: emb.embed(prepare(*clip.audio(), spec)),
                )
        except InputError as exc:
            problems.append(one_line(exc))
            continue
        sr, seconds = int(check["sample_rate"]), int(check["frames"]) / int(check["sample_rate"])
        rates[side][sr] = rates[side].get(sr, 0) + 1
        label = f"{side}/{path.name}"
        if float(check["peak"]) < SILENCE_PEAK:
            notes["silent"].append(label)
        if sr < lowest_rate:
            notes["low_sample_rate"].append(
                f"{label} ({sr} Hz, upsampled to {lowest_rate} Hz: its top band is empty)"
            )
        if seconds < protocol.seconds - _SHORT_TOLERANCE_S:
            notes["short"].append(f"{label} ({seconds:.2f} s < {protocol.seconds:g} s)")
    if len({sr for counts in rates.values() for sr in counts}) > 1:
        listing = "; ".join(
            f"{side}: " + ", ".join(f"{n} at {sr} Hz" for sr, n in sorted(c.items()))
            for side, c in rates.items()
        )
        notes["mixed_sample_rates"] = [
            f"{listing} (a band that only some files can hold shifts embedders running above the lowest rate)"
        ]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; (+{len(problems) - 5} more)" if len(problems) > 5 else "")
        raise InputError(f"{len(problems)} audio files cannot be evaluated: {shown}")
    return outputs, notes


def _compute(
    metric: str,
    outputs: Outputs,
    sides: list[str],
    annotations: dict[str, dict[str, list[Any]]],
    built: dict[str, Any],
    cache: EmbeddingCache,
    *,
    seed: int,
    ssms_m: int,
    ssms_n: int,
    is_splits: int,
    acc_mode: AccMode,
    acc_exclude: Sequence[str],
) -> tuple[dict[str, Any], dict[str, float]]:
    """A metric's result (``value`` on the papers' scale, ``raw`` where that differs) and per-clip values."""

    def arrays(role: str, side: str, key: str) -> dict[str, np.ndarray]:
        return {name: out[key] for name, out in outputs[role].get(side, {}).items()}

    if metric in ("fd", "fad", "c_fad"):
        role = METRICS[metric].roles[0]
        gen, ref = arrays(role, "generated", "embedding"), arrays(role, "reference", "embedding")
        if metric == "fad":
            a, b = pool_frames([gen[n] for n in sorted(gen)]), pool_frames([ref[n] for n in sorted(ref)])
        else:
            a, b = np.stack([gen[n] for n in sorted(gen)]), np.stack([ref[n] for n in sorted(ref)])
        res = frechet_distance(a, b)
        return {"value": res.value, **{k: v for k, v in res.to_dict().items() if k != "value"}}, {}
    if metric in ("kl_softmax", "kl_sigmoid"):
        res = kl_divergence(
            arrays("tagger", "reference", "logits"),
            arrays("tagger", "generated", "logits"),
            mode=metric.split("_")[1],
        )
        return {"value": res.value, "mode": res.mode, "eps": res.eps, "n": res.n}, res.per_clip
    if metric == "is":
        out: dict[str, Any] = {}
        for side in sides:
            logits = arrays("tagger", side, "logits")
            res = inception_score(np.stack([logits[n] for n in sorted(logits)]), splits=is_splits, seed=seed)
            key = "" if side == "generated" else "reference_"
            out |= {f"{key}value": res.mean, f"{key}std": res.std}
        return out | {"splits": res.splits, "n": res.n, "seed": seed}, {}
    if metric == "ssms":
        res = ssms(
            arrays("tagger", "reference", "logits"),
            arrays("tagger", "generated", "logits"),
            m=ssms_m,
            n=ssms_n,
        )
        return {
            "value": res.paper_scale,
            "f1": res.f1,
            "precision": res.precision,
            "recall": res.recall,
            "m": res.m,
            "n": res.n,
            "pairs": res.pairs,
        }, {}
    if metric == "acc":
        tagger = built["tagger"]
        n_classes = next(iter(arrays("tagger", "generated", "logits").values())).shape[0]
        names = tagger.class_names
        excluded, unresolved = _known_classes(acc_exclude, names, n_classes)
        labels = {k: label_indices(v, names, n_classes) for k, v in annotations["labels"].items()}
        out = {}
        for side in sides:
            res = acc(arrays("tagger", side, "logits"), labels, mode=acc_mode, exclude=excluded)
            out[("" if side == "generated" else "reference_") + "value"] = res.value
        return out | {
            "mode": res.mode,
            "n": res.n,
            "unlabelled": list(res.unlabelled),
            "excluded_classes": [names[i] if names else i for i in res.excluded],
            "exclusions_not_found": unresolved,
        }, {}
    if metric == "clap_score":
        clap = built["clap"]
        captions = annotations["captions"]
        table = cache.texts_or_compute([c for caps in captions.values() for c in caps], clap.id + ":text",
                                       clap.embed_texts)
        texts = {n: [table[c] for c in caps] for n, caps in captions.items()}
        return _cosine_result(lambda side: clap_score(arrays("clap", side, "embedding"), texts), sides)
    if metric == "clip_score":
        image_embedder = built["clip_image"]
        images = {
            n: [
                cache.get_or_compute(p, image_embedder.id, lambda p=p: image_embedder.embed_image(p))[
                    "embedding"
                ]
                for p in paths
            ]
            for n, paths in annotations["images"].items()
        }
        return _cosine_result(lambda side: clip_score(arrays("wav2clip", side, "embedding"), images), sides)
    raise AssertionError(f"metric {metric} has no implementation")


def _known_classes(
    labels: Sequence[str], names: list[str] | None, n_classes: int
) -> tuple[list[int], list[str]]:
    """Indices of the ``labels`` this tagger knows, and the ones it does not (reported, not fatal)."""
    found, unknown = [], []
    for lab in labels:
        try:
            found += label_indices([lab], names, n_classes)
        except InputError:
            unknown.append(lab)
    return found, unknown


def _cosine_result(score: Callable[[str], Any], sides: list[str]) -> tuple[dict[str, Any], dict[str, float]]:
    gen = score("generated")
    out: dict[str, Any] = {"value": gen.scaled, "raw": gen.raw, "std": gen.std, "n": gen.n}
    if "reference" in sides:
        ref = score("reference")
        out |= {"reference_value": ref.scaled, "reference_raw": ref.raw}
    return out, gen.per_clip
