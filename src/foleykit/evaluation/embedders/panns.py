"""PANNs CNN14 (Kong et al. 2020): the 2048-d clip embedding behind FD, and 527 AudioSet logits.

Architecture (clip-level CNN14): log-mel (periodic Hann, centred reflect-padded STFT, Slaney mel,
10·log10 power) -> BatchNorm over mel bins -> six blocks of two 3×3 conv+BN+ReLU, 2×2 average
pooling after the first five -> mean over frequency -> max + mean over time -> fc1 + ReLU =
``embedding`` -> ``fc_audioset`` = ``logits`` (pre-sigmoid; PANNs' clip-wise output is their sigmoid).

Module names follow the public checkpoints (``Cnn14_16k_mAP=0.438.pth``, ``Cnn14_mAP=0.431.pth``,
``{"model": state_dict}``), so those load as they are. Their ``spectrogram_extractor.*`` tensors are
fixed DFT kernels that ``torch.stft`` computes identically, and are skipped.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InputError
from .base import TorchAudioEmbedder, checkpoint_id, config_digest, load_exactly, read_state_dict, seeded_init
from .spectral import power_spectrogram, slaney_mel_filterbank

_AMIN = 1e-10


@dataclass(frozen=True)
class Cnn14Config:
    sample_rate: int = 16_000
    window_size: int = 512
    hop_size: int = 160
    mel_bins: int = 64
    fmin: float = 50.0
    fmax: float = 8_000.0
    classes_num: int = 527
    channels: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)

    @classmethod
    def preset(cls, name: str) -> Cnn14Config:
        """The released checkpoints' settings. 32 kHz uses fmax 14 kHz, as it was trained (not 16 kHz)."""
        presets = {
            "8k": cls(8_000, 256, 80, 64, 50.0, 4_000.0),
            "16k": cls(),
            "32k": cls(32_000, 1024, 320, 64, 50.0, 14_000.0),
        }
        try:
            return presets[name]
        except KeyError:
            raise InputError(f"unknown PANNs preset {name!r}; choose one of {', '.join(presets)}") from None

    @classmethod
    def tiny(cls) -> Cnn14Config:
        """Random-weight stand-in for tests: 16 kHz input, 32 mel bins (five 2x pools), narrow blocks."""
        return cls(mel_bins=32, channels=(4, 8, 8, 16, 16, 32))


class _ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, pool: bool) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, 2) if pool else x


class _LogMel(nn.Module):
    def __init__(self, config: Cnn14Config) -> None:
        super().__init__()
        fb = slaney_mel_filterbank(
            config.sample_rate, config.window_size, config.mel_bins, config.fmin, config.fmax
        )
        self.register_buffer("melW", torch.from_numpy(fb))


class Cnn14(nn.Module):
    """CNN14; ``forward(wave (B, T)) -> (embedding (B, C), logits (B, classes))``."""

    def __init__(self, config: Cnn14Config) -> None:
        super().__init__()
        self.config = config
        self.logmel_extractor = _LogMel(config)
        self.bn0 = nn.BatchNorm2d(config.mel_bins)
        c_in = 1
        for i, c_out in enumerate(config.channels, start=1):
            setattr(self, f"conv_block{i}", _ConvBlock(c_in, c_out))
            c_in = c_out
        self.fc1 = nn.Linear(c_in, c_in)
        self.fc_audioset = nn.Linear(c_in, config.classes_num)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        power = power_spectrogram(wave, cfg.window_size, cfg.hop_size)
        x = 10.0 * torch.log10(torch.clamp(power @ self.logmel_extractor.melW, min=_AMIN))
        x = self.bn0(x.transpose(1, 2)[..., None]).squeeze(-1).transpose(1, 2)[:, None]  # BN over mel bins
        n_blocks = len(cfg.channels)
        for i in range(1, n_blocks + 1):
            x = getattr(self, f"conv_block{i}")(x, pool=i < n_blocks)
        x = x.mean(dim=3)
        x = x.amax(dim=2) + x.mean(dim=2)
        embedding = F.relu(self.fc1(x))
        return embedding, self.fc_audioset(embedding)


class PannsEmbedder(TorchAudioEmbedder):
    """CNN14 as an embedder: ``embedding`` (2048) for FD, ``logits`` (527) for the tagger metrics."""

    name = "panns-cnn14"
    tagger = True

    def __init__(
        self,
        model: Cnn14,
        *,
        id: str,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__(model, id=id, device=device, dtype=dtype)
        self.sample_rate = model.config.sample_rate
        self.config = model.config
        self.class_names = class_names

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        *,
        preset: str = "16k",
        config: Cnn14Config | None = None,
        device: torch.device | str = "cpu",
        class_names: list[str] | None = None,
    ) -> PannsEmbedder:
        """Load a released CNN14 checkpoint; ``preset`` (or ``config``) must be the one it was made with."""
        config = config or Cnn14Config.preset(preset)
        model = Cnn14(config)
        state = {k: v for k, v in read_state_dict(path).items() if not k.startswith("spectrogram_extractor.")}
        load_exactly(model, state, str(path))
        return cls(
            model,
            id=f"panns-cnn14:{config_digest(config)}:{checkpoint_id(path)}",
            device=torch.device(device),
            class_names=class_names,
        )

    @classmethod
    def tiny(cls, *, seed: int = 0, device: torch.device | str = "cpu") -> PannsEmbedder:
        config = Cnn14Config.tiny()
        model = seeded_init(seed, lambda: Cnn14(config))
        return cls(
            model, id=f"panns-cnn14-tiny:seed{seed}:{config_digest(config)}", device=torch.device(device)
        )

    @torch.no_grad()
    def embed(self, wave: np.ndarray) -> dict[str, np.ndarray]:
        embedding, logits = self.module(self._tensor(wave))
        return {"embedding": embedding[0].float().cpu().numpy(), "logits": logits[0].float().cpu().numpy()}

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "config": asdict(self.config)}
