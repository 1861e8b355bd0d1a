"""Audio decode, resample, crossfade and atomic write.

Convention: a waveform is float32, ``(frames,)`` for mono or ``(channels, frames)`` for several
channels (channels first, as torch and the generators use it). Files are read and written with
soundfile (libsndfile) and resampled with soxr, so no ffmpeg binary is ever needed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import soxr

from ..errors import InputError, OutputError
from ._checks import check_input_file, one_line
from .atomic import atomic_path, check_output_path

#: Peak below which a signal counts as silent (-80 dBFS, under the 16-bit noise floor with dither).
SILENCE_PEAK = 1e-4
#: More channels than this means the array is almost surely (frames, channels), not (channels, frames).
MAX_CHANNELS = 16

_WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}


def as_channels_first(wave: np.ndarray, what: str = "audio") -> np.ndarray:
    """Validate a ``(frames,)`` or ``(channels, frames)`` float waveform and return it as float32.

    Refuses other ranks, an implausible channel count (a transposed array) and NaN/inf samples,
    because each of these would otherwise come out as noise or silence without any error.
    """
    arr = np.asarray(wave)
    if arr.ndim not in (1, 2):
        raise InputError(f"{what}: expected a (frames,) or (channels, frames) array, got shape {arr.shape}")
    if arr.ndim == 2 and arr.shape[0] > MAX_CHANNELS:
        raise InputError(
            f"{what}: got shape {arr.shape}, which has {arr.shape[0]} channels; "
            "waveforms are (channels, frames) - transpose a (frames, channels) array"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"{what}: expected float samples in [-1, 1], got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise InputError(f"{what} contains NaN or infinite samples")
    return arr


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample ``(frames,)`` or ``(channels, frames)`` audio with soxr (HQ), keeping the layout."""
    if orig_sr <= 0 or target_sr <= 0:
        raise InputError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    arr = np.asarray(wave, dtype=np.float32)
    if orig_sr == target_sr:
        return arr
    if arr.ndim == 1:
        return soxr.resample(arr, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)
    if arr.ndim == 2:
        # soxr wants (frames, channels); contiguous so it does not copy twice.
        out = soxr.resample(np.ascontiguousarray(arr.T), orig_sr, target_sr, quality="HQ")
        return np.ascontiguousarray(out.T, dtype=np.float32)
    raise InputError(f"resample: expected a (frames,) or (channels, frames) array, got shape {arr.shape}")


def load_audio(
    path: str | os.PathLike,
    *,
    target_sr: int | None = None,
    mono: bool = True,
    max_seconds: float = 600,
    reject_silent: bool = False,
) -> tuple[np.ndarray, int]:
    """Read an audio file (wav/flac/ogg/mp3) as float32; return ``(wave, sample_rate)``.

    ``wave`` is ``(frames,)`` when ``mono`` (channels averaged), else ``(channels, frames)``.
    The length limit is checked from the header before decoding, so a huge file costs nothing.
    """
    p = check_input_file(path, "audio")
    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise InputError(f"audio file {p} is not readable audio ({one_line(exc)})") from exc
    if info.frames <= 0 or info.samplerate <= 0:
        raise InputError(f"audio file {p} contains no audio frames")
    if info.frames / info.samplerate > max_seconds:
        raise InputError(
            f"audio file {p} is {info.frames / info.samplerate:.1f} s long, more than the "
            f"{max_seconds:g} s limit"
        )
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise InputError(f"audio file {p} is corrupt or unreadable ({one_line(exc)})") from exc
    if data.shape[0] == 0:
        raise InputError(f"audio file {p} contains no audio frames")
    if not np.isfinite(data).all():
        raise InputError(f"audio file {p} contains NaN or infinite samples")
    if reject_silent and float(np.abs(data).max()) < SILENCE_PEAK:
        raise InputError(f"audio file {p} is silent (peak below -80 dBFS)")
    wave = data.mean(axis=1) if mono else np.ascontiguousarray(data.T)
    if target_sr is not None and target_sr != sr:
        wave = resample(wave, sr, target_sr)
        sr = target_sr
    return wave.astype(np.float32, copy=False), int(sr)


def write_audio(
    path: str | os.PathLike,
    wave: np.ndarray,
    sample_rate: int,
    *,
    normalize: Literal["peak", "clip"] | None = "peak",
    headroom_db: float = 1.0,
    subtype: str | None = None,
) -> Path:
    """Write ``wave`` to a .wav or .flac file atomically; return the path written.

    ``normalize``: ``"peak"`` scales so the peak sits at ``-headroom_db`` dBFS (a silent signal,
    peak under -80 dBFS, is left alone rather than blown up to full-scale noise); ``"clip"`` clips
    to [-1, 1]; ``None`` keeps the samples (integer subtypes still clip instead of wrapping around).
    ``subtype`` is a soundfile subtype (default ``PCM_16``; ``"FLOAT"`` for 32-bit float WAV).
    """
    out = Path(path).expanduser()
    fmt = _WRITE_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise OutputError(f"cannot write audio to {out}: use a .wav or .flac file name")
    subtype = (subtype or "PCM_16").upper()
    if not sf.check_format(fmt, subtype):
        raise OutputError(f"cannot write audio to {out}: {fmt} does not support subtype {subtype}")
    if normalize not in ("peak", "clip", None):
        raise InputError(f"unknown normalize strategy {normalize!r}; use 'peak', 'clip' or None")
    if int(sample_rate) <= 0:
        raise InputError(f"audio to write to {out}: sample rate must be positive, got {sample_rate}")
    if headroom_db < 0:
        raise InputError(f"audio to write to {out}: headroom_db must be >= 0, got {headroom_db}")
    arr = as_channels_first(wave, f"audio to write to {out}")
    if arr.shape[-1] == 0:
        raise InputError(f"audio to write to {out} has no frames")
    check_output_path(out)

    if normalize == "peak":
        peak = float(np.abs(arr).max())
        if peak >= SILENCE_PEAK:
            arr = arr * np.float32(10 ** (-headroom_db / 20) / peak)
    elif normalize == "clip" or not subtype.startswith(("FLOAT", "DOUBLE")):
        arr = np.clip(arr, -1.0, 1.0)

    frames_first = arr if arr.ndim == 1 else arr.T
    try:
        with atomic_path(out) as tmp:
            sf.write(str(tmp), frames_first, int(sample_rate), subtype=subtype, format=fmt)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise OutputError(f"could not write audio to {out} ({one_line(exc)})") from exc
    return out


def crossfade_concat(
    chunks: list[np.ndarray],
    overlap: int,
    *,
    curve: Literal["equal_power", "linear"] = "equal_power",
) -> np.ndarray:
    """Join consecutive audio windows that overlap by ``overlap`` frames, crossfading each seam.

    The result has ``sum(len) - overlap * (n - 1)`` frames. ``"equal_power"`` (sin/cos fades,
    the default) keeps loudness steady across independently generated windows, whose overlaps are
    uncorrelated; ``"linear"`` (gains summing to 1) is exact for windows cut from one signal.
    Chunks are ``(frames,)`` or ``(channels, frames)``, all with the same channel count.
    """
    if not chunks:
        raise InputError("crossfade_concat: no chunks to join")
    if overlap < 0:
        raise InputError(f"crossfade_concat: overlap must be >= 0, got {overlap}")
    arrs = [np.asarray(c, dtype=np.float32) for c in chunks]
    lead_shape = arrs[0].shape[:-1]
    for i, a in enumerate(arrs):
        if a.ndim not in (1, 2) or a.shape[:-1] != lead_shape:
            raise InputError(
                f"crossfade_concat: chunk {i} has shape {a.shape}, expected {lead_shape} + (frames,)"
            )
        seams = (i > 0) + (i < len(arrs) - 1)
        if a.shape[-1] < seams * overlap:
            raise InputError(
                f"crossfade_concat: chunk {i} has {a.shape[-1]} frames, fewer than its "
                f"{seams} x {overlap} overlapping frames"
            )
    if curve not in ("equal_power", "linear"):
        raise InputError(f"crossfade_concat: unknown curve {curve!r}; use 'equal_power' or 'linear'")

    t = (np.arange(overlap, dtype=np.float64) + 0.5) / max(overlap, 1)
    if curve == "equal_power":
        fade_in, fade_out = np.sin(t * np.pi / 2), np.cos(t * np.pi / 2)
    else:
        fade_in, fade_out = t, 1.0 - t
    fade_in, fade_out = fade_in.astype(np.float32), fade_out.astype(np.float32)

    total = sum(a.shape[-1] for a in arrs) - overlap * (len(arrs) - 1)
    out = np.zeros((*lead_shape, total), dtype=np.float32)
    pos = 0
    for i, a in enumerate(arrs):
        a = a.copy()
        if overlap and i > 0:
            a[..., :overlap] *= fade_in
        if overlap and i < len(arrs) - 1:
            a[..., a.shape[-1] - overlap :] *= fade_out
        out[..., pos : pos + a.shape[-1]] += a
        pos += a.shape[-1] - overlap
    return out
