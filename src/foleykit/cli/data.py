"""Dataset-scale verbs: ``foleykit extract`` (embeddings of a manifest), ``curate`` (the single-source
clips), ``build-data`` (a trainer's tensors from an extraction), ``batch-generate`` (a sound for every item);
each reads a manifest, calls the library and prints a summary."""

# No ``from __future__ import annotations``: typer reads the annotations at runtime.
import inspect
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import InputError
from .options import (
    Actors,
    AudioDir,
    Candidates,
    Device,
    Dtype,
    Duration,
    Format,
    GpusPerActor,
    Guidance,
    ImageDir,
    Manifest,
    Mapper,
    Models,
    Preset,
    Quiet,
    Ray,
    RayAddress,
    Restart,
    Split,
    Steps,
    VideoDir,
)

commands = typer.Typer()

MediaDir = Annotated[Optional[Path], typer.Option(help="jsonl manifests (e.g. from `foleykit protocol`): folder holding <id>.mp4/.jpg/.png/.wav for items that name no media.")]


def read_manifest_for_cli(path: Path, fmt: str = "auto", *, video_dir: Path | None = None,
                          image_dir: Path | None = None, audio_dir: Path | None = None, split: str | None = None,
                          media_dir: Path | None = None):
    """Read a manifest passing only the folder options its format understands; ``split`` filters."""
    from ..data.manifests import detect_format, read_manifest

    fmt = detect_format(path) if fmt == "auto" else fmt
    from ..data import manifests as m

    reader = {"vggsound": m.read_vggsound_csv, "vggss": m.read_vggss_json, "audiocaps": m.read_audiocaps_csv,
              "csv": m.read_generic_csv, "jsonl": m.read_manifest_jsonl}.get(fmt)
    if reader is None:
        raise InputError(f"unknown manifest format {fmt!r}")
    accepted = set(inspect.signature(reader).parameters)
    given = {"video_dir": video_dir, "image_dir": image_dir, "audio_dir": audio_dir, "media_dir": media_dir}
    opts = {k: v for k, v in given.items() if v is not None}
    unsupported = sorted(k for k in opts if k not in accepted)
    if unsupported:
        raise InputError(f"--{unsupported[0].replace('_', '-')} does not apply to {fmt} manifests")
    if split is not None and "split" in accepted:
        opts["split"] = split  # VGGSound filters by it; AudioCaps (one split per file) records it
    manifest = read_manifest(path, fmt, **opts)
    if split is not None and "split" not in opts:
        manifest = manifest.select(split=split)
        if not len(manifest):
            raise InputError(f"{path}: no items in split {split!r}")
    return manifest


def _config_mapping(name: str | None) -> dict[str, Any]:
    if name is None:
        return {}
    from ..training.accelerate_config import find_config, read_config_file

    return read_config_file(find_config(name))


# ------------------------------------------------------------------------------------------------
# extract
# ------------------------------------------------------------------------------------------------


@commands.command("extract")
def extract_cmd(
    manifest: Manifest,
    output: Annotated[Path, typer.Option("-o", "--output", help="Extraction folder (created; rerun to resume).")],
    config: Annotated[Optional[str], typer.Option(help="Extraction settings: a YAML/JSON file or a name in configs/ (extract_ss2a, extract_v2a_mapper, extract_grounding).")] = None,
    features: Annotated[Optional[str], typer.Option(help="Comma-separated: clip, clip_frames, clip_mean, clip_patches, clap, clip_crops.")] = None,
    clip_role: Annotated[Optional[str], typer.Option(help="clip (ViT-L/14, SS2A) | clip_mapper (ViT-B/32, V2A-Mapper).")] = None,
    num_frames: Annotated[Optional[int], typer.Option(help="Frames per clip for clip_frames / clip_mean.")] = None,
    max_crops: Annotated[Optional[int], typer.Option(help="clip_crops: crop slots per item, 1..64 (default 8).")] = None,
    detector_threshold: Annotated[Optional[float], typer.Option(help="clip_crops: OWLv2 score cut for items without manifest boxes (default 0.2).")] = None,
    detector_max_detections: Annotated[Optional[int], typer.Option(help="clip_crops: detections kept per item, at most --max-crops (default: --max-crops).")] = None,
    shard_size: Annotated[Optional[int], typer.Option(help="Items per shard.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Images per CLIP forward.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Media-decoding processes.")] = None,
    fp16_storage: Annotated[bool, typer.Option("--fp16-storage", help="Store embeddings as float16.")] = False,
    format: Format = "auto",
    video_dir: VideoDir = None,
    image_dir: ImageDir = None,
    audio_dir: AudioDir = None,
    split: Split = None,
    models: Models = None,
    device: Device = "auto",
    dtype: Annotated[Optional[str], typer.Option(help="Encoder dtype: float32 | float16 | bfloat16.")] = None,
    restart: Restart = False,
    ray: Ray = False,
    ray_address: RayAddress = None,
    actors: Actors = None,
    gpus_per_actor: GpusPerActor = 0.0,
    quiet: Quiet = False,
) -> None:
    """Extract CLIP/CLAP embeddings (and CLIP of sound-source crops) of a manifest into resumable safetensors shards."""
    from ..training.extraction import ExtractionConfig, extract_embeddings

    settings = _config_mapping(config)
    overrides = {"clip_role": clip_role, "num_frames": num_frames, "shard_size": shard_size,
                 "batch_size": batch_size, "num_workers": workers, "max_crops": max_crops,
                 "detector_threshold": detector_threshold, "detector_max_detections": detector_max_detections}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    if features:
        settings["features"] = [f.strip() for f in features.split(",") if f.strip()]
    if fp16_storage:
        settings["storage_dtype"] = "float16"
    settings.pop("models", None)
    try:
        cfg = ExtractionConfig(**settings)
    except TypeError as exc:
        raise InputError(f"extraction settings: {exc}") from None
    m = read_manifest_for_cli(manifest, format, video_dir=video_dir, image_dir=image_dir, audio_dir=audio_dir, split=split)
    typer.echo(f"manifest: {len(m)} items, fingerprint {m.fingerprint[:12]}" + (f" ({'; '.join(m.notes)})" if m.notes else ""))
    if ray or ray_address:
        from ..distributed.ray_jobs import ray_extract

        res = ray_extract(m, output, cfg, models=models, num_actors=actors, num_gpus_per_actor=gpus_per_actor,
                          device=None if device == "auto" else device, dtype=dtype, restart=restart,
                          progress=not quiet, address=ray_address)
    else:
        res = extract_embeddings(m, output, cfg, models=models, device=device, dtype=dtype, restart=restart,
                                 progress=not quiet)
    typer.echo(f"extracted {res.num_extracted} of {res.num_items} items ({res.shards_written} shards written, "
               f"{res.shards_reused} already done) in {res.seconds:.1f} s")
    if res.skipped:
        typer.echo(f"skipped {len(res.skipped)} unreadable items:")
        for s in res.skipped[:10]:
            typer.echo(f"  {s['id']}: {s['reason']}")
        if len(res.skipped) > 10:
            typer.echo(f"  ... the full list is in {res.out_dir / 'extraction.json'}")
    if res.num_noted:
        typer.echo(f"{res.num_noted} items kept with a note (e.g. no box and no detection: zero crops); "
                   "EmbeddingStore(OUTPUT).notes lists them")
    typer.echo(f"wrote {res.out_dir}")
    if res.num_items and not res.num_extracted:
        raise InputError(f"{manifest}: none of its {res.num_items} items could be read (see the reasons above)")


# ------------------------------------------------------------------------------------------------
# curate
# ------------------------------------------------------------------------------------------------


def _load_detector(spec: str, *, models: Optional[str] = None, device: str = "auto", threshold: float = 0.2):
    import importlib

    if spec == "owlv2":
        from ..training.curation import owlv2_detector

        return owlv2_detector(models, threshold=threshold, device=device)
    if ":" not in spec:
        raise InputError(f"--detector must be 'owlv2' or module:function returning a detector callable, got {spec!r}")
    module, func = spec.split(":", 1)
    import os
    import sys

    if os.getcwd() not in sys.path and "" not in sys.path:  # a module in the current folder (as `python -m` finds it)
        sys.path.insert(0, os.getcwd())
    try:
        factory = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"--detector {spec}: {exc}") from None
    return factory()


@commands.command("curate")
def curate_cmd(
    manifest: Manifest,
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for decisions.jsonl, curated.jsonl, report.json.")],
    detections: Annotated[Optional[Path], typer.Option(help='Precomputed detections, JSON lines {"id", "frames": [[{"label", "score"}, ...], ...]}.')] = None,
    detector: Annotated[Optional[str], typer.Option(help="owlv2 (the model set's open-vocabulary detector) or module:function returning a callable frames -> per-frame detections.")] = None,
    models: Annotated[Optional[str], typer.Option(help="Model set for --detector owlv2: default | tiny | DIR.")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps (for --detector owlv2)")] = "auto",
    config: Annotated[Optional[str], typer.Option(help="Curation settings (file or configs/ name, e.g. curate_vggss3).")] = None,
    min_score: Annotated[Optional[float], typer.Option(help="Detections below this confidence are ignored.")] = None,
    fps: Annotated[Optional[float], typer.Option(help="Frames sampled per second of video.")] = None,
    num_frames: Annotated[Optional[int], typer.Option(help="Sample exactly this many frames instead.")] = None,
    min_frame_fraction: Annotated[Optional[float], typer.Option(help="Fraction of frames that must show the single class.")] = None,
    label_map: Annotated[Optional[Path], typer.Option(help="JSON {detector class: dataset label}: also require the clip's label.")] = None,
    format: Format = "auto",
    video_dir: VideoDir = None,
    image_dir: ImageDir = None,
    audio_dir: AudioDir = None,
    split: Split = None,
    restart: Restart = False,
    quiet: Quiet = False,
) -> None:
    """Keep the single-source clips of a manifest (the VGGSS3 curation) and report why others were dropped."""
    from ..training.curation import CurationConfig, curate, read_detections_jsonl

    settings = _config_mapping(config)
    for k, v in {"min_score": min_score, "fps": fps, "num_frames": num_frames,
                 "min_frame_fraction": min_frame_fraction}.items():
        if v is not None:
            settings[k] = v
    if label_map is not None:
        try:
            settings["label_map"] = json.loads(Path(label_map).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"--label-map {label_map}: {exc}") from None
    try:
        cfg = CurationConfig(**settings)
    except TypeError as exc:
        raise InputError(f"curation settings: {exc}") from None
    if (detections is None) == (detector is None):
        raise InputError("give exactly one of --detections FILE or --detector module:function")
    m = read_manifest_for_cli(manifest, format, video_dir=video_dir, image_dir=image_dir, audio_dir=audio_dir, split=split)
    det = _load_detector(detector, models=models, device=device, threshold=cfg.min_score) if detector else None
    report = curate(m, output, detector=det,
                    detections=read_detections_jsonl(detections) if detections else None,
                    config=cfg, restart=restart, progress=not quiet)
    typer.echo(report.summary())
    for reason, ex in report.examples.items():
        typer.echo(f"  {reason}: e.g. {ex[0]}")
    typer.echo(f"wrote {output / 'curated.jsonl'} and {output / 'report.json'}")


# ------------------------------------------------------------------------------------------------
# batch-generate
# ------------------------------------------------------------------------------------------------


@commands.command("batch-generate")
def batch_generate_cmd(
    manifest: Manifest,
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for <id>.wav (+ .json sidecars) and batch_report.json.")],
    method: Annotated[str, typer.Option(help="Generation method.")] = "mapper",
    models: Models = None,
    mapper: Mapper = None,
    seed: Annotated[int, typer.Option(help="Base seed; each item's seed is derived from it and the item id.")] = 0,
    duration: Duration = None,
    steps: Steps = None,
    preset: Preset = "fast",
    guidance: Guidance = None,
    candidates: Candidates = 1,
    frames: Annotated[Optional[int], typer.Option(help="Video frames per 10 s window (default as generate: sources 64, else 16).")] = None,
    suffix: Annotated[str, typer.Option(help=".wav | .flac | .mp4 (video items muxed; images get .wav)")] = ".wav",
    skip_existing: Annotated[bool, typer.Option("--skip-existing/--no-skip-existing", help="Keep the outputs this same run already made (resume); a folder of a run with other settings (manifest, generation settings, models) is refused. --no-skip-existing regenerates every item.")] = True,
    format: Format = "auto",
    video_dir: VideoDir = None,
    image_dir: ImageDir = None,
    audio_dir: AudioDir = None,
    split: Split = None,
    device: Device = "auto",
    dtype: Dtype = "auto",
    ray: Ray = False,
    ray_address: RayAddress = None,
    actors: Actors = None,
    gpus_per_actor: GpusPerActor = 0.0,
    media_dir: MediaDir = None,
    ss2a: Annotated[Optional[str], typer.Option(help="sources: SS2A bundle folder (or the released ssv2a.pth).")] = None,
    grounding: Annotated[Optional[str], typer.Option(help="objects: trained grounding module folder.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="torch threads while generating (default: all; Ray: one per actor CPU). The same number on both paths makes single-process and --ray outputs bit-identical.")] = None,
    quiet: Quiet = False,
) -> None:
    """Generate a sound for every item of a manifest (resumable with --skip-existing).

    objects/sources take each item's own prompts from manifest columns: clicks "X,Y;X,Y",
    boxes "X0,Y0,X1,Y1;..." (pixels), texts "rain|dog barking". Exits 1 when any item failed."""
    from ..distributed.batch import BatchGenerateConfig, batch_generate

    cfg = BatchGenerateConfig(method=method, models=models, mapper=mapper, seed=seed, duration=duration, steps=steps,
                              preset=preset, guidance=guidance, candidates=candidates, frames=frames, device=device,
                              dtype=dtype, suffix=suffix, skip_existing=skip_existing, ss2a=ss2a, grounding=grounding,
                              threads=threads)
    m = read_manifest_for_cli(manifest, format, video_dir=video_dir, image_dir=image_dir, audio_dir=audio_dir,
                              split=split, media_dir=media_dir)
    if ray or ray_address:
        from ..distributed.ray_jobs import ray_batch_generate

        rep = ray_batch_generate(m, output, cfg, num_actors=actors, num_gpus_per_actor=gpus_per_actor,
                                 progress=not quiet, address=ray_address)
    else:
        rep = batch_generate(m, output, cfg, progress=not quiet)
    typer.echo(f"generated {rep.generated}, skipped {rep.skipped} existing, failed {rep.failed} of {rep.total} items "
               f"in {rep.seconds:.1f} s")
    if rep.fingerprint:
        typer.echo(f"run fingerprint: {rep.fingerprint['value'][:16]} (batch_run.json)")
    failed = [s for s in rep.statuses if s.status == "failed"]
    for s in failed[:10]:
        typer.echo(f"  failed {s.id}: {s.reason}")
    typer.echo(f"wrote {rep.report_path}")
    if failed:
        reasons: dict[str, int] = {}
        for s in failed:
            reasons[s.reason or "?"] = reasons.get(s.reason or "?", 0) + 1
        top = max(reasons, key=reasons.get)
        typer.echo(f"foleykit: error: {len(failed)} of {rep.total} items failed (most often: {top}); "
                   f"the list is in {rep.report_path}", err=True)
        raise typer.Exit(1)


# ------------------------------------------------------------------------------------------------
# build-data
# ------------------------------------------------------------------------------------------------


@commands.command("build-data")
def build_data_cmd(
    task: Annotated[str, typer.Argument(help="remixer | temporal | grounding: whose training data to build.")],
    extraction: Annotated[Path, typer.Argument(help="Extraction folder (remixer: extract_ss2a_scenes; temporal: extract_ss2a; grounding: extract_grounding).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The tensors file to write (.safetensors).")],
    manifold: Annotated[Optional[Path], typer.Option(help="remixer: trained manifold folder that makes the source codes.")] = None,
    ss2a: Annotated[Optional[Path], typer.Option(help="temporal: SS2A bundle folder with trained manifold/ and remixer/.")] = None,
    manifest: Annotated[Optional[Path], typer.Option(help="grounding: the manifest the extraction was made from (its audio becomes latents).")] = None,
    models: Models = None,
    seconds: Annotated[float, typer.Option(help="grounding: seconds of audio per item (AudioLDM: 10.24).")] = 10.24,
    seed: Annotated[int, typer.Option(help="temporal: Cycle Mix seed.")] = 0,
    media_dir: MediaDir = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """Build exactly the tensors file a trainer reads from an extraction (and trained modules)."""
    from ..training.builders import BUILD_TASKS, build_grounding_pairs, build_remixer_scenes, build_temporal_windows

    if task not in BUILD_TASKS:
        raise InputError(f"build-data: task must be one of {', '.join(BUILD_TASKS)}, got {task!r}")
    if output.exists() and not overwrite:
        raise InputError(f"{output} exists; pass --overwrite to replace it")
    need = {"remixer": ("--manifold", manifold), "temporal": ("--ss2a", ss2a), "grounding": ("--manifest", manifest)}
    flag, value = need[task]
    if value is None:
        raise InputError(f"build-data {task} needs {flag}")
    if task == "remixer":
        path = build_remixer_scenes(extraction, output, manifold=manifold)
    elif task == "temporal":
        path = build_temporal_windows(extraction, output, ss2a=ss2a, seed=seed)
    else:
        m = read_manifest_for_cli(manifest, media_dir=media_dir)
        path = build_grounding_pairs(extraction, output, manifest=m, models=models, seconds=seconds)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    typer.echo(f"wrote {path}: {json.dumps(shapes)}")
