"""Sidecar JSON next to each output: how it was made (inputs, parameters, seed, models, versions).

``out.wav`` gets ``out.wav.json``, so that any result can be reproduced or audited later.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import importlib.metadata
import json
import math
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OutputError
from .atomic import write_bytes_atomic

#: Distributions whose versions decide what an output sounds like (or how it was decoded/encoded).
_VERSIONED = ("foleykit", "torch", "transformers", "diffusers", "numpy", "av", "soundfile", "soxr", "pillow")
#: Arrays up to this many elements are written out in full; larger ones as shape and dtype only.
_MAX_INLINE_ELEMENTS = 64


def environment_versions() -> dict[str, str | None]:
    """Installed versions of the libraries that matter, plus Python and the platform (None = absent).

    Read from package metadata, so no heavy library is imported just to learn its version.
    """
    versions: dict[str, str | None] = {}
    for dist in _VERSIONED:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    versions["python"] = platform.python_version()
    versions["platform"] = platform.platform()
    return versions


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` to plain JSON types: paths to strings, numpy scalars to numbers, large
    arrays and tensors to their shape and dtype, dataclasses to dicts, NaN/inf to None."""
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (dt.datetime, dt.date)):
        return obj.isoformat()
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, np.ndarray):
        if obj.size <= _MAX_INLINE_ELEMENTS:
            return to_jsonable(obj.tolist())
        return {"shape": list(obj.shape), "dtype": str(obj.dtype)}
    torch = sys.modules.get("torch")  # only if the caller already uses torch; never imported here
    if torch is not None and isinstance(obj, torch.Tensor):
        return {
            "shape": list(obj.shape),
            "dtype": str(obj.dtype).removeprefix("torch."),
            "device": str(obj.device),
        }
    if torch is not None and isinstance(obj, (torch.dtype, torch.device)):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        return [to_jsonable(v) for v in items]
    return str(obj)


def sidecar_path(output_path: str | os.PathLike) -> Path:
    """``out.wav`` -> ``out.wav.json``."""
    out = Path(output_path)
    return out.with_name(out.name + ".json")


def write_sidecar(output_path: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Write ``<output>.json`` atomically and return its path.

    ``record`` holds what the caller knows (``inputs``, ``parameters``, ``seed``, ``models`` with
    ids and revisions, ...); ``output``, ``versions`` and ``created_utc`` are added unless given.
    """
    full: dict[str, Any] = {"output": Path(output_path).name}
    full.update(record)
    full.setdefault("versions", environment_versions())
    full.setdefault("created_utc", dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    target = sidecar_path(output_path)
    text = json.dumps(to_jsonable(full), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    try:
        write_bytes_atomic(target, text.encode("utf-8"))
    except OSError as exc:
        raise OutputError(f"could not write sidecar {target}: {exc.strerror or exc}") from exc
    return target
