"""Device and dtype resolution. Nothing in foleykit calls ``.cuda()``; everything goes through here.

``dtype="auto"`` (the CLI's default) picks, per device:

* CPU: **bfloat16** where the CPU computes it natively (``avx512_bf16`` or AMX, as torch's own
  cpuinfo reports them: :func:`cpu_has_native_bf16`), else **float32**. On CPUs without native
  bf16, oneDNN emulates it (slower than float32), so auto never picks it there; asking for it
  explicitly works and says so once per process. float16 on CPU is refused (no fast kernels).
* CUDA: float16 (AudioLDM and the encoders run fine in it). MPS: float32.
"""

from __future__ import annotations

import logging
import threading

import torch

from .errors import InputError

log = logging.getLogger(__name__)

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")
_said_emulated_bf16 = False
_said_lock = threading.Lock()


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


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bfloat16 arithmetic in hardware: ``avx512_bf16`` or AMX tiles.

    From torch's own CPU detection (``torch.cpu._is_avx512_bf16_supported`` /
    ``_is_amx_tile_supported``, cpuinfo underneath). Not ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``:
    that is true on any AVX-512 CPU, where oneDNN merely emulates bf16 (slower than float32).
    """
    cpu = getattr(torch, "cpu", None)
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        probe = getattr(cpu, name, None)
        if probe is not None and probe():
            return True
    return False


def auto_dtype(device: torch.device) -> torch.dtype:
    """The dtype ``auto`` means on ``device`` (see the module docstring)."""
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None``/``"auto"`` → :func:`auto_dtype`; names ``float32|fp32``, ``bfloat16|bf16``, ``float16|fp16``.

    Refused (one line): an unknown name, float16 on CPU, bfloat16 on MPS. bfloat16 on a CPU without
    native bf16 is allowed (emulated, slow) and logged once per process.
    """
    device = torch.device(device)
    if isinstance(dtype, torch.dtype):
        out = dtype
    elif dtype is None or str(dtype).lower() == "auto":
        return auto_dtype(device)
    else:
        try:
            out = _DTYPES[str(dtype).lower()]
        except KeyError:
            raise InputError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPE_CHOICES)}") from None
    if out not in (torch.float32, torch.float16, torch.bfloat16):
        raise InputError(f"unsupported dtype {out}; choose one of {', '.join(DTYPE_CHOICES)}")
    if device.type == "cpu" and out == torch.float16:
        raise InputError("float16 is not supported on CPU; use --dtype bfloat16, float32 or auto")
    if device.type == "mps" and out == torch.bfloat16:
        raise InputError("bfloat16 is not supported on MPS; use float16 or float32")
    if device.type == "cpu" and out == torch.bfloat16 and not cpu_has_native_bf16():
        _say_emulated_bf16_once()
    return out


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` → ``"bfloat16"`` (as sidecars record it)."""
    return str(dtype).removeprefix("torch.")


def _say_emulated_bf16_once() -> None:
    global _said_emulated_bf16
    with _said_lock:
        if _said_emulated_bf16:
            return
        _said_emulated_bf16 = True
    log.warning("note: this CPU has no native bfloat16 (avx512_bf16 or AMX): bfloat16 is emulated and "
                "slower than float32 here (--dtype auto picks float32)")
