"""Vocabularies of sounding things: one source of truth for the detector and the zero-shot bridge.

Two lists, kept here below every model that uses them (io level: no torch, no models):

* :data:`SOUNDING_OBJECTS`: 126 everyday *visible* sounding things ("dog", "chainsaw", "ocean
  waves"). The OWLv2 detector's default queries: each must be something a box can be drawn around.
* :func:`sound_vocabulary`: the 527 AudioSet classes and the 309 VGGSound classes, lower-cased and
  deduplicated (806 names: "male speech, man speaking", "dog barking", "playing cello"). The
  zero-shot bridge's default: it names *sounds*, including ones a detector cannot box (speech,
  rain, engine idling). The class lists ship as package data (``foleykit/vocabulary/data``, with
  their licences in ``LICENSES.md``): AudioSet ontology (Google, CC BY 4.0) and VGGSound (VGG,
  University of Oxford, CC BY 4.0).

A custom vocabulary is a UTF-8 text file, one name per line; blank lines and lines starting with
``#`` are skipped (:func:`load_vocabulary`).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import os
import re
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path

from ..errors import InputError

__all__ = [
    "AUDIOSET_FILE",
    "DEFAULT_BRIDGE_VOCABULARY",
    "SOUNDING_OBJECTS",
    "VGGSOUND_FILE",
    "VOCABULARY_NAMES",
    "audioset_classes",
    "data_file",
    "dedupe",
    "load_vocabulary",
    "sound_vocabulary",
    "vggsound_classes",
    "vocabulary_hash",
]

AUDIOSET_FILE = "audioset_class_labels_indices.csv"
VGGSOUND_FILE = "vggsound_classes.csv"

SOUNDING_OBJECTS: tuple[str, ...] = (
    # animals
    "dog", "cat", "horse", "cow", "sheep", "pig", "goat", "chicken", "rooster", "duck", "goose",
    "bird", "crow", "owl", "pigeon", "parrot", "seagull", "frog", "cricket", "bee", "fly", "mosquito",
    "lion", "elephant", "monkey", "wolf", "bear", "whale", "dolphin", "snake",
    # people
    "person talking", "crowd", "baby crying", "child laughing", "people clapping", "footsteps",
    "person singing", "person whistling", "person coughing", "person snoring",
    # vehicles
    "car", "truck", "bus", "motorcycle", "bicycle", "train", "subway train", "airplane", "helicopter",
    "boat", "ship horn", "police siren", "ambulance", "fire truck", "tractor", "race car", "skateboard",
    # tools and machines
    "chainsaw", "lawn mower", "drill", "hammer", "saw", "jackhammer", "vacuum cleaner", "hair dryer",
    "washing machine", "blender", "sewing machine", "printer", "typewriter", "keyboard typing",
    "clock ticking", "alarm clock", "telephone ringing", "doorbell", "door knocking", "door slamming",
    "fan", "air conditioner", "engine idling", "fireworks", "gunshot", "explosion", "church bell",
    # music
    "piano", "guitar", "violin", "cello", "drum", "trumpet", "saxophone", "flute", "harp", "accordion",
    "organ", "bagpipes", "harmonica", "xylophone", "orchestra",
    # nature
    "rain", "thunder", "wind", "ocean waves", "river stream", "waterfall", "fire crackling",
    "leaves rustling", "snow footsteps",
    # home and city
    "frying food", "boiling water", "dishes clattering", "glass breaking", "water tap running",
    "toilet flushing", "shower", "city traffic", "construction site", "restaurant chatter",
    "stadium crowd", "market", "playground", "office", "kitchen", "forest", "beach", "street",
)

#: Named vocabularies (``--vocabulary NAME``); anything else is read as a file.
DEFAULT_BRIDGE_VOCABULARY = "sounds"
VOCABULARY_NAMES = ("sounds", "objects")


def data_file(name: str) -> str:
    """The text of a shipped data file (read through :mod:`importlib.resources`, so wheels work)."""
    return resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")


def _normalise(word: str) -> str:
    return re.sub(r"\s+", " ", str(word)).strip().lower()


def dedupe(words: Iterable[str]) -> tuple[str, ...]:
    """Lower-cased, whitespace-collapsed names in first-seen order, each once; empty names dropped."""
    seen: dict[str, None] = {}
    for w in words:
        n = _normalise(w)
        if n:
            seen.setdefault(n, None)
    return tuple(seen)


@functools.cache
def audioset_classes() -> tuple[str, ...]:
    """The 527 AudioSet display names in the taggers' index order."""
    rows = csv.DictReader(io.StringIO(data_file(AUDIOSET_FILE)))
    return tuple(r["display_name"] for r in rows)


@functools.cache
def vggsound_classes() -> tuple[str, ...]:
    """The 309 VGGSound class names (file order: by clip count)."""
    return tuple(r[0] for r in csv.reader(io.StringIO(data_file(VGGSOUND_FILE))) if r)


@functools.cache
def sound_vocabulary() -> tuple[str, ...]:
    """AudioSet + VGGSound class names, lower-cased and deduplicated (the bridge's default)."""
    return dedupe(audioset_classes() + vggsound_classes())


def vocabulary_hash(words: Sequence[str]) -> str:
    """A short content hash of a word list (order matters: it indexes the cached embeddings)."""
    return hashlib.sha256("\n".join(words).encode("utf-8")).hexdigest()[:16]


def load_vocabulary(spec: str | os.PathLike | Sequence[str] | None = None) -> tuple[tuple[str, ...], str]:
    """(words, name): a named vocabulary (``sounds``, ``objects``), a text file, or a list of words.

    A file: UTF-8, one name per line, blank lines and ``#`` comments skipped, duplicates dropped.
    An empty or unreadable file is refused with one line naming it.
    """
    if spec is None or spec == DEFAULT_BRIDGE_VOCABULARY:
        return sound_vocabulary(), DEFAULT_BRIDGE_VOCABULARY
    if spec == "objects":
        return SOUNDING_OBJECTS, "objects"
    if isinstance(spec, (list, tuple)):
        words = dedupe(spec)
        if not words:
            raise InputError("the vocabulary is empty; give at least one name")
        return words, f"list of {len(words)}"
    path = Path(spec).expanduser()
    if not path.is_file():
        raise InputError(f"vocabulary {spec}: no such file (or give one of {', '.join(VOCABULARY_NAMES)})")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"vocabulary {spec} is not UTF-8 text (one name per line)") from None
    except OSError as exc:
        raise InputError(f"vocabulary {spec} could not be read: {exc.strerror or exc}") from None
    words = dedupe(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    if not words:
        raise InputError(f"vocabulary {spec} has no names (one per line; blank and # lines are skipped)")
    return words, str(spec)
