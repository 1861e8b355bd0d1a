"""Mean cosine between each audio clip and its partner embeddings (images for CS, captions for CLAP score).

A clip may have several partners (one crop per sound source in SS2A's multi-source test, five
AudioCaps captions): its score is the mean cosine over them, and the metric is the mean over clips.
Papers print these ×100; the raw cosine in [−1, 1] is what the code of SS2A and av-benchmark
returns. Both are reported so neither convention is mistaken for the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .pairing import require_same_names

SCALE = 100.0


@dataclass(frozen=True)
class CosineScore:
    raw: float
    std: float
    n: int
    per_clip: dict[str, float] = field(repr=False)

    @property
    def scaled(self) -> float:
        """The ×100 value papers print (V2A-Mapper CS 9.720 means a mean cosine of 0.0972)."""
        return self.raw * SCALE


def _unit(v: np.ndarray, what: str) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    norm = np.linalg.norm(v)
    if not np.isfinite(norm) or norm == 0:
        raise InputError(f"{what} embedding is zero or not finite; a cosine is undefined")
    return v / norm


def paired_cosine(
    audio: Mapping[str, np.ndarray], partners: Mapping[str, Sequence[np.ndarray]], partner_what: str
) -> CosineScore:
    """Mean over clips of the mean cosine between a clip's audio embedding and each of its partners."""
    names = require_same_names(audio, partners, "audio clips", partner_what)
    if not names:
        raise InputError(f"no audio clips with {partner_what} to score")
    per_clip: dict[str, float] = {}
    for name in names:
        if len(partners[name]) == 0:
            raise InputError(f"audio clip {name!r} has no {partner_what}")
        a = _unit(audio[name], f"audio clip {name!r}")
        if any(np.shape(p)[-1] != a.shape[0] for p in partners[name]):
            raise InputError(
                f"audio and {partner_what} embeddings of {name!r} differ in size: not one joint space"
            )
        per_clip[name] = float(np.mean([a @ _unit(p, f"{partner_what} of {name!r}") for p in partners[name]]))
    values = np.array(list(per_clip.values()))
    return CosineScore(raw=float(values.mean()), std=float(values.std()), n=len(names), per_clip=per_clip)
