"""The foleykit web app (gradio): upload a picture, click the objects that should sound, listen, download.

``build_app(...)`` returns the ``gr.Blocks`` (tests launch it themselves); ``launch_app(...)`` is what
``foleykit app`` runs. Needs the ``app`` extra (``pip install 'foleykit[app]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .main import AppConfig, build_app, launch_app

__all__ = ["AppConfig", "build_app", "launch_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import main

        return getattr(main, name)
    raise AttributeError(name)
