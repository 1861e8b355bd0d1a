"""The Python API, with the same names as the CLI: ``foleykit.generate(...)``.

Loading models is the slow part, so pipelines are cached per (method, models, mapper, device,
dtype, ...) for the life of the process; repeated calls (a notebook, the web app) reuse them. Every
method can be held at once: the pipelines share their frozen parts (one CLIP, CLAP and generator per
device and dtype, :mod:`foleykit.pipelines.components`).

Thread safety: :func:`generate` and :func:`load_pipeline` may be called from several threads at once.
Model loads take one process-wide lock (no two loads interleave; concurrent first calls for a method
load it once), a failed load is not cached (the next call tries again), and the shared parts lock
their lazily set state. Calls on one pipeline run concurrently; for throughput on one device, run
generations one at a time (the web app queues them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .errors import InputError, OutputError
from .io.atomic import check_output_path
from .pipelines.mapper import MapperPipeline, SoundResult, check_duration, check_input, is_video_path

METHODS = ("mapper", "objects", "sources")
#: What happens to a video's own soundtrack in an .mp4 output (see foleykit.io.video.mux_audio).
ORIGINAL_AUDIO = ("replace", "keep", "duck")
AUDIO_SUFFIXES = (".wav", ".flac")
#: The per-request budget: at most this many user-given sources of all kinds together (clicks, boxes,
#: texts, audio clips, extra images, masks); each costs an encoder pass, objects a generation each.
MAX_PROMPTS = 16
#: The longest text source, in characters (CLIP and CLAP read 77 tokens at most).
MAX_TEXT_CHARS = 300


def check_budget(*, clicks=(), boxes=(), texts=(), audios=(), images=(), masks=(), limit: int = MAX_PROMPTS,
                 max_text_chars: int = MAX_TEXT_CHARS) -> None:
    """Refuse a request over the budget: more than ``limit`` sources of all kinds together, or a text
    source longer than ``max_text_chars`` (the text itself is not repeated in the message)."""
    counts = {"clicks": len(clicks or ()), "boxes": len(boxes or ()), "texts": len(texts or ()),
              "audio clips": len(audios or ()), "images": len(images or ()), "masks": len(masks or ())}
    total = sum(counts.values())
    if total > limit:
        given = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
        raise InputError(f"too many sources: {total} ({given}); at most {limit} per request")
    for i, t in enumerate(texts or ()):
        text = t[0] if isinstance(t, (tuple, list)) else t
        if len(str(text)) > max_text_chars:
            raise InputError(f"text source {i + 1} is {len(str(text))} characters long; at most {max_text_chars}")


@dataclass
class GenerateResult:
    """What :func:`generate` made: the sound, the seed used and the files written (if any)."""

    sound: SoundResult
    seed: int
    outputs: list[Path]
    sidecar: Path | None


_PIPELINES: dict[tuple, object] = {}


def load_pipeline(method: str = "mapper", models: str | None = None, mapper: str | None = None,
                  device: str = "auto", dtype: str | None = None, grounding: str | None = None,
                  ss2a: str | None = None, route: str = "auto"):
    """Load (once per process) the pipeline of ``method`` on a model set.

    ``grounding``: the trained grounding module folder for ``objects`` (else the model set's, else the
    training-free route). ``ss2a``: the SS2A bundle folder or released ``ssv2a.pth`` for ``sources`` (else
    the model set's, else the training-free route). ``route``: auto | trained | released | training-free
    (objects and sources; :func:`foleykit.pipelines.training_free.choose_route`).

    Thread-safe: loads run one at a time under the process-wide model-load lock, threads asking for
    the same pipeline at once get the one loaded copy, and a failed load leaves nothing cached.
    """
    from .encoders.loading import MODEL_LOAD_LOCK

    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    key = (method, models, mapper, device, dtype, grounding, ss2a, route)
    with MODEL_LOAD_LOCK:
        pipe = _PIPELINES.get(key)
        if pipe is None:
            pipe = _load_pipeline(method, models, mapper, device, dtype, grounding, ss2a, route)
            _PIPELINES[key] = pipe
        return pipe


def clear_pipelines() -> None:
    """Drop every cached pipeline and shared component (tests; freeing memory)."""
    from .encoders.loading import MODEL_LOAD_LOCK
    from .pipelines import components

    with MODEL_LOAD_LOCK:
        _PIPELINES.clear()
        components.clear()



def _load_pipeline(method, models, mapper, device, dtype, grounding, ss2a, route="auto"):
    if method == "mapper":
        return MapperPipeline.from_models(models, mapper=mapper, device=device, dtype=dtype)
    if method == "objects":
        from .pipelines.objects import ObjectsPipeline

        return ObjectsPipeline.from_models(models, grounding=grounding, device=device, dtype=dtype, route=route)
    if method == "sources":
        from .pipelines.sources import SourcesPipeline

        return SourcesPipeline.from_models(models, ss2a=ss2a, device=device, dtype=dtype, route=route)
    raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


def _video_note(source, video: bool) -> str | None:
    """The probe's note on a video that claims more than decodes (its usable duration is what is used)."""
    if not video:
        return None
    from .io.video import probe_video

    return probe_video(Path(source).expanduser()).note


def _add_note(record: dict, note: str | None) -> None:
    if note and note not in record.setdefault("notes", []):
        record["notes"].append(note)


def _check_output(output: Path, source, video: bool, overwrite: bool, original_audio: str = "replace") -> Path:
    inputs = [] if isinstance(source, Image.Image) else [source]
    out = check_output_path(output, inputs)
    allowed = AUDIO_SUFFIXES + (".mp4",)  # an image's .mp4 is a still video with the sound
    if output.suffix.lower() not in allowed:
        kind = "a video" if video else "an image"
        raise OutputError(f"output {output}: for {kind} write {' or '.join(allowed)}")
    if original_audio not in ORIGINAL_AUDIO:
        raise InputError(f"original audio must be one of {', '.join(ORIGINAL_AUDIO)}, got {original_audio!r}")
    if original_audio != "replace" and not (video and output.suffix.lower() == ".mp4"):
        raise InputError(f"--original-audio {original_audio} needs a video input and an .mp4 output")
    if out.exists() and not overwrite:
        raise OutputError(f"output {out} already exists; pass --overwrite to replace it")
    return out


def _check_source_and_outputs(source, output, overwrite: bool, original_audio: str, *, stems=None,
                              stem_names=lambda: [], mix_name: str = "mix") -> tuple[bool, Path | None, Path | None]:
    """The one input check of every method, before any model loads: whether ``source`` is a video, the
    checked output path (or None), the checked stems folder (or None; ``stem_names()`` are the files it
    will get, ``mix_name`` what the output holds), and that the input is an existing file."""
    from .pipelines.objects import check_stems_dir

    video = not isinstance(source, Image.Image) and is_video_path(source)
    out_path = _check_output(Path(output).expanduser(), source, video, overwrite, original_audio) \
        if output is not None else None
    stems_dir = None
    if stems is not None:
        if out_path is None:
            raise OutputError(f"stems need an output file for the {mix_name}")
        stems_dir = check_stems_dir(stems, stem_names(), overwrite=overwrite)
    if not isinstance(source, Image.Image) and not Path(source).expanduser().is_file():
        raise InputError(f"input {source} does not exist or is not a file")
    return video, out_path, stems_dir


def _inputs_record(source) -> dict:
    """The sidecar's ``inputs``: the input file's absolute path (or a placeholder for a PIL image)."""
    return {"source": "<PIL image>" if isinstance(source, Image.Image) else str(Path(source).resolve())}


def _check_parameters(*, duration, steps, preset, guidance, candidates, frames) -> None:
    """Refuse impossible parameters before any model is loaded (seconds, not minutes, to an error)."""
    import math

    from .generator.presets import get_preset

    get_preset(preset)
    check_duration(duration)
    if steps is not None and not (1 <= steps <= 1000):
        raise InputError(f"steps must be between 1 and 1000, got {steps}")
    if guidance is not None and not (math.isfinite(guidance) and guidance >= 0):
        raise InputError(f"guidance scale must be a finite number >= 0, got {guidance}")
    if not (1 <= candidates <= 64):
        raise InputError(f"candidates must be between 1 and 64, got {candidates}")
    if not (1 <= frames <= 256):
        raise InputError(f"frames per window must be between 1 and 256, got {frames}")


def generate(
    source: str | Path | Image.Image,
    output: str | Path | None = None,
    *,
    method: str = "mapper",
    models: str | None = None,
    mapper: str | None = None,
    seed: int | None = None,
    duration: float | None = None,
    steps: int | None = None,
    preset: str = "fast",
    guidance: float | None = None,
    candidates: int = 1,
    frames: int | None = None,
    device: str = "auto",
    dtype: str | None = None,
    overwrite: bool = False,
    progress: bool | Callable[[float, str], None] = True,
    clicks: list | None = None,
    boxes: list | None = None,
    texts: list[str] | None = None,
    stems: str | Path | None = None,
    context: float = 0.0,
    grounding: str | None = None,
    maps: str | Path | None = None,
    frame: float | None = None,
    audios: list | None = None,
    images: list | None = None,
    masks: list | None = None,
    stereo: bool = False,
    text_mode: str = "prior",
    ss2a: str | None = None,
    detect: bool | None = None,
    threshold: float | None = None,
    max_detections: int | None = None,
    detector_size: int | None = None,
    max_sources: int = 64,
    cycle_rounds: int | None = None,
    cycle_samples: int | None = None,
    criterion: str = "spread",
    original_audio: str = "replace",
    duck_db: float | None = None,
    negative: str | None = None,
    keep_candidates: bool = False,
    loudness: float | None = None,
    stems_relative: bool = False,
    max_prompts: int = MAX_PROMPTS,
    route: str = "auto",
    vocabulary: str | None = None,
    bridge_top_k: int | None = None,
    bridge_temperature: float | None = None,
) -> GenerateResult:
    """Generate the sound of ``source`` (an image or a video); write it to ``output`` if given.

    ``output``: ``.wav``/``.flac`` (any input) or ``.mp4`` (video input: the original video stream
    copied, the new audio added). A JSON sidecar ``<output>.json`` records inputs, parameters, model
    ids and revisions, the seed used and versions. Nothing is written unless generation succeeds.

    ``method="objects"`` (Sounding that Object): ``clicks`` [(x, y)], ``boxes`` [(x0, y0, x1, y1)]
    and ``texts`` select the objects; ``output`` gets their blend, ``stems`` (a folder) one file per
    object; ``context`` (0..1) mixes the whole scene into the blend; ``maps`` (a folder) receives the
    mask and attention maps as PNG; ``frame`` picks the frame (seconds) of a video input.

    ``method="sources"`` (SS2A): the image's detected objects, ``boxes``, ``masks`` (image files or
    bool arrays), ``texts``, ``audios`` (files) and more ``images`` are the sound sources; each item may
    carry a weight (``"rain@0.5"`` or ``("rain", 0.5)``). ``stems`` (a folder) gets one file per source,
    ``stereo`` pans each region by its position; a video goes through temporal aggregation over
    ``frames`` (default 64) frames per window. See :mod:`foleykit.pipelines.sources`.

    ``route`` (objects, sources): ``auto`` (the trained or released module when given or in the model set,
    else training-free), ``trained``, ``released`` (sources: the released ``ssv2a.pth`` as ``ss2a``) or
    ``training-free`` (each source through CLIP and the zero-shot bridge, no trained module; see
    :mod:`foleykit.pipelines.training_free`). The bridge's ``vocabulary`` (``sounds``, ``objects`` or a text
    file, one name per line), ``bridge_top_k`` and ``bridge_temperature`` apply to the training-free route.

    Levels: by default each file is peak-normalised to -1 dBFS; ``loudness`` (LUFS, e.g. -23 for EBU
    R128, -14 for streaming) brings the output to that integrated loudness (ITU-R BS.1770), true-peak
    safe (-1 dBTP); stems are levelled each on their own, or with ``stems_relative`` by one common
    gain that keeps their relative levels. See :mod:`foleykit.io.outputs`.

    ``progress``: True/False for terminal progress bars, or ``fn(fraction, message)`` called through every
    stage (detection, encoding, each diffusion step, decoding) of every method.

    Budget: at most ``max_prompts`` sources of all kinds together (clicks, boxes, texts, audios,
    images, masks) and texts of at most :data:`MAX_TEXT_CHARS` characters.

    ``negative``: a negative prompt for classifier-free guidance, embedded by the generator's own CLAP
    text tower (default ``""``, AudioLDM's unconditional input; objects: the grounding null vector).

    ``keep_candidates`` (mapper, ``candidates`` >= 2, one diffusion window of at most 10.24 s): every
    candidate is also written, as ``<output stem>.candidate-NN.wav`` (``.flac`` for a flac output),
    and the sidecar lists each with its CLAP score and which one was kept.

    An ``.mp4`` output of a video lasts as long as the sound (a shorter ``duration`` cuts the video);
    ``original_audio`` keeps (``keep``) or lowers by ``duck_db`` dB (``duck``, default 12) the video's
    own soundtrack under the new one instead of replacing it. An ``.mp4`` output of an image is a
    still video of it with the sound.

    Thread-safe: several threads may call it at once (see the module docstring).
    """
    from .io.outputs import check_loudness

    loudness = check_loudness(loudness)
    check_budget(clicks=clicks, boxes=boxes, texts=texts, audios=audios, images=images, masks=masks, limit=max_prompts)
    levels = {"loudness": loudness, "stems_relative": stems_relative}
    mux = {"original_audio": original_audio, "duck_db": duck_db}
    if negative is not None and not isinstance(negative, str):
        raise InputError(f"negative prompt must be text, got {type(negative).__name__}")
    if frames is None:
        frames = 64 if method == "sources" else 16
    if method == "mapper" and (clicks or boxes or texts or stems or maps):
        raise InputError("clicks, boxes, texts, stems and maps need method 'objects' (or 'sources' for boxes, texts, stems)")
    if method != "sources" and (audios or images or masks or stereo or ss2a):
        raise InputError("audio sources, extra images, masks, stereo and ss2a weights need method 'sources'")
    bridge = _bridge_settings(method, route, vocabulary, bridge_top_k, bridge_temperature)
    if keep_candidates and (method != "mapper" or candidates < 2 or output is None):
        raise InputError("--keep-candidates needs --method mapper, --candidates 2 or more and an output file")
    if method == "sources":
        return _generate_sources(
            source, output, models=models, seed=seed, duration=duration, steps=steps, preset=preset,
            guidance=guidance, candidates=candidates, frames=frames, device=device, dtype=dtype, overwrite=overwrite,
            progress=progress, clicks=clicks, maps=maps, boxes=boxes or [], texts=texts or [], audios=audios or [],
            images=images or [], masks=masks or [], stems=stems, stereo=stereo, text_mode=text_mode, ss2a=ss2a,
            detect=detect, threshold=threshold, max_detections=max_detections, detector_size=detector_size,
            max_sources=max_sources, cycle_rounds=cycle_rounds,
            cycle_samples=cycle_samples, criterion=criterion, levels=levels, route=route, bridge=bridge,
            mux=mux, negative=negative,
        )
    if method == "objects":
        return _generate_objects(
            source, output, models=models, seed=seed, duration=duration, steps=steps, preset=preset,
            guidance=guidance, candidates=candidates, device=device, dtype=dtype, overwrite=overwrite,
            progress=progress, clicks=clicks or [], boxes=boxes or [], texts=texts or [], stems=stems,
            context=context, grounding=grounding, maps=maps, frame=frame, levels=levels, route=route,
            bridge=bridge, mux=mux, negative=negative,
        )
    _check_parameters(duration=duration, steps=steps, preset=preset, guidance=guidance, candidates=candidates,
                      frames=frames)
    video, out_path, _ = _check_source_and_outputs(source, output, overwrite, original_audio)
    checked = check_input(source, duration)  # decode/probe before any model loads
    if keep_candidates:
        from .generator.long_audio import plan_windows

        if len(plan_windows(checked.duration_s)) > 1:
            raise InputError(f"--keep-candidates needs a sound of one diffusion window (at most 10.24 s), "
                             f"this one is {checked.duration_s:.2f} s")
    pipe = load_pipeline(method, models, mapper, device, dtype)
    sound = pipe(
        checked, preset=preset, num_inference_steps=steps, guidance_scale=guidance,
        num_candidates=candidates, seed=seed, frames_per_window=frames, progress=progress, negative=negative,
    )
    _add_note(sound.record, _video_note(source, video))
    outputs: list[Path] = []
    sidecar = None
    if out_path is not None:
        record = {
            "inputs": _inputs_record(source),
            "output": {"path": str(out_path.resolve()), "sample_rate": sound.sample_rate,
                       "duration_s": round(sound.duration_s, 6),
                       "channels": 1 if sound.waveform.ndim == 1 else int(sound.waveform.shape[0])},
            "parameters": {"method": method, "models": models, "mapper": mapper, "negative": negative,
                           "duration": duration, "steps": steps,
                           "preset": preset, "guidance": guidance, "candidates": candidates, "frames": frames,
                           "device": device, "dtype": dtype},
            "seed": sound.seed,
            **sound.record,
        }
        record["parameters"].update(original_audio=original_audio, duck_db=duck_db)
        visual = source if isinstance(source, Image.Image) else Path(source).expanduser()
        sidecar = _write_output_and_sidecar(out_path, sound, record, visual, mux, loudness=loudness,
                                            keep_candidates=keep_candidates)
        outputs.append(out_path)
        outputs += [out_path.with_name(c["file"]) for c in record.get("candidates", [])]
    return GenerateResult(sound=sound, seed=sound.seed, outputs=outputs, sidecar=sidecar)


def _bridge_settings(method, route, vocabulary, top_k, temperature):
    """The bridge's settings when any was given (checked here, before any model loads), else None."""
    from .pipelines.training_free import ROUTES
    from .pipelines.zero_shot_bridge import BridgeSettings
    from .vocabulary import load_vocabulary

    if route not in ROUTES:
        raise InputError(f"route must be one of {', '.join(ROUTES)}, got {route!r}")
    if method == "mapper" and route != "auto":
        raise InputError("--route applies to methods objects and sources; the mapper uses --mapper DIR or the bridge")
    if vocabulary is None and top_k is None and temperature is None:
        return None
    if method == "mapper":
        raise InputError("the bridge's vocabulary, top-k and temperature apply to methods objects and sources")
    if route in ("trained", "released"):
        raise InputError(f"the bridge's vocabulary, top-k and temperature apply to the training-free route, not "
                         f"--route {route}")
    defaults = BridgeSettings()
    settings = BridgeSettings(vocabulary=None if vocabulary is None else str(vocabulary),
                              top_k=defaults.top_k if top_k is None else top_k,
                              temperature=defaults.temperature if temperature is None else temperature).check()
    words, name = load_vocabulary(settings.vocabulary)
    if settings.top_k > len(words):
        raise InputError(f"bridge top_k {settings.top_k} is larger than the vocabulary {name} ({len(words)} names)")
    return settings


def _candidate_paths(out_path: Path, n: int) -> list[Path]:
    suffix = ".flac" if out_path.suffix.lower() == ".flac" else ".wav"
    return [out_path.with_name(f"{out_path.stem}.candidate-{k + 1:02d}{suffix}") for k in range(n)]


def _write_output_and_sidecar(out_path: Path, sound: SoundResult, record: dict, visual, mux: dict, *,
                              loudness: float | None = None, keep_candidates: bool = False) -> Path:
    """The audio (or mp4), its sidecar and (``keep_candidates``) every candidate, staged and renamed into
    place together, sidecar first (:func:`foleykit.io.outputs.write_mix_and_stems`). Returns the sidecar."""
    from .io.outputs import write_mix_and_stems

    cands = _candidate_paths(out_path, len(sound.candidates)) if keep_candidates else []
    if cands:
        best = max(range(len(sound.candidates)), key=lambda k: sound.candidates[k][1])
        record["candidates"] = [{"file": p.name, "score": round(score, 6), "kept": k == best}
                                for k, (p, (_, score)) in enumerate(zip(cands, sound.candidates))]
    output = {k: v for k, v in record["output"].items() if k != "path"}
    _, sidecars, notes = write_mix_and_stems(
        out_path, sound.waveform, sound.sample_rate, record, output, video_source=visual, loudness=loudness, mux=mux,
        extra_files=[(p, wave) for p, (wave, _) in zip(cands, sound.candidates)])
    for note in notes:
        sound.record.setdefault("notes", []).append(note)
    return sidecars[0]


def _generate_objects(source, output, *, models, seed, duration, steps, preset, guidance, candidates, device, dtype,
                      overwrite, progress, clicks, boxes, texts, stems, context, grounding, maps, frame,
                      levels, mux, negative, route="auto", bridge=None) -> GenerateResult:
    """``generate`` for method ``objects``: blend to ``output``, per-object stems to ``stems``."""
    from .pipelines.objects import parse_box, parse_point, stem_names, write_objects_outputs

    clicks = [parse_point(c) for c in clicks]
    boxes = [parse_box(b) for b in boxes]
    if not clicks and not boxes and not texts:
        raise InputError("method 'objects' needs at least one --click X,Y, --box X0,Y0,X1,Y1 or --text")
    _check_parameters(duration=duration, steps=steps, preset=preset, guidance=guidance, candidates=candidates,
                      frames=16)  # objects reads one frame; frames per window do not apply
    video, out_path, stems_dir = _check_source_and_outputs(
        source, output, overwrite, mux["original_audio"], stems=stems, mix_name="blend",
        stem_names=lambda: stem_names(clicks=clicks, boxes=boxes, texts=texts))
    src = source if isinstance(source, Image.Image) else Path(source).expanduser()
    if not video:  # check the picture and the prompts before any model loads
        from .encoders.segmenter import Segmenter
        from .io.image import load_image

        src = load_image(src)
        for i, c in enumerate(clicks):
            Segmenter._check_point(c, src.size[0], src.size[1], f"click {i + 1}")
        for i, b in enumerate(boxes):
            Segmenter._check_box(b, src.size[0], src.size[1], f"box {i + 1}")
    pipe = load_pipeline("objects", models, None, device, dtype, grounding, None, route)
    result = pipe(
        src, clicks=clicks, boxes=boxes, texts=texts, context=context, duration_s=duration, preset=preset,
        num_inference_steps=steps, guidance_scale=guidance, num_candidates=candidates, seed=seed, frame_s=frame,
        progress=progress, save_maps_dir=maps, bridge=bridge, negative=negative,
    )
    _add_note(result.record, _video_note(source, video))
    outputs: list[Path] = []
    sidecar = None
    if out_path is not None:
        record = {
            "inputs": _inputs_record(source),
            "parameters": {"method": "objects", "models": models, "negative": negative,
                           "clicks": [list(c) for c in clicks],
                           "boxes": [list(b) for b in boxes], "texts": list(texts), "context": context,
                           "grounding": grounding, "route": route, "duration": duration, "steps": steps,
                           "preset": preset, "bridge": bridge.to_record() if bridge else None,
                           "guidance": result.record["generator"].get("guidance_scale"), "candidates": candidates,
                           "frame": frame, "device": device, "dtype": dtype},
            "seed": result.seed,
            **result.record,
        }
        record["parameters"].update(mux)
        outputs, sidecars, _ = write_objects_outputs(
            result, out_path, record=record, stems_dir=stems_dir, mux=mux, **levels,
            video_source=src if video or out_path.suffix.lower() == ".mp4" else None,
        )
        sidecar = sidecars[0]
    return GenerateResult(sound=result, seed=result.seed, outputs=outputs, sidecar=sidecar)


def _generate_sources(source, output, *, models, seed, duration, steps, preset, guidance, candidates, frames, device,
                      dtype, overwrite, progress, clicks, maps, boxes, texts, audios, images, masks, stems, stereo,
                      text_mode, ss2a, detect, threshold, max_detections, detector_size, max_sources, cycle_rounds,
                      cycle_samples, criterion, levels, mux, negative, route="auto", bridge=None) -> GenerateResult:
    """``generate`` for method ``sources``: the mix (or stereo mix) to ``output``, per-source stems to ``stems``."""
    from .pipelines.sources import (
        DEFAULT_CYCLE_ROUNDS,
        DEFAULT_CYCLE_SAMPLES,
        DEFAULT_MAX_DETECTIONS,
        DEFAULT_THRESHOLD,
        parse_source_box,
        parse_weighted_items,
        write_sources_outputs,
    )

    if clicks or maps:
        raise InputError("clicks and maps need method 'objects'; method 'sources' takes --box, --mask, --text, --audio")
    _check_parameters(duration=duration, steps=steps, preset=preset, guidance=guidance, candidates=candidates,
                      frames=frames)
    texts = parse_weighted_items(texts)
    audios = [(Path(a).expanduser(), w) for a, w in parse_weighted_items(audios)]
    images = [(Path(i).expanduser(), w) for i, w in parse_weighted_items(images)]
    boxes = [parse_source_box(b) for b in boxes]
    video, out_path, stems_dir = _check_source_and_outputs(source, output, overwrite, mux["original_audio"],
                                                           stems=stems)
    src = source if isinstance(source, Image.Image) else Path(source).expanduser()
    pipe = load_pipeline("sources", models, None, device, dtype, None, ss2a, route)
    result = pipe(
        src, texts=texts, audios=audios, boxes=boxes, masks=list(masks), images=images, detect=detect,
        threshold=DEFAULT_THRESHOLD if threshold is None else threshold, max_sources=max_sources, text_mode=text_mode,
        max_detections=DEFAULT_MAX_DETECTIONS if max_detections is None else max_detections,
        detector_size=detector_size,
        duration_s=duration, preset=preset, num_inference_steps=steps, guidance_scale=guidance,
        num_candidates=candidates, seed=seed, frames=frames, criterion=criterion,
        cycle_rounds=DEFAULT_CYCLE_ROUNDS if cycle_rounds is None else cycle_rounds,
        cycle_samples=DEFAULT_CYCLE_SAMPLES if cycle_samples is None else cycle_samples,
        stems=stems_dir is not None, stereo=stereo, progress=progress, bridge=bridge, negative=negative,
    )
    note = _video_note(source, video)
    _add_note(result.record, note)
    _add_note(result.mix.record, note)
    outputs: list[Path] = []
    sidecar = None
    if out_path is not None:
        record = {
            "inputs": _inputs_record(source),
            "parameters": {"method": "sources", "models": models, "ss2a": ss2a, "route": route,
                           "bridge": bridge.to_record() if bridge else None, "negative": negative,
                           "texts": [list(t) for t in texts],
                           "audios": [[str(a), w] for a, w in audios], "boxes": [[list(b), w] for b, w in boxes],
                           "images": [[str(i), w] for i, w in images], "masks": [str(m) for m in masks],
                           "stereo": stereo, "text_mode": text_mode, "detect": detect, "threshold": threshold,
                           "max_detections": max_detections, "detector_size": detector_size,
                           "max_sources": max_sources, "cycle_rounds": cycle_rounds, "cycle_samples": cycle_samples,
                           "criterion": criterion, "duration": duration, "steps": steps, "preset": preset,
                           "guidance": guidance, "candidates": candidates, "frames": frames, "device": device,
                           "dtype": dtype},
            "seed": result.seed,
            **result.record,
        }
        record["parameters"].update(mux)
        outputs, sidecars, notes = write_sources_outputs(
            result, out_path, record=record, stems_dir=stems_dir, overwrite=overwrite, mux=mux, **levels,
            video_source=src if video or out_path.suffix.lower() == ".mp4" else None,
        )
        sidecar = sidecars[0]
        if notes:
            result.mix.record.setdefault("notes", []).extend(notes)
    return GenerateResult(sound=result.mix, seed=result.seed, outputs=outputs, sidecar=sidecar)


def train(task: str, data=None, output: str | Path | None = None, *, run_file: str | None = None,
          model: dict | None = None, options: dict | None = None, trainer: dict | None = None, val_data=None,
          seed: int | None = None, device: str = "auto", manifold: str | Path | None = None,
          models: str | None = None, settings: list[str] | tuple[str, ...] = (), resume: bool = True,
          overwrite: bool = False, progress: bool = True):
    """Train one of foleykit's learnable modules on the accelerate trainer: what ``foleykit train TASK`` runs.

    ``task``: mapper | manifold | remixer | temporal | grounding. The run starts from the task's paper
    settings (``configs/<DEFAULT_RUN_FILES[task]>.yaml``, or ``run_file``), then takes the arguments given,
    then ``settings`` (``"key.path=value"`` strings, like ``--set``; last wins).

    ``data`` / ``val_data``: an extraction folder, a ``.safetensors``/``.pt``/``.npz`` file of named tensors,
    or a dict of tensors (the batch keys of the task, e.g. ``{"clip": ..., "clap": ...}``); no
    ``val_data`` holds out ``trainer["val_fraction"]`` of ``data``. ``output``: the run folder
    (checkpoints, metrics.jsonl, the trained model). ``model`` / ``options`` / ``trainer``: entries of the
    run file's sections to set (``None`` sets null, e.g. "take this size from the data";
    ``trainer={"optimizer": {"lr": 1e-3}}`` keeps the other optimizer settings).
    ``seed``: None keeps the run file's (so a rerun resumes), -1 draws one; ``result.seed`` is the one used.
    ``device``: auto | cpu | cuda | mps. ``manifold`` (remixer): a trained manifold folder that computes
    the source codes the data lacks; ``models`` (grounding): the model set whose AudioLDM UNet is trained.
    ``resume``: continue from the run folder's newest checkpoint; ``overwrite``: discard a previous run there.

    Returns the trainer's result: ``.model`` the trained module, ``.history`` per-epoch metrics,
    ``.final_dir``, ``.seed``.
    """
    from .training.accelerate_config import (
        DEFAULT_RUN_FILES,
        apply_overrides,
        find_config,
        read_config_file,
        run_training,
        set_values,
    )

    if task not in DEFAULT_RUN_FILES:
        raise InputError(f"unknown task {task!r}; choose one of {', '.join(DEFAULT_RUN_FILES)}")
    name = run_file or DEFAULT_RUN_FILES[task]
    cfg = read_config_file(find_config(name))
    if cfg.get("task") != task:
        raise InputError(f"run file {name} is for task {cfg.get('task')!r}, not {task!r}")
    if seed is not None and seed < 0:
        from .seeding import resolve_seed

        seed = resolve_seed(None)
    model = dict(model or {})
    if task == "mapper" and "kind" in model and "depth" not in model \
            and model["kind"] != (cfg.get("model") or {}).get("kind"):
        model["depth"] = None  # the run file's depth is for its kind: take the paper's best for this one
    values: dict = {f"model.{k}": v for k, v in model.items()}
    values.update({f"options.{k}": v for k, v in (options or {}).items()})
    values.update(_dotted("trainer", trainer or {}))
    given = {"trainer.output_dir": output, "trainer.seed": seed, "data.manifold": manifold, "models": models}
    values.update({k: v for k, v in given.items() if v is not None})
    values.update(_device_settings(device))
    cfg = apply_overrides(set_values(cfg, values), list(settings))
    for key, source in (("train", data), ("val", val_data)):  # after the copies above: tensors are not copied
        if source is not None:
            cfg.setdefault("data", {})[key] = source if isinstance(source, dict) else str(source)
    return run_training(cfg, progress=progress, resume="auto" if resume else None, overwrite=overwrite)


def _dotted(prefix: str, values: dict) -> dict:
    """{"optimizer": {"lr": 1}} under "trainer" → {"trainer.optimizer.lr": 1}: nested sections update, not replace."""
    out = {}
    for k, v in values.items():
        if isinstance(v, dict):
            out.update(_dotted(f"{prefix}.{k}", v))
        else:
            out[f"{prefix}.{k}"] = v
    return out


def _device_settings(device: str) -> dict:
    """The trainer setting for ``device`` (accelerate picks the accelerator itself unless told cpu)."""
    if device == "auto":
        return {}
    if device == "cpu":
        return {"trainer.cpu": True}
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("--device mps: no MPS device is available")
    if device not in ("cuda", "mps"):
        raise InputError(f"--device must be auto, cpu, cuda or mps, got {device!r}")
    return {}

