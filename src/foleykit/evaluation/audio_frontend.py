"""The deterministic audio front end every embedder sees: mono, DC removed, resampled, cut to length.

Published numbers move with preprocessing (audioldm_eval's maintainer measured ±30 FD from the
resampler alone), so each step is fixed and recorded in the report:

1. mono = mean of the channels (audioldm_eval takes the first channel; av-benchmark the mean);
2. DC offset removed (the mean subtracted);
3. resampled with soxr, HQ quality (torchaudio is not available beside our torch build);
4. cut to the protocol's length; shorter clips padded (zeros, or repeated for CLAP as LAION-CLAP
   does), except under ``mmaudio``, which only truncates. Never a random crop.

Protocols name the clip length of the papers' tables: ``v2a-mapper`` 10 s, ``ssv2a`` 10.24 s
(163,840 samples at 16 kHz), ``mmaudio`` 8 s truncation only (av-benchmark ``--audio_length=8``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from ..errors import InputError
from ..io.audio import load_audio, resample

PadMode = Literal["zero", "repeat", "none"]


#: The fixed steps every protocol shares (what :func:`prepare` does); recorded with each protocol.
MONO = "mean"  # mean of the channels
DC_REMOVAL = True  # the clip's mean subtracted before resampling
RESAMPLER = "soxr-hq"


@dataclass(frozen=True)
class Protocol:
    """A front end: clip length, whether short clips are padded, and the fixed mono/DC/resampler steps.

    ``mono``, ``dc_removal`` and ``resampler`` describe what :func:`prepare` does; only those values
    are implemented, so any other is refused rather than recorded without being applied.
    """

    name: str
    seconds: float
    pad: bool
    note: str
    mono: str = MONO
    dc_removal: bool = DC_REMOVAL
    resampler: str = RESAMPLER

    def __post_init__(self) -> None:
        if not (isinstance(self.seconds, (int, float)) and self.seconds > 0):
            raise InputError(f"protocol {self.name!r}: clip length must be positive seconds, got {self.seconds!r}")
        fixed = {"mono": MONO, "dc_removal": DC_REMOVAL, "resampler": RESAMPLER}
        other = {k: getattr(self, k) for k, v in fixed.items() if getattr(self, k) != v}
        if other:
            raise InputError(
                f"protocol {self.name!r}: the front end implements only "
                + ", ".join(f"{k}={v!r}" for k, v in fixed.items())
                + f"; got {other}"
            )

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


PROTOCOLS: dict[str, Protocol] = {
    "v2a-mapper": Protocol(
        "v2a-mapper", 10.0, True, "10 s clips, padded or cut (V2A-Mapper / audioldm_eval era)"
    ),
    "ssv2a": Protocol("ssv2a", 10.24, True, "10.24 s clips, padded or cut (SS2A's CS and SSMS code)"),
    "mmaudio": Protocol("mmaudio", 8.0, False, "8 s, truncated only, never padded (av-benchmark, MMAudio)"),
}


def get_protocol(name: str | Protocol) -> Protocol:
    if isinstance(name, Protocol):
        return name
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise InputError(
            f"unknown evaluation protocol {name!r}; choose one of {', '.join(PROTOCOLS)}"
        ) from None


@dataclass(frozen=True)
class FrontendSpec:
    """What one embedder receives: sample rate, fixed length (samples) and how short clips are padded."""

    sample_rate: int
    num_samples: int
    pad: PadMode

    @property
    def key(self) -> str:
        """Part of the cache key: a change here must never reuse old embeddings."""
        return f"mono-dc-soxrhq-{self.sample_rate}hz-{self.num_samples}-{self.pad}"


def frontend_spec(
    protocol: Protocol, sample_rate: int, pad_mode: PadMode, max_seconds: float | None = None
) -> FrontendSpec:
    """The spec of an embedder at ``sample_rate`` under ``protocol``; ``max_seconds`` caps it (CLAP: 10 s)."""
    seconds = protocol.seconds if max_seconds is None else min(protocol.seconds, max_seconds)
    return FrontendSpec(sample_rate, round(seconds * sample_rate), pad_mode if protocol.pad else "none")


def fit_length(wave: np.ndarray, num_samples: int, pad: PadMode) -> np.ndarray:
    """Cut to ``num_samples``; pad a shorter clip with zeros or by repeating it (``none``: leave it short)."""
    if wave.shape[0] >= num_samples or pad == "none":
        return wave[:num_samples]
    if pad == "repeat" and wave.shape[0] > 0:
        return np.tile(wave, -(-num_samples // wave.shape[0]))[:num_samples]
    return np.pad(wave, (0, num_samples - wave.shape[0]))


def prepare(wave: np.ndarray, sample_rate: int, spec: FrontendSpec) -> np.ndarray:
    """Mono float32 ``wave`` at ``sample_rate`` -> DC removed, resampled and fitted to ``spec``."""
    if wave.ndim != 1:
        raise InputError(f"the evaluation front end takes mono audio, got shape {wave.shape}")
    centred = (wave.astype(np.float64) - wave.mean(dtype=np.float64)).astype(np.float32)
    return fit_length(resample(centred, sample_rate, spec.sample_rate), spec.num_samples, spec.pad)


def load_clip(path: str | os.PathLike, spec: FrontendSpec) -> np.ndarray:
    """Read a file and run it through the front end."""
    wave, sr = load_audio(path, mono=True)
    return prepare(wave, sr, spec)
