"""Spectral front ends of the audio embedders, written from their definitions.

* Slaney mel filterbank (librosa's default: Slaney mel scale, area-normalised triangles), used by
  PANNs; the public PANNs checkpoints carry their own copy (``logmel_extractor.melW``), which
  replaces ours on load.
* VGGish log-mel examples: 25 ms periodic-Hann frames every 10 ms, |FFT| with 512 points, 64 HTK-mel
  bands between 125 and 7500 Hz (triangles of height 1, DC bin dropped), log(mel + 0.01),
  framed into non-overlapping 0.96 s examples of 96 × 64.
"""

from __future__ import annotations

import numpy as np
import torch

_SLANEY_F_SP = 200.0 / 3.0
_SLANEY_MIN_LOG_HZ = 1000.0
_SLANEY_LOGSTEP = np.log(6.4) / 27.0


def _hz_to_mel_slaney(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _SLANEY_F_SP
    min_log_mel = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP
    log_part = min_log_mel + np.log(np.maximum(hz, 1e-12) / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOGSTEP
    return np.where(hz >= _SLANEY_MIN_LOG_HZ, log_part, linear)


def _mel_to_hz_slaney(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    min_log_mel = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP
    return np.where(
        mel >= min_log_mel,
        _SLANEY_MIN_LOG_HZ * np.exp(_SLANEY_LOGSTEP * (mel - min_log_mel)),
        _SLANEY_F_SP * mel,
    )


def slaney_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """``(n_fft // 2 + 1, n_mels)`` area-normalised triangular filters on the Slaney mel scale."""
    fft_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges_hz = _mel_to_hz_slaney(np.linspace(_hz_to_mel_slaney(fmin), _hz_to_mel_slaney(fmax), n_mels + 2))
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return weights.T.astype(np.float32)


def power_spectrogram(wave: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """``(batch, frames, n_fft // 2 + 1)`` power of a centred, reflect-padded periodic-Hann STFT."""
    window = torch.hann_window(n_fft, periodic=True, device=wave.device, dtype=wave.dtype)
    spec = torch.stft(
        wave, n_fft, hop_length=hop, window=window, center=True, pad_mode="reflect", return_complex=True
    )
    return spec.abs().pow(2).transpose(1, 2)


# VGGish (fixed by the released model: 16 kHz input)
VGGISH_SAMPLE_RATE = 16_000
VGGISH_WINDOW = 400
VGGISH_HOP = 160
VGGISH_FFT = 512
VGGISH_MELS = 64
VGGISH_EXAMPLE_FRAMES = 96
VGGISH_LOG_OFFSET = 0.01


def _hz_to_mel_htk(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def vggish_mel_filterbank(
    n_bins: int = VGGISH_FFT // 2 + 1, n_mels: int = VGGISH_MELS, fmin: float = 125.0, fmax: float = 7500.0
) -> np.ndarray:
    """``(n_bins, n_mels)`` HTK-mel triangles of peak 1, spaced evenly in mel; the DC bin gets no weight."""
    bins_mel = _hz_to_mel_htk(np.linspace(0.0, VGGISH_SAMPLE_RATE / 2.0, n_bins))
    edges = np.linspace(_hz_to_mel_htk(fmin), _hz_to_mel_htk(fmax), n_mels + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lower) / (centre - lower)
    falling = (upper - bins_mel[:, None]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return weights


def vggish_examples(wave: np.ndarray) -> np.ndarray:
    """``(n_examples, 96, 64)`` log-mel examples of a 16 kHz mono clip (0 examples under 0.96 s)."""
    x = np.asarray(wave, dtype=np.float64)
    n_frames = 1 + (x.shape[0] - VGGISH_WINDOW) // VGGISH_HOP if x.shape[0] >= VGGISH_WINDOW else 0
    n_examples = n_frames // VGGISH_EXAMPLE_FRAMES
    if n_examples == 0:
        return np.zeros((0, VGGISH_EXAMPLE_FRAMES, VGGISH_MELS), dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(x, VGGISH_WINDOW)[::VGGISH_HOP][:n_frames]
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(VGGISH_WINDOW) / VGGISH_WINDOW)
    magnitude = np.abs(np.fft.rfft(frames * window, n=VGGISH_FFT))
    log_mel = np.log(magnitude @ vggish_mel_filterbank() + VGGISH_LOG_OFFSET)
    used = log_mel[: n_examples * VGGISH_EXAMPLE_FRAMES]
    return used.reshape(n_examples, VGGISH_EXAMPLE_FRAMES, VGGISH_MELS).astype(np.float32)
