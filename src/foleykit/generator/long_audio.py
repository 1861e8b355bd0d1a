"""Audio longer than one diffusion window: consecutive windows joined with a crossfade.

AudioLDM makes at most 10.24 s per pass. A longer clip (a long video) is split into windows of
``window_s`` that overlap by ``overlap_s``; each window gets its own conditioning vector (for
video: the frames of that stretch) and its own noise, and the seams are equal-power crossfaded.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InputError
from ..io.audio import crossfade_concat
from .pipeline import MAX_WINDOW_S, AudioLDMGenerator, GeneratorOutput

#: Longest soundtrack foleykit makes in one call (seconds).
MAX_DURATION_S = 600.0


def plan_windows(duration_s: float, *, window_s: float = 10.0, overlap_s: float = 0.5) -> list[tuple[float, float]]:
    """(start, end) seconds of each window; one window when the clip fits in one pass."""
    if not (0 < duration_s <= MAX_DURATION_S):
        raise InputError(f"duration must be > 0 and <= {MAX_DURATION_S:g} s, got {duration_s:g}")
    if not (0 < window_s <= MAX_WINDOW_S) or not (0 <= overlap_s < window_s / 2):
        raise InputError(f"window {window_s:g} s / overlap {overlap_s:g} s is impossible")
    if duration_s <= MAX_WINDOW_S:
        return [(0.0, duration_s)]
    hop = window_s - overlap_s
    n = math.ceil((duration_s - overlap_s) / hop)
    return [(i * hop, i * hop + window_s) for i in range(n)]


def generate_long(
    generator: AudioLDMGenerator,
    window_embeds: torch.Tensor,
    duration_s: float,
    *,
    window_s: float = 10.0,
    overlap_s: float = 0.5,
    max_batch: int = 4,
    seed: int,
    **kwargs,
) -> GeneratorOutput:
    """Generate ``duration_s`` of audio from one CLAP vector per window ([W, 512] or [512]).

    Window ``i`` uses seed ``seed + i * num_candidates`` so windows differ but the whole clip is
    reproducible from ``seed``.
    """
    windows = plan_windows(duration_s, window_s=window_s, overlap_s=overlap_s)
    if window_embeds.dim() == 1:
        window_embeds = window_embeds[None]
    if window_embeds.shape[0] == 1 and len(windows) > 1:
        window_embeds = window_embeds.expand(len(windows), -1)
    if window_embeds.shape[0] != len(windows):
        raise InputError(f"{window_embeds.shape[0]} conditioning vectors for {len(windows)} windows")
    if len(windows) == 1:
        return generator(window_embeds, duration_s=duration_s, seed=seed, **kwargs)
    n_cand = int(kwargs.get("num_candidates", 1))
    chunks: list[np.ndarray] = []
    out = None
    for start in range(0, len(windows), max_batch):
        rows = window_embeds[start : start + max_batch]
        out = generator(rows, duration_s=window_s, seed=seed + start * n_cand, **kwargs)
        chunks.extend(out.waveforms)
    sr = generator.sample_rate
    wave = crossfade_concat(chunks, int(round(overlap_s * sr)))[: int(round(duration_s * sr))]
    settings = dict(out.settings, duration_s=duration_s, windows=[list(w) for w in windows], overlap_s=overlap_s)
    return GeneratorOutput(waveforms=wave[None], sample_rate=sr, seed=seed, settings=settings)
