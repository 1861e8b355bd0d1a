"""``foleykit evaluate`` (the papers' metrics over generated audio) and ``foleykit protocol`` (benchmark manifests)."""

# No ``from __future__ import annotations``: typer reads the annotations at runtime.
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import FoleykitError
from .options import Device, OverwriteOutput

commands = typer.Typer()


@commands.command()
def evaluate(
    generated: Annotated[Path, typer.Option("--generated", help="Folder of generated audio.")],
    out: Annotated[Path, typer.Option("--out", help="Report folder (report.json, report.md, plots/).")],
    reference: Annotated[Optional[Path], typer.Option("--reference", help="Folder of reference audio, paired by file name.")] = None,
    images: Annotated[Optional[Path], typer.Option(help="Images named like the clips (CLIP-score).")] = None,
    captions: Annotated[Optional[Path], typer.Option(help="CSV of file,caption (CLAP score).")] = None,
    labels: Annotated[Optional[Path], typer.Option(help="CSV of file,labels (ACC).")] = None,
    metrics: Annotated[Optional[str], typer.Option(help="Comma list: fd,fad,c_fad,kl_softmax,kl_sigmoid,is,ssms,acc,clap_score,clip_score.")] = None,
    models: Annotated[Optional[str], typer.Option(help="default | tiny | DIR: where CLAP/CLIP/AST come from; tiny = random embedders.")] = None,
    embedders: Annotated[Optional[Path], typer.Option(help="JSON {role: checkpoint path or hub id} for panns/vggish/wav2clip/beats/ast/tagger/clap/clip_image.")] = None,
    protocol: Annotated[str, typer.Option(help="A benchmark (vggsound-test, vggsound-test-mmaudio, vggsound-i2a, vggss-single, vggss-multi, imagehear, audiocaps-test: its front end, metrics and published numbers; see `foleykit protocol`) or a front end: v2a-mapper (10 s) | ssv2a (10.24 s) | mmaudio (8 s).")] = "v2a-mapper",
    seed: Annotated[int, typer.Option(help="IS split shuffle seed (2020 = audioldm_eval / av-benchmark).")] = 2020,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help="Keep embeddings on disk here; later runs reuse them (keyed by file path, mtime, size and embedder).")] = None,
    ssms_m: Annotated[int, typer.Option("--ssms-m", help="SSMS: top-M labels of the reference clip (SS2A paper 10).")] = 10,
    ssms_n: Annotated[int, typer.Option("--ssms-n", help="SSMS: top-N labels of the generated clip (SS2A paper 10, its code 50).")] = 10,
    device: Device = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing report in OUT.")] = False,
) -> None:
    """Evaluate generated audio with the papers' metrics; writes JSON, Markdown and plots."""
    import json

    from ..evaluation.runner import evaluate as run_evaluate

    if (out / "report.json").exists() and not overwrite:
        raise FoleykitError(f"{out} already holds a report; pass --overwrite to replace it")
    spec: object
    if embedders is not None:
        try:
            spec = json.loads(embedders.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise FoleykitError(f"--embedders {embedders}: not a readable JSON file ({exc})") from None
    else:
        spec = "tiny" if (models or os.environ.get("FOLEYKIT_MODELS")) in ("tiny", "debug") else "default"
    report = run_evaluate(
        generated, reference, out_dir=out, images_dir=images, captions_csv=captions, labels_csv=labels,
        metrics=[m.strip() for m in metrics.split(",") if m.strip()] if metrics else None,
        embedders=spec, protocol=protocol, seed=seed, device=device, model_set=models, progress=True,
        cache_dir=cache_dir, ssms_m=ssms_m, ssms_n=ssms_n,
    )
    for name, res in report.get("metrics", {}).items():
        value = res.get("value") if isinstance(res, dict) else res
        typer.echo(f"{name}: {value}")
    for name, why in report.get("skipped", {}).items():
        typer.echo(f"{name}: skipped ({why})")
    typer.echo(f"wrote {out / 'report.json'} and {out / 'report.md'}")


@commands.command("protocol")
def protocol_cmd(
    name: Annotated[Optional[str], typer.Argument(help="Benchmark protocol; omit to list them.")] = None,
    source: Annotated[Optional[Path], typer.Argument(help="Its annotation file or folder (vggsound.csv, vggss.json, ImageHear images, AudioCaps test.csv).")] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Manifest to write (foleykit JSON lines).")] = None,
    exclude: Annotated[Optional[Path], typer.Option(help="vggsound-i2a: the VGG-SS json whose clips leave the test split.")] = None,
    ids: Annotated[Optional[Path], typer.Option(help="vggss-*: keep only the ids listed in this file (one per line), e.g. a held-out split.")] = None,
    captions_out: Annotated[Optional[Path], typer.Option("--captions-out", help="Also write name,caption rows for `evaluate --captions` (audiocaps-test).")] = None,
    overwrite: OverwriteOutput = False,
) -> None:
    """List the benchmark protocols, or write one's manifest from its public annotation file."""
    import json

    from ..evaluation.protocols import BENCHMARKS, build_manifest, write_captions_csv

    if name is None:
        for bench in BENCHMARKS.values():
            f = bench.frontend_settings()
            typer.echo(
                f"{bench.name}: {bench.dataset} from {bench.source}; {f['seconds']:g} s "
                f"({'padded' if f['pad_short_clips'] else 'truncated only'}); metrics {','.join(bench.metrics)}; "
                f"published set {bench.expected_items}; {bench.papers}"
            )
        return
    if source is None or output is None:
        raise FoleykitError(f"protocol {name}: give its SOURCE file or folder and -o MANIFEST.jsonl")
    for path in (output, captions_out):
        if path is not None and path.exists() and not overwrite:
            raise FoleykitError(f"{path} exists; pass --overwrite to replace it")
    options: dict[str, object] = {}
    if exclude is not None:
        options["exclude"] = exclude
    if ids is not None:
        if not ids.is_file():
            raise FoleykitError(f"--ids file not found: {ids}")
        options["ids"] = ids.read_text(encoding="utf-8").splitlines()
    manifest = build_manifest(name, source, **options)
    if captions_out is not None:
        write_captions_csv(manifest, captions_out)
    manifest.write_jsonl(output)
    for note in manifest.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(json.dumps({"protocol": name, "items": len(manifest), "fingerprint": manifest.fingerprint,
                           "frontend": BENCHMARKS[name].frontend_settings()}))
    typer.echo(f"wrote {output}" + (f" and {captions_out}" if captions_out is not None else ""))
