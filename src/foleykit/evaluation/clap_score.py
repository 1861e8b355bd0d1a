"""CLAP score: mean cosine between a clip's CLAP audio embedding and its caption's CLAP text embedding.

Captions are paired with audio by clip name from a CSV (``name,caption``), never by position
(gudgud96's ``CLAPScore`` pairs csv order with ``os.listdir`` order). Several captions per clip are
averaged. Reported raw (what av-benchmark returns) and ×100.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .similarity import CosineScore, paired_cosine


def clap_score(audio: Mapping[str, np.ndarray], texts: Mapping[str, Sequence[np.ndarray]]) -> CosineScore:
    """CLAP score over clips paired by name with their caption embeddings."""
    return paired_cosine(audio, texts, "captions")
