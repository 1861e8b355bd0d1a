"""Device and dtype resolution. Nothing in foleykit calls ``.cuda()``; everything goes through here."""

from __future__ import annotations

import torch

from .errors import InputError

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu. An explicit device that is not present is an error."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA device is available (try --device cpu)")
    if dev.type == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise InputError("--device mps was asked for but MPS is not available (try --device cpu)")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """None = float32 on CPU/MPS, float16 on CUDA. bf16 is refused on MPS (not supported everywhere)."""
    if isinstance(dtype, torch.dtype):
        out = dtype
    elif dtype is None or dtype == "auto":
        out = torch.float16 if device.type == "cuda" else torch.float32
    else:
        try:
            out = _DTYPES[str(dtype).lower()]
        except KeyError:
            raise InputError(f"unknown dtype {dtype!r}; choose one of float32, float16, bfloat16") from None
    if device.type == "mps" and out == torch.bfloat16:
        raise InputError("bfloat16 is not supported on MPS; use float16 or float32")
    return out
