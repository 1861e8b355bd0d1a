"""VGGish (Hershey et al. 2017): 128-d embeddings per 0.96 s frame, the features of FAD.

Architecture: examples of 96 × 64 log-mel (see :func:`.spectral.vggish_examples`) -> VGG-style
3×3 convolutions 64, pool, 128, pool, 256, 256, pool, 512, 512, pool (ReLU after each conv) ->
flattened in (height, width, channel) order, as the TensorFlow original -> 4096 -> 4096 -> 128.
FAD uses the raw 128-d output: no PCA/whitening/quantisation, and no final ReLU (audioldm_eval,
av-benchmark and gudgud96 all drop it); ``final_relu=True`` restores it.

Module names follow the PyTorch port's checkpoint (``vggish-10086976.pth``: ``features.{0,3,6,8,11,13}``,
``embeddings.{0,2,4}``), which loads as it is.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from .base import TorchAudioEmbedder, checkpoint_id, config_digest, load_exactly, read_state_dict, seeded_init
from .spectral import VGGISH_EXAMPLE_FRAMES, VGGISH_MELS, VGGISH_SAMPLE_RATE, vggish_examples

_POOL_AFTER = (0, 1, 3, 5)  # conv indices followed by 2x2 max pooling


@dataclass(frozen=True)
class VGGishConfig:
    channels: tuple[int, ...] = (64, 128, 256, 256, 512, 512)
    hidden: tuple[int, ...] = (4096, 4096)
    embedding_dim: int = 128
    final_relu: bool = False

    @classmethod
    def tiny(cls) -> VGGishConfig:
        """Random-weight stand-in for tests: same 96 × 64 input geometry, narrow layers."""
        return cls(channels=(4, 8, 8, 8, 16, 16), hidden=(32, 32), embedding_dim=16)


class VGGish(nn.Module):
    """``forward(examples (N, 1, 96, 64)) -> (N, embedding_dim)``."""

    def __init__(self, config: VGGishConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        c_in = 1
        for i, c_out in enumerate(config.channels):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]
            if i in _POOL_AFTER:
                layers.append(nn.MaxPool2d(2, 2))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        scale = 2 ** len(_POOL_AFTER)
        dims = (c_in * (VGGISH_EXAMPLE_FRAMES // scale) * (VGGISH_MELS // scale), *config.hidden)
        head: list[nn.Module] = []
        for d_in, d_out in itertools.pairwise(dims):
            head += [nn.Linear(d_in, d_out), nn.ReLU()]
        head.append(nn.Linear(dims[-1], config.embedding_dim))
        if config.final_relu:
            head.append(nn.ReLU())
        self.embeddings = nn.Sequential(*head)

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        x = self.features(examples)
        return self.embeddings(x.permute(0, 2, 3, 1).flatten(1))


class VGGishEmbedder(TorchAudioEmbedder):
    """VGGish as a frame-level embedder: ``embedding`` is ``(frames, 128)``, one row per 0.96 s."""

    name = "vggish"
    frame_level = True
    sample_rate = VGGISH_SAMPLE_RATE

    def __init__(
        self, model: VGGish, *, id: str, device: torch.device, dtype: torch.dtype = torch.float32
    ) -> None:
        super().__init__(model, id=id, device=device, dtype=dtype)
        self.config = model.config

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        *,
        final_relu: bool = False,
        config: VGGishConfig | None = None,
        device: torch.device | str = "cpu",
    ) -> VGGishEmbedder:
        """Load the PyTorch port's weights; the final ReLU stays off unless asked for (FAD convention)."""
        config = config or VGGishConfig(final_relu=final_relu)
        model = VGGish(config)
        load_exactly(model, read_state_dict(path), str(path))
        return cls(
            model, id=f"vggish:{config_digest(config)}:{checkpoint_id(path)}", device=torch.device(device)
        )

    @classmethod
    def tiny(cls, *, seed: int = 0, device: torch.device | str = "cpu") -> VGGishEmbedder:
        config = VGGishConfig.tiny()
        model = seeded_init(seed, lambda: VGGish(config))
        return cls(model, id=f"vggish-tiny:seed{seed}:{config_digest(config)}", device=torch.device(device))

    @torch.no_grad()
    def embed(self, wave: np.ndarray) -> dict[str, np.ndarray]:
        examples = torch.from_numpy(vggish_examples(wave))[:, None].to(self.device, self.dtype)
        if examples.shape[0] == 0:
            return {"embedding": np.zeros((0, self.config.embedding_dim), dtype=np.float32)}
        return {"embedding": self.module(examples).float().cpu().numpy()}

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "config": asdict(self.config)}
