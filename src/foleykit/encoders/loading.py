"""One loading path for real checkpoints and tiny stand-ins: resolve the reference, then ``from_pretrained``."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from ..errors import ModelNotAvailableError
from ..hub import resolve_pretrained


#: The one process-wide lock around every model load. Loading is not thread-safe in the libraries we
#: use: accelerate's ``init_empty_weights`` (used by diffusers and transformers) patches torch globally
#: (``nn.Module.register_parameter``) for the duration of a load, so two interleaved loads in threads
#: fail ("Cannot copy out of meta tensor") and can leave torch patched for good. Re-entrant, so a
#: pipeline load may hold it around the loads of its parts.
MODEL_LOAD_LOCK = threading.RLock()


def quiet_loading() -> None:
    """Silence transformers' per-load progress bars and info logs; foleykit shows its own progress."""
    from huggingface_hub.utils import logging as hub_logging
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    hub_logging.set_verbosity_error()


@dataclass(frozen=True)
class LoadedFrom:
    """Provenance of a loaded model, recorded in every output's sidecar."""

    ref: str
    revision: str
    path: str


def load_pretrained(cls: Any, ref: str, *, subfolder: str | None = None, revision: str | None = None, **kwargs: Any):
    """``cls.from_pretrained`` on the resolved local folder; returns (object, LoadedFrom).

    Runs under :data:`MODEL_LOAD_LOCK`: one load at a time per process."""
    with MODEL_LOAD_LOCK:
        return _load_pretrained(cls, ref, subfolder=subfolder, revision=revision, **kwargs)


def _load_pretrained(cls: Any, ref: str, *, subfolder: str | None, revision: str | None, **kwargs: Any):
    quiet_loading()
    local, rev = resolve_pretrained(ref, revision=revision, subfolder=subfolder)
    folder = Path(local) / subfolder if subfolder else Path(local)
    if not folder.is_dir():
        raise ModelNotAvailableError(f"model {ref!r} has no sub-folder {subfolder!r} ({cls.__name__} expected there)")
    try:
        obj = cls.from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:  # missing, truncated, mismatched
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
        msg = " ".join(lines[:2]) if lines[0].endswith(":") and len(lines) > 1 else lines[0]  # one line
        raise ModelNotAvailableError(f"could not load {cls.__name__} from {folder}: {msg}") from None
    return obj, LoadedFrom(ref=ref, revision=rev, path=str(folder))


def to_device(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Move to device/dtype and freeze: encoders are inference-only."""
    if next(module.parameters()).dtype != dtype:
        module = module.to(dtype=dtype)
    module = module.to(device=device).eval()
    module.requires_grad_(False)
    return module


def load_frozen(model_cls: Any, ref: str, *part_classes: Any, device: str | torch.device = "cpu",
                dtype: str | torch.dtype | None = None) -> tuple[torch.nn.Module, list[Any], LoadedFrom]:
    """The one way a frozen encoder loads: ``model_cls`` in ``dtype`` (default float32) moved to ``device``
    and frozen, then each of ``part_classes`` (processor, tokenizer, ...) from the same reference.

    Returns (model, [parts in the order given], the model's :class:`LoadedFrom`)."""
    from ..devices import resolve_device, resolve_dtype

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev) if dtype is not None else torch.float32
    model, src = load_pretrained(model_cls, ref, dtype=dt)
    parts = [load_pretrained(part_cls, ref)[0] for part_cls in part_classes]
    return to_device(model, dev, dt), parts, src


def pooled(out) -> torch.Tensor:
    """transformers v5 returns a model output with ``pooler_output``; v4 returned the tensor itself."""
    return out.pooler_output if hasattr(out, "pooler_output") else out


class FrozenModel:
    """Shared plumbing of the frozen models: the wrapped model, its provenance, device and dtype."""

    model: torch.nn.Module
    loaded_from: LoadedFrom | None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype


class FrozenEncoder(FrozenModel):
    """A frozen model that embeds into a joint space (CLIP, CLAP): also its width."""

    @property
    def dim(self) -> int:
        return int(self.model.config.projection_dim)
