"""The ``foleykit`` command line: a thin typer layer over :mod:`foleykit.api`, the trainer and the data tools.

One module per verb group: :mod:`.generate`, :mod:`.models` (``models …``), :mod:`.train` (``train …``),
:mod:`.data` (``extract``, ``curate``, ``batch-generate``), :mod:`.evaluate` (``evaluate``, ``protocol``) and
:mod:`.app` (``app``); options several verbs share are defined once in :mod:`.options`.

Usage errors (unknown command or option, a missing or malformed argument) print click's usage line with
its suggestion and exit 2; user errors (:class:`~foleykit.errors.FoleykitError`) end with one line on
stderr and exit 1; nothing partial is left on disk.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer

from ..errors import FoleykitError

# The verb modules are imported before ``app`` is bound: importing the submodule ``cli.app`` sets the
# package attribute ``app``, which the typer app below must then replace.
from . import app as _app_verb
from . import data as _data_verbs
from . import evaluate as _evaluate_verbs
from . import generate as _generate_verb
from .models import models_app
from .train import train_app

try:  # typer >= 0.2x carries its own copy of click: its usage errors are not the `click` package's
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - typer on the click package
    from click.exceptions import ClickException

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Generate the sound of a picture: image/video in, soundtrack out.")


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


app.add_typer(_generate_verb.commands)
app.add_typer(_app_verb.commands)
app.add_typer(_evaluate_verbs.commands)
app.add_typer(models_app, name="models")
app.add_typer(train_app, name="train")
app.add_typer(_data_verbs.commands)


def _err(msg: str) -> None:
    typer.echo(f"foleykit: error: {msg}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one clear line for user errors, click's usage message for usage errors
    (exit 2), tracebacks only for bugs."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        code = app(args=argv, prog_name="foleykit", standalone_mode=False)
    except FoleykitError as exc:
        _err(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        sys.exit(exc.exit_code)
    except ClickException as exc:  # usage errors: "Usage: ...", "Try 'foleykit --help'", "Error: ..."
        exc.show()
        sys.exit(exc.exit_code)
    except typer.Abort:
        _err("aborted")
        sys.exit(1)
    except KeyboardInterrupt:
        _err("interrupted")
        sys.exit(130)
    except (typer.Exit, SystemExit) as exc:
        sys.exit(getattr(exc, "exit_code", getattr(exc, "code", 0)))
    if isinstance(code, int) and code:  # an explicit typer.Exit(code) inside a command
        sys.exit(code)
