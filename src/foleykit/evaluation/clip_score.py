"""CLIP score (CS): cosine between Wav2CLIP(audio) and CLIP(image), as in Im2Wav, V2A-Mapper and SS2A.

Wav2CLIP maps audio into CLIP's image space (ViT-B/32, 512-d), so the cosine with the CLIP image
embedding of the picture the audio was made for measures relevance. Papers print it ×100
(V2A-Mapper 9.720, SS2A 12.947); the code returns the raw cosine. Both are reported.

Images are matched to clips by name: ``dog.png`` belongs to ``dog.wav``, and so do ``dog_0.png``,
``dog-left.png`` (one crop per sound source, averaged as in SS2A's multi-source test). An image is
given to the clip with the longest matching name, so ``dog_2.png`` goes to ``dog_2.wav`` if it exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from .similarity import CosineScore, paired_cosine

_SEPARATORS = ("_", "-", ".")


def match_images(clip_names: Iterable[str], images: Mapping[str, Path]) -> dict[str, list[Path]]:
    """``{clip: [image paths]}`` of the images named like each clip; clips without any are absent."""
    clips = sorted(set(clip_names), key=len, reverse=True)
    out: dict[str, list[Path]] = {}
    for stem, path in sorted(images.items()):
        for clip in clips:
            if stem == clip or any(stem.startswith(clip + sep) for sep in _SEPARATORS):
                out.setdefault(clip, []).append(path)
                break
    return out


def clip_score(audio: Mapping[str, np.ndarray], images: Mapping[str, Sequence[np.ndarray]]) -> CosineScore:
    """CS over clips paired by name with the CLIP embeddings of their images."""
    return paired_cosine(audio, images, "images")
