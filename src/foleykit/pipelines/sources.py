"""Sound-source-aware generation (SS2A, "Gotta Hear Them All"): hear every source in a scene.

Perception → CMSS manifold → Remixer + Cycle Mix → AudioLDM, for any composition of sources:

* **images** (optionally several): the whole image is the *global* source; OWLv2 detects sounding
  objects (vocabulary :data:`~foleykit.vocabulary.SOUNDING_OBJECTS`), and user
  **boxes** / **masks** add regions. Every region is cropped (masks: the region's bounding box with
  the pixels outside the mask blacked out) and letterboxed to a square, then the global image and all
  crops of that image go through CLIP ViT-L/14 in **one** batch. Detection and CLIP run once per
  image (and are cached per image content), never once per Cycle Mix round.
* **texts**: through the text→CLIP-image prior (:mod:`foleykit.encoders.prior`, ``text_mode="prior"``)
  or, as a documented fallback, plain CLIP text embeddings (``text_mode="clip"``).
* **audios**: CLAP audio embeddings (their Remixer token has v = 0, paper §Remixer).

Routes: with SS2A weights (a trained bundle or the released checkpoint) the manifold and Remixer run as
below; without them the **training-free route** runs instead (:mod:`foleykit.pipelines.training_free`:
each source's own CLAP vector through CLIP and the zero-shot bridge, the weighted mix refined like
Cycle Mix, stems from each source's vector). Perception, weights, stems, stereo and video are shared.

Slots (:func:`~foleykit.modules.cycle_mix.pack_sources`): with one image, slot 0 holds its global
CLIP (the released image-to-audio layout, and the Cycle Mix feedback slot); with several images or
none, slot 0 is the empty feedback slot and every image's global source gets a slot of its own
(the released multimodal layout). Then come the regions, the texts and the audios; at most
M − 1 = 63 sources.

Weights: every source has a weight (default 1). The Remixer has no weight input (it was trained on
unweighted scenes), so weights act where a mixing decision is made: (1) Cycle Mix scores candidate
mixtures against the per-source tracks with a *weighted* spread/relevance, so heavier sources pull
the selection towards themselves; (2) in the stereo mix, a stem's level is proportional to its weight.

Outputs (:class:`SourcesResult`): the **mix** (AudioLDM conditioned on the Cycle Mix CLAP), and with
``stems`` or ``stereo`` one **stem per source**: AudioLDM conditioned on that source's track
semantics χ(e) (the manifold reconstruction of its code). Every generation uses the same seed (the
same initial noise), so stems differ only by their conditioning.

**Stereo** (``stereo=True``): the stereo mix is built from the stems. Each stem is scaled to unit RMS,
multiplied by its weight and panned with an equal-power law, gain_L = cos θ, gain_R = sin θ with
θ = (π/2)·p, where p ∈ [0, 1] is the horizontal centre of the source's region divided by the image
width (0 = left edge, 0.5 = centre, 1 = right edge). Global image sources, texts and audios are
centred (p = 0.5, −3 dB in each channel). L and R are the sums over sources; the file writer then
peak-normalises. The mono SS2A mixture stays available as ``SourcesResult.mono_mix``.

**Video** (temporal aggregation, paper Eq. 10): per generation window (≤ 10 s), ``frames`` (64)
evenly spaced frames each go through the image pipeline above (detection + CLIP per frame, texts and
audios embedded once for all frames) and Cycle Mix (all frames of all windows in one batch); the
temporal aggregator ω turns the 64 per-frame CLAPs of a window into that window's CLAP, each frame
placed by its timestamp (:func:`~foleykit.modules.temporal.frame_time_positions`: 0..63 for a full
10 s window, closer together for a shorter one). Without a
trained aggregator the frame CLAPs are averaged (and the record says so). Stems and stereo are for
images: a video's sources change from frame to frame.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..encoders.generator_clap import GeneratorClap
from ..encoders.clip import ClipEncoder
from ..encoders.detector import (
    DEFAULT_MAX_DETECTIONS,
    DEFAULT_MIN_AREA,
    DEFAULT_NMS_IOU,
    DEFAULT_THRESHOLD,
    Detection,
    SoundSourceDetector,
    check_box,
)
from ..encoders.prior import DEFAULT_PRIOR_GUIDANCE, DEFAULT_PRIOR_STEPS, TextToImagePrior
from ..errors import InputError, OutputError
from ..generator.long_audio import generate_long, plan_windows
from ..generator.pipeline import AudioLDMGenerator
from ..generator.presets import get_preset
from ..io.audio import SILENCE_PEAK, load_audio
from ..io.image import crop_box, cut_out, load_image
from ..model_sets import ModelSet, resolve_model_set
from ..modules.cycle_mix import CRITERIA, cycle_mix, manifold_codes, pack_sources, stack_slots
from ..seeding import make_generator, resolve_seed
from .mapper import DEFAULT_IMAGE_DURATION_S, SoundResult, check_duration, is_video_path
from .ss2a_bundle import SS2ABundle, load_ss2a
from .training_free import TRAINING_FREE, TrainingFree, choose_route, generator_clap, route_record
from .zero_shot_bridge import BridgeSettings

__all__ = [
    "DEFAULT_CYCLE_ROUNDS",
    "DEFAULT_CYCLE_SAMPLES",
    "DEFAULT_VAR_SAMPLES",
    "DEFAULT_VIDEO_FRAMES",
    "MIN_AUDIO_S",
    "TEXT_MODES",
    "AudioClip",
    "SoundSource",
    "SourcesPipeline",
    "SourcesResult",
    "pan_gains",
    "parse_source_box",
    "parse_weighted",
    "parse_weighted_items",
    "stereo_from_stems",
    "write_sources_outputs",
]

#: Released ``image_to_audio`` defaults: its = 3 (→ 4 rounds), 16 samples.
DEFAULT_CYCLE_ROUNDS = 4
DEFAULT_CYCLE_SAMPLES = 16
#: Variational draws averaged per code and candidate (released CLI: 64; 1 keeps candidates diverse and cheap).
DEFAULT_VAR_SAMPLES = 1
#: Frames per generation window for video (paper).
DEFAULT_VIDEO_FRAMES = 64
#: Shortest audio source: CLAP repeat-pads short clips, so a blip would be looped into a drone.
MIN_AUDIO_S = 0.5
TEXT_MODES = ("prior", "clip")
#: Video frames are decoded at most this large (detection/CLIP resize far below it anyway).
VIDEO_MAX_SIDE = 1024

ProgressFn = Callable[[float, str], None]


# ---------------------------------------------------------------------- inputs


@dataclass
class AudioClip:
    """An in-memory audio source: ``wave`` (frames,) or (channels, frames) float at ``sample_rate``."""

    wave: np.ndarray
    sample_rate: int
    name: str = "clip"


def _slug(text: str, limit: int = 32) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    return (s[:limit].rstrip("-")) or "source"


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.1f}"


def parse_weighted(text: str) -> tuple[str, float]:
    """``"rain@0.5"`` → ("rain", 0.5); a value without a numeric ``@weight`` suffix has weight 1."""
    m = re.fullmatch(r"(.*)@\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*", str(text), flags=re.DOTALL)
    if m is None:
        return str(text), 1.0
    return m.group(1), float(m.group(2))


def parse_weighted_items(items: Sequence) -> list[tuple[object, float]]:
    """CLI/API items → (value, weight): ``"rain@0.5"``, ``("rain", 0.5)`` or a plain value (weight 1)."""
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(parse_weighted(item))
        else:
            out.append(_split_weight(item))
    return out


def parse_source_box(item) -> tuple[tuple[float, float, float, float], float]:
    """``"x0,y0,x1,y1@w"``, ``(x0, y0, x1, y1)`` or ``((x0, y0, x1, y1), w)`` → (box, weight)."""
    from .objects import parse_box

    if isinstance(item, str):
        text, w = parse_weighted(item)
        return parse_box(text), w
    if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], (str, tuple, list)):
        return parse_box(item[0]), float(item[1])
    return parse_box(item), 1.0


def _split_weight(item) -> tuple[object, float]:
    """An API source item: ``value`` or ``(value, weight)``."""
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], (int, float)) and not isinstance(item[1], bool):
        return item[0], float(item[1])
    return item, 1.0


def _check_weight(weight: float, what: str) -> float:
    if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight > 0):
        raise InputError(f"{what}: weight must be a positive number, got {weight!r}")
    return float(weight)


# ---------------------------------------------------------------------- sources


@dataclass
class SoundSource:
    """One sound source of a composition, in slot order."""

    index: int
    kind: str  # "image" (a whole image) | "detected" | "box" | "mask" | "text" | "audio"
    name: str
    slug: str
    weight: float = 1.0
    clip: torch.Tensor | None = None  # [clip_dim] unit CLIP (image/region/text sources)
    clap: torch.Tensor | None = None  # [512] unit CLAP (audio sources)
    image_index: int | None = None
    box: tuple[float, float, float, float] | None = None
    position: float = 0.5  # horizontal centre in [0, 1] (0.5 = centred)
    score: float | None = None
    label: str | None = None
    info: dict = field(default_factory=dict)
    vector: torch.Tensor | None = None  # [512] unit CLAP its stem is conditioned on (set by the mix)

    @property
    def stem_name(self) -> str:
        return f"{self.index:02d}-{self.slug}"

    def to_record(self) -> dict:
        rec = {"index": self.index, "kind": self.kind, "name": self.name, "weight": self.weight,
               "pan_position": round(self.position, 4)}
        if self.image_index is not None:
            rec["image"] = self.image_index
        if self.box is not None:
            rec["box"] = [round(v, 2) for v in self.box]
        if self.score is not None:
            rec["score"] = round(self.score, 4)
        if self.label is not None:
            rec["label"] = self.label
        rec.update(self.info)
        return rec


@dataclass
class SourcesResult:
    """The mix (mono, or stereo ``(2, frames)`` with ``stereo=True``), stems and the record."""

    mix: SoundResult
    stems: list[tuple[str, SoundResult]]
    record: dict
    sources: list[SoundSource] = field(default_factory=list)
    mono_mix: SoundResult | None = None
    condition: torch.Tensor | None = None  # [512] the mix's CLAP condition (images)

    @property
    def seed(self) -> int:
        return self.mix.seed


@dataclass
class _Perceived:
    """The visual sources of one image (global first), as cached per image content."""

    sources: list[SoundSource]
    detections: list[Detection]
    size: tuple[int, int]


@dataclass
class _Request:
    """A run's sources as parsed and checked by :meth:`SourcesPipeline.parse_sources` (no file read yet):
    ``(value, weight)`` pairs, the image or the video, and the slots left for detections."""

    image: object
    video: object
    texts: list[tuple[str, float]]
    audios: list[tuple[object, float]]
    boxes: list[tuple[object, float]]
    masks: list
    extra_images: list[tuple[object, float]]
    image_weight: float
    detect: bool
    room_left: int  # slots left for detections once every given source has its own


@dataclass
class _Inputs:
    """The decoded inputs of a run (:meth:`SourcesPipeline.read_inputs`)."""

    audio_data: list[tuple]  # (wave, sample rate, name, info, weight)
    images: list[tuple[Image.Image, float]]  # (image, weight), the main image first
    boxes: list[tuple[tuple, float]]  # checked boxes of the main image, with their weights
    masks: list[np.ndarray]  # checked masks of the main image


def _image_key(image: Image.Image) -> str:
    h = hashlib.sha1()
    h.update(f"{image.size}|{image.mode}|".encode())
    h.update(image.tobytes())
    return h.hexdigest()


#: Kept under its old name: ``benchmarks/bench_sources.py`` imports it from here.
_crop_box = crop_box


def _mask_region(img: Image.Image, mask: np.ndarray) -> tuple[Image.Image, tuple[float, float, float, float]]:
    return cut_out(img, mask, background=(0, 0, 0))  # released SS2A: the image multiplied by the mask


#: Mask files whose compression noise would turn black pixels nonzero.
_LOSSY_MASK_FORMATS = ("JPEG", "MPO")


def _mask_inside(arr: np.ndarray, what: str) -> np.ndarray:
    """Nonzero = inside, whatever the scale (0/1, 0/255, bool, float); [H, W, C]: any colour channel
    nonzero (a 2nd/4th channel is alpha and is ignored)."""
    if arr.ndim == 3:
        if arr.shape[-1] in (2, 4):
            arr = arr[..., :-1]
        arr = arr.any(axis=-1) if arr.dtype == bool else (arr != 0).any(axis=-1)
    if arr.ndim != 2:
        raise InputError(f"{what} must be a 2-d array (H x W), got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise InputError(f"{what} contains NaN or infinite values")
    return arr != 0


def _load_mask(mask, size: tuple[int, int], what: str) -> np.ndarray:
    """A bool [H, W] mask from a file or an array: **nonzero = inside** (0/1 and 0/255 alike).

    Files: a grey or colour image, any nonzero pixel (not black) is inside, alpha ignored; a palette
    image: any nonzero palette index. JPEG is refused: its noise makes black pixels nonzero."""
    w, h = size
    if isinstance(mask, (str, os.PathLike)):
        try:
            with Image.open(Path(mask).expanduser()) as m:
                if m.format in _LOSSY_MASK_FORMATS:
                    raise InputError(f"{what} {mask}: a {m.format} mask is lossy (its noise makes black pixels "
                                     "nonzero); save masks as PNG")
                if m.mode == "P":  # palette indices: 0 = outside (label-map convention)
                    arr = np.asarray(m)
                elif m.mode in ("1", "L", "I", "I;16", "F", "RGB", "RGBA", "LA", "RGBX", "CMYK"):
                    arr = np.asarray(m.convert("RGB") if m.mode == "CMYK" else m)
                else:
                    arr = np.asarray(m.convert("L"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{what} {mask}: not a readable image ({exc})") from None
    else:
        arr = np.asarray(mask)
    arr = _mask_inside(arr, what)
    if arr.shape != (h, w):
        raise InputError(f"{what} is {arr.shape[1]}x{arr.shape[0]}, the image is {w}x{h}")
    if arr.sum() < 4:
        raise InputError(f"{what} selects no pixels (or fewer than 4)")
    return arr


def _prepare_audio(item, what: str) -> tuple[np.ndarray, int, str, dict, list[str]]:
    """Validate one audio source; returns (mono wave, sample rate, display name, info, notes)."""
    notes: list[str] = []
    if isinstance(item, AudioClip):
        wave = np.asarray(item.wave, dtype=np.float32)
        sr, name = int(item.sample_rate), item.name
        if wave.ndim == 2 and wave.shape[0] > wave.shape[1]:
            raise InputError(f"{what}: audio arrays are (channels, frames); got shape {wave.shape}")
        if not np.isfinite(wave).all():
            raise InputError(f"{what} contains NaN or infinite samples")
    else:
        path = Path(item).expanduser()
        wave, sr = load_audio(path, mono=False)
        name = path.name
    if sr <= 0:
        raise InputError(f"{what}: sample rate must be positive, got {sr}")
    channels = 1 if wave.ndim == 1 else int(wave.shape[0])
    if wave.ndim == 2:
        if channels > 1:
            notes.append(f"audio source {name} has {channels} channels; it was downmixed to mono (channel mean)")
        wave = wave.mean(axis=0)
    seconds = wave.size / sr
    if wave.size == 0 or seconds < MIN_AUDIO_S:
        raise InputError(f"audio source {name} is {seconds:.2f} s long; it must be at least {MIN_AUDIO_S:g} s")
    if float(np.abs(wave).max()) < SILENCE_PEAK:
        raise InputError(f"audio source {name} is silent (peak below -80 dBFS)")
    info = {"file": str(item) if not isinstance(item, AudioClip) else name, "sample_rate": sr, "channels": channels,
            "duration_s": round(seconds, 3)}
    return wave.astype(np.float32, copy=False), sr, name, info, notes


def _cycle_mix_notes(sources, single_image: bool, criterion: str, used: Sequence[str]) -> list[str]:
    """Notes for Cycle Mix's degenerate scenes (see :mod:`foleykit.modules.cycle_mix`)."""
    if sources is not None and single_image and len(sources) == 1:
        how = "by relevance (cosine) to" if criterion == "spread" else "against"
        return [f"the whole image is the only sound source: Cycle Mix ranked candidates {how} its own track "
                "semantics (the image also fills the feedback slot)"]
    fallback = sum(c != criterion for c in used)
    if not fallback:
        return []
    where = "" if len(used) == 1 else f" in {fallback} of {len(used)} frames"
    return [f"Cycle Mix had one source to score{where}; the spread of one similarity is always 0, so candidates "
            "were ranked by relevance (cosine to that source's track) instead"]


# ---------------------------------------------------------------------- stereo


def pan_gains(position: float) -> tuple[float, float]:
    """Equal-power pan: position 0 = left, 0.5 = centre, 1 = right → (gain_L, gain_R), gL² + gR² = 1."""
    p = min(max(float(position), 0.0), 1.0)
    theta = p * math.pi / 2
    return math.cos(theta), math.sin(theta)


def stereo_from_stems(stems: Sequence[np.ndarray], positions: Sequence[float], weights: Sequence[float]) -> np.ndarray:
    """(2, frames): Σ weight · pan(position) · stem / RMS(stem) (see the module docstring)."""
    if not stems:
        raise InputError("a stereo mix needs at least one stem")
    n = min(s.shape[-1] for s in stems)
    out = np.zeros((2, n), dtype=np.float64)
    for wave, pos, w in zip(stems, positions, weights):
        x = np.asarray(wave[:n], dtype=np.float64)
        rms = float(np.sqrt(np.mean(x**2)))
        if rms < SILENCE_PEAK:
            continue
        gl, gr = pan_gains(pos)
        out[0] += w * gl * x / rms
        out[1] += w * gr * x / rms
    return out.astype(np.float32)


# ---------------------------------------------------------------------- pipeline


class SourcesPipeline:
    """SS2A: images (+ boxes/masks), texts and audios → one mixture CLAP → sound (+ stems, stereo)."""

    def __init__(
        self,
        clip: ClipEncoder,
        clap: GeneratorClap,
        generator: AudioLDMGenerator,
        ss2a: SS2ABundle | None,
        *,
        detector: SoundSourceDetector | None = None,
        prior: TextToImagePrior | None = None,
        detector_ref: str | None = None,
        prior_ref: str | None = None,
        model_set: ModelSet | None = None,
        cache_size: int = 8,
        route: tuple[str, str] | None = None,
    ) -> None:
        self.clip = clip
        self.clap = clap
        self.generator = generator
        self.ss2a = ss2a
        self._detector = detector
        self._prior = prior
        self.detector_ref = detector_ref
        self.prior_ref = prior_ref
        self.model_set = model_set
        self._dtype: torch.dtype | None = None
        self._lock = threading.RLock()
        self._cache: OrderedDict[tuple, _Perceived] = OrderedDict()
        self._cache_size = max(1, int(cache_size))
        # (route, why): SS2A modules ("trained" / "released"), or none: "training-free" (pipelines/training_free.py)
        self.route, self.route_why = route or ((("released" if ss2a.source.startswith("released") else "trained"),
                                                 "SS2A modules given") if ss2a is not None
                                                else (TRAINING_FREE, "no SS2A modules given"))
        self.free = TrainingFree(clip, generator_clap(self)) if ss2a is None else None
        if ss2a is not None:
            ss2a.check(clip.dim, clap.dim)
            self.ss2a.to(clip.device)

    @classmethod
    def from_models(
        cls,
        models: str | None = None,
        *,
        ss2a: str | os.PathLike | None = None,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype | None = None,
        route: str | None = "auto",
    ) -> SourcesPipeline:
        """Load CLIP ViT-L/14, CLAP and AudioLDM of a model set, the SS2A bundle, and (lazily, when
        first needed) the OWLv2 detector and the text prior.

        ``ss2a``: a bundle folder (``manifold/``, ``remixer/``, optional ``temporal/``), the released
        ``ssv2a.pth`` (``ssv2a.json`` and optional ``agg.pth`` beside it); else the model set's ``ss2a``
        role; else the training-free route (:mod:`foleykit.pipelines.training_free`). ``route``:
        auto | trained | released | training-free (:func:`~foleykit.pipelines.training_free.choose_route`).
        """
        ms = resolve_model_set(models)
        route_name, ref, why = choose_route("sources", route, ss2a, ms.extra.get("ss2a"))
        from . import components  # one CLIP, CLAP and generator per process, shared by every method

        core = components.core_parts(ms, device, dtype)
        clip, gen, clap, dev, dt = core.clip, core.generator, core.clap, core.device, core.dtype
        bundle = None if route_name == TRAINING_FREE else load_ss2a(ref)
        pipe = cls(clip, clap, gen, bundle, detector_ref=ms.extra.get("detector"), prior_ref=ms.extra.get("prior"),
                   model_set=ms, route=(route_name, why))
        pipe._dtype = dt
        return pipe

    # -- lazily loaded perception models ---------------------------------------------------------
    @property
    def detector(self) -> SoundSourceDetector:
        with self._lock:
            if self._detector is None:
                if not self.detector_ref:
                    raise InputError("this model set has no 'detector' role; pass detect=False (--no-detect) or boxes")
                from . import components

                self._detector = components.detector(self.detector_ref, self.clip.device, self._dtype)
            return self._detector

    @property
    def prior(self) -> TextToImagePrior | None:
        """The text prior, or None when the model set has none (texts then use CLIP text)."""
        with self._lock:
            if self._prior is None and self.prior_ref:
                from . import components

                self._prior = components.prior(self.prior_ref, self.clip.device, self._dtype)
            return self._prior

    @property
    def max_slots(self) -> int:
        return int(self.ss2a.remixer.config.max_sources) if self.ss2a is not None else 64

    # -- perception ------------------------------------------------------------------------------
    @torch.no_grad()
    def perceive_image(
        self,
        image: Image.Image,
        *,
        image_index: int = 0,
        weight: float = 1.0,
        boxes: Sequence[tuple] = (),
        masks: Sequence[np.ndarray] = (),
        detect: bool = True,
        threshold: float = DEFAULT_THRESHOLD,
        max_detections: int = DEFAULT_MAX_DETECTIONS,
        nms_iou: float = DEFAULT_NMS_IOU,
        min_area: float = DEFAULT_MIN_AREA,
        detector_size: int | None = None,
    ) -> _Perceived:
        """The visual sources of one image: its global source, detections, boxes and masks, each with a
        unit CLIP embedding. Detection runs once and CLIP once (one batch) per image; cached by content."""
        mask_keys = tuple(hashlib.sha1(np.packbits(m).tobytes()).hexdigest() for m in masks)
        key = (_image_key(image), tuple(tuple(b) for b in boxes), mask_keys, bool(detect), float(threshold),
               int(max_detections), float(nms_iou), float(min_area), detector_size)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return self._retag(hit, image_index, weight)
        w, h = image.size
        dets = self.detector.detect(image, threshold=threshold, nms_iou=nms_iou, max_detections=max_detections,
                                    min_area=min_area, image_size=detector_size) if detect and max_detections > 0 else []
        crops = [image]
        sources = [SoundSource(0, "image", "image", "image", weight, image_index=image_index)]
        for d in dets:
            crops.append(crop_box(image, d.box))
            sources.append(SoundSource(0, "detected", d.label, _slug(d.label), weight, image_index=image_index,
                                       box=d.box, position=0.5 * (d.box[0] + d.box[2]) / w, score=d.score,
                                       label=d.label))
        for b in boxes:
            crops.append(crop_box(image, b))
            sources.append(SoundSource(0, "box", "box " + ",".join(_fmt(v) for v in b),
                                       "box-" + "-".join(_fmt(v) for v in b), weight, image_index=image_index,
                                       box=tuple(b), position=0.5 * (b[0] + b[2]) / w))
        for k, m in enumerate(masks):
            crop, bbox = _mask_region(image, m)
            crops.append(crop)
            sources.append(SoundSource(0, "mask", f"mask {k + 1}", f"mask-{k + 1}", weight, image_index=image_index,
                                       box=bbox, position=0.5 * (bbox[0] + bbox[2]) / w,
                                       info={"mask_area": round(float(m.mean()), 6)}))
        clips = self.clip.embed_images(crops, normalize=True).cpu()
        for s, c in zip(sources, clips):
            s.clip = c
        perceived = _Perceived(sources, dets, (w, h))
        with self._lock:
            self._cache[key] = perceived
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return self._retag(perceived, image_index, weight)

    @staticmethod
    def _retag(p: _Perceived, image_index: int, weight: float) -> _Perceived:
        import copy

        sources = [copy.copy(s) for s in p.sources]
        for s in sources:
            s.image_index, s.weight, s.info = image_index, weight, dict(s.info)
        return _Perceived(sources, p.detections, p.size)

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str], *, mode: str, seed: int, prior_steps: int, prior_guidance: float
                    ) -> tuple[torch.Tensor, str, list[str]]:
        """[N, clip_dim] unit CLIP-image-space embeddings of text sources, the mode used and notes.
        Training-free route: [N, clap_dim] CLAP text vectors, mode ``"clap"``."""
        notes: list[str] = []
        if self.free is not None:
            return self.free.embed_texts(texts), "clap", notes
        if not texts:
            return torch.empty(0, self.clip.dim), mode, notes
        if mode == "prior":
            prior = self.prior
            if prior is None:
                notes.append("this model set has no text prior; text sources use plain CLIP text embeddings")
                mode = "clip"
            else:
                if prior.dim != self.clip.dim:
                    raise InputError(f"the text prior gives {prior.dim}-d embeddings, the image encoder {self.clip.dim}-d")
                emb = prior.embed_texts(texts, seed=seed, num_inference_steps=prior_steps,
                                        guidance_scale=prior_guidance)
                return emb.cpu(), mode, notes
        return self.clip.embed_texts(list(texts), normalize=True).cpu(), mode, notes

    # -- validation ------------------------------------------------------------------------------
    def _validate(self, *, texts, audios, text_mode, criterion, cycle_rounds, cycle_samples, var_samples, max_sources,
                  duration_s, frames) -> None:
        if text_mode not in TEXT_MODES:
            raise InputError(f"text mode must be one of {', '.join(TEXT_MODES)}, got {text_mode!r}")
        if criterion not in CRITERIA:
            raise InputError(f"cycle mix criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
        if not (1 <= cycle_rounds <= 1000) or not (1 <= cycle_samples <= 1024) or not (0 <= var_samples <= 1024):
            raise InputError("cycle mix needs 1..1000 rounds, 1..1024 samples and 0..1024 variational samples")
        if not (2 <= max_sources <= self.max_slots):
            raise InputError(f"max sources must be between 2 and the Remixer's {self.max_slots} slots, got {max_sources}")
        check_duration(duration_s)
        if not (1 <= frames <= 1000):
            raise InputError(f"frames per window must be between 1 and 1000, got {frames}")
        for t, _ in texts:
            if not isinstance(t, str) or not t.strip():
                raise InputError("a text source is empty; give some words, e.g. --text 'rain on a tin roof'")

    # -- generation: one run is a short sequence of named steps ------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        image=None,
        video: str | os.PathLike | None = None,
        *,
        texts: Sequence = (),
        audios: Sequence = (),
        boxes: Sequence = (),
        masks: Sequence = (),
        images: Sequence = (),
        image_weight: float = 1.0,
        detect: bool | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        max_detections: int = DEFAULT_MAX_DETECTIONS,
        detector_size: int | None = None,
        max_sources: int = 64,
        text_mode: str = "prior",
        prior_steps: int = DEFAULT_PRIOR_STEPS,
        prior_guidance: float = DEFAULT_PRIOR_GUIDANCE,
        duration_s: float | None = None,
        preset: str = "fast",
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        num_candidates: int = 1,
        seed: int | None = None,
        cycle_rounds: int = DEFAULT_CYCLE_ROUNDS,
        cycle_samples: int = DEFAULT_CYCLE_SAMPLES,
        var_samples: int = DEFAULT_VAR_SAMPLES,
        criterion: str = "spread",
        frames: int = DEFAULT_VIDEO_FRAMES,
        stems: bool = False,
        stereo: bool = False,
        progress: bool | ProgressFn = True,
        bridge: BridgeSettings | None = None,
        negative: str | None = None,
    ) -> SourcesResult:
        """Generate the sound of a composition of sources (see the module docstring).

        ``image``: the main image (path, PIL or array) — or a video path, like ``video``; ``images``:
        more images. ``boxes`` / ``masks`` are regions of the main image (pixels, x0,y0,x1,y1 / bool HxW).
        ``texts``, ``audios`` (paths or :class:`AudioClip`), ``boxes``, ``images``: each item may be
        ``(value, weight)``. ``detect``: run OWLv2 on the images (default: unless boxes or masks are
        given). ``max_detections`` per image, ``max_sources`` slots in all (M, at most 64);
        ``detector_size``: OWLv2 input side in pixels (default: native 960; smaller is cheaper, coarser).
        ``stems``/``stereo``: also generate one stem per source / a stereo mix from the stems.
        ``progress``: True/False for terminal bars, or ``fn(fraction, message)``.
        ``bridge``: the zero-shot bridge's settings (training-free route only).

        The steps, each a method below: :meth:`_start_run` → :meth:`parse_sources` →
        :meth:`read_inputs` → :meth:`perceive_texts_and_audios` → (a video: :meth:`_video`) →
        :meth:`perceive_images` → :meth:`compose` → :meth:`_generate` → :meth:`mix_and_stems`.
        """
        seed = resolve_seed(seed)
        bridge, neg, report, bars = self._start_run(bridge, negative, progress)
        req = self.parse_sources(
            image, video, texts=texts, audios=audios, boxes=boxes, masks=masks, images=images,
            image_weight=image_weight, detect=detect, threshold=threshold, max_detections=max_detections,
            detector_size=detector_size, max_sources=max_sources, text_mode=text_mode, criterion=criterion,
            cycle_rounds=cycle_rounds, cycle_samples=cycle_samples, var_samples=var_samples, duration_s=duration_s,
            frames=frames, stems=stems, stereo=stereo)
        notes: list[str] = []
        inputs = self.read_inputs(req, notes)  # cheap checks first, so a bad file fails before any model runs
        if report:
            report(0.0, "perceiving sources")
        text_sources, audio_sources, text_mode_used = self.perceive_texts_and_audios(
            req, inputs, notes, text_mode=text_mode, seed=seed, prior_steps=prior_steps, prior_guidance=prior_guidance)
        det_kwargs = {"detect": req.detect, "threshold": threshold, "detector_size": detector_size}
        cycle = (cycle_rounds, cycle_samples, var_samples, criterion)
        if req.video is not None:
            return self._video(req.video, text_sources, audio_sources, notes=notes, seed=seed, det_kwargs=det_kwargs,
                               max_detections=max_detections, max_sources=max_sources, duration_s=duration_s,
                               preset=preset, steps=num_inference_steps, guidance=guidance_scale,
                               candidates=num_candidates, cycle=cycle, frames=frames, report=report, bars=bars,
                               text_mode=text_mode_used, bridge=bridge, negative_embeds=neg)

        visual, detections_rec = self.perceive_images(req, inputs, notes, det_kwargs=det_kwargs,
                                                      max_detections=max_detections)
        if report:
            report(0.15, "mixing sources")
        sources = visual + text_sources + audio_sources
        single_image, mix_clap, tracks, cm = self.compose(sources, len(inputs.images), notes, seed=seed, cycle=cycle,
                                                          bridge=bridge)

        # Generation: the mix, then (for stems/stereo) one stem per source, all with the same seed.
        duration = DEFAULT_IMAGE_DURATION_S if duration_s is None else float(duration_s)
        jobs = [("mix", mix_clap)] + ([(s.stem_name, tracks[i]) for i, s in enumerate(sources)] if (stems or stereo) else [])
        waves, settings = self._generate(jobs, duration, seed=seed, preset=preset, steps=num_inference_steps,
                                         guidance=guidance_scale, candidates=num_candidates, report=report, bars=bars,
                                         start=0.2, negative_embeds=neg)
        record = self._record(sources, cm, settings, notes, kind="image", text_mode=text_mode_used, detect=req.detect,
                              threshold=threshold, max_detections=max_detections, max_sources=max_sources,
                              detector_size=detector_size,
                              single_image=single_image, stems=stems, stereo=stereo, bridge=bridge)
        record["detections"] = detections_rec
        result = self.mix_and_stems(waves, jobs, sources, record, seed=seed, stereo=stereo, condition=mix_clap)
        if report:
            report(1.0, "done")
        return result

    def _start_run(self, bridge: BridgeSettings | None, negative: str | None, progress: bool | ProgressFn):
        """Checked bridge settings, the negative prompt's embedding (or None), the progress callback (or
        None) and whether to show terminal bars. On the training-free route the bridge's vocabulary is
        checked (and embedded once per model) here, before any perception."""
        if bridge is not None and self.free is None:
            raise InputError("bridge settings (vocabulary, top-k, temperature) apply to the training-free route only")
        bridge = (bridge or BridgeSettings()).check()
        neg = self.generator.text_embedding(negative) if negative else None  # negative prompt (CFG)
        report = progress if callable(progress) else None
        bars = bool(progress) and report is None
        if self.free is not None:  # vocabulary and top_k checked (and embedded once per model) before perception
            if report:
                report(0.0, "sound vocabulary (embedded once per model, then read from the cache)")
            self.free.bridge(bridge)
        return bridge, neg, report, bars

    def parse_sources(self, image, video, *, texts, audios, boxes, masks, images, image_weight, detect, threshold,
                      max_detections, detector_size, max_sources, text_mode, criterion, cycle_rounds, cycle_samples,
                      var_samples, duration_s, frames, stems, stereo) -> _Request:
        """Step 1, no model and no file read: split ``(value, weight)`` items, check every setting and
        weight, tell an image from a video, and count the sources against the Remixer's slots."""
        texts = [(v.strip() if isinstance(v, str) else v, w) for v, w in (_split_weight(t) for t in texts)]
        audios = [_split_weight(a) for a in audios]
        boxes = [_split_weight(b) for b in boxes]
        extra_images = [_split_weight(i) for i in images]
        self._validate(texts=texts, audios=audios, text_mode=text_mode, criterion=criterion, cycle_rounds=cycle_rounds,
                       cycle_samples=cycle_samples, var_samples=var_samples, max_sources=max_sources,
                       duration_s=duration_s, frames=frames)
        for i, (_, w) in enumerate(texts):
            _check_weight(w, f"text {i + 1}")
        for i, (_, w) in enumerate(audios):
            _check_weight(w, f"audio {i + 1}")
        for i, (_, w) in enumerate(boxes):
            _check_weight(w, f"box {i + 1}")
        _check_weight(image_weight, "image")
        if not (isinstance(max_detections, int) and 0 <= max_detections <= 63):
            raise InputError(f"max detections must be between 0 and 63, got {max_detections}")
        if not (isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0):
            raise InputError(f"detection threshold must be in [0, 1], got {threshold}")
        if detector_size is not None and not (isinstance(detector_size, int) and 16 <= detector_size <= 2048):
            raise InputError(f"detector size must be between 16 and 2048 pixels, got {detector_size}")

        if video is None and image is not None and not isinstance(image, (Image.Image, np.ndarray)) \
                and is_video_path(image):
            video, image = image, None
        if video is not None and image is not None:
            raise InputError("give an image or a video, not both")
        if video is not None and (stems or stereo):
            raise InputError("stems and stereo are for image inputs: a video's sources change from frame to frame")
        if video is not None and (boxes or masks or extra_images):
            raise InputError("boxes, masks and extra images are for image inputs, not a video")
        if image is None and video is None and (boxes or masks):
            raise InputError("boxes and masks select regions of an image; give an image")
        if image is None and video is None and not extra_images and not texts and not audios:
            raise InputError("no sound source: give an image, a video, a text or an audio clip")
        if detect is None:
            detect = not boxes and not masks
        user_count = len(boxes) + len(masks) + len(texts) + len(audios) + len(extra_images) \
            + (1 if (image is not None or video is not None) and extra_images else 0)
        room = max_sources - 1
        if user_count > room:
            raise InputError(f"at most {room} sound sources fit in one scene (M = {max_sources} slots, one kept for "
                             f"Cycle Mix feedback); got {user_count}")
        return _Request(image, video, texts, audios, boxes, list(masks), extra_images, image_weight, detect,
                        room - user_count)

    def read_inputs(self, req: _Request, notes: list[str]) -> _Inputs:
        """Step 2, still no model: decode the audio clips, images, boxes and masks (a bad file fails here)."""
        audio_data = []
        for i, (a, w) in enumerate(req.audios):
            wave, sr, name, info, n = _prepare_audio(a, f"audio {i + 1}")
            audio_data.append((wave, sr, name, info, w))
            notes += n
        main_img = None
        img_list: list[tuple[Image.Image, float]] = []
        if req.image is not None:
            main_img = load_image(req.image)
            img_list.append((main_img, req.image_weight))
        for i, (img, w) in enumerate(req.extra_images):
            img_list.append((load_image(img), _check_weight(w, f"image {i + 2}")))
        checked_boxes, checked_masks = [], []
        if main_img is not None:
            W, H = main_img.size
            checked_boxes = [(check_box(b, W, H, f"box {i + 1}"), w) for i, (b, w) in enumerate(req.boxes)]
            checked_masks = [_load_mask(m, (W, H), f"mask {i + 1}") for i, m in enumerate(req.masks)]
        return _Inputs(audio_data, img_list, checked_boxes, checked_masks)

    def perceive_texts_and_audios(self, req: _Request, inputs: _Inputs, notes: list[str], *, text_mode: str, seed: int,
                                  prior_steps: int, prior_guidance: float
                                  ) -> tuple[list[SoundSource], list[SoundSource], str]:
        """Step 3: the text and audio sources, each embedded once (for a video: once for all frames).
        Returns (text sources, audio sources, the text mode used)."""
        texts = req.texts
        text_emb, text_mode_used, tnotes = self.embed_texts([t for t, _ in texts], mode=text_mode, seed=seed,
                                                            prior_steps=prior_steps, prior_guidance=prior_guidance)
        notes += tnotes
        audio_emb = torch.empty(0, self.clap.dim)
        if inputs.audio_data:
            audio_emb = torch.cat([self.clap.embed_audio([wv], sr).cpu() for wv, sr, *_ in inputs.audio_data])
        free = self.free is not None  # training-free: texts are CLAP vectors already
        text_sources = [SoundSource(0, "text", f"text '{t}'", f"text-{_slug(t)}", w, clip=None if free else text_emb[i],
                                    clap=text_emb[i] if free else None, info={"text_mode": text_mode_used})
                        for i, (t, w) in enumerate(texts)]
        audio_sources = [SoundSource(0, "audio", f"audio {name}", f"audio-{_slug(Path(name).stem)}", w,
                                     clap=audio_emb[i], info=info)
                         for i, (_, _, name, info, w) in enumerate(inputs.audio_data)]
        return text_sources, audio_sources, text_mode_used

    def perceive_images(self, req: _Request, inputs: _Inputs, notes: list[str], *, det_kwargs: dict,
                        max_detections: int) -> tuple[list[SoundSource], list[dict]]:
        """Step 4: the visual sources of every image (detection + CLIP once per image), within the slots
        left over. Returns (visual sources, the detections' record)."""
        img_list, checked_boxes, checked_masks = inputs.images, inputs.boxes, inputs.masks
        room_left = req.room_left
        visual: list[SoundSource] = []
        detections_rec = []
        for k, (img, w) in enumerate(img_list):
            bx = [b for b, _ in checked_boxes] if k == 0 else []
            mk = checked_masks if k == 0 else []
            budget = min(max_detections, room_left)
            p = self.perceive_image(img, image_index=k, weight=w, boxes=bx, masks=mk, max_detections=budget,
                                    **det_kwargs)
            room_left -= len(p.detections)
            if k == 0:  # per-box weights
                for s, (_, bw) in zip([s for s in p.sources if s.kind == "box"], checked_boxes):
                    s.weight = bw
            if len(img_list) > 1:
                p.sources[0].name, p.sources[0].slug = f"image {k + 1}", f"image-{k + 1}"
            visual += p.sources
            detections_rec.append({"image": k, "size": list(p.size), "detections": [d.to_record() for d in p.detections]})
            if req.detect and budget > 0 and not p.detections:
                note = (f"no sound source detected in image {k + 1}" if len(img_list) > 1 else "no sound source detected")
                note += "; the whole image is used as the only visual source" if not (bx or mk) else \
                    "; using the whole image and the given regions"
                notes.append(note)
        return visual, detections_rec

    def compose(self, sources: list[SoundSource], n_images: int, notes: list[str], *, seed: int, cycle,
                bridge: BridgeSettings | None) -> tuple[bool, torch.Tensor, torch.Tensor, dict]:
        """Step 5: Cycle Mix of all sources into one mixture CLAP (or the training-free mix); numbers the
        sources and gives each its track vector. Returns (single_image, mix CLAP, tracks, the mix's record)."""
        criterion = cycle[3]
        # Released weights: an image with texts or audios is the released multimodal layout (srcs_to_audio).
        single_image = n_images == 1 and not (self.ss2a is not None and self.ss2a.released_tokens
                                              and any(s.kind in ("text", "audio") for s in sources))
        mix_clap, tracks, cm = self._mix(sources, single_image=single_image, seed=seed, cycle=cycle, bridge=bridge)
        notes += cm.pop("notes") if self.free is not None else \
            _cycle_mix_notes(sources, single_image, criterion, [cm["criterion_used"]])
        for i, s in enumerate(sources):
            s.index, s.vector = i, tracks[i]
            s.info["track_similarity"] = None if not math.isfinite(cm["similarity"][i]) else round(cm["similarity"][i], 4)
        return single_image, mix_clap, tracks, cm

    def mix_and_stems(self, waves: Sequence[np.ndarray], jobs, sources: list[SoundSource], record: dict, *,
                      seed: int, stereo: bool, condition: torch.Tensor) -> SourcesResult:
        """Step 6: the generated waves as the result: the mono mix, one stem per source (when generated)
        and, with ``stereo``, the stereo mix panned from the stems."""
        sr = self.generator.sample_rate
        mono = SoundResult(waves[0], sr, seed, record)
        stem_results = [(name, SoundResult(waves[j + 1], sr, seed, {"source": sources[j].to_record()}))
                        for j, (name, _) in enumerate(jobs[1:])]
        mix = mono
        if stereo:
            st = stereo_from_stems([r.waveform for _, r in stem_results], [s.position for s in sources],
                                   [s.weight for s in sources])
            mix = SoundResult(st, sr, seed, record)
        return SourcesResult(mix=mix, stems=stem_results, record=record, sources=sources,
                             mono_mix=mono if stereo else None, condition=condition)

    # -- mixing ------------------------------------------------------------------------------------
    def _slots(self, sources: Sequence[SoundSource], single_image: bool):
        clip_dim, clap_dim = self.clip.dim, self.clap.dim
        glob = sources[0].clip if single_image and sources and sources[0].kind == "image" else None
        rest = sources[1:] if glob is not None else list(sources)
        clip_src = [s.clip for s in rest if s.clip is not None]
        audio_src = [s.clap for s in rest if s.clap is not None]
        slots = pack_sources(
            torch.stack(clip_src) if clip_src else None, torch.stack(audio_src) if audio_src else None, glob,
            max_sources=self.max_slots, clip_dim=clip_dim, clap_dim=clap_dim,
        )
        # Slot order: [global or empty], clip sources, audio sources == the sources list (+1 if no global).
        offset = 0 if glob is not None else 1
        weights = torch.zeros(1, slots.num_slots)
        for i, s in enumerate(sources):
            weights[0, i + offset] = s.weight
        return slots, weights, offset

    def _mix(self, sources: Sequence[SoundSource], *, single_image: bool, seed: int, cycle,
             bridge: BridgeSettings | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
        if self.free is not None:
            return self.free.mix(sources, seed=seed, cycle=cycle, settings=bridge)
        rounds, samples, var_samples, criterion = cycle
        slots, weights, offset = self._slots(sources, single_image)
        gen = make_generator(seed)
        m, r = self.ss2a.manifold, self.ss2a.remixer
        res = cycle_mix(m, r, slots, rounds=rounds, samples=samples, var_samples=var_samples, criterion=criterion,
                        generator=gen, slot_weights=weights)
        codes = manifold_codes(m, slots)  # means: each source's deterministic code
        tracks = m.to_clap(codes)[0].cpu()  # [M, clap] unit track semantics χ(e)
        n = len(sources)
        sim = res.track_similarity[0].cpu().tolist()
        return res.clap[0].cpu(), tracks[offset : offset + n], {
            "score": float(res.score[0]), "similarity": sim[offset : offset + n], "slots": slots.num_slots,
            "rounds": rounds, "samples": samples, "var_samples": var_samples, "criterion": criterion,
            "criterion_used": res.criterion_used[0],
        }

    def _generate(self, jobs, duration, *, seed, preset, steps, guidance, candidates, report, bars, start=0.0,
                  negative_embeds=None):
        n_steps = steps if steps is not None else get_preset(preset).num_inference_steps
        per_job = math.ceil(len(plan_windows(duration)) / 4) * int(n_steps)
        total = max(1, len(jobs) * per_job)
        done = [0]
        waves, settings = [], {}
        for k, (label, cond) in enumerate(jobs):
            def step_cb(i: int, n: int, _label=label, _k=k) -> None:
                done[0] += 1
                if report:
                    report(start + (1 - start) * min(done[0] / total, 1.0), f"generating {_label} ({_k + 1}/{len(jobs)})")

            out = generate_long(
                self.generator, cond.reshape(1, -1), duration, seed=seed,
                preset=preset, num_inference_steps=steps, guidance_scale=guidance, num_candidates=candidates,
                ranker=self.clap if candidates > 1 else None, progress=bars, step_callback=step_cb,
                negative_embeds=negative_embeds,
            )
            waves.append(out.waveforms[0])
            settings = out.settings
        return waves, settings

    # -- video -------------------------------------------------------------------------------------
    def _video(self, path, text_sources, audio_sources, *, notes, seed, det_kwargs, max_detections, max_sources,
               duration_s, preset, steps, guidance, candidates, cycle, frames, report, bars, text_mode,
               bridge=None, negative_embeds=None) -> SourcesResult:
        from ..io.video import probe_video, read_frames, segment_centres
        from ..modules.temporal import FULL_WINDOW_S, frame_time_positions

        info = probe_video(path)
        duration = info.duration_s if duration_s is None else float(duration_s)
        windows = plan_windows(duration)
        room = max_sources - 1 - len(text_sources) - len(audio_sources)
        scenes, frame_sources = [], []  # per frame: its slots and its sources (slot order)
        frame_times = []  # per window: the times read_frames samples (segment centres)
        empty_frames = 0
        for wi, (start, end) in enumerate(windows):
            end = min(end, info.duration_s)
            start = min(start, max(0.0, end - 1e-3))
            imgs = read_frames(path, frames, start_s=start, end_s=end, max_side=VIDEO_MAX_SIDE)
            frame_times.append(segment_centres(frames, start, end))
            seen: dict[int, _Perceived] = {}
            for fi, img in enumerate(imgs):
                p = seen.get(id(img))
                if p is None:  # read_frames repeats one object for a frame shown at several sample times
                    p = self.perceive_image(img, max_detections=min(max_detections, room), **det_kwargs)
                    seen[id(img)] = p
                if det_kwargs["detect"] and not p.detections:
                    empty_frames += 1
                srcs = p.sources + text_sources + audio_sources
                slots, _, _ = self._slots(srcs, single_image=True)
                scenes.append(slots)
                frame_sources.append(srcs)
            if report:
                report(0.3 * (wi + 1) / len(windows), "perceiving video frames")
        if det_kwargs["detect"] and empty_frames:
            notes.append(f"no sound source detected in {empty_frames} of {len(scenes)} frames; those frames use the "
                         "whole frame as their only visual source")
        batch = stack_slots(scenes)
        weights = torch.zeros(batch.padding_mask.shape)
        for b, srcs in enumerate(frame_sources):  # slot order == source order (the frame's global in slot 0)
            weights[b, : len(srcs)] = torch.tensor([s.weight for s in srcs])
        rounds, samples, var_samples, criterion = cycle
        if self.free is not None:
            res = self.free.mix_scenes(frame_sources, seed=seed, cycle=cycle, settings=bridge)
        else:
            res = cycle_mix(self.ss2a.manifold, self.ss2a.remixer, batch, rounds=rounds, samples=samples,
                            var_samples=var_samples, criterion=criterion, generator=make_generator(seed),
                            slot_weights=weights)
        notes += _cycle_mix_notes(None, True, criterion, res.criterion_used)
        frame_claps = res.clap.view(len(windows), frames, -1)
        agg = self.ss2a.temporal if self.ss2a is not None else None
        # Timestamp positions: 0..frames-1 for a full 10 s window (the released index convention),
        # closer together for a shorter one (a short clip, the last window of a long video).
        positions = frame_time_positions(torch.tensor(frame_times, dtype=torch.float64), FULL_WINDOW_S)
        if agg is not None:
            dev = next(agg.parameters()).device
            window_claps = agg.aggregate(frame_claps.to(dev), positions=positions.to(dev)).cpu()
            how = "temporal aggregator over per-frame SS2A CLAPs"
        elif self.free is not None:
            window_claps = F.normalize(frame_claps.mean(1), dim=-1).cpu()
            how = "mean of per-frame training-free mixes (no temporal aggregator on this route)"
        else:
            window_claps = F.normalize(frame_claps.mean(1), dim=-1).cpu()
            how = "mean of per-frame SS2A CLAPs (no temporal aggregator in the SS2A bundle)"
            notes.append("the SS2A bundle has no temporal aggregator; per-frame CLAPs were averaged")
        if report:
            report(0.35, "generating")
        out = generate_long(self.generator, window_claps, duration, seed=seed, preset=preset, num_inference_steps=steps,
                            guidance_scale=guidance, num_candidates=candidates,
                            ranker=self.clap if candidates > 1 else None, progress=bars,
                            negative_embeds=negative_embeds)
        sources = text_sources + audio_sources
        for i, s in enumerate(sources):
            s.index = i + 1
        fallback = sum(c != criterion for c in res.criterion_used)
        record = self._record(sources, {"score": float(res.score.mean()), "rounds": rounds, "samples": samples,
                                        "var_samples": var_samples, "criterion": criterion, "slots": batch.num_slots,
                                        "frames_ranked_by_relevance": fallback if criterion == "spread" else None},
                              out.settings, notes, kind="video", text_mode=text_mode, detect=det_kwargs["detect"],
                              threshold=det_kwargs["threshold"], max_detections=max_detections,
                              detector_size=det_kwargs["detector_size"],
                              max_sources=max_sources, single_image=True, stems=False, stereo=False, bridge=bridge)
        record["video"] = {"frames_per_window": frames, "windows": [list(w) for w in windows], "aggregation": how,
                           "positions": f"frame times: (t - t_first) * frames / {FULL_WINDOW_S:g} s (0..frames-1 "
                                        "for a full window)",
                           "last_position": [round(float(p[-1]), 4) for p in positions],
                           "frames_without_detections": empty_frames if det_kwargs["detect"] else None}
        if report:
            report(1.0, "done")
        mix = SoundResult(out.waveforms[0], out.sample_rate, seed, record)
        return SourcesResult(mix=mix, stems=[], record=record, sources=sources)

    # -- record ------------------------------------------------------------------------------------
    def _record(self, sources, cm, settings, notes, *, kind, text_mode, detect, threshold, max_detections, max_sources,
                single_image, stems, stereo, detector_size=None, bridge=None) -> dict:
        all_notes = (list(self.ss2a.notes) if self.ss2a is not None else []) + list(notes)
        rec = {
            "method": "sources",
            "input_kind": kind,
            "route": route_record(self.route, self.route_why,
                                  self.free.bridge(bridge) if self.free is not None else None, bridge),
            "sources": [s.to_record() for s in sources],
            "slot_layout": "slot 0 = the image's global source (feedback slot)" if single_image
            else "slot 0 = empty feedback slot; every image's global source has its own slot",
            "perception": {"detect": bool(detect), "threshold": threshold, "max_detections": max_detections,
                           "detector_size": detector_size or (self._detector.image_size if self._detector else None),
                           "max_sources": max_sources, "text_mode": text_mode,
                           "detector": self.detector_ref, "prior": self.prior_ref if text_mode == "prior" else None},
            "cycle_mix": {k: v for k, v in cm.items() if k != "similarity"},
            "ss2a": self.ss2a.record() if self.ss2a is not None else None,
            "generator": settings,
            "models": self.models_record(),
            "seed_policy": "the mix and every stem use the same seed (same initial noise)",
        }
        if stems or stereo:
            rec["stems"] = "one per source: AudioLDM conditioned on " + (
                "the source's own CLAP vector" if self.free is not None else "the source's track semantics chi(e)")
        if stereo:
            rec["stereo"] = ("sum over stems of weight * equal-power pan(position) * stem / RMS(stem); images, texts and "
                             "audios centred, regions panned by the horizontal centre of their box")
        if all_notes:
            rec["notes"] = all_notes
        return rec

    def models_record(self) -> dict:
        from .components import models_record

        return models_record((("clip", self.clip), ("audioldm", self.generator), ("detector", self._detector),
                              ("prior", self._prior)), self.clap, self.model_set)


# ---------------------------------------------------------------------- writing outputs


def write_sources_outputs(
    result: SourcesResult,
    out_path: Path,
    *,
    record: dict,
    stems_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    video_source: object = None,
    loudness: float | None = None,
    stems_relative: bool = False,
    mux: dict | None = None,
) -> tuple[list[Path], list[Path], list[str]]:
    """Write the mix to ``out_path`` and (with ``stems_dir``) one stem per source, each with a sidecar
    (:func:`foleykit.io.outputs.write_mix_and_stems`: staged, all or nothing).
    ``loudness``/``stems_relative``: output levels (:func:`foleykit.io.outputs.level_outputs`).

    A clash with an existing stem (without ``overwrite``) is refused before anything is written.
    Returns (outputs, sidecars, notes).
    """
    from ..io.outputs import StemFile, check_mp4_output, write_mix_and_stems
    from ..io.sidecar import sidecar_path

    check_mp4_output(out_path, video_source)
    stems: list[StemFile] = []
    if stems_dir is not None:
        d = Path(stems_dir).expanduser()
        stem_record = {k: v for k, v in record.items() if k != "notes"}
        stems = [StemFile(d / f"{name}.wav", sound.waveform, sound.sample_rate,
                          {**stem_record, "source": sound.record.get("source")},
                          {"what": f"stem: {name}", "sample_rate": sound.sample_rate,
                           "duration_s": round(sound.duration_s, 6), "channels": 1})
                 for name, sound in result.stems]
        if not stems:
            raise OutputError("no stems were generated (pass stems=True)")
        if not overwrite:
            clash = [s.path.name for s in stems if s.path.exists() or sidecar_path(s.path).exists()]
            if clash:
                raise OutputError(f"stems folder {d} already holds {clash[0]}; pass --overwrite to replace it")
    mix = result.mix
    output = {"what": "stereo mix from stems" if mix.waveform.ndim == 2 else "mix", "sample_rate": mix.sample_rate,
              "duration_s": round(mix.duration_s, 6),
              "channels": 1 if mix.waveform.ndim == 1 else int(mix.waveform.shape[0])}
    return write_mix_and_stems(out_path, mix.waveform, mix.sample_rate, record, output, stems_dir=stems_dir,
                               stems=stems, video_source=video_source, loudness=loudness,
                               stems_relative=stems_relative, mux=mux)
