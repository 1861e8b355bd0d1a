"""One loaded copy per process of each frozen component, shared by every method's pipeline.

The three methods are built from the same parts: CLIP ViT-L/14, CLAP, the AudioLDM generator, and
(loaded on first use) SAM, the OWLv2 detector and the text prior. :func:`shared` loads a part once
per ``(role, ref, device, dtype)`` and hands the same object to every pipeline that asks, so holding
all three methods at once (the web app, a notebook) costs one CLIP, one CLAP and one generator.

Thread safety: lookups and loads run under :data:`foleykit.encoders.loading.MODEL_LOAD_LOCK`, the
one process-wide lock around every model load (libraries patch torch globally while loading, so
loads must never interleave). A failed load caches nothing: the next call tries again. The shared
parts are inference-only and safe to use from several threads (their lazy state is locked); a caller
that wants to change a part (e.g. swap the generator's UNet) takes its own copy first
(:meth:`foleykit.generator.pipeline.AudioLDMGenerator.with_unet`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from ..devices import resolve_device, resolve_dtype
from ..encoders.loading import MODEL_LOAD_LOCK

T = TypeVar("T")

_COMPONENTS: dict[tuple[str, str, torch.device, torch.dtype], Any] = {}


def component_key(role: str, ref: str, device: str | torch.device, dtype: str | torch.dtype | None) -> tuple:
    """The cache key: role, reference and the *resolved* device and dtype (``auto`` and ``cuda:0`` alike)."""
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev) if dtype is not None else torch.float32
    return (role, str(ref), dev, dt)


def shared(role: str, ref: str, device: str | torch.device, dtype: str | torch.dtype | None,
           load: Callable[..., T]) -> T:
    """The process's one ``load(ref, device=..., dtype=...)`` for this (role, ref, device, dtype)."""
    key = component_key(role, ref, device, dtype)
    with MODEL_LOAD_LOCK:
        obj = _COMPONENTS.get(key)
        if obj is None:
            obj = load(ref, device=key[2], dtype=key[3])
            _COMPONENTS[key] = obj
        return obj


@dataclass(frozen=True)
class CoreParts:
    """What every method is built on: CLIP, the AudioLDM generator and the generator's own CLAP, with the
    resolved device and dtype they were loaded for."""

    clip: Any
    generator: Any
    clap: Any
    device: torch.device
    dtype: torch.dtype


def core_parts(model_set, device: str | torch.device, dtype: str | torch.dtype | None, *,
               clip_ref: str | None = None) -> CoreParts:
    """The shared CLIP (``clip_ref``, else the model set's ``clip``), generator and generator CLAP of a
    model set, on ``device`` in ``dtype`` (both resolved here: ``auto`` picks)."""
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    clip_part = clip(clip_ref or model_set.clip, dev, dt)
    gen = generator(model_set.audioldm, dev, dt)
    clap = generator_clap(model_set.audioldm, model_set.clap, dev, dt)  # the generator's own CLAP space
    return CoreParts(clip_part, gen, clap, dev, dt)


def models_record(parts: Sequence[tuple[str, Any]], clap: Any = None, model_set: Any = None,
                  extra: dict | None = None) -> dict:
    """The sidecar's ``models``: each loaded part's reference and revision (parts not loaded are left
    out), the CLAP's record, ``extra`` entries, then the model set's name."""
    rec = {}
    for role, part in parts:
        src = getattr(part, "loaded_from", None)
        if src is not None:
            rec[role] = {"ref": src.ref, "revision": src.revision}
    if clap is not None:
        rec["clap"] = clap.record()
    rec.update(extra or {})
    if model_set is not None:
        rec["model_set"] = model_set.name
    return rec


def clip(ref: str, device, dtype):
    from ..encoders.clip import ClipEncoder

    return shared("clip", ref, device, dtype, ClipEncoder.from_pretrained)


def generator_clap(generator_ref: str, clap_ref: str | None, device, dtype):
    """The generator's own CLAP (its text tower + AudioLDM's audio tower), shared like the generator."""
    from ..encoders.generator_clap import GeneratorClap

    gen = generator(generator_ref, device, dtype)
    return shared("generator_clap", f"{generator_ref}+{clap_ref}", device, dtype,
                  lambda _ref, **_: GeneratorClap.for_generator(gen, clap_ref))


def generator(ref: str, device, dtype):
    from ..generator.pipeline import AudioLDMGenerator

    return shared("audioldm", ref, device, dtype, AudioLDMGenerator.from_pretrained)


def segmenter(ref: str, device, dtype):
    from ..encoders.segmenter import Segmenter

    return shared("sam", ref, device, dtype, Segmenter.from_pretrained)


def detector(ref: str, device, dtype):
    from ..encoders.detector import SoundSourceDetector

    return shared("detector", ref, device, dtype, SoundSourceDetector.from_pretrained)


def prior(ref: str, device, dtype):
    from ..encoders.prior import TextToImagePrior

    return shared("prior", ref, device, dtype, TextToImagePrior.from_pretrained)


def loaded() -> list[tuple[str, str, torch.device, torch.dtype]]:
    """The keys of the components loaded so far (role, ref, device, dtype)."""
    with MODEL_LOAD_LOCK:
        return list(_COMPONENTS)


def clear() -> None:
    """Forget every shared component (their memory is freed once no pipeline holds them)."""
    with MODEL_LOAD_LOCK:
        _COMPONENTS.clear()
