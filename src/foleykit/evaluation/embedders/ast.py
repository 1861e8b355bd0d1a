"""AST (Gong et al. 2021) through transformers: an AudioSet tagger with 527 logits and a 768-d embedding.

The default checkpoint is ``MIT/ast-finetuned-audioset-10-10-0.4593``; the embedding is AST's pooled
output (mean of the CLS and distillation tokens), the logits its classifier on that. Class names
come from the checkpoint's ``id2label``, so ACC labels can be given by name.
"""

from __future__ import annotations

import numpy as np
import torch

from ...devices import resolve_device
from ...encoders.loading import load_pretrained
from .base import AudioEmbedder, pretrained_id, seeded_init

DEFAULT_AST = "MIT/ast-finetuned-audioset-10-10-0.4593"
AST_SAMPLE_RATE = 16_000


class AstEmbedder(AudioEmbedder):
    name = "ast"
    tagger = True
    sample_rate = AST_SAMPLE_RATE

    def __init__(self, model, feature_extractor, *, id: str) -> None:
        self.model = model.eval().requires_grad_(False)
        self.feature_extractor = feature_extractor
        self.id = id
        labels = model.config.id2label
        self.class_names = [labels[i] for i in range(len(labels))]

    @classmethod
    def from_pretrained(cls, ref: str = DEFAULT_AST, *, device: str | torch.device = "cpu") -> AstEmbedder:
        from transformers import ASTFeatureExtractor, ASTForAudioClassification

        model, src = load_pretrained(ASTForAudioClassification, ref)
        fe, _ = load_pretrained(ASTFeatureExtractor, ref)
        return cls(
            model.to(resolve_device(device)), fe, id=pretrained_id("ast", src.ref, src.revision, src.path)
        )

    @classmethod
    def tiny(cls, *, seed: int = 0, device: str | torch.device = "cpu") -> AstEmbedder:
        """Random-weight stand-in: 32 mel bins, 1.28 s of input frames, 2 layers of width 32, 527 classes."""
        from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

        config = ASTConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            num_mel_bins=32,
            max_length=128,
            num_labels=527,
        )
        model = seeded_init(seed, lambda: ASTForAudioClassification(config))
        fe = ASTFeatureExtractor(num_mel_bins=32, max_length=128)
        return cls(model.to(resolve_device(device)), fe, id=f"ast-tiny:seed{seed}")

    @torch.no_grad()
    def embed(self, wave: np.ndarray) -> dict[str, np.ndarray]:
        device = next(self.model.parameters()).device
        inputs = self.feature_extractor(wave, sampling_rate=self.sample_rate, return_tensors="pt")
        pooled = self.model.audio_spectrogram_transformer(inputs["input_values"].to(device)).pooler_output
        logits = self.model.classifier(pooled)
        return {"embedding": pooled[0].float().cpu().numpy(), "logits": logits[0].float().cpu().numpy()}
