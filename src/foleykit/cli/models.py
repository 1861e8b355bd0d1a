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
