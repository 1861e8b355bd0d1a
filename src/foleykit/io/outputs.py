"""Writing one generated sound to the file the user asked for: an audio file, or an mp4 — muxed onto
the input video (its video stream copied), or a still video of the input picture (every method ends here).

Levels: by default a sound is peak-normalised to -1 dBFS (audio files) as it always was. With a
loudness target (``loudness=-23.0`` for EBU R128, ``-14.0`` for streaming) the mix is brought to that
integrated loudness (ITU-R BS.1770-4, measured with pyloudnorm) by one gain, limited so that its true
peak (4x oversampled) stays at or below -1 dBTP: when the target would need more, the sound stays
quieter and the record says so (nothing is compressed or clipped). Stems are levelled each on their
own, or, with ``stems_relative``, all by the mix's gain, so their relative levels are kept.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, OutputError

#: The true-peak ceiling of a loudness-normalised sound (EBU R128: -1 dBTP).
TRUE_PEAK_CEILING_DBTP = -1.0
#: Loudness targets outside this range are refused (a typo, not a delivery spec).
LOUDNESS_RANGE_LUFS = (-70.0, -5.0)
#: The shortest clip BS.1770 gating can measure: one 400 ms block.
_MIN_MEASURE_S = 0.4


def check_loudness(loudness: float | None) -> float | None:
    """``loudness`` as a float, or an :class:`InputError` naming the allowed range."""
    if loudness is None:
        return None
    lo, hi = LOUDNESS_RANGE_LUFS
    if not (isinstance(loudness, (int, float)) and math.isfinite(loudness) and lo <= loudness <= hi):
        raise InputError(f"loudness target must be between {lo:g} and {hi:g} LUFS (e.g. -23 or -14), got {loudness}")
    return float(loudness)


def _as_written(wave: np.ndarray, *, stereo_out: bool) -> np.ndarray:
    """(frames, channels) as the file will hold it (an mp4's audio is stereo: mono is duplicated)."""
    arr = np.asarray(wave, dtype=np.float64)
    arr = arr[None] if arr.ndim == 1 else arr
    if stereo_out and arr.shape[0] == 1:
        arr = np.repeat(arr, 2, axis=0)
    return arr.T


def integrated_loudness(wave: np.ndarray, sample_rate: int, *, stereo_out: bool = False) -> float:
    """BS.1770-4 integrated loudness (LUFS) of ``wave`` (``(T,)`` or ``(C, T)``); -inf for silence."""
    import pyloudnorm

    frames = _as_written(wave, stereo_out=stereo_out)
    if frames.shape[0] < _MIN_MEASURE_S * sample_rate:
        raise InputError(f"loudness needs at least {_MIN_MEASURE_S:g} s of audio to measure, got "
                         f"{frames.shape[0] / sample_rate:.2f} s")
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(frames))


def true_peak_db(wave: np.ndarray) -> float:
    """True peak in dBTP: the peak of the signal 4x oversampled (BS.1770-4 Annex 2); -inf for silence."""
    from scipy.signal import resample_poly

    arr = np.asarray(wave, dtype=np.float64)
    arr = arr[None] if arr.ndim == 1 else arr
    peak = float(np.abs(resample_poly(arr, 4, 1, axis=-1)).max()) if arr.size else 0.0
    peak = max(peak, float(np.abs(arr).max()) if arr.size else 0.0)
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def loudness_gain_db(wave: np.ndarray, sample_rate: int, target: float, *, stereo_out: bool = False) -> tuple[float, dict]:
    """The gain (dB) that brings ``wave`` to ``target`` LUFS, limited to a -1 dBTP true peak, and a record."""
    measured = integrated_loudness(wave, sample_rate, stereo_out=stereo_out)
    if not math.isfinite(measured):
        return 0.0, {"target_lufs": target, "measured_lufs": None, "gain_db": 0.0,
                     "note": "the sound is silent (below the gate): left as it is"}
    gain = target - measured
    peak = true_peak_db(wave)
    record = {"target_lufs": target, "measured_lufs": round(measured, 2)}
    if math.isfinite(peak) and peak + gain > TRUE_PEAK_CEILING_DBTP:
        limited = TRUE_PEAK_CEILING_DBTP - peak
        record["note"] = (f"reaching {target:g} LUFS would put the true peak at {peak + gain:+.1f} dBTP; the gain was "
                          f"limited to keep it at {TRUE_PEAK_CEILING_DBTP:g} dBTP, so the sound is at "
                          f"{measured + limited:.1f} LUFS")
        gain = limited
    record.update(gain_db=round(gain, 2), lufs=round(measured + gain, 2),
                  true_peak_dbtp=round(peak + gain, 2) if math.isfinite(peak) else None)
    return gain, record


@dataclass
class Levelled:
    """A mix and its stems at their final levels; ``normalize`` is what the writer still does to each."""

    mix: np.ndarray
    stems: list[np.ndarray]
    normalize: str | None  # "peak" (the default) or None: written as they are
    record: dict = field(default_factory=dict)


def level_outputs(mix: np.ndarray, stems: Sequence[np.ndarray], sample_rate: int, *, loudness: float | None = None,
                  stems_relative: bool = False, mix_stereo_out: bool = False) -> Levelled:
    """Bring a mix and its stems to their output levels (see the module docstring).

    ``loudness=None`` and ``stems_relative=False`` is the default: every file peak-normalised on its own.
    ``mix_stereo_out``: the mix is written as stereo (an mp4), so it is measured as the file will hold it.
    """
    loudness = check_loudness(loudness)
    stems = [np.asarray(s, dtype=np.float32) for s in stems]
    if loudness is None and not stems_relative:
        return Levelled(np.asarray(mix, dtype=np.float32), stems, "peak")
    if loudness is None:  # relative stems at peak level: one gain puts the loudest file at -1 dBFS
        peak = max(float(np.abs(x).max()) for x in [np.asarray(mix), *stems])
        gain = 10 ** (TRUE_PEAK_CEILING_DBTP / 20) / peak if peak > 1e-4 else 1.0
        rec = {"normalize": "peak (one gain for the mix and every stem)", "gain_db": round(20 * math.log10(gain), 2)}
        return Levelled(np.asarray(mix * gain, np.float32), [np.asarray(s * gain, np.float32) for s in stems], None,
                        rec)
    gain_db, rec = loudness_gain_db(mix, sample_rate, loudness, stereo_out=mix_stereo_out)
    rec = {"standard": "ITU-R BS.1770-4 (pyloudnorm)", "mix": rec, "stems_relative": bool(stems_relative)}
    if stems_relative and stems:  # one gain for everything; still no stem above the true-peak ceiling
        stem_peak = max(true_peak_db(s) for s in stems)
        if math.isfinite(stem_peak) and stem_peak + gain_db > TRUE_PEAK_CEILING_DBTP:
            gain_db = TRUE_PEAK_CEILING_DBTP - stem_peak
            rec["note"] = "a stem's true peak limited the common gain: the mix is quieter than the target"
        g = 10 ** (gain_db / 20)
        rec["gain_db"] = round(gain_db, 2)
        return Levelled(np.asarray(mix * g, np.float32), [np.asarray(s * g, np.float32) for s in stems], None, rec)
    out_stems = []
    stem_recs = []
    for s in stems:
        g_db, srec = loudness_gain_db(s, sample_rate, loudness)
        out_stems.append(np.asarray(s * 10 ** (g_db / 20), np.float32))
        stem_recs.append(srec)
    if stem_recs:
        rec["stems"] = stem_recs
    return Levelled(np.asarray(mix * 10 ** (gain_db / 20), np.float32), out_stems, None, rec)


def write_sound(path: str | os.PathLike, waveform: np.ndarray, sample_rate: int, *,
                video_source: Any = None, normalize: str | None = "peak", original_audio: str = "replace",
                duck_db: float | None = None) -> str | None:
    """Write ``waveform`` to ``path`` by its suffix.

    ``.mp4``: muxed onto ``video_source`` when it is a video file (``original_audio`` replace | keep |
    duck, ``duck_db`` dB lower; see :func:`foleykit.io.video.mux_audio`), or a still video of it when
    it is a picture (an image file or a PIL image). ``normalize``: ``"peak"`` (the default) for audio
    files; None writes the samples as they are (a sound already levelled by :func:`level_outputs`).
    Returns the writer's note (e.g. the video was cut to the sound, or re-encoded), or None.
    """
    if Path(path).suffix.lower() == ".mp4":
        from PIL import Image

        from .video import DEFAULT_DUCK_DB, mux_audio, still_video

        if video_source is None:
            raise OutputError("an .mp4 output needs a video or picture input")
        if isinstance(video_source, Image.Image) or not _is_video(video_source):
            if original_audio != "replace":
                raise OutputError(f"--original-audio {original_audio} needs a video input (a picture has no soundtrack)")
            from .image import load_image

            picture = video_source if isinstance(video_source, Image.Image) else load_image(video_source)
            return still_video(picture, waveform, sample_rate, path).note or None
        return mux_audio(video_source, waveform, sample_rate, path, original_audio=original_audio,
                         duck_db=DEFAULT_DUCK_DB if duck_db is None else duck_db).note or None
    if original_audio != "replace":
        raise OutputError(f"--original-audio {original_audio} needs an .mp4 output")
    from .audio import write_audio

    write_audio(path, waveform, sample_rate, normalize=normalize)
    return None


def _is_video(path: Any) -> bool:
    from ._checks import VIDEO_SUFFIXES

    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def written_format(path: str | os.PathLike) -> dict[str, Any]:
    """What a written file really holds: ``{"sample_rate", "channels", "duration_s"}`` of its audio
    (an mp4's AAC track is 48 kHz stereo whatever rate the generator made), for sidecars."""
    p = Path(path)
    if p.suffix.lower() == ".mp4":
        import av

        with av.open(str(p)) as c:
            a = c.streams.audio[0]
            duration = float(a.duration * a.time_base) if a.duration is not None else float(c.duration or 0) / 1e6
            return {"sample_rate": int(a.codec_context.sample_rate), "channels": int(a.codec_context.channels),
                    "duration_s": round(duration, 6)}
    import soundfile as sf

    info = sf.info(str(p))
    return {"sample_rate": int(info.samplerate), "channels": int(info.channels),
            "duration_s": round(info.frames / info.samplerate, 6)}


# ---------------------------------------------------------------------- one writer for a mix and its stems


@dataclass(frozen=True)
class StemFile:
    """One stem to write beside a mix: its final path, samples and rate, its sidecar record (without
    ``output``) and the sidecar's ``output`` entries that follow ``path`` (what, sample_rate, ...)."""

    path: Path
    waveform: np.ndarray
    sample_rate: int
    record: dict
    output: dict


def check_mp4_output(out_path: Path, video_source: Any) -> None:
    """An mp4 output needs a picture or video to show."""
    if out_path.suffix.lower() == ".mp4" and video_source is None:
        raise OutputError("an .mp4 output needs a video or picture input")


def write_mix_and_stems(
    out_path: Path,
    waveform: np.ndarray,
    sample_rate: int,
    record: dict,
    output: dict,
    *,
    stems_dir: str | os.PathLike | None = None,
    stems: Sequence[StemFile] = (),
    extra_files: Sequence[tuple[Path, np.ndarray]] = (),
    video_source: Any = None,
    loudness: float | None = None,
    stems_relative: bool = False,
    mux: dict | None = None,
) -> tuple[list[Path], list[Path], list[str]]:
    """Write a mix to ``out_path`` (audio, or an mp4 through :func:`write_sound`) and each of ``stems``
    (into ``stems_dir``, made here when missing), each with its JSON sidecar. The mix's sidecar is
    ``record`` with ``output`` = {path, **``output``, levels, the written format}; the writer's notes
    are added to its ``notes``. ``loudness``/``stems_relative``: output levels (:func:`level_outputs`).
    ``extra_files``: (path, samples) written as they are at the mix's rate, without sidecars (the
    mapper's kept candidates, which its sidecar lists).

    Everything is first written to staging files beside its target and only then renamed into place,
    each sidecar before its file (:func:`foleykit.io.atomic.staged_outputs`): an error leaves no
    partial set of outputs, and a stems folder made for this call is removed again.
    Returns (outputs, sidecars, notes).
    """
    from .atomic import staged_outputs
    from .audio import write_audio
    from .sidecar import sidecar_path, write_sidecar

    check_mp4_output(out_path, video_source)
    notes: list[str] = []
    levels = level_outputs(waveform, [s.waveform for s in stems], sample_rate, loudness=loudness,
                           stems_relative=stems_relative, mix_stereo_out=out_path.suffix.lower() == ".mp4")
    folder = created = None
    if stems_dir is not None:
        folder = Path(stems_dir).expanduser()
        created = not folder.exists()
        folder.mkdir(parents=False, exist_ok=True)
    outputs = [out_path] + [s.path for s in stems]
    sidecars = [sidecar_path(final) for final in outputs]
    extras = [path for path, _ in extra_files]
    # Each sidecar before its file: whoever sees a file also sees its sidecar.
    try:
        with staged_outputs(*(p for pair in zip(sidecars, outputs) for p in pair), *extras) as paths:
            main_tmp = paths[1]
            for tmp, (_, wave) in zip(paths[2 * len(outputs):], extra_files):
                write_audio(tmp, wave, sample_rate)
            note = write_sound(main_tmp, levels.mix, sample_rate, video_source=video_source,
                               normalize=levels.normalize, **(mux or {}))
            notes += [note] if note else []
            main_record = dict(record)
            main_record["output"] = {"path": str(out_path.resolve()), **output}
            if levels.record:
                main_record["output"]["levels"] = levels.record
            main_record["output"].update(written_format(main_tmp))  # what the file holds (mp4: 48 kHz stereo)
            if notes:
                main_record["notes"] = list(main_record.get("notes", [])) + notes
            write_sidecar(main_tmp, main_record)  # = paths[0]
            for stem, tmp, wave in zip(stems, paths[3::2], levels.stems):
                write_audio(tmp, wave, stem.sample_rate, normalize=levels.normalize)
                write_sidecar(tmp, {**stem.record, "output": {"path": str(stem.path.resolve()), **stem.output}})
    except BaseException:
        if created:  # a stems folder made for this call goes again (it is empty: nothing was committed)
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return outputs, sidecars, notes
