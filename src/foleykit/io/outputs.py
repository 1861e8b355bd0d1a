"""Writing one generated sound to the file the user asked for: an audio file, or an mp4 — muxed onto
the input video (its video stream copied), or a still video of the input picture (every method ends here)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OutputError


def write_sound(path: str | os.PathLike, waveform: np.ndarray, sample_rate: int, *,
                video_source: Any = None, original_audio: str = "replace", duck_db: float | None = None) -> str | None:
    """Write ``waveform`` to ``path`` by its suffix.

    ``.mp4``: muxed onto ``video_source`` when it is a video file (``original_audio`` replace | keep |
    duck, ``duck_db`` dB lower; see :func:`foleykit.io.video.mux_audio`), or a still video of it when
    it is a picture (an image file or a PIL image). Returns the writer's note (e.g. the video was cut
    to the sound, or re-encoded), or None.
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

    write_audio(path, waveform, sample_rate)
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
