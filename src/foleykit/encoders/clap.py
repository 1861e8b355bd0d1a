"""CLAP: audio and text embeddings in the 512-d space AudioLDM is conditioned on.

Audio is resampled to 48 kHz and cut into 10 s windows (CLAP's input length); a clip longer than
one window is embedded window by window and the unit vectors are averaged and renormalised.
Clips shorter than a window are repeat-padded, as AudioLDM's own CLAP front end does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import soxr
import torch
import torch.nn.functional as F

from ..errors import InputError
from .loading import FrozenEncoder, LoadedFrom, load_frozen, pooled

CLAP_SAMPLE_RATE = 48_000
CLAP_WINDOW_S = 10.0


def clap_windows(wave: np.ndarray, sample_rate: int) -> list[np.ndarray]:
    """Mono audio resampled to 48 kHz and cut into CLAP's 10-s windows (each is repeat-padded by the
    feature extractor). A tail shorter than a quarter window would be mostly repeat-padding, so it is
    dropped: the window before it covers the clip. Shared by :class:`ClapEncoder` and extraction."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise InputError(f"CLAP takes mono audio; got an array of shape {wave.shape}")
    if wave.size == 0 or not np.isfinite(wave).all():
        raise InputError("CLAP input audio is empty or contains NaN/inf samples")
    if sample_rate != CLAP_SAMPLE_RATE:
        wave = soxr.resample(wave, sample_rate, CLAP_SAMPLE_RATE, quality="HQ").astype(np.float32)
    win = int(CLAP_WINDOW_S * CLAP_SAMPLE_RATE)
    n = max(1, int(np.ceil(wave.size / win)))
    chunks = [wave[i * win : (i + 1) * win] for i in range(n)]
    if n > 1 and chunks[-1].size < win // 4:
        chunks = chunks[:-1]
    return chunks



def embed_texts_batched(tokenizer, forward, texts: Sequence[str], *, batch_size: int, device: torch.device,
                        dim: int) -> torch.Tensor:
    """[N, dim] unit embeddings of ``texts``: ``forward(input_ids, attention_mask)`` over tokenised batches.
    Shared by :class:`ClapEncoder` and the generator's text tower (``GeneratorClap``)."""
    outs = []
    for i in range(0, len(texts), batch_size):
        tok = tokenizer(list(texts[i : i + batch_size]), padding=True, truncation=True, return_tensors="pt").to(device)
        outs.append(forward(tok.input_ids, tok.attention_mask).float())
    emb = torch.cat(outs) if outs else torch.empty(0, dim, device=device)
    return F.normalize(emb, dim=-1)


class ClapEncoder(FrozenEncoder):
    """Frozen CLAP audio/text encoder returning L2-normalised [N, 512] vectors."""

    def __init__(self, model, feature_extractor, tokenizer, *, loaded_from: LoadedFrom | None = None) -> None:
        self.model = model
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.loaded_from = loaded_from

    @classmethod
    def from_pretrained(
        cls, ref: str, *, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None
    ) -> ClapEncoder:
        from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

        model, (fe, tok), src = load_frozen(ClapModel, ref, ClapFeatureExtractor, AutoTokenizer, device=device,
                                            dtype=dtype)
        return cls(model, fe, tok, loaded_from=src)

    def release_text_tower(self) -> None:
        """Free the text tower; ``embed_texts`` then refuses. For AudioLDM's converted CLAP, whose text
        tower is the generator's own ``text_encoder``: the process holds it once (about 0.5 GB at fp32)."""
        self.model.text_model = None
        self.model.text_projection = None

    @property
    def has_text_tower(self) -> bool:
        return getattr(self.model, "text_model", None) is not None

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str], *, batch_size: int = 64) -> torch.Tensor:
        """[N, 512] unit text embeddings."""
        if not self.has_text_tower:
            raise RuntimeError("this CLAP's text tower was released (its texts go through the generator's "
                               "text_encoder); embed texts with GeneratorClap.embed_texts")

        def forward(ids, mask):
            return pooled(self.model.get_text_features(input_ids=ids, attention_mask=mask))

        return embed_texts_batched(self.tokenizer, forward, texts, batch_size=batch_size, device=self.device,
                                   dim=self.dim)

    @torch.no_grad()
    def embed_audio(
        self, waves: Sequence[np.ndarray], sample_rate: int, *, batch_size: int = 8, return_windows: bool = False
    ) -> torch.Tensor | list[torch.Tensor]:
        """[N, 512] unit audio embeddings (window average), or per-clip [W, 512] with ``return_windows``."""
        windows: list[np.ndarray] = []
        owner: list[int] = []
        for idx, w in enumerate(waves):
            for chunk in clap_windows(w, sample_rate):
                windows.append(chunk)
                owner.append(idx)
        embs = []
        for i in range(0, len(windows), batch_size):
            feats = self.feature_extractor(
                windows[i : i + batch_size],
                sampling_rate=CLAP_SAMPLE_RATE,
                truncation="rand_trunc",  # windows are <= 10 s, so nothing is randomly cropped
                padding="repeatpad",
                return_tensors="pt",
            )
            inputs = {k: v.to(self.device) for k, v in feats.items() if k in ("input_features", "is_longer")}
            inputs["input_features"] = inputs["input_features"].to(self.dtype)
            embs.append(pooled(self.model.get_audio_features(**inputs)).float())
        all_emb = F.normalize(torch.cat(embs), dim=-1) if embs else torch.empty(0, self.dim)
        owner_t = torch.tensor(owner, device=all_emb.device)
        per_clip = [all_emb[owner_t == i] for i in range(len(waves))]
        if return_windows:
            return per_clip
        return F.normalize(torch.stack([e.mean(0) for e in per_clip]), dim=-1) if per_clip else all_emb
