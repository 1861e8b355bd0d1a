"""CLIP image embeddings, the image side of the CLIP score (Wav2CLIP was trained against ViT-B/32)."""

from __future__ import annotations

import os

import numpy as np
import torch

from ...encoders.clip import ClipEncoder
from ...io.image import load_image
from ...model_sets import resolve_model_set
from .base import pretrained_id

DEFAULT_CLIP = "openai/clip-vit-base-patch32"


class ClipImageEmbedder:
    """Unit-norm CLIP image embedding of an image file."""

    name = "clip-image"

    def __init__(self, encoder: ClipEncoder, *, id: str) -> None:
        self.encoder = encoder
        self.id = id

    @classmethod
    def from_pretrained(
        cls, ref: str = DEFAULT_CLIP, *, device: str | torch.device = "cpu"
    ) -> ClipImageEmbedder:
        encoder = ClipEncoder.from_pretrained(ref, device=device, dtype=torch.float32)
        src = encoder.loaded_from
        return cls(encoder, id=pretrained_id("clip-image", src.ref, src.revision, src.path))

    @classmethod
    def tiny(
        cls, *, model_set: str | os.PathLike | None = None, device: str | torch.device = "cpu"
    ) -> ClipImageEmbedder:
        """The ``tiny`` model set's random ViT-B/32-shaped CLIP (512-d, like Wav2CLIP's space)."""
        return cls.from_pretrained(resolve_model_set(model_set or "tiny").clip_mapper, device=device)

    def embed_image(self, path: str | os.PathLike) -> dict[str, np.ndarray]:
        emb = self.encoder.embed_images([load_image(path)], normalize=True)
        return {"embedding": emb[0].float().cpu().numpy()}

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "id": self.id, "dim": self.encoder.dim}
