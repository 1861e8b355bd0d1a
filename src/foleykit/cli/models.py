"""``foleykit models …``: inspect or build model sets."""

# No ``from __future__ import annotations``: typer reads the annotations at runtime.
from typing import Annotated, Optional

import typer

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
