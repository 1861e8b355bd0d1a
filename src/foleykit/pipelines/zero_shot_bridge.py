"""A training-free CLIP→CLAP bridge, used when no trained V2A-Mapper is available.

No V2A-Mapper weights are published, so with the ``default`` model set and no ``--mapper``,
foleykit still works: the image is scored against CLIP text embeddings of a sounding-object
vocabulary ("a photo of a dog"), and the CLAP text embeddings of the best matches ("the sound of a
dog") are averaged with softmax weights. The CLAP text embeddings come from the generator's own
text tower (:class:`~foleykit.encoders.generator_clap.GeneratorClap`): the space AudioLDM was
trained on. It is coarser than a trained mapper (one vocabulary,
no scene nuance) but needs no training data. Train a real mapper with ``foleykit train mapper``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..encoders.generator_clap import GeneratorClap
from ..encoders.clip import ClipEncoder
from .sound_vocabulary import SOUNDING_OBJECTS


class ZeroShotBridge:
    """Maps CLIP image embeddings to CLAP vectors through a text vocabulary."""

    kind = "zero_shot_bridge"

    def __init__(
        self,
        clip: ClipEncoder,
        clap: GeneratorClap,
        vocabulary: Sequence[str] = SOUNDING_OBJECTS,
        *,
        top_k: int = 3,
        temperature: float = 0.01,
    ) -> None:
        self.vocabulary = list(vocabulary)
        self.top_k = min(top_k, len(self.vocabulary))
        self.temperature = temperature
        self._clip_text = clip.embed_texts([f"a photo of a {w}" for w in self.vocabulary], normalize=True)
        self._clap_text = clap.embed_texts([f"the sound of a {w}" for w in self.vocabulary])

    def labels(self, clip_embeds: torch.Tensor) -> list[list[tuple[str, float]]]:
        """The top-k vocabulary words and weights per image (for sidecars and messages)."""
        weights, idx = self._weights(clip_embeds)
        return [[(self.vocabulary[j], float(w)) for j, w in zip(i.tolist(), ws.tolist())] for i, ws in zip(idx, weights)]

    def _weights(self, clip_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sims = F.normalize(clip_embeds.float(), dim=-1) @ self._clip_text.to(clip_embeds.device).T
        top, idx = sims.topk(self.top_k, dim=-1)
        return torch.softmax(top / self.temperature, dim=-1), idx

    @torch.no_grad()
    def map(self, clip_embeds: torch.Tensor, **_: object) -> torch.Tensor:
        """[B, 512] unit CLAP vectors: softmax-weighted CLAP text embeddings of the best words."""
        weights, idx = self._weights(clip_embeds)
        clap = self._clap_text.to(clip_embeds.device)[idx]  # [B, k, 512]
        return F.normalize((weights[..., None] * clap).sum(1), dim=-1)
