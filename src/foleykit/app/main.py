"""The gradio app: image/video upload, click-to-select objects with a mask overlay, generate, listen, download.

Safety and robustness:

* one queue; generation runs one job at a time (``default_concurrency_limit=1``), clicks and uploads in
  their own small pool, so a second user waits (with a queue position) instead of crashing the server;
* uploads: size limited (``max_file_size`` and a check in the handler), type checked by suffix and by
  decoding; images are downscaled to ``max_image_side``; videos limited to ``max_video_s``;
* files: gradio's upload cache and examples cache are put inside the app's own work folder and
  ``allowed_paths`` is that folder only, so nothing outside it is ever served;
* no phone-home: analytics off (``GRADIO_ANALYTICS_ENABLED=False``), no share link, no SSR node server,
  the default theme's fonts are served locally;
* user errors (a click off the image, an unreadable upload, ...) come back as one-line messages in the
  page; the server keeps serving.
"""

from __future__ import annotations

import logging
import os
import shutil
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

from .media import AUDIO_SUFFIXES, IMAGE_SUFFIXES, check_upload, fit_image, still_video, zip_files

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
    max_upload_mb: int = 50
    max_image_side: int = 1280
    max_video_s: float = 120.0
    max_duration_s: float = 30.0
    default_duration_s: float = 10.0
    default_steps: int = 12
    max_objects: int = 8
    session_ttl_s: float = 24 * 3600.0
    preload: bool = True
    extra_launch: dict = field(default_factory=dict)


def available_methods() -> list[str]:
    """The app's methods that this foleykit has: objects, sources (when present), mapper."""
    from .. import api

    return [m for m in ("objects", "sources", "mapper") if m in api.METHODS]


def _message(exc: BaseException) -> str:
    """One line for the user: the message of a foleykit error, else a short internal-error line (logged)."""
    if isinstance(exc, gr.Error):
        return str(exc.message)
    if isinstance(exc, FoleykitError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    log.error("internal error in the app", exc_info=exc)
    return f"internal error: {type(exc).__name__}: {exc}".splitlines()[0]


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
        raise InputError(f"method {method!r} is not available here")

    def preload(self) -> None:
        methods = available_methods()
        if "objects" in methods:
            pipe = self.pipeline("objects")
            _ = pipe.segmenter
            if pipe.free is not None:  # training-free route: the bridge's vocabulary, embedded once (or read)
                pipe.free.bridge()

    # -- sessions ----------------------------------------------------------------------------
    def _new_session(self) -> dict:
        self._prune()
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

    @staticmethod
    def _objects_md(state: dict | None) -> str:
        objs = (state or {}).get("objects") or []
        if not objs:
            return "No objects selected. Click on the picture to select one; click it again to remove it."
        lines = [f"{i + 1}. click at ({o['point'][0]}, {o['point'][1]}) — {100 * o['area']:.1f}% of the picture"
                 for i, o in enumerate(objs)]
        return "**Selected objects**\n\n" + "\n".join(lines)

    # -- handlers ----------------------------------------------------------------------------
    def on_upload(self, file_path: str | None, state: dict | None):
        if not file_path:
            return None, gr.update(visible=False), gr.update(), self._objects_md(None), None, "", gr.update()
        state = None
        try:
            from ..pipelines.mapper import is_video_path

            max_bytes = self.config.max_upload_mb * 2**20
            state = self._new_session()
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
            gr.Warning(msg)
            return (None, gr.update(visible=False), gr.update(), self._objects_md(None), None,
                    f"**Upload refused:** {msg}", gr.update(value=None))

    def _set_frame(self, state: dict, t: float) -> None:
        from ..io.video import read_frames

        t = min(max(0.0, float(t)), max(state["video_s"] - 1e-3, 0.0))
        frame = read_frames(state["video"], 1, start_s=t, end_s=min(t + 2e-3, state["video_s"]),
                            max_side=self.config.max_image_side)[0]
        path = Path(state["dir"]) / "image.png"
        frame.save(path)
        state.update(image=str(path), frame_s=t, objects=[])

    def _warm(self, state: dict) -> None:
        """Compute the SAM image embedding now, so that clicks only run the mask decoder."""
        if "objects" in available_methods():
            self.pipeline("objects").segmenter.set_image(self._image(state))

    def on_frame(self, t: float, state: dict | None):
        try:
            if not state or not state.get("video"):
                raise InputError("upload a video to choose a frame")
            self._set_frame(state, t)
            self._warm(state)
            return self._overlay(state), self._objects_md(state), state
        except Exception as exc:  # noqa: BLE001
            raise _error(exc) from None

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
                if len(objs) >= self.config.max_objects:
                    raise InputError(f"at most {self.config.max_objects} objects; click one to remove it first")
                seg = self.pipeline("objects").segmenter
                seg.set_image(img)
                mask = seg.masks(points=[(x, y)])[0]
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

    def on_generate(self, state, method, texts, audio_files, duration, steps, seed, guidance, context, progress):
        try:
            img = self._image(state)
            job = Path(state["dir"]) / f"job-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"
            job.mkdir(parents=True)
            text_list = [t.strip() for t in (texts or "").splitlines() if t.strip()]
            duration = float(duration)
            if not (0 < duration <= self.config.max_duration_s):
                raise InputError(f"duration must be between 0 and {self.config.max_duration_s:g} s")
            seed_v = None if seed is None or int(seed) < 0 else int(seed)
            steps_v = int(steps)

            def report(frac: float, msg: str) -> None:
                progress(frac, desc=msg)

            downloads: list[str] = []
            notes: list[str] = []
            if method == "objects":
                clicks = [tuple(o["point"]) for o in state["objects"]]
                if not clicks and not text_list:
                    raise InputError("select at least one object: click on the picture or add a text source")
                pipe = self.pipeline("objects")
                result = pipe(img, clicks=clicks, texts=text_list, context=float(context), duration_s=duration,
                              num_inference_steps=steps_v, guidance_scale=float(guidance), seed=seed_v,
                              progress=report)
                from ..pipelines.objects import write_objects_outputs

                record = {"inputs": {"source": Path(state["video"] or state["image"]).name,
                                     "frame_s": state.get("frame_s")},
                          "parameters": {"method": "objects", "clicks": [list(c) for c in clicks], "texts": text_list,
                                         "duration": duration, "steps": steps_v, "guidance": float(guidance),
                                         "context": float(context)},
                          "seed": result.seed, **result.record}
                outputs, _, notes = write_objects_outputs(result, job / "blend.wav", record=record,
                                                          stems_dir=job / "stems")
                blend, stems = outputs[0], outputs[1:]
                downloads.append(str(blend))
                downloads.append(str(zip_files(stems, job / "stems.zip")))
                notes = list(result.record.get("notes", [])) + notes
                sound = result
            elif method == "mapper":
                progress(0.05, desc="generating (mapper)")
                pipe = self.pipeline("mapper")
                sound = pipe(img, duration_s=duration, num_inference_steps=steps_v, guidance_scale=float(guidance),
                             seed=seed_v, progress=False)
                from ..io.audio import write_audio

                blend = write_audio(job / "sound.wav", sound.waveform, sound.sample_rate)
                downloads.append(str(blend))
            elif method == "sources":
                sound, blend = self._generate_sources(state, job, text_list, audio_files, duration, steps_v, seed_v,
                                                      float(guidance))
                downloads.append(str(blend))
            else:
                raise InputError(f"unknown method {method!r}")
            progress(0.97, desc="writing mp4")
            mp4 = job / "with-sound.mp4"
            from ..io.video import mux_audio

            if state.get("video"):
                mux_audio(state["video"], sound.waveform, sound.sample_rate, mp4)
            else:
                silent = still_video(img, sound.duration_s, job / ".still.mp4")
                mux_audio(silent, sound.waveform, sound.sample_rate, mp4)
                silent.unlink(missing_ok=True)
            downloads.append(str(mp4))
            status = f"Done: {sound.duration_s:.2f} s at {sound.sample_rate} Hz, seed {sound.seed}."
            route = (getattr(sound, "record", None) or {}).get("route")
            if route:  # objects, sources: trained / released / training-free (pipelines/training_free.py)
                status += f" Route: {route['name']} ({route['why']})."
            if method == "objects" and route and route["name"] == "trained" \
                    and not result.record["grounding"].get("trained", False):
                status += " Note: the grounding module was never trained, so the sound is not meaningful."
            for n in notes:
                status += f"\n\nNote: {n}"
            return gr.update(value=str(blend)), downloads, status
        except Exception as exc:  # noqa: BLE001
            raise _error(exc) from None

    def _generate_sources(self, state, job, texts, audio_files, duration, steps, seed, guidance):
        """The ``sources`` method (SS2A) through the public API: clicked regions, text and audio sources."""
        from .. import api

        audios = []
        for f in audio_files or []:
            p = f if isinstance(f, str) else getattr(f, "name", None)
            audios.append(str(check_upload(p, max_bytes=self.config.max_upload_mb * 2**20, allowed=AUDIO_SUFFIXES,
                                           what="audio source")))
        out = job / "sound.wav"
        try:
            # The clicked objects' masks are region sources too (SS2A takes masks of the picture).
            masks = [o["mask"] for o in state.get("objects") or []]
            res = api.generate(state["image"], out, method="sources", models=self.config.models, seed=seed,
                               duration=duration, steps=steps, guidance=guidance, device=self.config.device,
                               dtype=self.config.dtype, progress=False, texts=texts, audios=audios, masks=masks,
                               overwrite=True)
        except TypeError as exc:
            raise InputError(f"the sources method does not accept these inputs: {exc}") from None
        return res.sound, out


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


def build_app(config: AppConfig | None = None, **overrides: Any):
    """Build the app's ``gr.Blocks`` (queued; not launched). ``overrides`` replace fields of ``config``."""
    config = replace(config or AppConfig(), **overrides)
    if config.workdir is None:  # a fresh temporary folder, removed when the process ends
        import atexit

        config.workdir = Path(tempfile.mkdtemp(prefix="foleykit-app-"))
        atexit.register(shutil.rmtree, config.workdir, True)
    config.workdir = Path(config.workdir).expanduser().resolve()
    config.workdir.mkdir(parents=True, exist_ok=True)
    _prepare_env(config.workdir)

    methods = available_methods()
    if not methods:
        raise FoleykitError("no generation method is available for the app")
    app = _App(config)
    if config.preload:
        app.preload()

    with gr.Blocks(title="foleykit — hear the objects in a picture", analytics_enabled=False,
                   delete_cache=(3600, 24 * 3600)) as demo:
        gr.Markdown("## foleykit — click the objects that should sound\n"
                    "Upload an image (or a video and pick a frame), click objects to select them "
                    "(click again to remove), choose a method and generate.")
        state = gr.State(None)
        with gr.Row():
            with gr.Column(scale=3):
                upload = gr.File(label=f"Image or video (≤ {config.max_upload_mb} MB)", type="filepath",
                                 file_types=sorted(IMAGE_SUFFIXES | _video_suffixes()), elem_id="upload")
                frame = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Video frame (s)", visible=False,
                                  elem_id="frame")
                canvas = gr.Image(label="Picture — click to select objects", type="numpy", interactive=False,
                                  elem_id="canvas", format="png", buttons=["fullscreen"])
                objects_md = gr.Markdown(_App._objects_md(None), elem_id="objects")
                clear = gr.Button("Clear selection", elem_id="clear")
            with gr.Column(scale=2):
                method = gr.Radio(methods, value=methods[0], label="Method", elem_id="method")
                texts = gr.Textbox(label="Text sources (one per line; objects: named objects)", lines=2,
                                   elem_id="texts")
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
                seed = gr.Number(value=-1, precision=0, label="Seed (-1 = random)", elem_id="seed")
                go = gr.Button("Generate", variant="primary", elem_id="generate")
                status = gr.Markdown("", elem_id="status")
                # The browser's own <audio controls> player (no waveform view): plain, accessible, testable.
                audio = gr.Audio(label="Result (blend)", type="filepath", interactive=False, elem_id="result-audio",
                                 waveform_options=gr.WaveformOptions(show_recording_waveform=False))
                files = gr.File(label="Downloads: wav, stems (zip), mp4", file_count="multiple", interactive=False,
                                elem_id="downloads")

        interactive = dict(concurrency_limit=4, concurrency_id="interactive")
        upload.upload(app.on_upload, [upload, state],
                      [canvas, frame, duration, objects_md, state, status, upload], **interactive)
        upload.clear(app.on_upload, [gr.State(None), state],
                     [canvas, frame, duration, objects_md, state, status, upload], **interactive)
        frame.release(app.on_frame, [frame, state], [canvas, objects_md, state], **interactive)

        def on_select(st, evt: gr.SelectData):
            return app.on_click(st, evt)

        canvas.select(on_select, [state], [canvas, objects_md, state], **interactive)
        clear.click(app.on_clear, [state], [canvas, objects_md, state], **interactive)

        def on_generate(st, m, tx, au, du, sp, sd, gu, cx, progress=gr.Progress()):
            return app.on_generate(st, m, tx, au, du, sp, sd, gu, cx, progress)

        go.click(on_generate, [state, method, texts, audio_sources, duration, steps, seed, guidance, context],
                 [audio, files, status], concurrency_limit=1, concurrency_id="generate")

    demo.queue(default_concurrency_limit=1, max_size=32)
    demo.foleykit_config = config  # type: ignore[attr-defined]
    return demo


def launch_options(demo) -> dict:
    """``demo.launch`` keywords that keep serving inside the work folder and off the network."""
    config: AppConfig = demo.foleykit_config
    opts = dict(
        allowed_paths=[str(config.workdir)],
        max_file_size=f"{config.max_upload_mb}mb",
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
):
    """Build and serve the app (``foleykit app``). With ``block=False`` it returns the running Blocks."""
    cfg = config or AppConfig(models=models, grounding=grounding, mapper=mapper, device=device,
                              workdir=Path(workdir) if workdir else None)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: anyone who can reach this address can use the app", host)
    if not port:  # 0: any free port
        import socket

        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
    demo = build_app(cfg)
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=quiet,
                **launch_options(demo))
    return demo
