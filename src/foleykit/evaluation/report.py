"""Writing an evaluation report: ``report.json`` (everything), ``report.md`` (a table to read), plots.

The Markdown table puts each metric beside the papers' published numbers (one column per paper,
its own method), with the paper's setting underneath: a number is only comparable under the same
dataset, clip length and tool, and the table says so instead of implying it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_path, write_bytes_atomic
from .published import HEADLINE, PROVENANCE_LEGEND, Published

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PLOTS_DIR = "plots"
_SHOWN_FILES = 5


def write_report(report: dict[str, Any], out_dir: Path, *, outputs: dict | None = None) -> None:
    """Write plots (when ``outputs`` is given and matplotlib is installed), then report.json and report.md."""
    if outputs is not None:
        report["plots"] = _plots(report, outputs, out_dir)
    write_bytes_atomic(out_dir / REPORT_JSON, json.dumps(report, indent=2, default=_jsonable).encode())
    write_bytes_atomic(out_dir / REPORT_MD, render_markdown(report).encode())


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 and value != 0 else f"{value:.3f}"
    return str(value)


def _published(report: dict[str, Any]) -> list[Published]:
    return [Published(**p) for p in report.get("published", [])]


def render_markdown(report: dict[str, Any]) -> str:
    """The human-readable report: results table with published columns, skipped metrics, file notes."""
    published = _published(report)
    # One column per (paper table, dataset): a paper's VGGSound and ImageHear numbers never share one.
    columns = list(dict.fromkeys((p.source, p.dataset) for p in published if p.source in HEADLINE))
    bench = report.get("benchmark")
    lines = [
        "# foleykit evaluation",
        "",
        *([f"> **{report['banner']}**", ""] if report.get("banner") else []),
        f"- generated: `{report['generated_dir']}`",
        f"- reference: `{report['reference_dir']}`" if report["reference_dir"] else "- reference: none",
        (
            f"- clips: {report['clips']}; protocol: {report['protocol']['name']} "
            f"({report['protocol']['note']}); seed: {report['seed']}"
        ),
    ]
    if bench:
        expected = f"; the published set has {bench['expected_items']}" if bench.get("expected_items") else ""
        lines.append(f"- benchmark: {bench['name']} ({bench['dataset']}{expected})")
    lines += [
        "",
        "| metric | ours | reference audio | "
        + " | ".join(f"{HEADLINE[s]} ({s}{', ' + d if d else ''})" for s, d in columns)
        + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for metric, res in report["metrics"].items():
        arrow = "↓" if res["lower_is_better"] else "↑"
        cells = [f"{res['label']} {arrow}", _fmt(res["value"]), _fmt(res.get("reference_value", "–"))]
        for source, dataset in columns:
            hit = next(
                (
                    p
                    for p in published
                    if p.metric == metric
                    and p.source == source
                    and p.dataset == dataset
                    and p.method == HEADLINE[source]
                ),
                None,
            )
            if hit is None:
                cells.append("–")
                continue
            cells.append(
                _fmt(hit.value) + (f" {hit.mark}" if hit.mark else "") + (f" ({hit.note})" if hit.note else "")
            )
        lines.append("| " + " | ".join(cells) + " |")
    if columns:
        lines += ["", "Published settings (numbers are comparable only under the same setting):", ""]
        lines += [
            f"- {s}{', ' + d if d else ''}: {next(p.setting for p in published if (p.source, p.dataset) == (s, d))}"
            for s, d in columns
        ]
    unconfirmed = [p for p in published if not p.verified]
    if unconfirmed:
        lines += ["", "Provenance of the published numbers (report.json lists each one's source):", ""]
        lines += [
            f"- {PROVENANCE_LEGEND[level]}"
            for level in ("secondary", "unverified")
            if any(p.provenance == level for p in unconfirmed)
        ]
        lines += [
            f"- unverified: {p.method} {p.metric} = {_fmt(p.value)} ({p.source}): {p.note}"
            for p in unconfirmed
            if p.provenance == "unverified"
        ]
    notes = [f"- {m}: {n}" for m, res in report["metrics"].items() for n in res.get("warnings", [])]
    if notes:
        lines += ["", "## Warnings", "", *notes]
    if report["skipped"]:
        lines += ["", "## Skipped", "", *[f"- {m}: {why}" for m, why in report["skipped"].items()]]
    file_lines = []
    for kind, items in report["files"].items():
        if items:
            more = f" (+{len(items) - _SHOWN_FILES} more)" if len(items) > _SHOWN_FILES else ""
            file_lines.append(f"- {kind} ({len(items)}): {'; '.join(items[:_SHOWN_FILES])}{more}")
    if file_lines:
        lines += ["", "## Files", "", *file_lines]
    lines += ["", "## Embedders", ""]
    lines += [
        f"- {role}: `{desc['id']}` ({desc.get('frontend', 'images')})"
        for role, desc in report["embedders"].items()
    ]
    for plot in report.get("plots", []):
        lines += ["", f"![{Path(plot).stem}]({plot})"]
    return "\n".join(lines) + "\n"


def _plots(report: dict[str, Any], outputs: dict, out_dir: Path) -> list[str]:
    """Per-metric bars (ours, reference audio, published) and a 2-D PCA of each embedding space."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        report["skipped_plots"] = "matplotlib is not installed (pip install 'foleykit[eval]')"
        return []
    plot_dir = out_dir / PLOTS_DIR
    plot_dir.mkdir(exist_ok=True)
    written = []
    metrics = report["metrics"]
    published = _published(report)
    if metrics:
        fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.4), squeeze=False)
        for ax, (metric, res) in zip(axes[0], metrics.items()):
            bars = [("ours", res["value"])]
            if "reference_value" in res:
                bars.append(("reference", res["reference_value"]))
            bars += [
                (f"{p.method}{' ' + p.mark if p.mark else ''}\n({p.source.split(' paper')[0]})", p.value)
                for p in published
                if p.metric == metric
            ]
            ax.bar(range(len(bars)), [v for _, v in bars], color=["C0"] + ["C7"] * (len(bars) - 1))
            ax.set_xticks(range(len(bars)), [b for b, _ in bars], rotation=60, ha="right", fontsize=6)
            ax.set_title(res["label"], fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, plot_dir / "metrics.png", plt))
    for role, by_side in outputs.items():
        if role == "tagger" or not by_side.get("generated"):
            continue
        points = {
            side: np.concatenate([np.atleast_2d(o["embedding"]) for o in clips.values()])
            for side, clips in by_side.items()
            if clips
        }
        stacked = np.concatenate(list(points.values())).astype(np.float64)
        if stacked.shape[0] < 3 or stacked.shape[1] < 2:
            continue
        centred = stacked - stacked.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        fig, ax = plt.subplots(figsize=(4, 4))
        for side, pts in points.items():
            xy = (pts - stacked.mean(axis=0)) @ vt[:2].T
            ax.scatter(xy[:, 0], xy[:, 1], s=8, alpha=0.6, label=f"{side} ({len(pts)})")
        ax.set_title(f"PCA of {role} embeddings", fontsize=9)
        ax.legend(fontsize=7)
        written.append(_save(fig, plot_dir / f"pca_{role}.png", plt))
    return [str(Path(PLOTS_DIR) / Path(p).name) for p in written]


def _save(fig: Any, path: Path, plt: Any) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return str(path)
