"""The gradio app: image/video upload, click-to-select objects with a mask overlay, generate, listen, download.

Safety and robustness:

* one queue; generation runs one job at a time (``default_concurrency_limit=1``), clicks and uploads in
  their own small pool, so a second user waits (with a queue position) instead of crashing the server;
  models load once under one process-wide lock, and every method's pipeline is held at once
  (:func:`foleykit.api.load_pipeline`), sharing one CLIP, CLAP and generator;
* uploads: a size limit per file (``max_file_size``), a total per upload request (:class:`SafeServing`
  answers 413) and a disk quota for the work folder (oldest sessions are pruned first); the type is read
  from the content (:func:`sniff_media`), never from the name, and anything refused is deleted at once;
  images are downscaled to ``max_image_side``; videos limited to ``max_video_s`` of what decodes;
* files: gradio's upload cache and examples cache are put inside the app's own work folder, and
  ``allowed_paths`` is the folder of the app's own results only, so nothing else is ever served; every
  served file gets ``nosniff`` and a sandbox CSP, and anything that is not one of our media types goes out
  as an ``application/octet-stream`` attachment, so an uploaded HTML or SVG file can never run script;
* a budget per request: at most ``max_sources`` sources of all kinds (clicks, texts, audio clips) and
  texts of at most ``max_text_chars`` characters (refused, never echoed back);
* no phone-home: analytics off (``GRADIO_ANALYTICS_ENABLED=False``), no share link, no SSR node server,
  the default theme's fonts are served locally; ``auth`` (user, password) for a shared deployment;
* user errors (a click off the image, an unreadable upload, ...) come back as one-line messages naming the
  user's own file by its upload name (never a server path) and are logged as one line; real faults are
  logged with their traceback. A failed run clears the previous result and says why in the status;
* the work folder's users' files are removed when the server stops, by Ctrl-C (SIGINT) or SIGTERM.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import FoleykitError, InputError

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no analytics, no version check

try:
    import gradio as gr
except ImportError:  # pragma: no cover - the app extra is missing
    raise FoleykitError("the web app needs gradio: pip install 'foleykit[app]'") from None

from .media import (AUDIO_SUFFIXES, IMAGE_SUFFIXES, SafeServing, check_upload, fit_image, folder_size, still_video,
                    zip_files)

log = logging.getLogger(__name__)

__all__ = ["AppConfig", "build_app", "launch_app", "available_methods"]

#: Environment gradio reads: no analytics or version check, telemetry off.
_QUIET_ENV = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_SERVER_NAME": "127.0.0.1",
}


@dataclass
class AppConfig:
    """What the app loads and the limits it enforces."""

    models: str | None = None  # default | tiny | DIR (None: $FOLEYKIT_MODELS or default)
    grounding: str | None = None  # trained grounding module folder (objects)
    mapper: str | None = None  # trained V2A-Mapper folder (mapper)
    device: str = "auto"
    dtype: str | None = None
    workdir: Path | None = None  # None: a fresh temporary folder
    max_upload_mb: int = 50  # per file
    max_request_mb: int = 100  # all files of one upload request together
    quota_mb: int = 4096  # the work folder (uploads and results of every session)
    max_image_side: int = 1280
    max_video_s: float = 120.0
    max_duration_s: float = 30.0
    default_duration_s: float = 10.0
    default_steps: int = 12
    max_sources: int = 8  # per request: clicked objects + text sources + audio clips
    max_text_chars: int = 200  # per text source
    loudness: float | None = None  # default loudness target (LUFS); None: peak-normalised
    auth: tuple[str, str] | None = None  # (user, password) asked by the page
    session_ttl_s: float = 24 * 3600.0
    preload: bool = True
    extra_launch: dict = field(default_factory=dict)


#: Stem players shown under the result (the zip holds every stem).
STEM_PLAYERS = 12
#: The loudness choices of the page: label -> LUFS target (None: peak-normalised, the default).
LOUDNESS_CHOICES = {"peak -1 dBFS (default)": None, "-23 LUFS (EBU R128, broadcast)": -23.0,
                    "-16 LUFS (podcast)": -16.0, "-14 LUFS (streaming)": -14.0}
#: What each method does with the selections on the picture.
METHOD_NOTES = {
    "objects": "Objects: each clicked object (and each text) gets its own sound; the result is their blend.",
    "sources": "Sources: clicked objects, texts and audio clips are sound sources, with what the detector finds.",
    "mapper": "Mapper: hears the whole picture. **Selections and texts are not used by this method.**",
}


def available_methods() -> list[str]:
    """The app's methods that this foleykit has: objects, sources (when present), mapper."""
    from .. import api

    return [m for m in ("objects", "sources", "mapper") if m in api.METHODS]


_ABS_PATH = re.compile(r"(?<![\w.])(?:/[^/\s'\"(),;:]+)+/([^/\s'\"(),;:]+)")


def scrub_paths(text: str) -> str:
    """``text`` with every absolute path replaced by its last part (a user sees their file's upload name,
    which is what gradio keeps as the file name, never where the server stores it)."""
    return _ABS_PATH.sub(r"\1", text)


def _message(exc: BaseException) -> str:
    """One line for the user, free of server paths. A user error is logged as one line; anything else is a
    fault, logged with its traceback."""
    if isinstance(exc, gr.Error):
        msg = scrub_paths(str(exc.message))
        log.info("refused: %s", msg)
        return msg
    if isinstance(exc, FoleykitError):
        msg = scrub_paths(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        log.info("refused: %s", msg)
        return msg
    log.error("internal error in the app", exc_info=exc)
    return scrub_paths(f"internal error ({type(exc).__name__}: {exc}); the server log has the details".splitlines()[0])


def _error(exc: BaseException) -> Exception:
    return gr.Error(_message(exc))


class _App:
    """Handlers and per-session files. State per browser session is a small dict (gr.State)."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.workdir = Path(config.workdir).resolve()
        self.sessions = self.workdir / "sessions"
        self.sessions.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    # -- pipelines ---------------------------------------------------------------------------
    def pipeline(self, method: str):
        from .. import api

        c = self.config
        if method == "objects":
            return api.load_pipeline("objects", c.models, None, c.device, c.dtype, c.grounding)
        if method == "mapper":
            return api.load_pipeline("mapper", c.models, c.mapper, c.device, c.dtype)
        if method == "sources":
            return api.load_pipeline("sources", c.models, None, c.device, c.dtype, None, None)
        raise InputError(f"method {method!r} is not available here")

    def preload(self) -> None:
        methods = available_methods()
        if "objects" in methods:
            pipe = self.pipeline("objects")
            _ = pipe.segmenter
            if pipe.free is not None:  # training-free route: the bridge's vocabulary, embedded once (or read)
                pipe.free.bridge()

    # -- sessions ----------------------------------------------------------------------------
    def _new_session(self, incoming: str | os.PathLike | None = None) -> dict:
        self._prune()
        self._make_room(incoming)
        sid = uuid.uuid4().hex
        d = self.sessions / sid
        d.mkdir(parents=True)
        return {"sid": sid, "dir": str(d), "image": None, "video": None, "video_s": None, "frame_s": None,
                "objects": []}

    def _prune(self) -> None:
        now = time.time()
        for d in self.sessions.iterdir():
            try:
                if d.is_dir() and now - d.stat().st_mtime > self.config.session_ttl_s:
                    shutil.rmtree(d, ignore_errors=True)
            except OSError:
                continue

    def _make_room(self, incoming: str | os.PathLike | None = None) -> None:
        """Keep the work folder under its quota: delete the oldest sessions first, then the oldest uploads in
        gradio's cache (never ``incoming``, the upload being handled); refuse when that is not enough."""
        quota = self.config.quota_mb * 2**20
        incoming_p = Path(incoming).resolve() if incoming else None
        with self._lock:
            used = folder_size(self.workdir)
            if used <= quota:
                return
            cache = self.workdir / "gradio-cache"
            candidates = [d for d in self.sessions.iterdir() if d.is_dir()]
            candidates.sort(key=lambda d: d.stat().st_mtime)
            uploads = [d for d in cache.iterdir() if d.is_dir()] if cache.is_dir() else []
            uploads.sort(key=lambda d: d.stat().st_mtime)
            for d in candidates + uploads:
                if used <= quota:
                    break
                if incoming_p is not None and incoming_p.is_relative_to(d.resolve()):
                    continue
                size = folder_size(d)
                shutil.rmtree(d, ignore_errors=True)
                used -= size
                log.info("work folder over its %d MB quota: removed %s", self.config.quota_mb, d.name)
            if used > quota:
                raise InputError(f"the server's work folder is full (quota {self.config.quota_mb} MB); try again later")

    def cleanup(self) -> None:
        """Remove every user's files (sessions, gradio's upload and examples caches) from the work folder."""
        for sub in ("sessions", "gradio-cache", "gradio-examples"):
            shutil.rmtree(self.workdir / sub, ignore_errors=True)

    @staticmethod
    def _image(state: dict | None) -> Image.Image:
        if not state or not state.get("image"):
            raise InputError("upload an image or a video first")
        with Image.open(state["image"]) as im:
            return im.convert("RGB")

    def _overlay(self, state: dict) -> np.ndarray:
        from ..encoders.segmenter import mask_overlay

        img = self._image(state)
        objs = state["objects"]
        if not objs:
            return np.asarray(img)
        return np.asarray(mask_overlay(img, [o["mask"] for o in objs], points=[o["point"] for o in objs]))

    def _objects_md(self, state: dict | None) -> str:
        objs = (state or {}).get("objects") or []
        limit = f" (at most {self.config.max_sources} sources per request: clicks, texts and audio clips together)"
        if not objs:
            return "No objects selected. Click on the picture to select one; click it again to remove it." + limit
        lines = [f"{i + 1}. click at ({o['point'][0]}, {o['point'][1]}) — {100 * o['area']:.1f}% of the picture"
                 for i, o in enumerate(objs)]
        return "**Selected objects**" + limit + "\n\n" + "\n".join(lines)

    # -- handlers ----------------------------------------------------------------------------
    def on_upload(self, file_path: str | None, state: dict | None):
        if not file_path:
            return None, gr.update(visible=False), gr.update(), self._objects_md(None), None, "", gr.update()
        state = None
        try:
            from ..pipelines.mapper import is_video_path

            max_bytes = self.config.max_upload_mb * 2**20
            state = self._new_session(incoming=file_path)
            d = Path(state["dir"])
            if is_video_path(file_path):
                from ..io.video import probe_video

                src = check_upload(file_path, max_bytes=max_bytes, allowed=_video_suffixes(), what="video")
                info = probe_video(src)
                if info.duration_s > self.config.max_video_s:
                    raise InputError(f"video {src.name} is {info.duration_s:.1f} s long; the limit is "
                                     f"{self.config.max_video_s:g} s")
                video = d / f"input{src.suffix.lower()}"
                shutil.copyfile(src, video)
                state.update(video=str(video), video_s=float(info.duration_s))
                self._set_frame(state, info.duration_s / 2)
                frame_update = gr.update(visible=True, minimum=0.0, maximum=round(max(info.duration_s - 0.01, 0.0), 2),
                                         value=round(info.duration_s / 2, 2))
                dur_update = gr.update(value=min(round(info.duration_s, 2), self.config.max_duration_s))
                status = f"Video loaded ({info.duration_s:.1f} s); choose a frame, then click on objects."
                if info.note:  # a truncated file: only what decodes is offered and used
                    status += f"\n\nNote: {scrub_paths(info.note)}"
            else:
                from ..io.image import load_image

                src = check_upload(file_path, max_bytes=max_bytes, allowed=IMAGE_SUFFIXES, what="image")
                img = fit_image(load_image(src), self.config.max_image_side)
                img.save(d / "image.png")
                state["image"] = str(d / "image.png")
                frame_update = gr.update(visible=False)
                dur_update = gr.update()
                status = f"Image loaded ({img.size[0]}x{img.size[1]}); click on the objects that should sound."
            self._warm(state)
            return self._overlay(state), frame_update, dur_update, self._objects_md(state), state, status, gr.update()
        except Exception as exc:  # noqa: BLE001 - every error becomes a message in the page
            # Refuse the upload: say why, and empty the upload box so another file can be dropped.
            msg = _message(exc)
            if state is not None:
                shutil.rmtree(state["dir"], ignore_errors=True)
            self._discard_upload(file_path)
            gr.Warning(msg)
            return (None, gr.update(visible=False), gr.update(), self._objects_md(None), None,
                    f"**Upload refused:** {msg}", gr.update(value=None))

    def _discard_upload(self, file_path: str | os.PathLike) -> None:
        """Delete a refused upload from gradio's cache at once (it is never kept, let alone served)."""
        p = Path(file_path).resolve()
        cache = (self.workdir / "gradio-cache").resolve()
        if p.is_relative_to(cache) and p.is_file():
            p.unlink(missing_ok=True)
            if p.parent != cache:
                shutil.rmtree(p.parent, ignore_errors=True)

    def _set_frame(self, state: dict, t: float) -> None:
        from ..io.video import read_frames

        t = min(max(0.0, float(t)), max(state["video_s"] - 1e-3, 0.0))
        frame = read_frames(state["video"], 1, start_s=t, end_s=min(t + 2e-3, state["video_s"]),
                            max_side=self.config.max_image_side)[0]
        path = Path(state["dir"]) / "image.png"
        frame.save(path)
        state.update(image=str(path), frame_s=t)
        state.setdefault("objects", [])

    def _warm(self, state: dict) -> None:
        """Compute the SAM image embedding now, so that clicks only run the mask decoder."""
        if "objects" in available_methods():
            self.pipeline("objects").segmenter.set_image(self._image(state))

    def on_frame(self, t: float, state: dict | None):
        """A new frame keeps the selection: each clicked point is segmented again on the new frame (the
        object may have moved); a point that finds nothing there is dropped, and the status says so."""
        try:
            if not state or not state.get("video"):
                raise InputError("upload a video to choose a frame")
            self._set_frame(state, t)
            kept, dropped = self._reselect(state)
            self._warm(state)
            status = f"Frame at {state['frame_s']:.2f} s."
            if kept:
                status += f" {kept} selected object(s) kept: segmented again at the same points on this frame."
            if dropped:
                status += f" {dropped} selection(s) found nothing on this frame and were removed."
            return self._overlay(state), self._objects_md(state), state, status
        except Exception as exc:  # noqa: BLE001
            raise _error(exc) from None

    def _reselect(self, state: dict) -> tuple[int, int]:
        objs = state.get("objects") or []
        if not objs:
            return 0, 0
        seg = self.pipeline("objects").segmenter
        masks = seg.segment_image(self._image(state), points=[tuple(o["point"]) for o in objs]).masks
        kept = [{**o, "mask": m, "area": float(m.mean())} for o, m in zip(objs, masks) if m.any()]
        state["objects"] = kept
        return len(kept), len(objs) - len(kept)

    def on_click(self, state: dict | None, evt) -> tuple:
        try:
            img = self._image(state)
            idx = getattr(evt, "index", None)
            if not isinstance(idx, (list, tuple)) or len(idx) != 2:
                raise InputError("click inside the picture to select an object")
            x, y = int(idx[0]), int(idx[1])
            w, h = img.size
            if not (0 <= x < w and 0 <= y < h):
                raise InputError(f"click ({x}, {y}) lies outside the {w}x{h} picture")
            objs = state["objects"]
            hit = next((i for i, o in enumerate(objs) if o["mask"][y, x]), None)
            if hit is not None:
                objs.pop(hit)
            else:
                if len(objs) >= self.config.max_sources:
                    raise InputError(f"at most {self.config.max_sources} sources per request; click an object to "
                                     "remove it first")
                seg = self.pipeline("objects").segmenter
                mask = seg.segment_image(img, points=[(x, y)]).masks[0]
                if not mask.any():
                    raise InputError(f"no object found at ({x}, {y}); click elsewhere")
                objs.append({"point": [x, y], "mask": mask, "area": float(mask.mean())})
            return self._overlay(state), self._objects_md(state), state
        except Exception as exc:  # noqa: BLE001
            raise _error(exc) from None

    def on_clear(self, state: dict | None):
        if state:
            state["objects"] = []
        try:
            overlay = self._overlay(state) if state and state.get("image") else None
        except Exception:  # noqa: BLE001
            overlay = None
        return overlay, self._objects_md(state), state

    def on_generate(self, state, method, texts, audio_files, duration, steps, seed, guidance, context, progress,
                    loudness=None):
        """Generate; returns (result audio path or None, download paths, status, [(stem label, path)]).

        Never raises: a failed run returns no result (the page clears the previous one) and the error as
        its status."""
        try:
            return self._generate(state, method, texts, audio_files, duration, steps, seed, guidance, context,
                                  progress, loudness)
        except Exception as exc:  # noqa: BLE001 - every error becomes a message in the page
            msg = _message(exc)
            gr.Warning(msg)
            return None, [], f"**Failed:** {msg}", []

    def _budget(self, method: str, state: dict, texts: str | None, audio_files) -> tuple[list[str], list]:
        """The request's text lines and audio files, refused when over the per-request budget."""
        from ..api import check_budget

        raw = texts or ""
        if len(raw) > self.config.max_text_chars * (self.config.max_sources + 1):
            raise InputError(f"the text sources are {len(raw)} characters long; at most "
                             f"{self.config.max_text_chars} per line and {self.config.max_sources} lines")
        lines = [t.strip() for t in raw.splitlines() if t.strip()]
        audios = [f if isinstance(f, str) else getattr(f, "name", None) for f in audio_files or []]
        clicks = state.get("objects") or []
        if method == "mapper":
            return [], []
        check_budget(clicks=clicks, texts=lines, audios=audios if method == "sources" else [],
                     limit=self.config.max_sources, max_text_chars=self.config.max_text_chars)
        return lines, audios

    def _generate(self, state, method, texts, audio_files, duration, steps, seed, guidance, context, progress,
                  loudness):
        from ..io.outputs import check_loudness, level_outputs, write_sound

        img = self._image(state)
        duration = float(duration)
        if not (0 < duration <= self.config.max_duration_s):
            raise InputError(f"duration must be between 0 and {self.config.max_duration_s:g} s")
        if method not in available_methods():
            raise InputError(f"unknown method {method!r}")
        text_list, audios = self._budget(method, state, texts, audio_files)
        target = check_loudness(LOUDNESS_CHOICES.get(loudness, loudness) if loudness is not None
                                else self.config.loudness)
        seed_v = None if seed is None or int(seed) < 0 else int(seed)
        steps_v = int(steps)
        job = Path(state["dir"]) / f"job-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"
        job.mkdir(parents=True)

        def report(frac: float, msg: str) -> None:
            progress(0.02 + 0.9 * min(max(frac, 0.0), 1.0), desc=f"{method}: {msg}")

        notes: list[str] = []
        stems: list[Path] = []
        if method == "objects":
            clicks = [tuple(o["point"]) for o in state["objects"]]
            if not clicks and not text_list:
                raise InputError("select at least one object: click on the picture or add a text source")
            pipe = self.pipeline("objects")
            result = pipe(img, clicks=clicks, texts=text_list, context=float(context), duration_s=duration,
                          num_inference_steps=steps_v, guidance_scale=float(guidance), seed=seed_v,
                          progress=report)
            from ..pipelines.objects import write_objects_outputs

            progress(0.93, desc="objects: writing the blend and stems")
            record = {"inputs": {"source": Path(state["video"] or state["image"]).name,
                                 "frame_s": state.get("frame_s")},
                      "parameters": {"method": "objects", "clicks": [list(c) for c in clicks], "texts": text_list,
                                     "duration": duration, "steps": steps_v, "guidance": float(guidance),
                                     "context": float(context), "loudness": target},
                      "seed": result.seed, **result.record}
            outputs, _, notes = write_objects_outputs(result, job / "blend.wav", record=record,
                                                      stems_dir=job / "stems", loudness=target)
            blend, stems = outputs[0], outputs[1:]
            notes = list(result.record.get("notes", [])) + notes
            if result.record["grounding"] is not None and not result.record["grounding"].get("trained", False):
                notes.insert(0, "the grounding module was never trained, so the sound is not meaningful.")
            sound = result
        elif method == "mapper":
            if state.get("objects") or text_list:
                notes.append("the mapper method hears the whole picture: the selections and texts were not used.")
            pipe = self.pipeline("mapper")
            sound = pipe(img, duration_s=duration, num_inference_steps=steps_v, guidance_scale=float(guidance),
                         seed=seed_v, progress=report)
            progress(0.93, desc="mapper: writing the sound")
            levels = level_outputs(sound.waveform, [], sound.sample_rate, loudness=target)
            blend = job / "sound.wav"
            write_sound(blend, levels.mix, sound.sample_rate, normalize=levels.normalize)
            notes += [levels.record["mix"]["note"]] if "note" in levels.record.get("mix", {}) else []
        else:  # sources
            sound, blend, stems, more = self._generate_sources(state, job, text_list, audios, duration, steps_v,
                                                              seed_v, float(guidance), target, report)
            notes += more
        downloads = [str(blend)]
        if stems:
            downloads.append(str(zip_files(stems, job / "stems.zip")))
        progress(0.97, desc=f"{method}: writing the mp4")
        downloads.append(str(self._mp4(state, img, blend, job)))
        status = f"Done ({method}): {sound.duration_s:.2f} s at {sound.sample_rate} Hz, seed {sound.seed}."
        route = (getattr(sound, "record", None) or {}).get("route")
        if route:  # objects, sources: trained / released / training-free (pipelines/training_free.py)
            status += f" Route: {route['name']} ({route['why']})."
        if target is not None:
            status += f" Loudness target {target:g} LUFS."
        for n in notes:
            status += f"\n\nNote: {scrub_paths(n)}"
        return str(blend), downloads, status, [(self._stem_label(p), str(p)) for p in stems]

    @staticmethod
    def _stem_label(path: Path) -> str:
        return Path(path).stem.replace("-", " ")

    def _mp4(self, state: dict, img: Image.Image, blend: Path, job: Path) -> Path:
        """The result as an mp4: the input video (its usable span) or the still picture, with the sound at
        the level of the wav (its samples are muxed)."""
        import soundfile as sf

        from ..io.video import mux_audio

        wave, sr = sf.read(str(blend), dtype="float32", always_2d=True)
        mp4 = job / "with-sound.mp4"
        if state.get("video"):
            mux_audio(state["video"], wave.T, sr, mp4)
        else:
            silent = still_video(img, wave.shape[0] / sr, job / ".still.mp4")
            mux_audio(silent, wave.T, sr, mp4)
            silent.unlink(missing_ok=True)
        return mp4

    def _generate_sources(self, state, job, texts, audio_files, duration, steps, seed, guidance, loudness, report):
        """The ``sources`` method (SS2A) through the public API: clicked regions, text and audio sources;
        returns (mix, mix path, stem paths, notes)."""
        from .. import api

        audios = []
        for p in audio_files or []:
            audios.append(str(check_upload(p, max_bytes=self.config.max_upload_mb * 2**20, allowed=AUDIO_SUFFIXES,
                                           what="audio source")))
        out = job / "sound.wav"
        # The clicked objects' masks are region sources too (SS2A takes masks of the picture).
        masks = [o["mask"] for o in state.get("objects") or []]
        res = api.generate(state["image"], out, method="sources", models=self.config.models, seed=seed,
                           duration=duration, steps=steps, guidance=guidance, device=self.config.device,
                           dtype=self.config.dtype, progress=report, texts=texts, audios=audios, masks=masks,
                           stems=job / "stems", overwrite=True, loudness=loudness,
                           max_prompts=self.config.max_sources)
        return res.sound, out, res.outputs[1:], list(res.sound.record.get("notes", []))


def _video_suffixes() -> set[str]:
    from ..pipelines.mapper import VIDEO_SUFFIXES

    return set(VIDEO_SUFFIXES)


def _prepare_env(workdir: Path) -> None:
    for k, v in _QUIET_ENV.items():
        os.environ.setdefault(k, v)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    # gradio's upload cache and examples cache live inside the work folder: nothing else is served.
    os.environ["GRADIO_TEMP_DIR"] = str(workdir / "gradio-cache")
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(workdir / "gradio-examples")
    (workdir / "gradio-cache").mkdir(parents=True, exist_ok=True)


def _remove_users_files(workdir: Path, created: bool) -> None:
    """At exit: a temporary work folder goes entirely; a given one loses the users' files only."""
    if created:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        for sub in ("sessions", "gradio-cache", "gradio-examples"):
            shutil.rmtree(workdir / sub, ignore_errors=True)


def build_app(config: AppConfig | None = None, **overrides: Any):
    """Build the app's ``gr.Blocks`` (queued; not launched). ``overrides`` replace fields of ``config``."""
    import atexit

    config = replace(config or AppConfig(), **overrides)
    created = config.workdir is None
    if created:  # a fresh temporary folder, removed when the process ends
        config.workdir = Path(tempfile.mkdtemp(prefix="foleykit-app-"))
    config.workdir = Path(config.workdir).expanduser().resolve()
    config.workdir.mkdir(parents=True, exist_ok=True)
    atexit.register(_remove_users_files, config.workdir, created)
    _prepare_env(config.workdir)

    methods = available_methods()
    if not methods:
        raise FoleykitError("no generation method is available for the app")
    app = _App(config)
    if config.preload:
        app.preload()
    default_loudness = next((k for k, v in LOUDNESS_CHOICES.items() if v == config.loudness), None)
    loudness_choices = list(LOUDNESS_CHOICES) + ([] if default_loudness else [f"{config.loudness:g} LUFS"])

    with gr.Blocks(title="foleykit — hear the objects in a picture", analytics_enabled=False,
                   delete_cache=(3600, 24 * 3600)) as demo:
        gr.Markdown("## foleykit — click the objects that should sound\n"
                    "Upload an image (or a video and pick a frame), click objects to select them "
                    "(click again to remove), choose a method and generate. "
                    f"Each request takes at most {config.max_sources} sources (clicked objects, text lines and "
                    f"audio clips together), texts of at most {config.max_text_chars} characters.")
        state = gr.State(None)
        with gr.Row():
            with gr.Column(scale=3):
                upload = gr.File(label=f"Image or video (≤ {config.max_upload_mb} MB)", type="filepath",
                                 file_types=sorted(IMAGE_SUFFIXES | _video_suffixes()), elem_id="upload")
                frame = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Video frame (s) — the selection is kept",
                                  visible=False, elem_id="frame")
                canvas = gr.Image(label="Picture — click to select objects", type="numpy", interactive=False,
                                  elem_id="canvas", format="png", buttons=["fullscreen"])
                objects_md = gr.Markdown(app._objects_md(None), elem_id="objects")
                clear = gr.Button("Clear selection", elem_id="clear")
            with gr.Column(scale=2):
                method = gr.Radio(methods, value=methods[0], label="Method", elem_id="method")
                method_md = gr.Markdown(METHOD_NOTES.get(methods[0], ""), elem_id="method-note")
                texts = gr.Textbox(label=f"Text sources (one per line, ≤ {config.max_text_chars} characters each; "
                                         "objects: named objects)", lines=2, elem_id="texts",
                                   max_length=(config.max_text_chars + 1) * config.max_sources)
                audio_sources = gr.File(label="Audio sources (sources method)", file_count="multiple",
                                        file_types=sorted(AUDIO_SUFFIXES), visible="sources" in methods,
                                        elem_id="audio-sources")
                duration = gr.Slider(0.5, config.max_duration_s, value=config.default_duration_s, step=0.5,
                                     label="Duration (s)", elem_id="duration")
                steps = gr.Slider(1, 200, value=config.default_steps, step=1, label="Diffusion steps", elem_id="steps")
                guidance = gr.Slider(0.0, 6.0, value=2.0, step=0.1, label="Guidance scale (paper: 2.0)",
                                     elem_id="guidance")
                context = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Scene context in the blend (objects)",
                                    elem_id="context")
                loudness = gr.Dropdown(loudness_choices, value=default_loudness or loudness_choices[-1],
                                       label="Output level (ITU-R BS.1770 loudness, true peak ≤ -1 dBTP)",
                                       elem_id="loudness")
                seed = gr.Number(value=-1, precision=0, label="Seed (-1 = random)", elem_id="seed")
                go = gr.Button("Generate", variant="primary", elem_id="generate")
                status = gr.Markdown("", elem_id="status")
                # The browser's own <audio controls> player (no waveform view): plain, accessible, testable.
                audio = gr.Audio(label="Result (blend)", type="filepath", interactive=False, elem_id="result-audio",
                                 waveform_options=gr.WaveformOptions(show_recording_waveform=False))
                with gr.Column(elem_id="downloads"):  # one file each: nothing to "remove"
                    dl_wav = gr.File(label="Download: sound (wav)", interactive=False, visible=False,
                                     elem_id="download-wav")
                    dl_zip = gr.File(label="Download: stems (zip)", interactive=False, visible=False,
                                     elem_id="download-stems")
                    dl_mp4 = gr.File(label="Download: video with the sound (mp4)", interactive=False, visible=False,
                                     elem_id="download-mp4")
                with gr.Accordion("Stems — one player per object or source", open=True, elem_id="stems"):
                    stem_players = [gr.Audio(type="filepath", interactive=False, visible=False,
                                             elem_id=f"stem-{i + 1}",
                                             waveform_options=gr.WaveformOptions(show_recording_waveform=False))
                                    for i in range(STEM_PLAYERS)]

        interactive = dict(concurrency_limit=4, concurrency_id="interactive")
        upload.upload(app.on_upload, [upload, state],
                      [canvas, frame, duration, objects_md, state, status, upload], **interactive)
        upload.clear(app.on_upload, [gr.State(None), state],
                     [canvas, frame, duration, objects_md, state, status, upload], **interactive)
        frame.release(app.on_frame, [frame, state], [canvas, objects_md, state, status], **interactive)
        method.change(lambda m: METHOD_NOTES.get(m, ""), [method], [method_md], queue=False)

        def on_select(st, evt: gr.SelectData):
            return app.on_click(st, evt)

        canvas.select(on_select, [state], [canvas, objects_md, state], **interactive)
        clear.click(app.on_clear, [state], [canvas, objects_md, state], **interactive)

        def on_generate(st, m, tx, au, du, sp, sd, gu, cx, ld, progress=gr.Progress()):
            result, downloads, text, stems = app.on_generate(st, m, tx, au, du, sp, sd, gu, cx, progress, ld)
            by_suffix = {Path(d).suffix: d for d in downloads}
            files = [gr.update(value=by_suffix.get(sfx), visible=sfx in by_suffix) for sfx in (".wav", ".zip", ".mp4")]
            players = [gr.update(value=stems[i][1], label=f"Stem {i + 1}: {stems[i][0]}", visible=True)
                       if i < len(stems) else gr.update(value=None, visible=False) for i in range(STEM_PLAYERS)]
            if len(stems) > STEM_PLAYERS:
                text += f"\n\nNote: {len(stems)} stems; the first {STEM_PLAYERS} have players, the zip holds all."
            return [gr.update(value=result), *files, text, *players]

        go.click(on_generate, [state, method, texts, audio_sources, duration, steps, seed, guidance, context, loudness],
                 [audio, dl_wav, dl_zip, dl_mp4, status, *stem_players], concurrency_limit=1, concurrency_id="generate")

    demo.queue(default_concurrency_limit=1, max_size=32)
    demo.foleykit_config = config  # type: ignore[attr-defined]
    demo.foleykit_app = app  # type: ignore[attr-defined]
    return demo


def launch_options(demo) -> dict:
    """``demo.launch`` keywords that keep serving inside the work folder and off the network."""
    from starlette.middleware import Middleware

    config: AppConfig = demo.foleykit_config
    sessions = Path(config.workdir) / "sessions"
    sessions.mkdir(parents=True, exist_ok=True)
    opts = dict(
        # Only the app's own results are "allowed" (served inline by type); uploads in gradio's cache are
        # not, so gradio itself serves them as attachments. SafeServing makes both safe regardless.
        allowed_paths=[str(sessions)],
        max_file_size=f"{config.max_upload_mb}mb",
        app_kwargs={"middleware": [Middleware(SafeServing, max_request_bytes=config.max_request_mb * 2**20)]},
        auth=config.auth,
        share=False,
        ssr_mode=False,
        mcp_server=False,
        enable_monitoring=False,
        pwa=False,
        show_error=True,
        footer_links=[],
    )
    opts.update(config.extra_launch)
    return opts


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """``USER:PASSWORD`` (the password may contain ':') as gradio's auth pair; None stays None."""
    if value is None:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise InputError("--auth takes USER:PASSWORD (both non-empty)")
    return user, password


def bind_warning(host: str, auth: tuple[str, str] | None) -> str | None:
    """The warning for a server that others can reach (any address but loopback), or None."""
    if host in ("127.0.0.1", "localhost", "::1") or host.startswith("127."):
        return None
    who = "anyone who can reach this address" + ("" if auth else ", with no password (pass --auth USER:PASSWORD)")
    return f"serving on {host}: {who} can use the app and its models"


def launch_app(
    *,
    models: str | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
    grounding: str | None = None,
    mapper: str | None = None,
    workdir: str | os.PathLike | None = None,
    device: str = "auto",
    block: bool = True,
    config: AppConfig | None = None,
    quiet: bool = False,
    auth: tuple[str, str] | None = None,
    loudness: float | None = None,
):
    """Build and serve the app (``foleykit app``). With ``block=False`` it returns the running Blocks.

    Blocking, it stops on Ctrl-C (SIGINT) or SIGTERM alike, and the users' files go with it."""
    cfg = config or AppConfig(models=models, grounding=grounding, mapper=mapper, device=device,
                              workdir=Path(workdir) if workdir else None, auth=auth, loudness=loudness)
    warning = bind_warning(host, cfg.auth)
    if warning:
        log.warning("warning: %s", warning)
    if not port:  # 0: any free port
        import socket

        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
    demo = build_app(cfg)
    if block and threading.current_thread() is threading.main_thread():
        def stop(signum, _frame):
            log.info("signal %d: removing the users' files and stopping", signum)
            demo.foleykit_app.cleanup()
            raise KeyboardInterrupt  # gradio's own Ctrl-C path closes the server

        signal.signal(signal.SIGTERM, stop)
    try:
        demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=quiet,
                    **launch_options(demo))
    finally:
        if block:
            demo.foleykit_app.cleanup()
    return demo
