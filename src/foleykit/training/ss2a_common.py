"""Plumbing shared by the SS2A trainers (manifold, remixer, temporal): splits, dtypes, EMA, logs."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, is_dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..io.atomic import atomic_path

EVAL_BATCH = 1024


def resolve_train_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """float32 (default) or bfloat16 autocast; float16 would need loss scaling, so it is refused."""
    names = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
    }
    if dtype is None or dtype == "auto":
        return torch.float32
    if isinstance(dtype, torch.dtype) and dtype in (torch.float32, torch.bfloat16):
        return dtype
    if isinstance(dtype, str) and dtype.lower() in names:
        return names[dtype.lower()]
    raise InputError(f"SS2A training supports float32 or bfloat16, got {dtype!r}")


def autocast_for(device: torch.device, dtype: torch.dtype) -> torch.autocast:
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


def check_training_args(epochs: int, batch_size: int, val_fraction: float) -> None:
    if epochs < 1 or batch_size < 1:
        raise InputError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"val_fraction must be in [0, 1), got {val_fraction}")


def split_indices(n: int, val_fraction: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random (train, val) index split; at least one validation item when ``val_fraction`` > 0."""
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    if n - n_val < 1:
        raise InputError(f"{n} examples leave nothing to train on after holding out {n_val} for validation")
    order = torch.randperm(n, generator=generator)
    return order[n_val:], order[:n_val]


def minibatches(indices: Tensor, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Shuffled mini-batches of ``indices`` (order fixed by ``generator``)."""
    perm = indices[torch.randperm(len(indices), generator=generator)]
    yield from perm.split(batch_size)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """teacher ← decay·teacher + (1 − decay)·student, parameters and float buffers alike."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.lerp_(s, 1.0 - decay)
    for t, s in zip(teacher.buffers(), student.buffers(), strict=True):
        if t.is_floating_point():
            t.lerp_(s, 1.0 - decay)
        else:
            t.copy_(s)


def sigmoid_rampup(step: int, rampup_steps: int) -> float:
    """exp(−5(1 − t)²) for t = step / rampup_steps ≤ 1 (Tarvainen & Valpola's consistency ramp-up)."""
    if rampup_steps <= 0:
        return 1.0
    t = min(step, rampup_steps) / rampup_steps
    return math.exp(-5.0 * (1.0 - t) ** 2)


def write_history(log_path: str | os.PathLike | None, history: list[Any]) -> None:
    """Rewrite the JSON-lines log atomically (one line per epoch), so a crash leaves a readable log."""
    if log_path is None:
        return
    with atomic_path(log_path) as tmp:
        tmp.write_text("".join(json.dumps(asdict(h) if is_dataclass(h) else h) + "\n" for h in history))


def load_named_tensors(
    path: str | os.PathLike,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    *,
    what: str = "embeddings",
) -> dict[str, Tensor]:
    """Read named tensors (``.safetensors``, ``.pt``/``.pth`` weights-only, or ``.npz``) for a trainer.

    Every problem a trainer would otherwise hit deep inside (unreadable file, missing or unknown-type
    tensor, NaN/inf, item counts that differ between tensors) is one :class:`InputError` line naming
    the file. Float tensors come back as float32, bool/integer masks as bool; shapes are the caller's
    to check (:func:`check_shape`).
    """
    from pathlib import Path

    import numpy as np

    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"{what} file {p} does not exist")
    suffix = p.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            data = load_file(str(p))
        elif suffix in (".pt", ".pth"):
            data = torch.load(p, map_location="cpu", weights_only=True)
        elif suffix == ".npz":
            with np.load(p, allow_pickle=False) as npz:
                data = {k: torch.from_numpy(npz[k]) for k in npz.files}
        else:
            raise InputError(f"{p}: unsupported {what} format {suffix!r}; use .safetensors, .pt or .npz")
    except InputError:
        raise
    except Exception as exc:  # corrupt or foreign files fail in format-specific ways
        raise InputError(f"{p}: cannot read {what} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(data, dict):
        raise InputError(f"{p}: expected named tensors, found a {type(data).__name__}")
    missing = [k for k in required if k not in data]
    if missing:
        raise InputError(f"{p}: missing tensor {', '.join(repr(k) for k in missing)}; found {sorted(data)}")
    out: dict[str, Tensor] = {}
    n = None
    for key in (*required, *(k for k in optional if k in data)):
        t = data[key]
        if not isinstance(t, Tensor) or t.is_complex():
            raise InputError(f"{p}: {key!r} is not a real-valued tensor")
        if t.ndim == 0:
            raise InputError(f"{p}: {key!r} is a scalar; expected one row per example")
        if t.dtype == torch.bool or key.endswith("mask") or key.startswith("is_"):  # masks: nonzero = True
            t = t.bool()
        else:
            t = t.float()
            if not torch.isfinite(t).all():
                raise InputError(f"{p}: {key!r} contains NaN or infinite values")
        if n is None:
            n = t.shape[0]
        elif t.shape[0] != n:
            raise InputError(f"{p}: {key!r} has {t.shape[0]} rows but {required[0]!r} has {n}; they must pair up")
        out[key] = t
    if not n:
        raise InputError(f"{p}: the {what} are empty")
    return out


def check_shape(path: str | os.PathLike, name: str, t: Tensor, shape: tuple[int | None, ...]) -> None:
    """``t`` must have ``len(shape)`` dims, matching every non-None entry; else one InputError line."""
    if t.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, t.shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise InputError(f"{path}: {name!r} must have shape {want}, got {list(t.shape)}")
