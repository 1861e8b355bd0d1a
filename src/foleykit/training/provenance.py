"""Provenance checks a trainer runs on its data before training: were the embeddings made by the
encoders the trained module will meet at inference?

Each check takes the ``models`` record of an extraction folder (``extraction.json``) and raises one
:class:`~foleykit.errors.InputError` line naming both sides when they differ. Tensors files carry no
record and are not checked. :func:`check_training_data` is what the trainer calls; it dispatches to
one small function per encoder (:func:`check_clap_provenance`; CLIP checks sit beside it).
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
