"""CLI commands for dataset-scale work, to be mounted on foleykit's typer app.

Mount them in ``cli.py`` with::

    from .training.cli_commands import register as register_training, scale_app
    app.add_typer(scale_app)          # foleykit extract | curate | batch-generate (top level)
    register_training(train_app)      # foleykit train manifold | remixer | temporal | grounding | run

Every command is thin: it reads the manifest / run file, calls the library and prints a summary.
User errors raise :class:`~foleykit.errors.FoleykitError` (one line, non-zero exit via ``main``).
"""

# No ``from __future__ import annotations``: typer reads the option annotations at runtime, and the
# per-task train commands are built in a factory whose help texts use its local variables.
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
Split_ = Annotated[Optional[str], typer.Option(help="Keep only this split (train/test/...).")]
Quiet_ = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def read_manifest_for_cli(path: Path, fmt: str = "auto", *, video_dir: Path | None = None,
                          image_dir: Path | None = None, audio_dir: Path | None = None, split: str | None = None):
    """Read a manifest passing only the folder options its format understands; ``split`` filters."""
    from ..data.manifests import detect_format, read_manifest

    fmt = detect_format(path) if fmt == "auto" else fmt
    from ..data import manifests as m

    reader = {"vggsound": m.read_vggsound_csv, "vggss": m.read_vggss_json, "audiocaps": m.read_audiocaps_csv,
              "csv": m.read_generic_csv, "jsonl": m.read_manifest_jsonl}.get(fmt)
    if reader is None:
        raise InputError(f"unknown manifest format {fmt!r}")
    accepted = set(inspect.signature(reader).parameters)
    given = {"video_dir": video_dir, "image_dir": image_dir, "audio_dir": audio_dir}
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
    frames: Annotated[int, typer.Option(help="Video frames averaged per 10 s window.")] = 16,
    suffix: Annotated[str, typer.Option(help=".wav | .flac | .mp4 (video items muxed; images get .wav)")] = ".wav",
    skip_existing: Annotated[bool, typer.Option("--skip-existing/--no-skip-existing", help="Keep outputs that already exist (resume).")] = True,
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
    quiet: Quiet_ = False,
) -> None:
    """Generate a sound for every item of a manifest (resumable with --skip-existing)."""
    from ..distributed.batch import BatchGenerateConfig, batch_generate

    cfg = BatchGenerateConfig(method=method, models=models, mapper=mapper, seed=seed, duration=duration, steps=steps,
                              preset=preset, guidance=guidance, candidates=candidates, frames=frames, device=device,
                              dtype=dtype, suffix=suffix, skip_existing=skip_existing)
    m = read_manifest_for_cli(manifest, format, video_dir=video_dir, image_dir=image_dir, audio_dir=audio_dir, split=split)
    if ray or ray_address:
        from ..distributed.ray_jobs import ray_batch_generate

        rep = ray_batch_generate(m, output, cfg, num_actors=actors, num_gpus_per_actor=gpus_per_actor,
                                 progress=not quiet, address=ray_address)
    else:
        rep = batch_generate(m, output, cfg, progress=not quiet)
    typer.echo(f"generated {rep.generated}, skipped {rep.skipped} existing, failed {rep.failed} of {rep.total} items "
               f"in {rep.seconds:.1f} s")
    for s in [s for s in rep.statuses if s.status == "failed"][:10]:
        typer.echo(f"  failed {s.id}: {s.reason}")
    typer.echo(f"wrote {rep.report_path}")


# ------------------------------------------------------------------------------------------------
# train <task> / train run
# ------------------------------------------------------------------------------------------------

_DEFAULT_RUN_FILES = {"manifold": "manifold_ss2a", "remixer": "remixer_ss2a", "temporal": "temporal_ss2a",
                      "grounding": "grounding_sto", "mapper": "mapper_v2a"}


def _run(config: dict[str, Any], overrides: list[str], resume: bool, quiet: bool) -> None:
    from .accelerate_config import apply_overrides, run_training

    cfg = apply_overrides(config, overrides)
    res = run_training(cfg, progress=not quiet, resume="auto" if resume else None)
    if res.history:
        last = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in res.history[-1].items()}
        typer.echo(f"last epoch: {json.dumps(last)}")
    if res.stopped_early:
        typer.echo(f"stopped at step {res.global_step}; rerun the same command to continue from {res.output_dir}")
    elif res.final_dir is not None:
        typer.echo(f"wrote {res.final_dir}")
    typer.echo(f"seed: {res.seed}")


def _make_train_command(task: str):
    def command(
        data: Annotated[Optional[Path], typer.Option(help="Training data: an extraction folder or a .safetensors/.pt/.npz of tensors (default: the run file's).")] = None,
        output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Run folder: checkpoints, metrics, final/ (default: the run file's).")] = None,
        config: Annotated[Optional[str], typer.Option(help=f"Run file or configs/ name (default: {_DEFAULT_RUN_FILES[task]}, the paper's settings).")] = None,
        val_data: Annotated[Optional[Path], typer.Option(help="Validation data (default: hold out trainer.val_fraction).")] = None,
        epochs: Annotated[Optional[int], typer.Option(help="Epochs.")] = None,
        batch_size: Annotated[Optional[int], typer.Option(help="Global batch per optimizer step.")] = None,
        lr: Annotated[Optional[float], typer.Option(help="AdamW learning rate.")] = None,
        grad_accum: Annotated[Optional[int], typer.Option(help="Gradient accumulation steps.")] = None,
        mixed_precision: Annotated[Optional[str], typer.Option(help="no | bf16 | fp16")] = None,
        seed: Annotated[Optional[int], typer.Option(help="Seed (data order, init, noise).")] = None,
        max_steps: Annotated[Optional[int], typer.Option(help="Stop (with a checkpoint) after this many steps.")] = None,
        models: Annotated[Optional[str], typer.Option(help="Model set (grounding: whose AudioLDM UNet).")] = None,
        set_: Annotated[Optional[list[str]], typer.Option("--set", help="Any run-file setting: key.path=value (repeatable).")] = None,
        resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from the newest checkpoint in the run folder.")] = True,
        quiet: Quiet_ = False,
    ) -> None:
        from .accelerate_config import find_config, read_config_file

        cfg = read_config_file(find_config(config or _DEFAULT_RUN_FILES[task]))
        if cfg.get("task") != task:
            raise InputError(f"run file {config} is for task {cfg.get('task')!r}, not {task!r}")
        sets = list(set_ or [])
        pairs = {"data.train": data, "data.val": val_data, "trainer.output_dir": output, "trainer.epochs": epochs,
                 "trainer.batch_size": batch_size, "trainer.optimizer.lr": lr, "trainer.grad_accum_steps": grad_accum,
                 "trainer.mixed_precision": mixed_precision, "trainer.seed": seed, "trainer.max_steps": max_steps,
                 "models": models}
        sets = [f"{k}={json.dumps(str(v)) if isinstance(v, Path) else json.dumps(v)}" for k, v in pairs.items()
                if v is not None] + sets
        _run(cfg, sets, resume, quiet)

    command.__doc__ = {
        "manifold": "Train the SS2A CMSS manifold (CCMR + mean teacher) on CLIP/CLAP pairs.",
        "remixer": "Train the SS2A Sound Source Remixer on source tokens → scene CLAP.",
        "temporal": "Train the SS2A temporal aggregation on per-frame CLAPs → window CLAP.",
        "grounding": "Train the Sounding-that-Object grounding module through the AudioLDM UNet.",
    }[task]
    return command


def _command_name(info) -> str:
    return info.name or info.callback.__name__.replace("_", "-")


def register(train_app: typer.Typer, *, replace: bool = False) -> list[str]:
    """Add ``train run`` and the accelerate-based ``train manifold | remixer | temporal | grounding``
    to foleykit's ``train`` group; returns the names added.

    A task whose command already exists in ``train_app`` (cli.py's single-device trainers) is left
    alone unless ``replace``; ``train run <run file>`` trains every task on accelerate regardless.
    """
    existing = {_command_name(c): c for c in train_app.registered_commands}
    added = []
    for task in ("manifold", "remixer", "temporal", "grounding"):
        if task in existing:
            if not replace:
                continue
            train_app.registered_commands.remove(existing[task])
        train_app.command(task)(_make_train_command(task))
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
        quiet: Quiet_ = False,
    ) -> None:
        """Train any module from a run file on accelerate (`accelerate launch -m foleykit.training.accelerate_config` for multi-GPU)."""
        from .accelerate_config import find_config, read_config_file

        _run(read_config_file(find_config(config)), list(set_ or []), resume, quiet)

    return added


def register_scale(app: typer.Typer) -> None:
    """Alternative to ``app.add_typer(scale_app)``: add extract/curate/batch-generate to ``app``."""
    app.registered_commands.extend(scale_app.registered_commands)
