"""Writing one generated sound to the file the user asked for: an audio file, or an mp4 whose video
stream is copied from the input video and whose audio is the sound (every method ends here)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import OutputError


def write_sound(path: str | os.PathLike, waveform: np.ndarray, sample_rate: int, *,
                video_source: str | os.PathLike | None = None) -> str | None:
    """Write ``waveform`` to ``path`` by its suffix (``.mp4``: muxed onto ``video_source``).

    Returns the muxer's note (e.g. the audio was re-encoded), or None.
    """
    if Path(path).suffix.lower() == ".mp4":
        from .video import mux_audio

        if video_source is None:
            raise OutputError("an .mp4 output needs a video input")
        return mux_audio(video_source, waveform, sample_rate, path).note or None
    from .audio import write_audio

    write_audio(path, waveform, sample_rate)
    return None
