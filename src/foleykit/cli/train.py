"""``foleykit train mapper | manifold | remixer | temporal | grounding | run``: the accelerate trainer
(:mod:`foleykit.training.trainer`: resume, validation, metrics.jsonl/TensorBoard, mixed precision, accumulation).

Each task command is :func:`foleykit.api.train`: the task's run file (``configs/``), then the command's
options, then ``--set`` (last wins). ``train run`` trains from a run file of any task.
"""

# No ``from __future__ import annotations``: typer reads the annotations at runtime.
import inspect
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import InputError
from .options import (
    BatchSize,
    CheckpointEvery,
    Epochs,
    GradAccum,
    Heads,
    KLWeight,
    Layers,
    Lr,
    MaxSteps,
    MixedPrecision,
    OverwriteRun,
    Quiet,
    Resume,
    RunDir,
    RunFile,
    Settings,
    Tensorboard,
    TrainData,
    TrainDataOption,
    TrainDevice,
    TrainSeed,
    ValData,
    ValFraction,
)

train_app = typer.Typer(no_args_is_help=True, help="Train foleykit's learnable modules on cached embeddings "
                        "(accelerate: resume, validation, metrics.jsonl/TensorBoard, mixed precision, accumulation).")

_NULL = object()  # an explicit null in the run file (e.g. "take this size from the data")


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
    from ..training.accelerate_config import apply_overrides, run_training

    cfg = apply_overrides(config, overrides)
    res = run_training(cfg, progress=not quiet, resume="auto" if resume else None, overwrite=overwrite)
    _report_training(res)


#: The options every ``foleykit train TASK`` command shares: (name, typer annotation, default). The
#: first four stand before the task's own options in ``--help``, the rest after them.
_SHARED_HEAD = (("data_arg", TrainData, None), ("data", TrainDataOption, None), ("output", RunDir, None),
                ("config", RunFile, None))
_SHARED_TAIL = (("val_data", ValData, None), ("val_fraction", ValFraction, None), ("epochs", Epochs, None),
                ("batch_size", BatchSize, None), ("lr", Lr, None), ("grad_accum", GradAccum, None),
                ("mixed_precision", MixedPrecision, None), ("seed", TrainSeed, None), ("max_steps", MaxSteps, None),
                ("checkpoint_every", CheckpointEvery, None), ("tensorboard", Tensorboard, None),
                ("device", TrainDevice, "auto"), ("set_", Settings, None), ("resume", Resume, True),
                ("overwrite", OverwriteRun, False), ("quiet", Quiet, False))


def _task_command(task: str):
    """Register ``foleykit train TASK``: the decorated function declares the task's own options and takes the
    shared ones (:data:`_SHARED_HEAD`, :data:`_SHARED_TAIL`) as ``**shared``, which it hands to :func:`_train_task`."""

    def shared(specs):
        return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
                for name, annotation, default in specs]

    def register(func):
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in inspect.signature(func).parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        func.__signature__ = inspect.Signature(shared(_SHARED_HEAD) + own + shared(_SHARED_TAIL),
                                               return_annotation=None)
        train_app.command(task)(func)
        return func

    return register


def _train_task(task: str, *, data_arg: Optional[Path], data: Optional[Path], output: Optional[Path],
                config: Optional[str], val_data: Optional[Path], val_fraction: Optional[float],
                epochs: Optional[int], batch_size: Optional[int], lr: Optional[float], grad_accum: Optional[int],
                mixed_precision: Optional[str], seed: Optional[int], max_steps: Optional[int],
                checkpoint_every: Optional[int], tensorboard: Optional[bool], device: str,
                set_: Optional[list[str]], resume: bool, overwrite: bool, quiet: bool,
                model: Optional[dict[str, Any]] = None, options: Optional[dict[str, Any]] = None,
                manifold: Optional[Path] = None, models: Optional[str] = None) -> None:
    """``foleykit train TASK`` through :func:`foleykit.api.train`: the run file, then the command's options
    (those not given leave the run file's), then ``--set`` (last wins)."""
    from ..api import train

    if data_arg is not None and data is not None and Path(data_arg) != Path(data):
        raise InputError(f"training data given twice ({data_arg} and --data {data}); give one")

    def given(values: Optional[dict[str, Any]]) -> dict[str, Any]:
        return {k: (None if v is _NULL else v) for k, v in (values or {}).items() if v is not None}

    trainer = given({"epochs": epochs, "batch_size": batch_size, "grad_accum_steps": grad_accum,
                     "mixed_precision": mixed_precision, "max_steps": max_steps, "val_fraction": val_fraction,
                     "checkpoint_every_steps": checkpoint_every, "tensorboard": tensorboard})
    if lr is not None:
        trainer["optimizer"] = {"lr": lr}
    res = train(task, data if data is not None else data_arg, output, run_file=config, model=given(model),
                options=given(options), trainer=trainer, val_data=val_data, seed=seed, device=device,
                manifold=manifold, models=models, settings=list(set_ or []), resume=resume, overwrite=overwrite,
                progress=not quiet)
    _report_training(res)


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


@_task_command("mapper")
def train_mapper_cmd(
    kind: Annotated[Optional[str], typer.Option(help="diffusion_transformer | diffusion_mlp | regression_transformer | regression_mlp (default: the run file's).")] = None,
    width: Annotated[Optional[int], typer.Option(help="Token width.")] = None,
    depth: Annotated[Optional[int], typer.Option(help="Layers (default: the paper's best for the kind).")] = None,
    **shared: Any,
) -> None:
    """Train a V2A-Mapper on (CLIP, CLAP) pairs: 'clip' [N,512] + 'clap' [N,512] (paper settings: mapper_v2a).

    Data: `foleykit extract MANIFEST -o EMB --config extract_v2a_mapper` (CLIP ViT-B/32, the mapper's)."""
    _train_task("mapper", **shared, model={"kind": kind, "width": width, "depth": depth})


@_task_command("manifold")
def train_manifold_cmd(
    manifold_dim: Annotated[Optional[int], typer.Option(help="Manifold width.")] = None,
    widths: Annotated[Optional[str], typer.Option(help="Hidden widths of v, phi and chi, comma separated.")] = None,
    ccmr_alpha: Annotated[Optional[float], typer.Option(help="CCMR alpha (paper: 0.35; 0 disables CCMR).")] = None,
    kl_weight: KLWeight = None,
    ema_decay: Annotated[Optional[float], typer.Option(help="Mean-teacher EMA decay.")] = None,
    init_from: Annotated[Optional[Path], typer.Option(help="Start from a trained manifold folder (stage 2).")] = None,
    **shared: Any,
) -> None:
    """Train the SS2A CMSS manifold (CCMR + mean teacher) on 'clip' [N,768] + 'clap' [N,512] pairs; exports the teacher.

    Data: `foleykit extract MANIFEST -o EMB --config extract_ss2a` (CLIP ViT-L/14)."""
    w = _widths(widths)
    _train_task("manifold", **shared,
                model={"manifold_dim": manifold_dim, "projector_widths": w, "reconstructor_widths": w},
                options={"ccmr_alpha": ccmr_alpha, "kl_weight": kl_weight, "ema_decay": ema_decay,
                         "init_from": init_from})


@_task_command("remixer")
def train_remixer_cmd(
    manifold: Annotated[Optional[Path], typer.Option(help="Trained manifold folder, to compute the source codes when the data has none.")] = None,
    embed_dim: Annotated[Optional[int], typer.Option(help="Token width.")] = None,
    layers: Layers = None,
    heads: Heads = None,
    token_dropout: Annotated[Optional[float], typer.Option(help="Classifier-free token dropout probability.")] = None,
    kl_weight: KLWeight = None,
    **shared: Any,
) -> None:
    """Train the SS2A Sound Source Remixer (L_mix) on scenes: 'clips' [N,M,768], 'target_clap' [N,512], 'codes' [N,M,S] or --manifold.

    Data: `foleykit extract MANIFEST -o EMB --config extract_ss2a_scenes`, then
    `foleykit build-data remixer EMB --manifold BUNDLE/manifold -o scenes.safetensors`."""
    model: dict[str, Any] = {"embed_dim": embed_dim, "num_layers": layers, "num_heads": heads,
                             "token_dropout": token_dropout}
    if manifold is not None:
        model["manifold_dim"] = _NULL  # the manifold's codes set it
    _train_task("remixer", **shared, model=model, options={"kl_weight": kl_weight}, manifold=manifold)


@_task_command("temporal")
def train_temporal_cmd(layers: Layers = None, heads: Heads = None, **shared: Any) -> None:
    """Train the SS2A temporal aggregation (L_ta) on 'frame_claps' [N,T,512] → 'target_clap' [N,512] (+ 'padding_mask').

    Data: `foleykit extract MANIFEST -o EMB --config extract_ss2a` (videos), then
    `foleykit build-data temporal EMB --ss2a BUNDLE -o windows.safetensors`."""
    _train_task("temporal", **shared, model={"num_layers": layers, "num_heads": heads})


@_task_command("grounding")
def train_grounding_cmd(
    models: Annotated[Optional[str], typer.Option(help="Model set whose AudioLDM UNet is fine-tuned (default: the run file's).")] = None,
    finetune_unet: Annotated[Optional[bool], typer.Option("--finetune-unet/--freeze-unet", help="Fine-tune the UNet jointly (paper) or freeze it.")] = None,
    **shared: Any,
) -> None:
    """Train the Sounding-that-Object grounding module through the AudioLDM UNet on 'latents', 'text_emb', 'patch_emb'.

    Data: `foleykit extract MANIFEST -o EMB --config extract_grounding`, then
    `foleykit build-data grounding EMB --manifest MANIFEST --models SET -o pairs.safetensors`."""
    _train_task("grounding", **shared, options={"finetune_unet": finetune_unet}, models=models)


@train_app.command("run")
def train_run_cmd(
    config: Annotated[str, typer.Argument(help="Run file (YAML/JSON) or configs/ name, e.g. mapper_v2a.")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="key.path=value (repeatable).")] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume")] = True,
    overwrite: OverwriteRun = False,
    quiet: Quiet = False,
) -> None:
    """Train any module from a run file on accelerate (`accelerate launch -m foleykit.cli train run ...` for multi-GPU)."""
    from ..training.accelerate_config import find_config, read_config_file

    _run(read_config_file(find_config(config)), list(set_ or []), resume, quiet, overwrite)
