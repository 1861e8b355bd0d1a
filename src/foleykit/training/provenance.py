"""Which encoders produced a training set, and whether a trained model will meet the same ones at
inference.

A model trained on one CLIP's features and run on another's fails (or worse, runs on garbage) only
at generation time. So every data producer records its encoders — extraction folders in
``extraction.json["provenance"]``, the data builders in the ``foleykit_provenance`` metadata of their
safetensors file — and every trainer calls :func:`check_provenance` before any work:

    {"clip": {"role": "clip_mapper", "model": "openai/clip-vit-base-patch32", "dim": 512},
     "clap": {"role": "clap", "model": "laion/clap-htsat-unfused", "dim": 512}}

``role`` is the model-set role the features came from (``clip``: ViT-L/14, SS2A, objects;
``clip_mapper``: ViT-B/32, V2A-Mapper). Data without a record (a hand-made tensors file) is not
checked; the dims still are, by the trainers' shape checks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import InputError

#: Metadata key of a safetensors file written by a data builder.
METADATA_KEY = "foleykit_provenance"

#: The CLIP role each trainer's model meets at inference (None: it reads no CLIP features).
NEEDED_CLIP_ROLE: dict[str, str | None] = {
    "mapper": "clip_mapper", "manifold": "clip", "remixer": "clip", "temporal": None, "grounding": "clip",
}
#: What each role is (for messages) and which extraction preset makes data for it.
CLIP_ROLE_NAMES = {"clip": "ViT-L/14, 768-d", "clip_mapper": "ViT-B/32, 512-d"}
EXTRACT_PRESETS = {"mapper": "extract_v2a_mapper", "manifold": "extract_ss2a", "remixer": "extract_ss2a",
                   "temporal": "extract_ss2a", "grounding": "extract_grounding"}


def encoder_record(role: str, encoder_identity: Mapping[str, Any] | None, dim: int | None) -> dict[str, Any]:
    """One encoder's entry: its model-set role, the model it was loaded from and its output width."""
    return {"role": role, "model": (encoder_identity or {}).get("ref"), "dim": dim}


def read_provenance(path: str | os.PathLike) -> dict[str, Any] | None:
    """The provenance of an extraction folder or a builder's safetensors file, or None when not recorded."""
    p = Path(path).expanduser()
    if p.is_dir():
        index = p / "extraction.json"
        try:
            return json.loads(index.read_text()).get("provenance")
        except (OSError, json.JSONDecodeError):
            return None
    if p.suffix.lower() == ".safetensors" and p.is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="pt") as f:
                raw = (f.metadata() or {}).get(METADATA_KEY)
            return json.loads(raw) if raw else None
        except Exception:  # noqa: BLE001 - an unreadable file is reported by the loader, with its reason
            return None
    return None


def provenance_metadata(provenance: Mapping[str, Any] | None) -> dict[str, str]:
    """safetensors metadata carrying ``provenance`` (for files a data builder writes)."""
    return {METADATA_KEY: json.dumps(dict(provenance), sort_keys=True)} if provenance else {}


def check_provenance(task: str, provenance: Mapping[str, Any] | None, source: Any, *,
                     clap_model: str | None = None) -> None:
    """Refuse (one line) data made by other encoders than those ``task``'s model meets at inference.

    ``clap_model``: the CLAP the model will meet (a model id); when given, data from another CLAP is
    refused too. Data without a record passes.
    """
    if not provenance:
        return
    want_role = NEEDED_CLIP_ROLE.get(task)
    clip = provenance.get("clip")
    if want_role is not None and clip and clip.get("role") != want_role:
        preset = EXTRACT_PRESETS.get(task)
        raise InputError(
            f"{source} holds features of CLIP '{clip.get('role')}' ({clip.get('model')}, {clip.get('dim')}-d); "
            f"the {task} meets CLIP '{want_role}' ({CLIP_ROLE_NAMES[want_role]}) at inference: extract with "
            f"--config {preset}" + (" (or --clip-role clip_mapper)" if want_role == "clip_mapper" else
                                    " (or --clip-role clip)")
        )
    clap = provenance.get("clap")
    if clap_model is not None and clap and clap.get("model") not in (None, clap_model):
        raise InputError(f"{source} holds CLAP vectors of {clap.get('model')}; the {task} meets {clap_model} "
                         "at inference: extract again with that model set")


def merge_provenance(*records: Mapping[str, Any] | None) -> dict[str, Any]:
    """One record from several (a builder that reads an extraction and a trained module)."""
    out: dict[str, Any] = {}
    for rec in records:
        for k, v in (rec or {}).items():
            out.setdefault(k, v)
    return out
