"""The ``foleykit`` command line: a thin typer layer over :mod:`foleykit.api` and the trainers.

User errors (bad input, impossible parameters, missing models while offline) end with one line
on stderr and a non-zero exit; nothing partial is left on disk.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import FoleykitError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Generate the sound of a picture: image/video in, soundtrack out.")
train_app = typer.Typer(no_args_is_help=True, help="Train foleykit's learnable modules on cached embeddings "
                        "(accelerate: resume, validation, metrics.jsonl/TensorBoard, mixed precision, accumulation).")
app.add_typer(train_app, name="train")
models_app = typer.Typer(no_args_is_help=True, help="Inspect or build model sets.")
app.add_typer(models_app, name="models")


def _err(msg: str) -> None:
    typer.echo(f"foleykit: error: {msg}", err=True)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"foleykit {version('foleykit')}")
        except PackageNotFoundError:  # a source checkout that was never installed
            typer.echo("foleykit (not installed: version unknown)")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print foleykit's version and exit.")] = None,
) -> None:
    """Generate the sound of a picture: image/video in, soundtrack out."""


@app.command()
def generate(
    input: Annotated[Path, typer.Argument(help="Image (jpg/png/...) or video (mp4/mov/...).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output .wav/.flac, or .mp4 (a video: its video with the new sound, cut to the sound's length; an image: a still video).")],
    method: Annotated[Optional[str], typer.Option(help="mapper | objects | sources (default: sources when --audio/--stereo/--image/--mask/--ss2a is given, objects when --click/--box/--text is, else mapper).")] = None,
    models: Annotated[Optional[str], typer.Option(help="Model set: default | tiny | DIR (env FOLEYKIT_MODELS).")] = None,
    mapper: Annotated[Optional[str], typer.Option(help="Trained V2A-Mapper folder (foleykit train mapper).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed; omitted or -1 = random (the seed used is printed).")] = None,
    duration: Annotated[Optional[float], typer.Option(help="Seconds of audio (default: 10 for images, the video's length).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Diffusion steps (default: from the preset).")] = None,
    preset: Annotated[str, typer.Option(help="paper (DDIM 200, eta 1, guidance 2.5) | fast (DPM-Solver++ 10, diffusion mapper 25).")] = "fast",
    guidance: Annotated[Optional[float], typer.Option(help="Classifier-free guidance scale (default: preset).")] = None,
    candidates: Annotated[int, typer.Option(help="Clips drawn; the one closest in CLAP to the condition is kept.")] = 1,
    frames: Annotated[Optional[int], typer.Option(help="Video frames per 10 s window: mapper averages them (default 16), sources aggregates them (default 64).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps")] = "auto",
    dtype: Annotated[Optional[str], typer.Option(help="float32 | float16 | bfloat16 (default: fp16 on CUDA, else fp32).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    click: Annotated[Optional[list[str]], typer.Option("--click", help="objects: an object at pixel X,Y (repeatable).")] = None,
    box: Annotated[Optional[list[str]], typer.Option("--box", help="objects/sources: an object in box X0,Y0,X1,Y1 pixels (repeatable; sources: X0,Y0,X1,Y1@WEIGHT).")] = None,
    text: Annotated[Optional[list[str]], typer.Option("--text", help="objects/sources: an object or sound source named by text (repeatable; sources: TEXT@WEIGHT).")] = None,
    stems: Annotated[Optional[Path], typer.Option("--stems", help="objects/sources: folder for one stem per object/source.")] = None,
    context: Annotated[float, typer.Option(help="objects: 0..1 share of the whole scene mixed into the blend.")] = 0.0,
    grounding: Annotated[Optional[str], typer.Option(help="objects: trained grounding module folder.")] = None,
    maps: Annotated[Optional[Path], typer.Option("--maps", help="objects: folder for mask/attention PNG maps.")] = None,
    frame: Annotated[Optional[float], typer.Option(help="objects on a video: the frame (seconds) to select in.")] = None,
    audio: Annotated[Optional[list[Path]], typer.Option("--audio", help="sources: an audio clip as a sound source (repeatable; FILE@WEIGHT).")] = None,
    image: Annotated[Optional[list[Path]], typer.Option("--image", help="sources: another image whose sources join the scene (repeatable).")] = None,
    mask: Annotated[Optional[list[Path]], typer.Option("--mask", help="sources: a region of the image as a mask PNG of its size (repeatable).")] = None,
    stereo: Annotated[bool, typer.Option("--stereo", help="sources: a stereo mix of the stems, each region panned by its position.")] = False,
    text_mode: Annotated[str, typer.Option("--text-mode", help="sources: prior (text -> CLIP image space, paper) | clip (plain CLIP text).")] = "prior",
    ss2a: Annotated[Optional[str], typer.Option(help="sources: SS2A bundle folder (manifold/, remixer/, temporal/) or the released ssv2a.pth.")] = None,
    detect: Annotated[Optional[bool], typer.Option("--detect/--no-detect", help="sources: detect sounding objects (default: unless --box/--mask is given).")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="sources: detection score threshold 0..1 (default 0.2).")] = None,
    max_detections: Annotated[Optional[int], typer.Option(help="sources: detected objects kept per image (default 8; each costs a CLIP pass).")] = None,
    detector_size: Annotated[Optional[int], typer.Option(help="sources: OWLv2 input side in px (default: native 960; 640 is ~2.7x cheaper, coarser).")] = None,
    max_sources: Annotated[int, typer.Option(help="sources: Remixer slots M (<= 64; one is the feedback slot).")] = 64,
    cycle_rounds: Annotated[Optional[int], typer.Option(help="sources: Cycle Mix rounds (default 4).")] = None,
    cycle_samples: Annotated[Optional[int], typer.Option(help="sources: Cycle Mix candidates per round (default 16).")] = None,
    criterion: Annotated[str, typer.Option(help="sources: Cycle Mix selection, spread (released) | relevance.")] = "spread",
    original_audio: Annotated[str, typer.Option("--original-audio", help="video to .mp4: the video's own soundtrack is replaced (default), kept under the new one, or ducked (lowered by --duck-db).")] = "replace",
    duck_db: Annotated[Optional[float], typer.Option("--duck-db", help="--original-audio duck: dB the original is lowered by (default 12).")] = None,
) -> None:
    """Generate the sound of an image or a video (objects: --click/--box/--text select what sounds)."""
    from .api import generate as api_generate

    if method is None:
        if audio or image or mask or stereo or ss2a:
            method = "sources"
        else:
            method = "objects" if (click or box or text) else "mapper"
    res = api_generate(
        input, output, method=method, models=models, mapper=mapper, seed=seed, duration=duration, steps=steps,
        preset=preset, guidance=guidance, candidates=candidates, frames=frames, device=device, dtype=dtype,
        overwrite=overwrite, progress=not quiet, clicks=click, boxes=box, texts=text, stems=stems,
        context=context, grounding=grounding, maps=maps, frame=frame,
        audios=[str(a) for a in audio or []], images=[str(i) for i in image or []], masks=list(mask or []),
        stereo=stereo, text_mode=text_mode, ss2a=ss2a, detect=detect, threshold=threshold,
        max_detections=max_detections, detector_size=detector_size, max_sources=max_sources,
        cycle_rounds=cycle_rounds, cycle_samples=cycle_samples, criterion=criterion,
        original_audio=original_audio, duck_db=duck_db,
    )
    grounding_record = res.sound.record.get("grounding") or {}
    if method == "objects" and grounding_record.get("trained") is False:
        typer.echo(f"warning: {grounding_record.get('note')}", err=True)
    for path in res.outputs:
        typer.echo(f"wrote {path} ({res.sound.duration_s:.2f} s, {res.sound.sample_rate} Hz)")
    if res.sidecar is not None:
        typer.echo(f"wrote {res.sidecar}")
    for note in res.sound.record.get("notes", []):
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"seed: {res.seed}")


@app.command("app")
def app_cmd(
    models: Annotated[Optional[str], typer.Option(help="Model set: default | tiny | DIR (env FOLEYKIT_MODELS).")] = None,
    port: Annotated[int, typer.Option(help="Port to listen on (0 = a free one).")] = 7860,
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine.")] = "127.0.0.1",
    grounding: Annotated[Optional[str], typer.Option(help="Trained grounding module folder (objects).")] = None,
    mapper: Annotated[Optional[str], typer.Option(help="Trained V2A-Mapper folder (mapper).")] = None,
    workdir: Annotated[Optional[Path], typer.Option(help="The app's work folder (uploads, results); default: a temp folder.")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps")] = "auto",
) -> None:
    """Start the web app: upload a picture, click the objects that should sound, listen, download."""
    from .app import launch_app

    launch_app(models=models, host=host, port=port, grounding=grounding, mapper=mapper, workdir=workdir, device=device)


@app.command()
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
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing report in OUT.")] = False,
) -> None:
    """Evaluate generated audio with the papers' metrics; writes JSON, Markdown and plots."""
    import json

    from .evaluation.runner import evaluate as run_evaluate

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


@app.command("protocol")
def protocol_cmd(
    name: Annotated[Optional[str], typer.Argument(help="Benchmark protocol; omit to list them.")] = None,
    source: Annotated[Optional[Path], typer.Argument(help="Its annotation file or folder (vggsound.csv, vggss.json, ImageHear images, AudioCaps test.csv).")] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Manifest to write (foleykit JSON lines).")] = None,
    exclude: Annotated[Optional[Path], typer.Option(help="vggsound-i2a: the VGG-SS json whose clips leave the test split.")] = None,
    ids: Annotated[Optional[Path], typer.Option(help="vggss-*: keep only the ids listed in this file (one per line), e.g. a held-out split.")] = None,
    captions_out: Annotated[Optional[Path], typer.Option("--captions-out", help="Also write name,caption rows for `evaluate --captions` (audiocaps-test).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """List the benchmark protocols, or write one's manifest from its public annotation file."""
    import json

    from .evaluation.protocols import BENCHMARKS, build_manifest, write_captions_csv

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


@models_app.command("show")
def models_show(models: Annotated[Optional[str], typer.Argument(help="default | tiny | DIR")] = None) -> None:
    """Print which weights a model set uses (building the tiny stand-ins if asked for)."""
    import json

    from .model_sets import resolve_model_set

    typer.echo(json.dumps(resolve_model_set(models).to_dict(), indent=2))


# Dataset-scale work (extraction, curation, batch generation) and every `train` command
# (mapper, manifold, remixer, temporal, grounding, run: the accelerate trainer).
from .training.cli_commands import register as _register_scale_training  # noqa: E402
from .training.cli_commands import scale_app as _scale_app  # noqa: E402

app.add_typer(_scale_app)
_register_scale_training(train_app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one clear line for user errors, tracebacks only for bugs."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app(args=argv, standalone_mode=False)
    except FoleykitError as exc:
        _err(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _err("interrupted")
        sys.exit(130)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code)
    except Exception as exc:  # click usage errors come through here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            _err("aborted")
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()
