"""Video probing, frame picking by timestamp, and muxing a soundtrack onto a video, with PyAV.

Times are seconds from the start of the video stream (its first timestamp), so a file whose
timestamps start late still reads as starting at 0. PyAV is the optional ``video`` extra.
"""

from __future__ import annotations

import logging
import math
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

try:
    import av
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("foleykit video support needs PyAV: pip install 'foleykit[video]'") from exc

from ..errors import InputError, OutputError
from ._checks import check_input_file, one_line
from .atomic import atomic_path, check_output_path
from .audio import as_channels_first, resample

log = logging.getLogger(__name__)

#: The muxed soundtrack is AAC at this rate, in stereo: what every player and editor expects.
MUX_SAMPLE_RATE = 48_000
_AAC_BIT_RATE = 192_000
#: Targets closer than this are reached by decoding on; farther ones by seeking to a keyframe.
_SEEK_GAP_S = 3.0
#: Seek this much before a target: some demuxers (MPEG-TS, B-frames) land after the asked time.
_SEEK_MARGIN_S = 0.5
_TIME_EPS = 1e-6
_AV_ERRORS = (av.error.FFmpegError, OSError, ValueError)
_ROTATIONS = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds. ``width``/``height`` are as displayed, i.e. after ``rotation``."""

    duration_s: float
    fps: float
    width: int
    height: int
    n_frames: int  # an estimate: from the header when it has one, else duration * fps
    has_audio: bool
    codec: str
    start_s: float = 0.0  # the stream's first timestamp, the origin of every time in this module
    rotation: int = 0  # display rotation, degrees counter-clockwise (0, 90, 180, 270)
    claimed_duration_s: float | None = None  # what the container claims, when more than decodes
    name: str = ""  # the file's name (no folder), for messages

    @property
    def note(self) -> str | None:
        """One line when the container claims more than its video stream holds (a truncated file)."""
        if self.claimed_duration_s is None:
            return None
        return (f"video {self.name} claims {self.claimed_duration_s:.2f} s but only {self.duration_s:.2f} s of it "
                f"decodes (truncated or damaged file); its first {self.duration_s:.2f} s are used")


@dataclass(frozen=True)
class MuxResult:
    """The written file; ``note`` says what was done differently from a plain stream copy."""

    path: Path
    video_copied: bool
    note: str | None = None


def _ffmpeg_reason(exc: BaseException) -> str:
    """FFmpeg's own reason ("Invalid data found when processing input"), without the repeated path."""
    strerror = getattr(exc, "strerror", None)
    return str(strerror) if strerror else one_line(exc)


def _open_input(p: Path) -> av.container.InputContainer:
    try:
        return av.open(str(p), metadata_errors="ignore")
    except _AV_ERRORS as exc:
        raise InputError(f"video file {p} is not a readable media file ({_ffmpeg_reason(exc)})") from exc


def _video_stream(container: av.container.InputContainer, p: Path) -> av.video.stream.VideoStream:
    """The first real video stream; cover art (an attached picture) does not count."""
    if container.format.name.endswith("_pipe") or container.format.name == "image2":
        raise InputError(f"video file {p} is a still image, not a video")
    cover_art = getattr(getattr(av.stream, "Disposition", None), "attached_pic", 0)  # PyAV >= 15
    for stream in container.streams.video:
        if not (cover_art and stream.disposition & cover_art):
            return stream
    raise InputError(f"video file {p} has no video stream")


def _scan_end_s(p: Path, index: int, origin: float) -> tuple[float, list[int]]:
    """End time from the packets the file really holds (demuxed, not decoded; reading stops at the
    first unreadable packet) and the pts of its keyframes."""
    end = 0.0
    keyframes: list[int] = []
    with _open_input(p) as container:
        stream = container.streams[index]
        try:
            for pkt in container.demux(stream):
                if pkt.pts is not None and pkt.size:
                    end = max(end, float((pkt.pts + (pkt.duration or 0)) * stream.time_base) - origin)
                    if pkt.is_keyframe:
                        keyframes.append(int(pkt.pts))
        except _AV_ERRORS:
            pass  # a damaged tail: what was read so far is what the file holds
    return end, keyframes


def _decodable_end_s(p: Path, index: int, origin: float, keyframes: list[int], fps: float) -> float:
    """End time of the last frame that decodes, decoding only from the last keyframe(s) on."""
    for key in sorted(set(keyframes), reverse=True)[:4]:
        last = None
        with _open_input(p) as container:
            stream = container.streams[index]
            try:
                container.seek(key, stream=stream, backward=True)
                for frame in container.decode(stream):
                    if frame.pts is not None:
                        last = float(frame.pts * stream.time_base) - origin
            except _AV_ERRORS:
                pass
        if last is not None:
            return last + (1.0 / fps if fps > 0 else 0.0)
    return 0.0


def _usable_duration_s(p: Path, vs, origin: float, claimed: float, fps: float) -> tuple[float, float | None]:
    """(usable duration, claimed duration if it is more): a container may claim more than its streams
    hold, e.g. a faststart mp4 cut short, whose index still lists every frame."""
    end, keyframes = _scan_end_s(p, vs.index, origin)
    frame_s = 1.0 / fps if fps > 0 else 0.04
    if end <= 0 or end >= claimed - 1.5 * frame_s:
        return claimed, None
    usable = min(end, _decodable_end_s(p, vs.index, origin, keyframes, fps) or end)
    return usable, claimed


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Describe a video file, and check that it holds at least one decodable frame."""
    p = check_input_file(path, "video")
    with _open_input(p) as container:
        vs = _video_stream(container, p)
        tb = vs.time_base
        origin = float(vs.start_time * tb) if vs.start_time is not None else 0.0
        try:
            first = next(container.decode(vs), None)
        except _AV_ERRORS as exc:
            raise InputError(f"video file {p} is corrupt: {_ffmpeg_reason(exc)}") from exc
        if first is None:
            raise InputError(f"video file {p} has no decodable video frames")
        if vs.duration:
            duration = float(vs.duration * tb)
        elif container.duration:
            duration = container.duration / av.time_base
        else:
            duration = _scan_end_s(p, vs.index, origin)[0]
        if duration <= 0:
            raise InputError(f"video file {p} has zero duration")
        rate = vs.average_rate or vs.guessed_rate or vs.base_rate
        fps = float(rate) if rate else (vs.frames / duration if vs.frames > 0 else 0.0)
        duration, claimed = _usable_duration_s(p, vs, origin, duration, fps)
        if duration <= 0:
            raise InputError(f"video file {p} has no decodable video frames")
        n_frames = vs.frames if vs.frames > 0 and claimed is None else max(1, round(duration * fps))
        rotation = round(getattr(first, "rotation", 0) / 90) * 90 % 360  # read by PyAV >= 15
        width, height = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
        return VideoInfo(
            duration_s=duration,
            fps=fps,
            width=width,
            height=height,
            n_frames=n_frames,
            has_audio=len(container.streams.audio) > 0,
            codec=vs.codec_context.name,
            start_s=origin,
            rotation=rotation,
            claimed_duration_s=claimed,
            name=p.name,
        )


def segment_centres(n: int, start_s: float, end_s: float) -> list[float]:
    """Centres of ``n`` equal segments of [start_s, end_s): the times ``read_frames`` samples."""
    step = (end_s - start_s) / n
    return [start_s + (k + 0.5) * step for k in range(n)]


def _timed_frames(
    container: av.container.InputContainer, vs: av.video.stream.VideoStream, origin: float, fps: float
) -> Iterator[tuple[float, av.VideoFrame]]:
    """Decoded frames with their display time (seconds from ``origin``), guessing a missing pts."""
    t = -math.inf
    for frame in container.decode(vs):
        if frame.pts is not None:
            t = float(frame.pts * vs.time_base) - origin
        else:
            t = t + 1.0 / (fps or 25.0) if t > -math.inf else 0.0
        yield t, frame


def _to_pil(frame: av.VideoFrame, rotation: int, max_side: int | None) -> Image.Image:
    width, height = frame.width, frame.height
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
        frame = frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA")
    img = frame.to_image()
    return img.transpose(_ROTATIONS[rotation]) if rotation else img


def _frames_at(p: Path, info: VideoInfo, times: list[float], max_side: int | None) -> list[Image.Image]:
    """For each (sorted) time, the frame on screen then: the last frame whose timestamp <= t.

    Decodes sequentially and seeks (to the keyframe before the target) only across gaps longer
    than ``_SEEK_GAP_S``, so it is exact for VFR and any frame rate and fast for sparse picks.
    Before the first decodable frame the first one is used; past the end, the last one.
    """
    picks: list[Image.Image] = []
    last_pick: tuple[av.VideoFrame, Image.Image] | None = None  # reused when n_frames > frames
    with _open_input(p) as container:
        vs = _video_stream(container, p)
        vs.thread_type = "AUTO"
        frames: Iterator[tuple[float, av.VideoFrame]] | None = None
        current: tuple[float, av.VideoFrame] | None = None  # last frame at or before the target
        ahead: tuple[float, av.VideoFrame] | None = None  # first frame after it, held for the next target
        position = 0.0
        eof = False
        try:
            for target in times:
                if frames is None or (not eof and target - position > _SEEK_GAP_S):
                    if target > _SEEK_GAP_S:
                        at = info.start_s + max(0.0, target - _SEEK_MARGIN_S)
                        container.seek(int(at / vs.time_base), stream=vs, backward=True)
                    frames = _timed_frames(container, vs, info.start_s, info.fps)
                    current = ahead = None
                    eof = False
                while not eof and (ahead is None or ahead[0] <= target + _TIME_EPS):
                    if ahead is not None:
                        current = ahead
                    ahead = next(frames, None)
                    if ahead is None:
                        eof = True
                    else:
                        position = ahead[0]
                pick = current or ahead
                if pick is None:
                    raise InputError(f"video file {p} has no decodable video frames near {target:.2f} s")
                if last_pick is None or last_pick[0] is not pick[1]:
                    last_pick = (pick[1], _to_pil(pick[1], info.rotation, max_side))
                picks.append(last_pick[1])
        except _AV_ERRORS as exc:
            raise InputError(f"video file {p} could not be decoded: {_ffmpeg_reason(exc)}") from exc
    return picks


def read_frames(
    path: str | os.PathLike,
    n_frames: int,
    *,
    start_s: float = 0.0,
    end_s: float | None = None,
    max_side: int | None = None,
) -> list[Image.Image]:
    """``n_frames`` RGB frames evenly spaced in time over the window [start_s, end_s).

    Frame k is the one on screen at the centre of the k-th of ``n_frames`` equal segments
    (see :func:`segment_centres`), chosen by timestamp, so VFR and any frame rate are handled.
    ``end_s=None`` means the end of the video; a window for one audio chunk of a long video is
    ``start_s=i * 10, end_s=(i + 1) * 10``. Frames are upright (display rotation applied) and,
    with ``max_side``, downscaled during conversion so that their longer side is at most that.
    """
    if n_frames < 1:
        raise InputError(f"n_frames must be at least 1, got {n_frames}")
    if max_side is not None and max_side < 1:
        raise InputError(f"max_side must be at least 1, got {max_side}")
    info = probe_video(path)
    p = Path(path).expanduser()
    end = info.duration_s if end_s is None else min(end_s, info.duration_s)
    if start_s < 0 or start_s >= end:
        raise InputError(
            f"frame window [{start_s:g}, {end_s if end_s is not None else info.duration_s:g}) s is empty "
            f"or outside video {p}, which is {info.duration_s:.2f} s long"
        )
    return _frames_at(p, info, segment_centres(n_frames, start_s, end), max_side)


def read_video_audio(path: str | os.PathLike, start_s: float = 0.0, end_s: float | None = None, *,
                     channels: int = 1) -> tuple[np.ndarray, int]:
    """The first audio track of a video as float32 at its own rate, cut to [start_s, end_s):
    ``(frames,)`` mono (``channels=1``) or ``(2, frames)`` stereo (``channels=2``)."""
    if channels not in (1, 2):
        raise InputError(f"channels must be 1 or 2, got {channels}")
    p = check_input_file(path, "video")
    try:
        container = av.open(str(p), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"video file {p} is not a readable media file ({one_line(exc)})") from None
    with container:
        if not container.streams.audio:
            raise InputError(f"video file {p} has no audio track")
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate or stream.rate or 0)
        if rate <= 0:
            raise InputError(f"video file {p}: audio track has no sample rate")
        resampler = av.AudioResampler(format="flt", layout="mono" if channels == 1 else "stereo", rate=rate)
        origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        if start_s > 1.0:
            container.seek(int(max(0.0, start_s - 0.5) / stream.time_base) + (stream.start_time or 0),
                           stream=stream, backward=True)
        chunks: list[np.ndarray] = []
        first_t: float | None = None
        try:
            for frame in container.decode(stream):
                if first_t is None:
                    first_t = (float(frame.pts * stream.time_base) - origin) if frame.pts is not None else 0.0
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))  # packed: L R L R ... for stereo
                decoded_end = first_t + sum(c.size for c in chunks) / rate / channels
                if end_s is not None and decoded_end >= end_s:
                    break
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise InputError(f"video file {p}: audio could not be decoded ({one_line(exc)})") from None
    if not chunks:
        raise InputError(f"video file {p} has an empty audio track")
    wave = np.concatenate(chunks).astype(np.float32)
    if channels == 2:
        wave = wave.reshape(-1, 2).T
    first_t = first_t or 0.0
    a = max(0, int(round((start_s - first_t) * rate)))
    b = wave.shape[-1] if end_s is None else max(a, int(round((end_s - first_t) * rate)))
    wave = wave[..., a:b]
    if wave.size == 0:
        raise InputError(f"video file {p} has no audio in [{start_s:g}, {end_s if end_s is not None else 'end'}) s")
    return wave, rate


def _soundtrack(audio: np.ndarray, sample_rate: int, n_samples: int) -> np.ndarray:
    """(2, n_samples) float32 at MUX_SAMPLE_RATE: resampled, mono duplicated, trimmed or zero-padded."""
    wave = as_channels_first(audio, "audio to mux")
    if wave.ndim == 1:
        wave = wave[None]
    if wave.shape[0] not in (1, 2):
        raise InputError(f"audio to mux must be mono or stereo, got {wave.shape[0]} channels")
    if wave.shape[1] == 0:
        raise InputError("audio to mux has no frames")
    wave = resample(wave, sample_rate, MUX_SAMPLE_RATE)
    if wave.shape[0] == 1:
        wave = np.repeat(wave, 2, axis=0)
    out = np.zeros((2, n_samples), dtype=np.float32)
    keep = min(n_samples, wave.shape[1])
    out[:, :keep] = wave[:, :keep]
    peak = float(np.abs(out).max())
    if peak > 1.0:  # AAC would clip; scale down rather than distort
        out /= peak
    return out


def _encode_audio(stream: av.audio.stream.AudioStream, track: np.ndarray, first_pts: int) -> deque[av.Packet]:
    """All AAC packets of ``track``, encoded up front so they can be interleaved with the video."""
    packets: deque[av.Packet] = deque()
    chunk = MUX_SAMPLE_RATE
    for i in range(0, track.shape[1], chunk):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(track[:, i : i + chunk]), format="fltp", layout="stereo"
        )
        frame.sample_rate = MUX_SAMPLE_RATE
        frame.time_base = Fraction(1, MUX_SAMPLE_RATE)
        frame.pts = first_pts + i
        packets.extend(stream.encode(frame))
    packets.extend(stream.encode(None))
    return packets


def _packet_time(packet: av.Packet) -> float:
    ts = packet.dts if packet.dts is not None else packet.pts
    return float(ts * packet.time_base) if ts is not None else math.inf


def _mux_audio_until(dst: av.container.OutputContainer, audio: deque[av.Packet], t: float) -> None:
    """Mux queued audio packets up to time ``t`` so both streams advance together in the file."""
    while audio and _packet_time(audio[0]) <= t:
        dst.mux(audio.popleft())


def _open_output(tmp: Path) -> av.container.OutputContainer:
    # faststart puts the index first, so browsers and the app can play the file while it loads.
    return av.open(str(tmp), "w", format="mp4", container_options={"movflags": "+faststart"})


def _add_audio_stream(dst: av.container.OutputContainer) -> av.audio.stream.AudioStream:
    stream = dst.add_stream("aac", rate=MUX_SAMPLE_RATE, layout="stereo")
    stream.bit_rate = _AAC_BIT_RATE
    return stream


def _after_end(t: float, info: VideoInfo, end_s: float | None) -> bool:
    """Whether a video time ``t`` (absolute) is at or past ``end_s`` (from the video's start)."""
    return end_s is not None and t - info.start_s >= end_s - _TIME_EPS


def _copy_video(src: Path, tmp: Path, track: np.ndarray, info: VideoInfo, end_s: float | None = None) -> None:
    """Copy the video packets untouched (those shown before ``end_s``) and add the AAC track; raises if
    mp4 cannot hold the codec."""
    with _open_input(src) as inp, _open_output(tmp) as dst:
        vin = _video_stream(inp, src)
        vout = dst.add_stream_from_template(vin)
        if vout.time_base is None:  # PyAV#1953: older PyAV did not copy the time base
            vout.time_base = vin.time_base
        audio = _encode_audio(_add_audio_stream(dst), track, round(info.start_s * MUX_SAMPLE_RATE))
        end = info.start_s + info.duration_s - _TIME_EPS  # a truncated file: only what decodes
        packets = inp.demux(vin)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except _AV_ERRORS:
                if info.claimed_duration_s is None:
                    raise
                break  # the damaged tail of a truncated file
            if packet.dts is None and packet.pts is None:  # the demuxer's empty flush packet
                continue
            if info.claimed_duration_s is not None and packet.pts is not None and float(packet.pts * packet.time_base) >= end:
                continue
            if packet.pts is not None and _after_end(float(packet.pts * packet.time_base), info, end_s):
                continue  # the sound ends first: the video is cut there
            _mux_audio_until(dst, audio, _packet_time(packet))
            packet.stream = vout
            dst.mux(packet)
        _mux_audio_until(dst, audio, math.inf)


def _reencode_video(src: Path, tmp: Path, track: np.ndarray, info: VideoInfo, end_s: float | None = None) -> None:
    """Re-encode the video with libx264 (yuv420p, original timestamps) and add the AAC track.

    A display rotation is applied to the pixels, so the result is upright in any player.
    """
    with _open_input(src) as inp, _open_output(tmp) as dst:
        vin = _video_stream(inp, src)
        vin.thread_type = "AUTO"
        width, height = max(2, info.width // 2 * 2), max(2, info.height // 2 * 2)  # yuv420p: even sides
        rate = Fraction(info.fps or 25).limit_denominator(1001 * 1000)
        vout = dst.add_stream("libx264", rate=rate, options={"crf": "18", "preset": "veryfast"})
        vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
        vout.time_base = vin.time_base
        vout.codec_context.time_base = vin.time_base
        audio = _encode_audio(_add_audio_stream(dst), track, round(info.start_s * MUX_SAMPLE_RATE))
        last_pts = None
        for frame in _decoded_until(inp, vin, info):
            if frame.time is not None and _after_end(float(frame.time), info, end_s):
                break
            pts = frame.pts if frame.pts is not None else (last_pts + 1 if last_pts is not None else 0)
            if last_pts is not None and pts <= last_pts:  # x264 needs strictly increasing timestamps
                pts = last_pts + 1
            last_pts = pts
            if info.rotation:  # np.rot90 turns counter-clockwise, like the display matrix
                upright = np.rot90(frame.to_ndarray(format="rgb24"), k=info.rotation // 90)
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(upright), format="rgb24")
            out_frame = frame.reformat(width=width, height=height, format="yuv420p")
            out_frame.pts, out_frame.time_base = pts, vin.time_base
            _encode_frame(dst, vout, out_frame, audio)
        _encode_frame(dst, vout, None, audio)  # flush the encoder, then the rest of the sound
        _mux_audio_until(dst, audio, math.inf)


def _encode_frame(dst: av.container.OutputContainer, vout, frame: av.VideoFrame | None,
                  audio: deque[av.Packet]) -> None:
    """Encode ``frame`` (None: flush) and mux its packets, each after the audio due before it."""
    for packet in vout.encode(frame):
        _mux_audio_until(dst, audio, _packet_time(packet))
        dst.mux(packet)


def _decoded_until(inp, vin, info: VideoInfo):
    """The decoded frames of ``vin``, stopping where a truncated file stops decoding."""
    end = info.start_s + info.duration_s - _TIME_EPS
    frames = inp.decode(vin)
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except _AV_ERRORS:
            if info.claimed_duration_s is None:
                raise
            return
        if info.claimed_duration_s is not None and frame.pts is not None and float(frame.pts * vin.time_base) >= end:
            return
        yield frame


#: What ``original_audio`` may be: the new track alone, or over the video's own soundtrack.
ORIGINAL_AUDIO_MODES = ("replace", "keep", "duck")
DEFAULT_DUCK_DB = 12.0


def _with_original(track: np.ndarray, src: Path, mode: str, duck_db: float) -> np.ndarray:
    """``track`` plus the video's own soundtrack (``keep``: as it is; ``duck``: ``duck_db`` dB lower)."""
    if mode not in ORIGINAL_AUDIO_MODES:
        raise InputError(f"original audio must be one of {', '.join(ORIGINAL_AUDIO_MODES)}, got {mode!r}")
    if mode == "replace":
        return track
    if not (math.isfinite(duck_db) and duck_db >= 0):
        raise InputError(f"duck must be a finite number of dB >= 0, got {duck_db}")
    seconds = track.shape[1] / MUX_SAMPLE_RATE
    original, sr = read_video_audio(src, 0.0, seconds, channels=2)
    original = resample(original, sr, MUX_SAMPLE_RATE)
    gain = 1.0 if mode == "keep" else 10.0 ** (-duck_db / 20.0)
    out = track.copy()
    n = min(out.shape[1], original.shape[1])
    out[:, :n] += gain * original[:, :n]
    peak = float(np.abs(out).max())
    if peak > 1.0:  # AAC would clip; scale the mix down rather than distort
        out /= peak
    return out


def mux_audio(
    video_path: str | os.PathLike,
    audio: np.ndarray,
    sample_rate: int,
    out_path: str | os.PathLike,
    *,
    original_audio: str = "replace",
    duck_db: float = DEFAULT_DUCK_DB,
) -> MuxResult:
    """Write an mp4 with the video of ``video_path`` and ``audio``.

    The video packets are copied bit for bit (no quality loss, fast); only when mp4 cannot hold
    the codec is the video re-encoded with libx264, which the result's ``note`` says (and the log).
    ``audio`` is ``(frames,)`` or ``(channels, frames)`` (mono or stereo) at ``sample_rate``; it is
    encoded as 48 kHz stereo AAC. The file lasts as long as the shorter of the sound and the video's
    usable duration (what decodes, :func:`probe_video`, so a truncated file's mp4 ends where its picture
    does): a sound shorter than the video (``--duration``) cuts the video there (a stream copy cuts at
    the first packet shown at or after that time), a longer one is cut at the video's end.
    ``original_audio``: ``replace`` (the video's own soundtrack is dropped), ``keep`` (mixed under
    the new one as it is) or ``duck`` (mixed ``duck_db`` dB lower). The file is written atomically:
    on any error no output is left behind.
    """
    src = check_input_file(video_path, "video")
    out = Path(out_path).expanduser()
    if out.suffix.lower() != ".mp4":
        raise OutputError(f"cannot write {out}: the muxed output must be an .mp4 file")
    check_output_path(out, [src])
    info = probe_video(src)
    frames = as_channels_first(audio, "audio to mux").shape[-1]
    end_s = min(info.duration_s, frames / sample_rate)
    track = _soundtrack(audio, sample_rate, round(end_s * MUX_SAMPLE_RATE))
    if original_audio != "replace" and not info.has_audio:
        raise InputError(f"video {src} has no soundtrack to {original_audio}; use --original-audio replace")
    track = _with_original(track, src, original_audio, duck_db)
    cut = end_s < info.duration_s - max(_TIME_EPS, 0.5 / (info.fps or 25))
    trim_note = f"video cut to the sound's {end_s:.2f} s (of {info.duration_s:.2f} s)" if cut else None
    try:
        with atomic_path(out) as tmp:
            try:
                _copy_video(src, tmp, track, info, end_s if cut else None)
                return MuxResult(out, video_copied=True, note=trim_note)
            except (ValueError, av.error.FFmpegError) as exc:
                note = (
                    f"video codec {info.codec!r} of {src} cannot be copied into mp4 ({_ffmpeg_reason(exc)}); "
                    "re-encoded it with libx264"
                )
                log.warning(note)
            _reencode_video(src, tmp, track, info, end_s if cut else None)
            return MuxResult(out, video_copied=False, note="; ".join(n for n in (note, trim_note) if n))
    except av.error.FFmpegError as exc:
        raise InputError(f"could not mux audio onto video {src}: {_ffmpeg_reason(exc)}") from exc
    except OSError as exc:
        raise OutputError(f"could not write {out}: {one_line(exc)}") from exc


#: Frame rate of a still video (one picture held for the whole sound).
STILL_FPS = 2


def still_video(picture: Image.Image, audio: np.ndarray, sample_rate: int, out_path: str | os.PathLike) -> MuxResult:
    """Write an mp4 showing ``picture`` for as long as ``audio`` lasts (H.264 at ``STILL_FPS`` fps,
    48 kHz stereo AAC), atomically."""
    out = Path(out_path).expanduser()
    if out.suffix.lower() != ".mp4":
        raise OutputError(f"cannot write {out}: a still video must be an .mp4 file")
    wave = as_channels_first(audio, "audio to mux")
    seconds = wave.shape[-1] / sample_rate
    track = _soundtrack(audio, sample_rate, round(seconds * MUX_SAMPLE_RATE))
    rgb = picture.convert("RGB")
    width, height = max(2, rgb.width // 2 * 2), max(2, rgb.height // 2 * 2)  # yuv420p: even sides
    pixels = np.ascontiguousarray(np.asarray(rgb)[:height, :width])
    try:
        with atomic_path(out) as tmp, _open_output(tmp) as dst:
            vout = dst.add_stream("libx264", rate=STILL_FPS, options={"crf": "18", "preset": "veryfast",
                                                                     "tune": "stillimage"})
            vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
            audio_packets = _encode_audio(_add_audio_stream(dst), track, 0)
            base = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuv420p")
            for i in range(max(1, math.ceil(seconds * STILL_FPS))):
                base.pts, base.time_base = i, Fraction(1, STILL_FPS)
                _encode_frame(dst, vout, base, audio_packets)
            _encode_frame(dst, vout, None, audio_packets)
            _mux_audio_until(dst, audio_packets, math.inf)
    except av.error.FFmpegError as exc:
        raise OutputError(f"could not write {out}: {_ffmpeg_reason(exc)}") from exc
    return MuxResult(out, video_copied=False, note=None)
