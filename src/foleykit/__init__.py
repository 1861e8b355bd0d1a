"""foleykit: generate the sound of a picture.

The Python API mirrors the CLI: ``foleykit.generate(...)`` is ``foleykit generate``, ``foleykit.train(...)``
is ``foleykit train TASK``. Heavy modules
(torch, transformers) load on first use, so ``import foleykit`` stays fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["generate", "load_pipeline", "train", "resolve_model_set", "__version__"]


def __getattr__(name: str):
    if name in ("generate", "load_pipeline", "train"):
        from . import api

        return getattr(api, name)
    if name == "resolve_model_set":
        from .model_sets import resolve_model_set

        return resolve_model_set
    raise AttributeError(f"module 'foleykit' has no attribute {name!r}")
