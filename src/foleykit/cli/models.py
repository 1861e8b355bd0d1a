"""``foleykit models …``: inspect or build model sets."""

# No ``from __future__ import annotations``: typer reads the annotations at runtime.
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import FoleykitError
from .options import Device

models_app = typer.Typer(no_args_is_help=True, help="Inspect or build model sets.")


@models_app.command("show")
def models_show(models: Annotated[Optional[str], typer.Argument(help="default | tiny | DIR")] = None) -> None:
    """Print which weights a model set uses (building the tiny stand-ins if asked for)."""
    import json

    from ..model_sets import resolve_model_set

    typer.echo(json.dumps(resolve_model_set(models).to_dict(), indent=2))


@models_app.command("download")
def models_download(
    models: Annotated[Optional[str], typer.Argument(
        help="default | DIR (env FOLEYKIT_MODELS); tiny needs nothing")] = None,
    role: Annotated[Optional[list[str]], typer.Option(
        "--role", help="Only this role (repeatable), e.g. --role audioldm.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the plan (roles, folders, files, sizes) and stop.")] = False,
) -> None:
    """Fetch exactly the files each role of a model set loads into the HF cache, so that everything then
    runs with HF_HUB_OFFLINE=1. Run it again after an interruption: finished files are kept."""
    from ..model_download import download_plan, format_size, plan_downloads

    plan = plan_downloads(models, roles=role or None)
    for line in plan.lines():
        typer.echo(line)
    if dry_run or not plan.roles:
        return
    out = download_plan(plan, report=typer.echo)
    typer.echo(f"done: {len(out.fetched)} files fetched ({format_size(out.bytes_fetched)}), "
               f"{len(out.present)} already in the cache; these roles now load with HF_HUB_OFFLINE=1")


@models_app.command("check")
def models_check(
    models: Annotated[Optional[str], typer.Argument(help="default | tiny | DIR")] = None,
    json_out: Annotated[Path, typer.Option("--json", help="Where to write the JSON report.")] = Path("models-check.json"),
    facts: Annotated[str, typer.Option(help="auto (tiny's own facts for tiny, else published) | real | tiny")] = "auto",
    generate: Annotated[bool, typer.Option("--generate/--no-generate", help="Run the one-step generation check.")] = True,
    seed: Annotated[int, typer.Option(help="Seed of the one-step generation.")] = 0,
    device: Device = "cpu",
) -> None:
    """Load every role of a model set and check it against published facts; non-zero exit on any failure."""
    from ..model_check import check_model_set

    report = check_model_set(models, facts=facts, device=device, seed=seed, generate=generate)
    typer.echo(report.table())
    report.write_json(json_out)
    typer.echo(f"wrote {json_out}")
    if not report.ok:
        names = ", ".join(sorted({f"{c.role} ({c.what})" for c in report.failures}))
        raise FoleykitError(f"model set {report.model_set}: {len(report.failures)} check(s) failed: {names}")


@models_app.command("import-audioldm-clap")
def models_import_audioldm_clap(
    checkpoint: Annotated[Path, typer.Argument(help="The original AudioLDM checkpoint, e.g. audioldm-s-full-v2.ckpt.")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Output folder (default: $FOLEYKIT_CACHE/audioldm-clap, where the default model set looks).")] = None,
    tokenizer: Annotated[Optional[str], typer.Option(help="Generator (its tokenizer/ sub-folder) or tokenizer folder; default cvssp/audioldm-s-full-v2.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty output folder.")] = False,
) -> None:
    """Convert AudioLDM's own CLAP (cond_stage_model.*) into a transformers ClapModel folder (the 'clap' role)."""
    from ..encoders.audioldm_clap import convert_audioldm_clap
    from ..model_sets import audioldm_clap_dir

    out = convert_audioldm_clap(checkpoint, output or audioldm_clap_dir(), tokenizer=tokenizer, overwrite=overwrite)
    typer.echo(f"wrote {out}")
