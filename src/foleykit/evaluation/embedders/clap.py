"""CLAP audio and text embeddings for C-FAD and the CLAP score, through foleykit's CLAP encoder.

This is the *judge* CLAP: the model set's ``clap_judge`` role (``laion/clap-htsat-unfused``), a
CLAP trained independently of AudioLDM, so the score does not grade the generator in its own space.
It is never fed to the generator (that is :class:`foleykit.encoders.generator_clap.GeneratorClap`).

Audio goes in at 48 kHz, at most 10 s (480,000 samples), repeat-padded when shorter, as
LAION-CLAP does. Cropping to exactly 10 s in our front end is what keeps CLAP deterministic:
LAION-CLAP crops longer audio at a random offset (and its GitHub HEAD crashes doing it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from ...encoders.clap import CLAP_SAMPLE_RATE, CLAP_WINDOW_S, ClapEncoder
from ...model_sets import resolve_model_set
from .base import AudioEmbedder, pretrained_id


class ClapEmbedder(AudioEmbedder):
    name = "clap"
    sample_rate = CLAP_SAMPLE_RATE
    max_seconds = CLAP_WINDOW_S
    pad_mode = "repeat"

    def __init__(self, encoder: ClapEncoder, *, id: str) -> None:
        self.encoder = encoder
        self.id = id

    @classmethod
    def from_pretrained(cls, ref: str, *, device: str | torch.device = "cpu") -> ClapEmbedder:
        encoder = ClapEncoder.from_pretrained(ref, device=device, dtype=torch.float32)
        src = encoder.loaded_from
        return cls(encoder, id=pretrained_id("clap", src.ref, src.revision, src.path))

    @classmethod
    def tiny(
        cls, *, model_set: str | os.PathLike | None = None, device: str | torch.device = "cpu"
    ) -> ClapEmbedder:
        """The ``tiny`` model set's random judge CLAP (same classes and input geometry as the real one)."""
        return cls.from_pretrained(resolve_model_set(model_set or "tiny").clap_judge, device=device)

    def embed(self, wave: np.ndarray) -> dict[str, np.ndarray]:
        emb = self.encoder.embed_audio([wave], self.sample_rate)
        return {"embedding": emb[0].float().cpu().numpy()}

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), d)`` unit text embeddings."""
        return self.encoder.embed_texts(list(texts)).float().cpu().numpy()
