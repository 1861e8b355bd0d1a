"""Provenance checks a trainer runs on its data before training: were the embeddings made by the
encoders the trained module will meet at inference?

Each check raises one :class:`~foleykit.errors.InputError` line naming both sides when they differ.
The trainer calls two:

* :func:`check_provenance` (CLIP): every data producer records which encoders made its features —
  extraction folders in ``extraction.json["provenance"]``, the data builders
  (:mod:`foleykit.training.builders`) in the ``foleykit_provenance`` metadata of their safetensors
  file — as ``{"clip": {"role", "model", "dim"}, "clap": {"role", "model", "dim"}}``; the CLIP ``role``
  must be the one the task's model meets at inference (:data:`NEEDED_CLIP_ROLE`: ``clip_mapper``,
  ViT-B/32, for the V2A-Mapper; ``clip``, ViT-L/14, for SS2A and grounding).
* :func:`check_training_data` (CLAP): the ``models`` record of an extraction folder; ``clap`` targets
  must be in the generator's own CLAP space (:func:`check_clap_provenance`).

Data without a record (a hand-made tensors file) is not checked; the trainers' shape checks still apply.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import InputError

EXTRACT_HINT = "re-extract with `foleykit extract` (it embeds audio with the generator's own CLAP)"


def extraction_models(path: str | os.PathLike) -> dict[str, Any] | None:
    """The ``models`` record of an extraction folder, or None for a tensors file."""
    p = Path(path).expanduser()
    index = p / "extraction.json"
    if not (p.is_dir() and index.is_file()):
        return None
    try:
        return dict(json.loads(index.read_text()).get("models") or {})
    except (OSError, json.JSONDecodeError, TypeError, ValueError):
        return None  # the loader reports an unreadable index in its own words


def check_clap_provenance(clap: Mapping[str, Any] | None, source: str | os.PathLike, *,
                          generator: str | None = None, generator_fingerprint: Callable[[], str] | None = None) -> None:
    """Refuse ``clap`` embeddings of ``source`` that are not in the generator's own CLAP space.

    ``clap``: the extraction record's ``models.clap`` (with its ``space`` record). ``generator``: the
    reference of the generator the trained module is for (None: any generator whose own CLAP was
    used); when it differs from the recorded one, ``generator_fingerprint()`` (its text tower's
    :func:`~foleykit.encoders.generator_clap.space_fingerprint`) decides whether it is the same space.
    """
    if clap is None:
        return
    used = clap.get("ref", "an unknown CLAP")
    space = clap.get("space")
    if not space:
        raise InputError(f"{source}: its 'clap' embeddings were extracted with CLAP {used!r}, which was not checked "
                         f"against a generator's CLAP space (not the generator's own CLAP); {EXTRACT_HINT}")
    if not space.get("same_space"):
        raise InputError(f"{source}: its 'clap' embeddings were extracted with CLAP {space.get('clap', used)!r}, another "
                         f"space than generator {space.get('generator')!r}'s own CLAP (probe agreement "
                         f"{space.get('probe_agreement')}); {EXTRACT_HINT}")
    if generator is None or space.get("generator") == generator:
        return
    if generator_fingerprint is not None and space.get("fingerprint") == generator_fingerprint():
        return
    raise InputError(f"{source}: its 'clap' embeddings were extracted with CLAP {space.get('clap', used)!r} in the space "
                     f"of generator {space.get('generator')!r}, not of this run's generator {generator!r}; {EXTRACT_HINT} "
                     f"--models for that generator")


def check_training_data(path: str | os.PathLike, keys: Mapping[str, str], models: str | None = None) -> None:
    """Run the provenance checks that apply to ``path`` (an extraction folder; files are not checked)
    for the features ``keys`` uses. ``models``: the run's model set (None: not named)."""
    record = extraction_models(path)
    if record is None:
        return
    if "clap" in keys.values():
        generator = fingerprint = None
        if models is not None:
            from ..model_sets import resolve_model_set

            generator = resolve_model_set(models).audioldm

            def fingerprint() -> str:
                from ..encoders.generator_clap import GeneratorClap

                return GeneratorClap.from_pretrained(generator, device="cpu").fingerprint

        check_clap_provenance(record.get("clap"), Path(path).expanduser(), generator=generator,
                              generator_fingerprint=fingerprint)


# ------------------------------------------------------------------------------------------------
# CLIP: the role (and size) each task's model meets at inference
# ------------------------------------------------------------------------------------------------

#: Metadata key of a safetensors file written by a data builder.
METADATA_KEY = "foleykit_provenance"

#: The CLIP role each trainer's model meets at inference (None: it reads no CLIP features).
NEEDED_CLIP_ROLE: dict[str, str | None] = {
    "mapper": "clip_mapper", "manifold": "clip", "remixer": "clip", "temporal": None, "grounding": "clip",
}
#: What each role is (for messages) and which extraction preset makes data for each task.
CLIP_ROLE_NAMES = {"clip": "ViT-L/14, 768-d", "clip_mapper": "ViT-B/32, 512-d"}
EXTRACT_PRESETS = {"mapper": "extract_v2a_mapper", "manifold": "extract_ss2a", "remixer": "extract_ss2a_scenes",
                   "temporal": "extract_ss2a", "grounding": "extract_grounding"}


def encoder_record(role: str, encoder_identity: Mapping[str, Any] | None, dim: int | None) -> dict[str, Any]:
    """One encoder's entry: its model-set role, the model it was loaded from and its output width."""
    return {"role": role, "model": (encoder_identity or {}).get("ref"), "dim": dim}


def read_provenance(path: str | os.PathLike) -> dict[str, Any] | None:
    """The provenance of an extraction folder or a builder's safetensors file, or None when not recorded."""
    p = Path(path).expanduser()
    if p.is_dir():
        try:
            return json.loads((p / "extraction.json").read_text()).get("provenance")
        except (OSError, json.JSONDecodeError, AttributeError):
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
    """safetensors metadata carrying ``provenance`` (for the files a data builder writes)."""
    return {METADATA_KEY: json.dumps(dict(provenance), sort_keys=True)} if provenance else {}


def check_provenance(task: str, provenance: Mapping[str, Any] | None, source: Any) -> None:
    """Refuse (one line naming both) data whose CLIP features come from another CLIP than ``task``'s
    model meets at inference. Data without a record passes."""
    if not provenance:
        return
    want = NEEDED_CLIP_ROLE.get(task)
    clip = provenance.get("clip")
    if want is None or not clip or clip.get("role") == want:
        return
    raise InputError(
        f"{source} holds features of CLIP '{clip.get('role')}' ({clip.get('model')}, {clip.get('dim')}-d); "
        f"the {task} meets CLIP '{want}' ({CLIP_ROLE_NAMES[want]}) at inference: extract with "
        f"--config {EXTRACT_PRESETS[task]} (or --clip-role {want})"
    )
