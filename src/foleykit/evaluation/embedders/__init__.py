"""Embedders behind the metrics, by role, and how to build them from objects, checkpoints or ``"tiny"``.

Roles: ``panns`` (FD; also a tagger), ``vggish`` (FAD), ``clap`` (C-FAD, CLAP score), ``wav2clip`` and
``clip_image`` (CLIP score), ``ast`` and ``beats`` (taggers; BEATs is SS2A's SSMS tagger), ``tagger``
(KL, IS, SSMS, ACC: names one of ``panns`` / ``ast`` / ``beats``, or is an embedder object with logits).
Unless ``tagger`` is given, it is ``beats`` when a BEATs checkpoint is given (its only use), else
``panns`` when a PANNs checkpoint is, else ``ast``.

A role's spec is an embedder object; ``"tiny"`` (random weights, offline); a string (a checkpoint
file for panns / vggish / wav2clip / beats, a hub id or folder for ast / clap / clip_image); or a mapping of
keyword arguments for ``from_checkpoint`` / ``from_pretrained`` (``{"checkpoint": ..., "preset": "32k"}``).
A role that cannot be built is returned with its reason, so the metrics needing it are reported
as skipped rather than dropped.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from ...errors import FoleykitError, InputError, ModelNotAvailableError
from ...io._checks import one_line
from ...model_sets import resolve_model_set
from .ast import DEFAULT_AST, AstEmbedder
from .base import AudioEmbedder
from .beats import BEATsConfig, BeatsEmbedder
from .clap import ClapEmbedder
from .clip_image import ClipImageEmbedder
from .panns import PannsEmbedder
from .vggish import VGGishEmbedder
from .wav2clip import Wav2ClipEmbedder

__all__ = [
    "ROLES",
    "AstEmbedder",
    "AudioEmbedder",
    "BEATsConfig",
    "BeatsEmbedder",
    "ClapEmbedder",
    "ClipImageEmbedder",
    "PannsEmbedder",
    "VGGishEmbedder",
    "Wav2ClipEmbedder",
    "build_embedders",
]

ROLES = ("panns", "vggish", "clap", "wav2clip", "clip_image", "ast", "beats", "tagger")
TAGGER_ROLES = ("panns", "ast", "beats")
_CHECKPOINT_HINTS = {
    "panns": "Cnn14_16k_mAP=0.438.pth",
    "vggish": "vggish-10086976.pth",
    "wav2clip": "Wav2CLIP.pt",
    "beats": "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt",
}
_CHECKPOINT_BUILDERS = {
    "panns": PannsEmbedder.from_checkpoint,
    "vggish": VGGishEmbedder.from_checkpoint,
    "wav2clip": Wav2ClipEmbedder.from_checkpoint,
    "beats": BeatsEmbedder.from_checkpoint,
}


def _plan(spec: str | Mapping[str, Any] | None) -> dict[str, Any]:
    if spec == "tiny":
        return {role: "tiny" for role in ROLES} | {"tagger": "panns"}
    if spec is None or spec == "default":
        return {"ast": DEFAULT_AST, "tagger": "ast"}
    if isinstance(spec, Mapping):
        unknown = set(spec) - set(ROLES)
        if unknown:
            raise InputError(f"unknown embedder roles {sorted(unknown)}; known: {', '.join(ROLES)}")
        plan = {"ast": DEFAULT_AST} | dict(spec)
        plan.setdefault("tagger", "beats" if "beats" in spec else "panns" if "panns" in spec else "ast")
        return plan
    raise InputError(f"embedders must be 'tiny', 'default' or a mapping of role -> spec, got {spec!r}")


def _ref(item: Any) -> tuple[str, dict[str, Any]]:
    """A model reference and extra keyword arguments from ``"org/name"`` or ``{"model": ..., **kwargs}``."""
    if isinstance(item, Mapping):
        kwargs = dict(item)
        return str(kwargs.pop("model")), kwargs
    return str(item), {}


def _build_one(role: str, item: Any, *, device: str, model_set: str | os.PathLike | None) -> Any:
    if isinstance(item, (AudioEmbedder, ClipImageEmbedder)):
        return item
    if role == "tagger":
        raise InputError(f"the tagger must be one of {', '.join(TAGGER_ROLES)} or an embedder, got {item!r}")
    if role in ("clap", "clip_image"):
        cls = ClapEmbedder if role == "clap" else ClipImageEmbedder
        if item == "tiny":
            return cls.tiny(model_set=model_set, device=device)
        if item is None:
            models = resolve_model_set(model_set or "default")
            item = models.clap_judge if role == "clap" else models.clip_mapper  # the independent judge
        ref, kwargs = _ref(item)
        return cls.from_pretrained(ref, device=device, **kwargs)
    if item == "tiny":
        builders = {
            "panns": PannsEmbedder.tiny,
            "vggish": VGGishEmbedder.tiny,
            "wav2clip": Wav2ClipEmbedder.tiny,
            "ast": AstEmbedder.tiny,
            "beats": BeatsEmbedder.tiny,
        }
        return builders[role](device=device)
    if role == "ast":
        ref, kwargs = _ref(item)
        return AstEmbedder.from_pretrained(ref, device=device, **kwargs)
    if item is None:
        raise ModelNotAvailableError(
            f"no {role} checkpoint given (pass embedders={{'{role}': 'path/to/{_CHECKPOINT_HINTS[role]}'}})"
        )
    kwargs = dict(item) if isinstance(item, Mapping) else {"checkpoint": item}
    return _CHECKPOINT_BUILDERS[role](kwargs.pop("checkpoint"), device=device, **kwargs)


def build_embedders(
    spec: str | Mapping[str, Any] | None,
    roles: Iterable[str] = ROLES,
    *,
    device: str = "cpu",
    model_set: str | os.PathLike | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Build the embedders of ``roles`` only (real models are large); returns (built, {role: why not})."""
    plan = _plan(spec)
    built: dict[str, Any] = {}
    missing: dict[str, str] = {}
    for role in sorted(set(roles), key=lambda r: r == "tagger"):  # the tagger may reuse panns / ast
        item = plan.get(role)
        if role == "tagger" and isinstance(item, str) and item in TAGGER_ROLES:
            if item not in built and item not in missing:
                _try(item, plan.get(item), built, missing, device, model_set)
            if item in built:
                built[role] = built[item]
            else:
                missing[role] = f"the tagger is {item}, which is unavailable: {missing[item]}"
            continue
        _try(role, item, built, missing, device, model_set)
    tagger = built.get("tagger")
    if tagger is not None and not getattr(tagger, "tagger", False):
        del built["tagger"]
        missing["tagger"] = f"the tagger {getattr(tagger, 'name', tagger)!r} gives no class logits"
    return built, missing


def _try(
    role: str, item: Any, built: dict, missing: dict, device: str, model_set: str | os.PathLike | None
) -> None:
    try:
        built[role] = _build_one(role, item, device=device, model_set=model_set)
    except FoleykitError as exc:
        missing[role] = one_line(exc)
