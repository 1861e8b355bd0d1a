"""CLI commands for dataset-scale work, to be mounted on foleykit's typer app.

Mount them in ``cli.py`` with::

    from .training.cli_commands import register as register_training, scale_app
    app.add_typer(scale_app)          # foleykit extract | curate | batch-generate (top level)
    register_training(train_app)      # foleykit train mapper | manifold | remixer | temporal | grounding | run

Every command is thin: it reads the manifest / run file, calls the library and prints a summary.
User errors raise :class:`~foleykit.errors.FoleykitError` (one line, non-zero exit via ``main``).
"""

# No ``from __future__ import annotations``: typer reads the option annotations at runtime, and the
# per-task train commands share Annotated option types defined at module level.
import inspect
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import InputError

scale_app = typer.Typer(no_args_is_help=True, help="Dataset-scale work: extraction, curation, batch generation.")

Manifest_ = Annotated[Path, typer.Argument(help="Manifest: VGGSound/AudioCaps/generic csv, VGG-SS json, or foleykit jsonl.")]
Format_ = Annotated[str, typer.Option("--format", help="auto | vggsound | vggss | audiocaps | csv | jsonl")]
VideoDir_ = Annotated[Optional[Path], typer.Option(help="Folder of the videos (<id>.mp4) for VGGSound/VGG-SS/AudioCaps.")]
ImageDir_ = Annotated[Optional[Path], typer.Option(help="Folder of the frames (<id>.jpg) for VGG-SS.")]
AudioDir_ = Annotated[Optional[Path], typer.Option(help="Folder of the audio (<id>.wav) for VGGSound/VGG-SS/AudioCaps.")]
MediaDir_ = Annotated[Optional[Path], typer.Option(help="jsonl manifests (e.g. from `foleykit protocol`): folder holding <id>.mp4/.jpg/.png/.wav for items that name no media.")]
Split_ = Annotated[Optional[str], typer.Option(help="Keep only this split (train/test/...).")]
Quiet_ = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


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
    from .accelerate_config import find_config, read_config_file

    return read_config_file(find_config(name))


# ------------------------------------------------------------------------------------------------
# extract
# ------------------------------------------------------------------------------------------------


@scale_app.command("extract")
def extract_cmd(
    manifest: Manifest_,
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
    format: Format_ = "auto",
    video_dir: VideoDir_ = None,
    image_dir: ImageDir_ = None,
    audio_dir: AudioDir_ = None,
    split: Split_ = None,
    models: Annotated[Optional[str], typer.Option(help="Model set: default | tiny | DIR.")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps")] = "auto",
    dtype: Annotated[Optional[str], typer.Option(help="Encoder dtype: float32 | float16 | bfloat16.")] = None,
    restart: Annotated[bool, typer.Option(help="Discard existing shards in OUTPUT and start over.")] = False,
    ray: Annotated[bool, typer.Option("--ray", help="Run on a Ray cluster (local unless --ray-address).")] = False,
    ray_address: Annotated[Optional[str], typer.Option(help="Ray cluster address (auto, ray://host:10001).")] = None,
    actors: Annotated[Optional[int], typer.Option(help="Ray actors (default: as many as the cluster fits).")] = None,
    gpus_per_actor: Annotated[float, typer.Option(help="GPUs per Ray actor (0 = CPU actors).")] = 0.0,
    quiet: Quiet_ = False,
) -> None:
    """Extract CLIP/CLAP embeddings (and CLIP of sound-source crops) of a manifest into resumable safetensors shards."""
    from .extraction import ExtractionConfig, extract_embeddings

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
        from .curation import owlv2_detector

        return owlv2_detector(models, threshold=threshold, device=device)
    if ":" not in spec:
        raise InputError(f"--detector must be 'owlv2' or module:function returning a detector callable, got {spec!r}")
    module, func = spec.split(":", 1)
    import os
    import sys

    cwd_added = os.getcwd() not in sys.path and "" not in sys.path
    if cwd_added:  # a module in the current folder (as `python -m` finds it)
        sys.path.insert(0, os.getcwd())
    try:
        factory = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"--detector {spec}: {exc}") from None
    return factory()


@scale_app.command("curate")
def curate_cmd(
    manifest: Manifest_,
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
    format: Format_ = "auto",
    video_dir: VideoDir_ = None,
    image_dir: ImageDir_ = None,
    audio_dir: AudioDir_ = None,
    split: Split_ = None,
    restart: Annotated[bool, typer.Option(help="Forget earlier decisions in OUTPUT.")] = False,
    quiet: Quiet_ = False,
) -> None:
    """Keep the single-source clips of a manifest (the VGGSS3 curation) and report why others were dropped."""
    from .curation import CurationConfig, curate, read_detections_jsonl

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


@scale_app.command("batch-generate")
def batch_generate_cmd(
    manifest: Manifest_,
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for <id>.wav (+ .json sidecars) and batch_report.json.")],
    method: Annotated[str, typer.Option(help="Generation method.")] = "mapper",
    models: Annotated[Optional[str], typer.Option(help="Model set: default | tiny | DIR.")] = None,
    mapper: Annotated[Optional[str], typer.Option(help="Trained V2A-Mapper folder.")] = None,
    seed: Annotated[int, typer.Option(help="Base seed; each item's seed is derived from it and the item id.")] = 0,
    duration: Annotated[Optional[float], typer.Option(help="Seconds of audio (default: 10 for images, the video's length).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Diffusion steps (default: preset).")] = None,
    preset: Annotated[str, typer.Option(help="paper | fast")] = "fast",
    guidance: Annotated[Optional[float], typer.Option(help="Classifier-free guidance scale.")] = None,
    candidates: Annotated[int, typer.Option(help="Clips drawn per item; the closest in CLAP is kept.")] = 1,
    frames: Annotated[Optional[int], typer.Option(help="Video frames per 10 s window (default as generate: sources 64, else 16).")] = None,
    suffix: Annotated[str, typer.Option(help=".wav | .flac | .mp4 (video items muxed; images get .wav)")] = ".wav",
    skip_existing: Annotated[bool, typer.Option("--skip-existing/--no-skip-existing", help="Keep the outputs this same run already made (resume); a folder of a run with other settings (manifest, generation settings, models) is refused. --no-skip-existing regenerates every item.")] = True,
    format: Format_ = "auto",
    video_dir: VideoDir_ = None,
    image_dir: ImageDir_ = None,
    audio_dir: AudioDir_ = None,
    split: Split_ = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps")] = "auto",
    dtype: Annotated[Optional[str], typer.Option(help="float32 | float16 | bfloat16")] = None,
    ray: Annotated[bool, typer.Option("--ray", help="Run on a Ray cluster (local unless --ray-address).")] = False,
    ray_address: Annotated[Optional[str], typer.Option(help="Ray cluster address.")] = None,
    actors: Annotated[Optional[int], typer.Option(help="Ray actors.")] = None,
    gpus_per_actor: Annotated[float, typer.Option(help="GPUs per Ray actor.")] = 0.0,
    media_dir: MediaDir_ = None,
    ss2a: Annotated[Optional[str], typer.Option(help="sources: SS2A bundle folder (or the released ssv2a.pth).")] = None,
    grounding: Annotated[Optional[str], typer.Option(help="objects: trained grounding module folder.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="torch threads while generating (default: all; Ray: one per actor CPU). The same number on both paths makes single-process and --ray outputs bit-identical.")] = None,
    quiet: Quiet_ = False,
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


@scale_app.command("build-data")
def build_data_cmd(
    task: Annotated[str, typer.Argument(help="remixer | temporal | grounding: whose training data to build.")],
    extraction: Annotated[Path, typer.Argument(help="Extraction folder (remixer: extract_ss2a_scenes; temporal: extract_ss2a; grounding: extract_grounding).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The tensors file to write (.safetensors).")],
    manifold: Annotated[Optional[Path], typer.Option(help="remixer: trained manifold folder that makes the source codes.")] = None,
    ss2a: Annotated[Optional[Path], typer.Option(help="temporal: SS2A bundle folder with trained manifold/ and remixer/.")] = None,
    manifest: Annotated[Optional[Path], typer.Option(help="grounding: the manifest the extraction was made from (its audio becomes latents).")] = None,
    models: Annotated[Optional[str], typer.Option(help="grounding: model set whose AudioLDM VAE and text tower are used.")] = None,
    seconds: Annotated[float, typer.Option(help="grounding: seconds of audio per item (AudioLDM: 10.24).")] = 10.24,
    seed: Annotated[int, typer.Option(help="temporal: Cycle Mix seed.")] = 0,
    media_dir: MediaDir_ = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """Build exactly the tensors file a trainer reads from an extraction (and trained modules)."""
    from .builders import BUILD_TASKS, build_grounding_pairs, build_remixer_scenes, build_temporal_windows

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


# ------------------------------------------------------------------------------------------------
# train <task> / train run
# ------------------------------------------------------------------------------------------------

TASKS = ("mapper", "manifold", "remixer", "temporal", "grounding")
_DEFAULT_RUN_FILES = {"manifold": "manifold_ss2a", "remixer": "remixer_ss2a", "temporal": "temporal_ss2a",
                      "grounding": "grounding_sto", "mapper": "mapper_v2a"}
_NULL = object()  # an explicit null in the run file (e.g. "take this size from the data")

DataArg_ = Annotated[Optional[Path], typer.Argument(
    metavar="DATA", show_default=False,
    help="Training data: an extraction folder or a .safetensors/.pt/.npz of named tensors (or --data).")]
DataOpt_ = Annotated[Optional[Path], typer.Option("--data", help="Training data (default: the run file's data.train).")]
RunDir_ = Annotated[Optional[Path], typer.Option(
    "-o", "--output",
    help="Run folder: checkpoints/, metrics.jsonl, tensorboard/, final/; when finished it also holds the model's "
         "config.json + model.safetensors, so it loads as the model (default: the run file's).")]
RunFile_ = Annotated[Optional[str], typer.Option(
    "--config", help="Run file (YAML/JSON) or configs/ name (default: the task's paper settings, e.g. manifold_ss2a).")]
ValData_ = Annotated[Optional[Path], typer.Option(help="Validation data (default: hold out --val-fraction).")]
ValFraction_ = Annotated[Optional[float], typer.Option(help="Share held out for validation when no --val-data.")]
Epochs_ = Annotated[Optional[int], typer.Option(help="Epochs (default: the run file's).")]
BatchSize_ = Annotated[Optional[int], typer.Option(help="Global batch per optimizer step (split over processes × accumulation).")]
Lr_ = Annotated[Optional[float], typer.Option(help="AdamW learning rate.")]
GradAccum_ = Annotated[Optional[int], typer.Option(help="Gradient accumulation steps per optimizer step.")]
MixedPrecision_ = Annotated[Optional[str], typer.Option(help="no | bf16 | fp16 (loss-scaled).")]
Seed_ = Annotated[Optional[int], typer.Option(help="Seed of data order, init and noise (default: the run file's, so a rerun resumes; -1 = random, printed).")]
MaxSteps_ = Annotated[Optional[int], typer.Option(help="Stop (with a checkpoint) after this many optimizer steps.")]
CheckpointEvery_ = Annotated[Optional[int], typer.Option(help="Also checkpoint every N steps (besides each epoch end).")]
Tensorboard_ = Annotated[Optional[bool], typer.Option("--tensorboard/--no-tensorboard", help="TensorBoard logs in RUN/tensorboard (default: on when installed).")]
Device_ = Annotated[str, typer.Option(help="auto | cpu | cuda | mps (under `accelerate launch`: auto).")]
Set_ = Annotated[Optional[list[str]], typer.Option("--set", help="Any run-file setting: key.path=value (repeatable).")]
Resume_ = Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from the newest checkpoint in the run folder.")]
Overwrite_ = Annotated[bool, typer.Option(help="Discard a previous run (checkpoints, logs, model) in the run folder and start over.")]
TrainKL_ = Annotated[Optional[float], typer.Option(help="KL weight (manifold: lambda1; remixer: lambda2).")]
Layers_ = Annotated[Optional[int], typer.Option(help="Efficient-attention layers.")]
Heads_ = Annotated[Optional[int], typer.Option(help="Attention heads.")]


def _json_value(v: Any) -> str:
    if v is _NULL:
        return "null"
    if isinstance(v, Path):
        return json.dumps(str(v))
    if isinstance(v, tuple):
        v = list(v)
    return json.dumps(v)


def _device_sets(device: str) -> dict[str, Any]:
    if device == "auto":
        return {}
    if device == "cpu":
        return {"trainer.cpu": True}
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("--device mps: no MPS device is available")
    if device not in ("cuda", "mps"):
        raise InputError(f"--device must be auto, cpu, cuda or mps, got {device!r}")
    return {}


def _report_training(res) -> None:
    if res.resumed_from is not None:
        if res.global_step == res.start_step and not res.stopped_early:
            typer.echo(f"already trained: {res.epochs_done} epochs, {res.global_step} steps; nothing to do")
        else:
            typer.echo(f"resumed from {res.resumed_from} (step {res.start_step})")
    if res.history:
        last = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in res.history[-1].items()}
        typer.echo(f"last epoch: {json.dumps(last)}")
    if res.stopped_early and res.final_dir is not None:
        typer.echo(f"stopped at step {res.global_step} (--max-steps); wrote {res.final_dir} (the run folder "
                   f"{res.output_dir} loads as the model too); rerun without --max-steps (or a larger one) to continue")
    elif res.stopped_early:
        typer.echo(f"stopped at step {res.global_step}; rerun the same command to continue from {res.output_dir}")
    elif res.final_dir is not None:
        typer.echo(f"wrote {res.final_dir} (the run folder {res.output_dir} loads as the model too)")
    typer.echo(f"metrics: {res.output_dir / 'metrics.jsonl'}")
    typer.echo(f"seed: {res.seed}")


def _run(config: dict[str, Any], overrides: list[str], resume: bool, quiet: bool, overwrite: bool = False) -> None:
    from .accelerate_config import apply_overrides, run_training

    cfg = apply_overrides(config, overrides)
    res = run_training(cfg, progress=not quiet, resume="auto" if resume else None, overwrite=overwrite)
    _report_training(res)


#: The options every ``foleykit train TASK`` command shares, passed on to :func:`_train_task` as they are.
_COMMON_OPTIONS = ("data_arg", "data", "output", "config", "val_data", "val_fraction", "epochs", "batch_size", "lr",
                   "grad_accum", "mixed_precision", "seed", "max_steps", "checkpoint_every", "tensorboard", "device",
                   "set_", "resume", "overwrite", "quiet")


def _common_options(values: dict[str, Any]) -> dict[str, Any]:
    return {k: values[k] for k in _COMMON_OPTIONS}


def _train_task(task: str, *, data_arg: Optional[Path], data: Optional[Path], output: Optional[Path],
                config: Optional[str], val_data: Optional[Path], val_fraction: Optional[float],
                epochs: Optional[int], batch_size: Optional[int], lr: Optional[float], grad_accum: Optional[int],
                mixed_precision: Optional[str], seed: Optional[int], max_steps: Optional[int],
                checkpoint_every: Optional[int], tensorboard: Optional[bool], device: str,
                set_: Optional[list[str]], resume: bool, overwrite: bool, quiet: bool,
                model: Optional[dict[str, Any]] = None, options: Optional[dict[str, Any]] = None,
                extra: Optional[dict[str, Any]] = None) -> None:
    """``foleykit train TASK``: the run file, then the command's options, then ``--set`` (last wins)."""
    from .accelerate_config import find_config, read_config_file

    name = config or _DEFAULT_RUN_FILES[task]
    cfg = read_config_file(find_config(name))
    if cfg.get("task") != task:
        raise InputError(f"run file {name} is for task {cfg.get('task')!r}, not {task!r}")
    if data_arg is not None and data is not None and Path(data_arg) != Path(data):
        raise InputError(f"training data given twice ({data_arg} and --data {data}); give one")
    data = data if data is not None else data_arg
    if seed is not None and seed < 0:
        from ..seeding import resolve_seed

        seed = resolve_seed(None)
    pairs: dict[str, Any] = {
        "data.train": data, "data.val": val_data, "trainer.output_dir": output, "trainer.epochs": epochs,
        "trainer.batch_size": batch_size, "trainer.optimizer.lr": lr, "trainer.grad_accum_steps": grad_accum,
        "trainer.mixed_precision": mixed_precision, "trainer.seed": seed, "trainer.max_steps": max_steps,
        "trainer.val_fraction": val_fraction, "trainer.checkpoint_every_steps": checkpoint_every,
        "trainer.tensorboard": tensorboard,
    }
    model = {k: v for k, v in (model or {}).items() if v is not None}
    if task == "mapper" and "kind" in model and "depth" not in model \
            and model["kind"] != (cfg.get("model") or {}).get("kind"):
        model["depth"] = _NULL  # the run file's depth is for its kind: take the paper's best for this one
    pairs.update({f"model.{k}": v for k, v in model.items()})
    pairs.update({f"options.{k}": v for k, v in (options or {}).items()})
    pairs.update(extra or {})
    pairs.update(_device_sets(device))
    sets = [f"{k}={_json_value(v)}" for k, v in pairs.items() if v is not None] + list(set_ or [])
    _run(cfg, sets, resume, quiet, overwrite)


def _widths(widths: Optional[str]) -> Optional[tuple[int, ...]]:
    if widths is None:
        return None
    try:
        w = tuple(int(v) for v in widths.split(",") if v.strip())
    except ValueError:
        raise InputError(f"--widths {widths!r}: expected comma-separated integers") from None
    if not w:
        raise InputError("--widths: give at least one width")
    return w


def train_mapper_cmd(
    data_arg: DataArg_ = None,
    data: DataOpt_ = None,
    output: RunDir_ = None,
    config: RunFile_ = None,
    kind: Annotated[Optional[str], typer.Option(help="diffusion_transformer | diffusion_mlp | regression_transformer | regression_mlp (default: the run file's).")] = None,
    width: Annotated[Optional[int], typer.Option(help="Token width.")] = None,
    depth: Annotated[Optional[int], typer.Option(help="Layers (default: the paper's best for the kind).")] = None,
    val_data: ValData_ = None, val_fraction: ValFraction_ = None, epochs: Epochs_ = None, batch_size: BatchSize_ = None,
    lr: Lr_ = None, grad_accum: GradAccum_ = None, mixed_precision: MixedPrecision_ = None, seed: Seed_ = None,
    max_steps: MaxSteps_ = None, checkpoint_every: CheckpointEvery_ = None, tensorboard: Tensorboard_ = None,
    device: Device_ = "auto", set_: Set_ = None, resume: Resume_ = True, overwrite: Overwrite_ = False,
    quiet: Quiet_ = False,
) -> None:
    """Train a V2A-Mapper on (CLIP, CLAP) pairs: 'clip' [N,512] + 'clap' [N,512] (paper settings: mapper_v2a).

    Data: `foleykit extract MANIFEST -o EMB --config extract_v2a_mapper` (CLIP ViT-B/32, the mapper's)."""
    _train_task("mapper", **_common_options(locals()),
                model={"kind": kind, "width": width, "depth": depth})


def train_manifold_cmd(
    data_arg: DataArg_ = None,
    data: DataOpt_ = None,
    output: RunDir_ = None,
    config: RunFile_ = None,
    manifold_dim: Annotated[Optional[int], typer.Option(help="Manifold width.")] = None,
    widths: Annotated[Optional[str], typer.Option(help="Hidden widths of v, phi and chi, comma separated.")] = None,
    ccmr_alpha: Annotated[Optional[float], typer.Option(help="CCMR alpha (paper: 0.35; 0 disables CCMR).")] = None,
    kl_weight: TrainKL_ = None,
    ema_decay: Annotated[Optional[float], typer.Option(help="Mean-teacher EMA decay.")] = None,
    init_from: Annotated[Optional[Path], typer.Option(help="Start from a trained manifold folder (stage 2).")] = None,
    val_data: ValData_ = None, val_fraction: ValFraction_ = None, epochs: Epochs_ = None, batch_size: BatchSize_ = None,
    lr: Lr_ = None, grad_accum: GradAccum_ = None, mixed_precision: MixedPrecision_ = None, seed: Seed_ = None,
    max_steps: MaxSteps_ = None, checkpoint_every: CheckpointEvery_ = None, tensorboard: Tensorboard_ = None,
    device: Device_ = "auto", set_: Set_ = None, resume: Resume_ = True, overwrite: Overwrite_ = False,
    quiet: Quiet_ = False,
) -> None:
    """Train the SS2A CMSS manifold (CCMR + mean teacher) on 'clip' [N,768] + 'clap' [N,512] pairs; exports the teacher.

    Data: `foleykit extract MANIFEST -o EMB --config extract_ss2a` (CLIP ViT-L/14)."""
    w = _widths(widths)
    _train_task("manifold", **_common_options(locals()),
                model={"manifold_dim": manifold_dim, "projector_widths": w, "reconstructor_widths": w},
                options={"ccmr_alpha": ccmr_alpha, "kl_weight": kl_weight, "ema_decay": ema_decay,
                         "init_from": init_from})


def train_remixer_cmd(
    data_arg: DataArg_ = None,
    data: DataOpt_ = None,
    output: RunDir_ = None,
    config: RunFile_ = None,
    manifold: Annotated[Optional[Path], typer.Option(help="Trained manifold folder, to compute the source codes when the data has none.")] = None,
    embed_dim: Annotated[Optional[int], typer.Option(help="Token width.")] = None,
    layers: Layers_ = None,
    heads: Heads_ = None,
    token_dropout: Annotated[Optional[float], typer.Option(help="Classifier-free token dropout probability.")] = None,
    kl_weight: TrainKL_ = None,
    val_data: ValData_ = None, val_fraction: ValFraction_ = None, epochs: Epochs_ = None, batch_size: BatchSize_ = None,
    lr: Lr_ = None, grad_accum: GradAccum_ = None, mixed_precision: MixedPrecision_ = None, seed: Seed_ = None,
    max_steps: MaxSteps_ = None, checkpoint_every: CheckpointEvery_ = None, tensorboard: Tensorboard_ = None,
    device: Device_ = "auto", set_: Set_ = None, resume: Resume_ = True, overwrite: Overwrite_ = False,
    quiet: Quiet_ = False,
) -> None:
    """Train the SS2A Sound Source Remixer (L_mix) on scenes: 'clips' [N,M,768], 'target_clap' [N,512], 'codes' [N,M,S] or --manifold.

    Data: `foleykit extract MANIFEST -o EMB --config extract_ss2a_scenes`, then
    `foleykit build-data remixer EMB --manifold BUNDLE/manifold -o scenes.safetensors`."""
    extra: dict[str, Any] = {}
    model: dict[str, Any] = {"embed_dim": embed_dim, "num_layers": layers, "num_heads": heads,
                             "token_dropout": token_dropout}
    if manifold is not None:
        extra["data.manifold"] = manifold
        model["manifold_dim"] = _NULL  # the manifold's codes set it
    _train_task("remixer", **_common_options(locals()),
                model=model, options={"kl_weight": kl_weight}, extra=extra)


def train_temporal_cmd(
    data_arg: DataArg_ = None,
    data: DataOpt_ = None,
    output: RunDir_ = None,
    config: RunFile_ = None,
    layers: Layers_ = None,
    heads: Heads_ = None,
    val_data: ValData_ = None, val_fraction: ValFraction_ = None, epochs: Epochs_ = None, batch_size: BatchSize_ = None,
    lr: Lr_ = None, grad_accum: GradAccum_ = None, mixed_precision: MixedPrecision_ = None, seed: Seed_ = None,
    max_steps: MaxSteps_ = None, checkpoint_every: CheckpointEvery_ = None, tensorboard: Tensorboard_ = None,
    device: Device_ = "auto", set_: Set_ = None, resume: Resume_ = True, overwrite: Overwrite_ = False,
    quiet: Quiet_ = False,
) -> None:
    """Train the SS2A temporal aggregation (L_ta) on 'frame_claps' [N,T,512] → 'target_clap' [N,512] (+ 'padding_mask').

    Data: `foleykit extract MANIFEST -o EMB --config extract_ss2a` (videos), then
    `foleykit build-data temporal EMB --ss2a BUNDLE -o windows.safetensors`."""
    _train_task("temporal", **_common_options(locals()),
                model={"num_layers": layers, "num_heads": heads})


def train_grounding_cmd(
    data_arg: DataArg_ = None,
    data: DataOpt_ = None,
    output: RunDir_ = None,
    config: RunFile_ = None,
    models: Annotated[Optional[str], typer.Option(help="Model set whose AudioLDM UNet is fine-tuned (default: the run file's).")] = None,
    finetune_unet: Annotated[Optional[bool], typer.Option("--finetune-unet/--freeze-unet", help="Fine-tune the UNet jointly (paper) or freeze it.")] = None,
    val_data: ValData_ = None, val_fraction: ValFraction_ = None, epochs: Epochs_ = None, batch_size: BatchSize_ = None,
    lr: Lr_ = None, grad_accum: GradAccum_ = None, mixed_precision: MixedPrecision_ = None, seed: Seed_ = None,
    max_steps: MaxSteps_ = None, checkpoint_every: CheckpointEvery_ = None, tensorboard: Tensorboard_ = None,
    device: Device_ = "auto", set_: Set_ = None, resume: Resume_ = True, overwrite: Overwrite_ = False,
    quiet: Quiet_ = False,
) -> None:
    """Train the Sounding-that-Object grounding module through the AudioLDM UNet on 'latents', 'text_emb', 'patch_emb'.

    Data: `foleykit extract MANIFEST -o EMB --config extract_grounding`, then
    `foleykit build-data grounding EMB --manifest MANIFEST --models SET -o pairs.safetensors`."""
    _train_task("grounding", **_common_options(locals()),
                options={"finetune_unet": finetune_unet}, extra={"models": models})


TRAIN_COMMANDS = {"mapper": train_mapper_cmd, "manifold": train_manifold_cmd, "remixer": train_remixer_cmd,
                  "temporal": train_temporal_cmd, "grounding": train_grounding_cmd}


def _command_name(info) -> str:
    return info.name or info.callback.__name__.replace("_", "-")


def register(train_app: typer.Typer, *, replace: bool = False) -> list[str]:
    """Add ``train mapper | manifold | remixer | temporal | grounding`` (the accelerate trainer: resume,
    validation, JSONL/TensorBoard, mixed precision, accumulation) and ``train run`` to foleykit's
    ``train`` group; returns the names added.

    A task whose command already exists in ``train_app`` is left alone unless ``replace``.
    """
    existing = {_command_name(c): c for c in train_app.registered_commands}
    added = []
    for task in TASKS:
        if task in existing:
            if not replace:
                continue
            train_app.registered_commands.remove(existing[task])
        train_app.command(task)(TRAIN_COMMANDS[task])
        added.append(task)
    if "run" in existing:
        if not replace:
            return added
        train_app.registered_commands.remove(existing["run"])
    added.append("run")

    @train_app.command("run")
    def run_cmd(
        config: Annotated[str, typer.Argument(help="Run file (YAML/JSON) or configs/ name, e.g. mapper_v2a.")],
        set_: Annotated[Optional[list[str]], typer.Option("--set", help="key.path=value (repeatable).")] = None,
        resume: Annotated[bool, typer.Option("--resume/--no-resume")] = True,
        overwrite: Overwrite_ = False,
        quiet: Quiet_ = False,
    ) -> None:
        """Train any module from a run file on accelerate (`accelerate launch -m foleykit.training.accelerate_config` for multi-GPU)."""
        from .accelerate_config import find_config, read_config_file

        _run(read_config_file(find_config(config)), list(set_ or []), resume, quiet, overwrite)

    return added


def register_scale(app: typer.Typer) -> None:
    """Alternative to ``app.add_typer(scale_app)``: add extract/curate/batch-generate to ``app``."""
    app.registered_commands.extend(scale_app.registered_commands)
