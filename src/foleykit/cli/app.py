"""``foleykit app``: the web app (gradio) over the library."""

# No ``from __future__ import annotations``: typer reads the annotations at runtime.
from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import Device, Loudness, Models

commands = typer.Typer()


@commands.command("app")
def app_cmd(
    models: Models = None,
    port: Annotated[int, typer.Option(help="Port to listen on (0 = a free one).")] = 7860,
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine.")] = "127.0.0.1",
    grounding: Annotated[Optional[str], typer.Option(help="Trained grounding module folder (objects).")] = None,
    mapper: Annotated[Optional[str], typer.Option(help="Trained V2A-Mapper folder (mapper).")] = None,
    workdir: Annotated[Optional[Path], typer.Option(help="The app's work folder (uploads, results); default: a temp folder.")] = None,
    device: Device = "auto",
    auth: Annotated[Optional[str], typer.Option(metavar="USER:PASSWORD", envvar="FOLEYKIT_APP_AUTH", help="Ask for this user and password before serving the page (gradio auth); for a shared deployment. Env FOLEYKIT_APP_AUTH keeps it out of the process list.")] = None,
    loudness: Loudness = None,
) -> None:
    """Start the web app: upload a picture, click the objects that should sound, listen, download.

    Each request takes at most 8 sources (clicked objects, text lines and audio clips together), texts of
    at most 200 characters. Binding to an address other than loopback prints a warning (use --auth).
    The users' files in the work folder are removed when the server stops (Ctrl-C or SIGTERM).
    """
    from ..app.main import launch_app, parse_auth

    credentials = parse_auth(auth)  # a malformed value fails here, before anything loads
    launch_app(models=models, host=host, port=port, grounding=grounding, mapper=mapper, workdir=workdir, device=device,
               auth=credentials, loudness=loudness)
