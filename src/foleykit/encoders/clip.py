"""CLIP: global image embeddings, patch tokens in the joint space, and text embeddings.

Image features are projected but *not* normalised by transformers; callers that need unit
vectors pass ``normalize=True``. Patch tokens go through the vision tower's ``post_layernorm`` and
``visual_projection`` so they live in the same joint space as the global embedding (what the
grounding module of Sounding-that-Object attends over).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .loading import FrozenEncoder, LoadedFrom, load_frozen, pooled



class ClipEncoder(FrozenEncoder):
    """Frozen CLIP image/text encoder. Batched, ``no_grad``, device/dtype aware."""

    def __init__(self, model, processor, tokenizer, *, loaded_from: LoadedFrom | None = None) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = tokenizer
        self.loaded_from = loaded_from

    @classmethod
    def from_pretrained(
        cls, ref: str, *, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None
    ) -> ClipEncoder:
        from transformers import CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

        model, (processor, tokenizer), src = load_frozen(CLIPModel, ref, CLIPImageProcessorPil, CLIPTokenizer,
                                                         device=device, dtype=dtype)
        return cls(model, processor, tokenizer, loaded_from=src)

    @property
    def patch_grid(self) -> int:
        vc = self.model.config.vision_config
        return int(vc.image_size // vc.patch_size)

    def _pixels(self, images: Sequence[Image.Image | np.ndarray]) -> torch.Tensor:
        batch = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        return batch.to(device=self.device, dtype=self.dtype)

    @torch.no_grad()
    def embed_images(
        self, images: Sequence[Image.Image | np.ndarray], *, batch_size: int = 32, normalize: bool = False
    ) -> torch.Tensor:
        """[N, dim] global image embeddings (float32 on the encoder's device)."""
        outs = []
        for i in range(0, len(images), batch_size):
            feats = pooled(self.model.get_image_features(pixel_values=self._pixels(images[i : i + batch_size])))
            outs.append(feats.float())
        emb = torch.cat(outs) if outs else torch.empty(0, self.dim, device=self.device)
        return F.normalize(emb, dim=-1) if normalize else emb

    @torch.no_grad()
    def embed_patches(
        self, images: Sequence[Image.Image | np.ndarray], *, batch_size: int = 16, normalize: bool = False
    ) -> torch.Tensor:
        """[N, grid*grid, dim] patch tokens projected into the joint space (CLS token dropped)."""
        vision = self.model.vision_model
        outs = []
        for i in range(0, len(images), batch_size):
            hidden = vision(pixel_values=self._pixels(images[i : i + batch_size])).last_hidden_state[:, 1:]
            outs.append(self.model.visual_projection(vision.post_layernorm(hidden)).float())
        emb = torch.cat(outs) if outs else torch.empty(0, self.patch_grid**2, self.dim, device=self.device)
        return F.normalize(emb, dim=-1) if normalize else emb

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str], *, batch_size: int = 64, normalize: bool = False) -> torch.Tensor:
        """[N, dim] text embeddings."""
        outs = []
        for i in range(0, len(texts), batch_size):
            tok = self.tokenizer(
                list(texts[i : i + batch_size]), padding=True, truncation=True, max_length=77, return_tensors="pt"
            ).to(self.device)
            outs.append(pooled(self.model.get_text_features(**tok)).float())
        emb = torch.cat(outs) if outs else torch.empty(0, self.dim, device=self.device)
        return F.normalize(emb, dim=-1) if normalize else emb
