"""Wav2CLIP (Wu et al. 2022): a ResNet-18 audio encoder distilled into CLIP's image space, for CLIP score.

Architecture, as the paper and its release describe it: power spectrogram of 16 kHz audio
(512-point periodic-Hann STFT, hop 353, centred) -> log(x + 1e-7) -> standardised (mean/std) ->
ResNet-18 on the 1-channel "image" (7×7/2 conv, 3×3/2 max pool, four stages of two basic blocks,
64-128-256-512, global average pool) -> 2-layer MLP 512 -> 512 -> 512 (ReLU between) = the
512-d embedding compared with CLIP ViT-B/32 image embeddings.

The release normalises with the mean/std of the whole batch tensor; here each clip is
standardised on its own, so a clip's embedding does not depend on what it is batched with
(identical to the release at batch size 1).

Checkpoint keys follow the released Lightning checkpoint: ``audio_encoder.*`` -> ``encoder.*``,
``audio_transform.*`` -> ``transform.*``; its unused ``audio_encoder.fc`` classifier and the stored
STFT window are skipped.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import TorchAudioEmbedder, checkpoint_id, config_digest, load_exactly, read_state_dict, seeded_init

_RENAMES = {"audio_encoder.": "encoder.", "audio_transform.": "transform."}
_SKIPPED = ("audio_encoder.fc.", "audio_encoder.spectrogram.")


@dataclass(frozen=True)
class Wav2ClipConfig:
    widths: tuple[int, ...] = (64, 128, 256, 512)
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    embedding_dim: int = 512
    n_fft: int = 512
    hop_length: int = 353
    sample_rate: int = 16_000

    @classmethod
    def tiny(cls, embedding_dim: int = 512) -> Wav2ClipConfig:
        """Random-weight stand-in for tests; ``embedding_dim`` must match the CLIP image space it meets."""
        return cls(widths=(4, 8, 8, 16), blocks=(1, 1, 1, 1), embedding_dim=embedding_dim)


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class _ResNet(nn.Module):
    def __init__(self, config: Wav2ClipConfig) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, config.widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(config.widths[0])
        c_in = config.widths[0]
        for i, (c_out, n) in enumerate(zip(config.widths, config.blocks), start=1):
            stride = 1 if i == 1 else 2
            stage = [_BasicBlock(c_in, c_out, stride)] + [_BasicBlock(c_out, c_out, 1) for _ in range(n - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*stage))
            c_in = c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, stride=2, padding=1)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return x.mean(dim=(2, 3))


class _Transform(nn.Module):
    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        # Linear, ReLU, Dropout, Linear: indices 0 and 3 carry the checkpoint's weights.
        self.sequential = nn.Sequential(
            nn.Linear(d_in, d_out), nn.ReLU(), nn.Dropout(0.1), nn.Linear(d_out, d_out)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sequential(x)


class Wav2Clip(nn.Module):
    """``forward(wave (B, T) at 16 kHz) -> (B, embedding_dim)``, not normalised."""

    def __init__(self, config: Wav2ClipConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = _ResNet(config)
        self.transform = _Transform(config.widths[-1], config.embedding_dim)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        window = torch.hann_window(self.config.n_fft, periodic=True, device=wave.device, dtype=wave.dtype)
        spec = (
            torch.stft(
                wave,
                self.config.n_fft,
                hop_length=self.config.hop_length,
                window=window,
                center=True,
                pad_mode="reflect",
                return_complex=True,
            )
            .abs()
            .pow(2)
        )
        x = torch.log(spec + 1e-7)
        flat = x.flatten(1)
        x = (x - flat.mean(1)[:, None, None]) / (flat.std(1)[:, None, None] + 1e-9)
        return self.transform(self.encoder(x[:, None]))


def _rename(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        if key.startswith(_SKIPPED):
            continue
        for old, new in _RENAMES.items():
            if key.startswith(old):
                out[new + key[len(old) :]] = value
    return out


class Wav2ClipEmbedder(TorchAudioEmbedder):
    """Wav2CLIP audio encoder: ``embedding`` (512) in CLIP ViT-B/32's image space."""

    name = "wav2clip"

    def __init__(
        self, model: Wav2Clip, *, id: str, device: torch.device, dtype: torch.dtype = torch.float32
    ) -> None:
        super().__init__(model, id=id, device=device, dtype=dtype)
        self.config = model.config
        self.sample_rate = model.config.sample_rate

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        *,
        config: Wav2ClipConfig | None = None,
        device: torch.device | str = "cpu",
    ) -> Wav2ClipEmbedder:
        """Load the released checkpoint (or any state dict with its key names)."""
        config = config or Wav2ClipConfig()
        model = Wav2Clip(config)
        load_exactly(model, _rename(read_state_dict(path)), str(path))
        return cls(
            model, id=f"wav2clip:{config_digest(config)}:{checkpoint_id(path)}", device=torch.device(device)
        )

    @classmethod
    def tiny(
        cls, *, seed: int = 0, embedding_dim: int = 512, device: torch.device | str = "cpu"
    ) -> Wav2ClipEmbedder:
        config = Wav2ClipConfig.tiny(embedding_dim)
        model = seeded_init(seed, lambda: Wav2Clip(config))
        return cls(model, id=f"wav2clip-tiny:seed{seed}:{config_digest(config)}", device=torch.device(device))

    @torch.no_grad()
    def embed(self, wave: np.ndarray) -> dict[str, np.ndarray]:
        return {"embedding": self.module(self._tensor(wave))[0].float().cpu().numpy()}

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "config": asdict(self.config)}
