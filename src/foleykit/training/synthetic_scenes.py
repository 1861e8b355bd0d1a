"""Toy grounding scenes whose answer is known exactly, for checking that grounding learns.

:func:`make_synthetic_scenes` builds scenes in which each patch carries a source identity vector and the
text query names one source; :func:`attention_mass` measures how much attention lands on that source's
patches (uniform attention gets :attr:`SyntheticScenes.chance_mass`). Train a grounding module on them
with :class:`~foleykit.training.accelerate_tasks.GroundingContrastiveTask` (no UNet) and the
:class:`~foleykit.training.trainer.Trainer` (see :meth:`SyntheticScenes.training_data`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..seeding import make_generator


def attention_mass(weights: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Per-sample attention mass on a boolean patch region (B, P) → (B,). Uniform gives area / P."""
    return (weights * region.to(weights.dtype)).sum(dim=-1)


@dataclass
class SyntheticScenes:
    """Toy scenes: each patch carries one source's identity vector (+ noise); the text names one source."""

    text_emb: torch.Tensor  # (N, text_dim) query naming the target source (text-space identity + noise)
    patch_emb: torch.Tensor  # (N, P, patch_dim)
    target_ids: torch.Tensor  # (N,) the named source
    target_region: torch.Tensor  # (N, P) bool, patches carrying the named source
    audio_bank: torch.Tensor  # (num_sources, target_dim) "audio" embedding of each source

    def __len__(self) -> int:
        return self.text_emb.shape[0]

    def subset(self, index: slice | torch.Tensor) -> SyntheticScenes:
        """Some of the scenes, sharing the same source identities (for held-out evaluation)."""
        return SyntheticScenes(
            self.text_emb[index], self.patch_emb[index], self.target_ids[index], self.target_region[index],
            self.audio_bank,
        )

    def training_data(self) -> dict[str, torch.Tensor]:
        """The scenes as the batch keys of ``GroundingContrastiveTask``: text_emb, patch_emb, target_id."""
        return {"text_emb": self.text_emb, "patch_emb": self.patch_emb, "target_id": self.target_ids}

    @property
    def chance_mass(self) -> torch.Tensor:
        """Attention mass a uniform attention would put on the target region, per scene."""
        return self.target_region.float().mean(dim=-1)


def make_synthetic_scenes(
    num_scenes: int,
    *,
    num_sources: int = 8,
    sources_per_scene: int = 3,
    grid: tuple[int, int] = (8, 8),
    text_dim: int = 32,
    patch_dim: int = 32,
    target_dim: int = 32,
    max_object_size: int = 3,
    patch_noise: float = 0.3,
    text_noise: float = 0.1,
    seed: int = 0,
) -> SyntheticScenes:
    """Scenes of rectangles of distinct sources over a background, in unrelated text/image/audio spaces.

    Text, patch and audio identities are independent random vectors, so the attention has to *learn*
    the text→image matching (as W^Q, W^K must align CLAP with CLIP) and the MLP the image→audio map.
    """
    if sources_per_scene > num_sources:
        raise InputError("sources_per_scene cannot exceed num_sources")
    g = make_generator(seed)
    gh, gw = grid
    img_ids = torch.randn(num_sources + 1, patch_dim, generator=g)  # last row: background
    txt_ids = torch.randn(num_sources, text_dim, generator=g)
    audio_bank = torch.randn(num_sources, target_dim, generator=g)
    labels = torch.full((num_scenes, gh, gw), num_sources, dtype=torch.long)
    target_ids = torch.empty(num_scenes, dtype=torch.long)
    for i in range(num_scenes):
        chosen = torch.randperm(num_sources, generator=g)[:sources_per_scene]
        for s in chosen.tolist():
            h = int(torch.randint(1, max_object_size + 1, (1,), generator=g))
            w = int(torch.randint(1, max_object_size + 1, (1,), generator=g))
            top = int(torch.randint(0, gh - h + 1, (1,), generator=g))
            left = int(torch.randint(0, gw - w + 1, (1,), generator=g))
            labels[i, top : top + h, left : left + w] = s
        visible = [s for s in chosen.tolist() if bool((labels[i] == s).any())]  # later rects may cover
        target_ids[i] = visible[int(torch.randint(0, len(visible), (1,), generator=g))]
    labels = labels.reshape(num_scenes, gh * gw)
    patch_emb = img_ids[labels] + patch_noise * torch.randn(num_scenes, gh * gw, patch_dim, generator=g)
    text_emb = txt_ids[target_ids] + text_noise * torch.randn(num_scenes, text_dim, generator=g)
    scale = 1.0 / math.sqrt(patch_dim)
    return SyntheticScenes(
        text_emb=F.normalize(text_emb, dim=-1),  # CLAP embeddings are unit-norm
        patch_emb=patch_emb * scale,
        target_ids=target_ids,
        target_region=labels == target_ids[:, None],
        audio_bank=audio_bank,
    )
