"""Object-aware generation ("Sounding that Object"): click, box or name the objects that should sound.

Image → CLIP patch embeddings (ViT-L/14, 16×16 patches of the centre square) → grounding module
(single-head text→patch attention + MLP, see :mod:`foleykit.modules.grounding`) → one 512-d
condition → AudioLDM. Each selected object gets its own attention weights over the patches:

* a **click** or a **box** → SAM mask (the image embedding computed once per image, the mask
  decoder once per prompt) → area-averaged to the patch grid → rescaled to the attention's mean and
  variance → substituted for the softmax weights (the paper's test-time mask substitution);
* a **text** → the grounding module's own learned attention for that CLAP text query.

Without a grounding module (none is published) the **training-free route** runs instead
(:mod:`foleykit.pipelines.training_free`): each clicked object is cut out on grey and bridged from CLIP
to CLAP through a vocabulary of sounds; texts use the CLAP text tower.

What comes out (:class:`ObjectsResult`): one sound per object, and a **blend**. "Blended in the
scene's context" means here: a *single* diffusion pass conditioned on the union of all selected
objects (clicks/boxes: union of their masks; texts: their attention normalised to a peak of 1; the
union is the element-wise maximum on the patch grid), rescaled like one mask. The model therefore
renders the objects together, as one scene, instead of summing separately generated stems; and
every patch still reaches the condition through the values ``V``, so the rest of the image shapes
the sound too. ``context`` (0..1) additionally mixes in that fraction of uniform weights over all
patches (the whole scene), so the ambience of the unselected rest of the picture becomes audible:
``w = (1 - context) * w_union + context / P``. With one object, the blend is that object's sound.

Rescaling statistics: a grounding module trained with ``foleykit train grounding`` records the
variance of its attention weights; masks are rescaled to that mean (1/P) and variance. A module
without recorded statistics (never trained) uses the normalised mask ``m / sum(m)`` instead (mean
1/P, all weight on the object), which is what the rescaled mask equals when the attention's support
matches the object. The record says which was used.

Seeds: every object and the blend are generated with the same seed, i.e. from the same initial
noise, so stems differ only by their conditioning, and an object's sound does not depend on which
other objects are selected.
"""

from __future__ import annotations

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
from PIL import Image

from ..encoders.generator_clap import GeneratorClap
from ..encoders.clip import ClipEncoder
from ..encoders.segmenter import Segmenter, image_key
from ..errors import InputError, ModelNotAvailableError, OutputError
from ..generator.long_audio import generate_long, plan_windows
from ..generator.pipeline import AudioLDMGenerator
from ..generator.presets import get_preset
from ..io.image import load_image
from ..model_sets import ModelSet, resolve_model_set
from ..modules.grounding import GroundingModule
from ..modules.mask_substitution import (
    masks_to_patch_grid,
    rescale_to_attention,
    save_attention_png,
    save_mask_png,
    union_masks,
)
from ..seeding import resolve_seed
from .mapper import DEFAULT_IMAGE_DURATION_S, check_duration, is_video_path
from .training_free import TRAINING_FREE, TrainingFree, choose_route, generator_clap, route_record
from .zero_shot_bridge import BridgeSettings

__all__ = [
    "PAPER_GUIDANCE_SCALE",
    "SelectedObject",
    "ObjectsPlan",
    "ObjectSound",
    "ObjectsResult",
    "ObjectsPipeline",
    "parse_point",
    "parse_box",
    "stem_names",
    "write_objects_outputs",
]

#: The paper's classifier-free guidance scale at inference (best of 1.0-3.0).
PAPER_GUIDANCE_SCALE = 2.0
#: A text query whose attention is spread over more than this fraction of the patches "matches nothing".
NO_MATCH_SUPPORT = 0.9

ProgressFn = Callable[[float, str], None]


# ---------------------------------------------------------------------- parsing


def _numbers(text: str, n: int, what: str) -> list[float]:
    parts = [p for p in re.split(r"[,\s]+", str(text).strip()) if p]
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        vals = []
    if len(vals) != n or not all(math.isfinite(v) for v in vals):
        form = "X,Y" if n == 2 else "X0,Y0,X1,Y1"
        raise InputError(f"{what} {text!r}: expected {n} numbers as {form} (pixels)")
    return vals


def parse_point(text: str | Sequence[float]) -> tuple[float, float]:
    """``"120,80"`` (or a pair) → (x, y) pixels."""
    if isinstance(text, str):
        x, y = _numbers(text, 2, "click")
        return x, y
    return _numbers(",".join(str(v) for v in text), 2, "click")  # type: ignore[return-value]


def parse_box(text: str | Sequence[float]) -> tuple[float, float, float, float]:
    """``"10,20,200,180"`` (or four numbers) → (x0, y0, x1, y1) pixels."""
    if isinstance(text, str):
        return tuple(_numbers(text, 4, "box"))  # type: ignore[return-value]
    return tuple(_numbers(",".join(str(v) for v in text), 4, "box"))  # type: ignore[return-value]


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.1f}"


def _slug(text: str, limit: int = 32) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return (s[:limit].rstrip("-")) or "text"


# ---------------------------------------------------------------------- results


@dataclass
class SelectedObject:
    """One selected object and the patch weights that condition its sound."""

    index: int  # 1-based, in order clicks, boxes, texts
    kind: str  # "click" | "box" | "text"
    prompt: object  # (x, y) | (x0, y0, x1, y1) | str
    weights: torch.Tensor | None  # (P,) weights substituted for (or equal to) the attention; None: training-free
    cond: torch.Tensor  # (512,) the UNet condition
    selection: torch.Tensor | None  # (P,) in [0, 1]: patch coverage (masks) or attention / max (texts)
    mask: np.ndarray | None = None  # H×W bool SAM mask (clicks and boxes)
    sam_score: float | None = None  # SAM's predicted IoU
    note: str | None = None
    crop: Image.Image | None = None  # training-free: the cut-out CLIP saw
    info: dict = field(default_factory=dict)  # training-free: the bridge's words, ...

    @property
    def label(self) -> str:
        if self.kind == "click":
            x, y = self.prompt  # type: ignore[misc]
            return f"click {_fmt(x)},{_fmt(y)}"
        if self.kind == "box":
            return "box " + ",".join(_fmt(v) for v in self.prompt)  # type: ignore[union-attr]
        return f"text '{self.prompt}'"

    @property
    def slug(self) -> str:
        if self.kind == "click":
            x, y = self.prompt  # type: ignore[misc]
            return f"click-{_fmt(x)}x{_fmt(y)}"
        if self.kind == "box":
            return "box-" + "-".join(_fmt(v) for v in self.prompt)  # type: ignore[union-attr]
        return f"text-{_slug(str(self.prompt))}"

    def to_record(self) -> dict:
        rec = {
            "index": self.index,
            "kind": self.kind,
            "prompt": list(self.prompt) if isinstance(self.prompt, tuple) else self.prompt,
        }
        if self.weights is not None:
            w = self.weights.detach().float().cpu()
            rec["weights"] = {"mean": float(w.mean()), "var": float(w.var(unbiased=False)), "max": float(w.max()),
                              "min": float(w.min())}
            rec["patches_selected"] = int((self.selection > 0).sum())
        rec.update(self.info)
        if self.mask is not None:
            rec["mask_area"] = round(float(self.mask.mean()), 6)
            rec["sam_score"] = self.sam_score
        if self.note:
            rec["note"] = self.note
        return rec


@dataclass
class ObjectsPlan:
    """Everything decided before diffusion: per-object and blend conditions, and how they were made."""

    image: Image.Image
    objects: list[SelectedObject]
    blend_weights: torch.Tensor | None  # (P,); None on the training-free route
    blend_cond: torch.Tensor  # (512,)
    grid: tuple[int, int] | None
    rescale: str | None  # "training_reference" | "normalised_mask"; None on the training-free route
    context: float
    notes: list[str] = field(default_factory=list)
    blend_how: str | None = None  # training-free: how the blend was made
    image_words: list | None = None  # training-free: the bridge's words for the whole image

    @property
    def conditions(self) -> torch.Tensor:
        """[n_objects, 512] per-object conditions."""
        return torch.stack([o.cond for o in self.objects])


@dataclass
class ObjectSound:
    """One object's sound (a stem)."""

    object: SelectedObject
    waveform: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return self.waveform.shape[-1] / self.sample_rate


@dataclass
class ObjectsResult:
    """The blended sound (``waveform``) plus one :class:`ObjectSound` per selected object."""

    waveform: np.ndarray
    sample_rate: int
    seed: int
    objects: list[ObjectSound]
    plan: ObjectsPlan
    record: dict = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.waveform.shape[-1] / self.sample_rate


# ---------------------------------------------------------------------- pipeline


class ObjectsPipeline:
    """Click/box/text-selected objects of an image → per-object sounds and a blend."""

    def __init__(
        self,
        clip: ClipEncoder,
        clap: GeneratorClap,
        grounding: GroundingModule | None,
        generator: AudioLDMGenerator,
        *,
        segmenter: Segmenter | None = None,
        sam_ref: str | None = None,
        grounding_record: dict | None = None,
        model_set: ModelSet | None = None,
        cache_size: int = 4,
        route: tuple[str, str] | None = None,
    ) -> None:
        self.clip = clip
        self.clap = clap
        self.grounding = grounding
        # (route, why): "trained" with a grounding module, else "training-free" (pipelines/training_free.py)
        self.route, self.route_why = route or (("trained", "a grounding module given") if grounding is not None
                                               else (TRAINING_FREE, "no grounding module given"))
        self.free = TrainingFree(clip, generator_clap(self)) if grounding is None else None
        self.generator = generator
        self._segmenter = segmenter
        self.sam_ref = sam_ref
        self.grounding_record = grounding_record or {}
        self.model_set = model_set
        self._patch_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.RLock()
        if grounding is None:
            return
        c = grounding.config
        if (c.grid_h, c.grid_w) != (clip.patch_grid, clip.patch_grid) or c.patch_dim != clip.dim:
            raise InputError(
                f"grounding module expects {c.grid_h}x{c.grid_w} patches of {c.patch_dim}-d, the image encoder "
                f"gives {clip.patch_grid}x{clip.patch_grid} of {clip.dim}-d"
            )
        if c.text_dim != clap.dim:
            raise InputError(f"grounding module takes {c.text_dim}-d text, CLAP gives {clap.dim}-d")

    @classmethod
    def from_models(
        cls,
        models: str | None = None,
        *,
        grounding: str | os.PathLike | None = None,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype | None = None,
        route: str | None = "auto",
    ) -> ObjectsPipeline:
        """Load CLIP (ViT-L/14), CLAP, AudioLDM and (lazily) SAM of a model set, and a grounding module.

        ``grounding``: a folder saved by ``GroundingModule.save_pretrained``; else the model set's
        ``grounding`` role; else the training-free route (:mod:`foleykit.pipelines.training_free`).
        ``route``: auto | trained | training-free (see :func:`~foleykit.pipelines.training_free.choose_route`).

        A grounding folder that holds a ``unet/`` sub-folder (what ``foleykit train grounding`` writes
        into ``final/`` when the UNet was fine-tuned jointly, the paper's default) supplies the UNet:
        it is loaded through the same ``from_pretrained`` path in place of the model set's AudioLDM
        UNet (VAE, vocoder, scheduler and the unconditional CLAP vector stay the model set's), and the
        record names it (``grounding.unet``, ``models.audioldm_unet``).
        """
        ms = resolve_model_set(models)
        route_name, ref, why = choose_route("objects", route, grounding, ms.extra.get("grounding"))
        from . import components  # one CLIP, CLAP and generator per process, shared by every method

        core = components.core_parts(ms, device, dtype)
        clip, gen, clap, dev = core.clip, core.generator, core.clap, core.device
        if route_name == TRAINING_FREE:
            return cls(clip, clap, None, gen, sam_ref=ms.extra.get("sam"), model_set=ms, route=(route_name, why))
        path = Path(ref).expanduser()
        g = GroundingModule.from_folder(ref, what="grounding")
        trained = int(g.ref_attn_count) > 0
        record = {"ref": str(path), "trained": trained}
        if not trained:
            record["note"] = "this grounding module recorded no attention statistics (never trained)"
        gen, unet_record = _use_finetuned_unet(gen, g, path, ms)
        record.update(unet_record)
        if float(g.null_cond.norm()) == 0:
            g.set_null_condition(gen.unconditional_embedding().cpu())
        g = g.to(device=dev).eval()
        g.requires_grad_(False)
        return cls(clip, clap, g, gen, sam_ref=ms.extra.get("sam"), grounding_record=record, model_set=ms,
                   route=(route_name, why))

    # -- parts ------------------------------------------------------------------------------
    @property
    def segmenter(self) -> Segmenter:
        """SAM, loaded on first use (text-only queries never need it)."""
        with self._lock:
            if self._segmenter is None:
                if not self.sam_ref:
                    raise ModelNotAvailableError("this model set has no 'sam' model: clicks and boxes need SAM")
                from . import components

                self._segmenter = components.segmenter(self.sam_ref, self.clip.device, self.clip.dtype)
            return self._segmenter

    @property
    def grid(self) -> tuple[int, int]:
        return self.grounding.config.grid_h, self.grounding.config.grid_w

    @property
    def center_crop(self) -> bool:
        """Whether CLIP sees only the centre square (its default preprocessing); masks must follow."""
        return bool(getattr(self.clip.processor, "do_center_crop", True))

    def patches(self, image: Image.Image) -> torch.Tensor:
        """[1, P, D] CLIP patch embeddings of ``image`` (cached per image content)."""
        key = image_key(image)
        with self._lock:
            if key in self._patch_cache:
                self._patch_cache.move_to_end(key)
                return self._patch_cache[key]
            emb = self.clip.embed_patches([image])
            self._patch_cache[key] = emb
            while len(self._patch_cache) > self._cache_size:
                self._patch_cache.popitem(last=False)
            return emb

    def segment_prompts(self, img: Image.Image, clicks, boxes) -> list[tuple[str, tuple, np.ndarray, float]]:
        """SAM masks of the clicks, then the boxes: (kind, prompt, H×W bool mask, SAM score) each."""
        res = self.segmenter.segment_image(img, points=clicks, boxes=boxes)
        prompts = [("click", c) for c in clicks] + [("box", b) for b in boxes]
        return [(kind, tuple(p), m, s) for (kind, p), m, s in zip(prompts, res.masks, res.scores)]

    def _stats(self) -> tuple[float, float] | None:
        if int(self.grounding.ref_attn_count) > 0:
            return self.grounding.reference_attention_stats()
        return None

    def _mask_weights(self, selection: torch.Tensor, stats: tuple[float, float] | None) -> torch.Tensor:
        if stats is None:
            return selection / selection.sum()
        return rescale_to_attention(selection, mean=stats[0], var=stats[1])

    def _selection(self, mask: np.ndarray, label: str) -> torch.Tensor:
        if not mask.any():
            raise InputError(f"{label}: SAM found no object there; click on (or box) a visible object")
        try:
            return masks_to_patch_grid(mask, self.grid, center_crop=self.center_crop)
        except InputError:
            raise InputError(
                f"{label}: the object lies outside the centred square the image encoder sees; "
                "select an object nearer the middle of the picture"
            ) from None

    # -- planning ---------------------------------------------------------------------------
    @torch.no_grad()
    def plan(
        self,
        image,
        *,
        clicks: Sequence = (),
        boxes: Sequence = (),
        texts: Sequence[str] = (),
        context: float = 0.0,
        bridge: BridgeSettings | None = None,
    ) -> ObjectsPlan:
        """Masks/attention and conditions for every object and for the blend (no diffusion).

        ``bridge``: the zero-shot bridge's settings (training-free route only)."""
        img = load_image(image)
        clicks = [parse_point(c) for c in clicks]
        boxes = [parse_box(b) for b in boxes]
        texts = [str(t) for t in texts]
        if not clicks and not boxes and not texts:
            raise InputError("select at least one object: a click (x,y), a box (x0,y0,x1,y1) or a text")
        if any(not t.strip() for t in texts):
            raise InputError("a text query is empty; name the sound source, e.g. 'a barking dog'")
        if not (isinstance(context, (int, float)) and 0.0 <= float(context) <= 1.0):
            raise InputError(f"context must be between 0 and 1, got {context}")
        context = float(context)
        w, h = img.size
        # Validate every prompt before any model runs (one clear error, nothing computed in vain).
        for i, c in enumerate(clicks):
            Segmenter._check_point(c, w, h, f"click {i + 1}")
        for i, b in enumerate(boxes):
            Segmenter._check_box(b, w, h, f"box {i + 1}")
        if bridge is not None and self.free is None:
            raise InputError("bridge settings (vocabulary, top-k, temperature) apply to the training-free route only")
        if self.free is not None:
            return self.free.plan_objects(self, img, clicks, boxes, texts, context, bridge)

        patches = self.patches(img)
        stats = self._stats()
        objects: list[SelectedObject] = []
        notes: list[str] = []
        if clicks or boxes:
            for kind, prompt, mask, score in self.segment_prompts(img, clicks, boxes):
                obj_label = f"{kind} {len(objects) + 1}"
                sel = self._selection(mask, obj_label)
                weights = self._mask_weights(sel, stats)
                cond, _ = self.grounding(None, patches, attention_override=weights)
                objects.append(SelectedObject(len(objects) + 1, kind, tuple(prompt), weights, cond[0], sel,
                                              mask=mask, sam_score=score))
        if texts:
            text_emb = self.clap.embed_texts(texts).to(patches.device)
            for t, emb in zip(texts, text_emb):
                cond, attn = self.grounding(emb[None], patches)
                a = attn[0]
                support = float(1.0 / (a.pow(2).sum() * a.numel()))  # effective fraction of patches attended
                note = None
                if support > NO_MATCH_SUPPORT:
                    note = (f"text '{t}' matched no region clearly (attention spread over {support:.0%} of the "
                            "image); its sound reflects the whole scene")
                    notes.append(note)
                objects.append(SelectedObject(len(objects) + 1, "text", t, a, cond[0], a / a.max(), note=note))

        if len(objects) == 1 and context == 0.0:
            blend_w, blend_c = objects[0].weights, objects[0].cond
        else:
            union = torch.stack([o.selection for o in objects]).amax(dim=0)
            blend_w = self._mask_weights(union, stats)
            if context > 0:
                blend_w = (1.0 - context) * blend_w + context / blend_w.numel()
            blend_c = self.grounding(None, patches, attention_override=blend_w)[0][0]
        return ObjectsPlan(
            image=img, objects=objects, blend_weights=blend_w, blend_cond=blend_c, grid=self.grid,
            rescale="training_reference" if stats is not None else "normalised_mask", context=context, notes=notes,
        )

    # -- generation -------------------------------------------------------------------------
    def __call__(
        self,
        image,
        *,
        clicks: Sequence = (),
        boxes: Sequence = (),
        texts: Sequence[str] = (),
        context: float = 0.0,
        duration_s: float | None = None,
        preset: str = "fast",
        num_inference_steps: int | None = None,
        guidance_scale: float | None = PAPER_GUIDANCE_SCALE,
        num_candidates: int = 1,
        seed: int | None = None,
        frame_s: float | None = None,
        progress: bool | ProgressFn = True,
        save_maps_dir: str | os.PathLike | None = None,
        bridge: BridgeSettings | None = None,
        negative: str | None = None,
    ) -> ObjectsResult:
        """Generate one sound per selected object and the blend (default 10 s; a video: its length).

        ``image`` may be a video path: the frame at ``frame_s`` (default: the middle) is used.
        ``progress``: True/False for a terminal bar, or ``fn(fraction, message)``.
        """
        seed = resolve_seed(seed)
        source_kind = "image"
        if not isinstance(image, (Image.Image, np.ndarray)) and is_video_path(image):
            image, video_len, frame_s = self._video_frame(image, frame_s)
            source_kind = "video"
            duration_s = video_len if duration_s is None else duration_s
        duration_s = DEFAULT_IMAGE_DURATION_S if duration_s is None else duration_s
        check_duration(duration_s)
        guidance = PAPER_GUIDANCE_SCALE if guidance_scale is None else float(guidance_scale)
        report = progress if callable(progress) else None
        if report:
            report(0.0, "selecting objects")
        plan = self.plan(image, clicks=clicks, boxes=boxes, texts=texts, context=context, bridge=bridge)

        jobs = [(o.label, o.cond) for o in plan.objects]
        separate_blend = len(plan.objects) > 1 or plan.context > 0
        if separate_blend:
            jobs.append(("blend", plan.blend_cond))
        steps = num_inference_steps if num_inference_steps is not None else get_preset(preset).num_inference_steps
        n_windows = len(plan_windows(duration_s))
        total = len(jobs) * math.ceil(n_windows / 4) * int(steps)
        done = [0]
        neg = self.grounding.null_cond if self.grounding is not None and float(self.grounding.null_cond.norm()) > 0 \
            else None
        if negative:  # a negative prompt replaces the unconditional vector (the generator's own text tower)
            neg = self.generator.text_embedding(negative)

        waves: list[np.ndarray] = []
        settings: dict = {}
        for k, (label, cond) in enumerate(jobs):
            def step_cb(i: int, n: int, _label=label, _k=k) -> None:
                done[0] += 1
                if report:
                    report(min(done[0] / total, 1.0), f"generating {_label} ({_k + 1}/{len(jobs)})")

            out = generate_long(
                self.generator, cond[None], duration_s, seed=seed, preset=preset,
                num_inference_steps=num_inference_steps, guidance_scale=guidance, num_candidates=num_candidates,
                ranker=self.clap if num_candidates > 1 else None, negative_embeds=neg,
                progress=bool(progress) and report is None, step_callback=step_cb,
            )
            waves.append(out.waveforms[0])
            settings = out.settings
        if save_maps_dir is not None:  # after generation: an error leaves no maps behind
            self.save_maps(plan, save_maps_dir)
        sr = self.generator.sample_rate
        sounds = [ObjectSound(o, waves[i], sr) for i, o in enumerate(plan.objects)]
        blend = waves[-1] if separate_blend else waves[0]
        record = {
            "method": "objects",
            "input_kind": source_kind,
            "route": route_record(self.route, self.route_why,
                                  self.free.bridge(bridge) if self.free is not None else None, bridge),
            "grounding": dict(self.grounding_record) if self.grounding is not None else None,
            "objects": [o.to_record() for o in plan.objects],
            "blend": {
                "objects": [o.index for o in plan.objects],
                "context": plan.context,
                "how": plan.blend_how or "one diffusion pass conditioned on the union of the objects' patch selections"
                + (", mixed with uniform whole-scene weights" if plan.context > 0 else "")
                + ("" if separate_blend else " (a single object: the blend is its sound)"),
            },
            "seed_policy": "every object and the blend use the same seed (same initial noise)",
            "generator": settings,
            "models": self.models_record(),
        }
        if plan.grid is not None:  # the grounding route's patch weights
            record.update(mask_rescale=plan.rescale, center_crop=self.center_crop, patch_grid=list(plan.grid))
        if plan.image_words is not None:
            record["blend"]["image_bridge_words"] = plan.image_words
        if source_kind == "video":
            record["frame_s"] = frame_s
        if plan.notes:
            record["notes"] = list(plan.notes)
        if report:
            report(1.0, "done")
        return ObjectsResult(waveform=blend, sample_rate=sr, seed=seed, objects=sounds, plan=plan, record=record)

    def _video_frame(self, path, frame_s: float | None) -> tuple[Image.Image, float, float]:
        """(the frame at ``frame_s`` (default: the middle), the video's length, the time used)."""
        from ..io.video import probe_video, read_frames

        info = probe_video(path)
        t = info.duration_s / 2 if frame_s is None else float(frame_s)
        if not (0 <= t < info.duration_s):
            raise InputError(f"frame time {t:g} s is outside the video, which is {info.duration_s:.2f} s long")
        eps = min(1e-3, (info.duration_s - t) / 2)
        frame = read_frames(path, 1, start_s=t, end_s=t + 2 * eps)[0]
        return frame, info.duration_s, t

    # -- maps -------------------------------------------------------------------------------
    def crop_image(self, image: Image.Image) -> Image.Image:
        """The part of ``image`` the patch grid covers (the centre square under CLIP's default)."""
        if not self.center_crop:
            return image
        w, h = image.size
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        return image.crop((left, top, left + s, top + s))

    def save_maps(self, plan: ObjectsPlan, directory: str | os.PathLike) -> list[Path]:
        """PNG maps: per object its mask over the image and its patch weights as a heat map; the blend's too."""
        d = Path(directory).expanduser()
        d.mkdir(parents=True, exist_ok=True)
        crop = self.crop_image(plan.image)
        written = []
        for o in plan.objects:
            stem = f"object-{o.index:02d}-{o.slug}"
            if o.mask is not None:
                save_mask_png(o.mask, d / f"{stem}-mask.png", plan.image)
                written.append(d / f"{stem}-mask.png")
            if o.crop is not None:  # training-free: what CLIP saw
                o.crop.save(d / f"{stem}-crop.png")
                written.append(d / f"{stem}-crop.png")
            if o.weights is not None:
                name = "attention" if o.kind == "text" else "weights"
                save_attention_png(o.weights, plan.grid, d / f"{stem}-{name}.png", crop)
                written.append(d / f"{stem}-{name}.png")
        masks = [o.mask for o in plan.objects if o.mask is not None]
        if masks:
            save_mask_png(union_masks(masks), d / "blend-mask.png", plan.image)
            written.append(d / "blend-mask.png")
        if plan.blend_weights is not None:
            save_attention_png(plan.blend_weights, plan.grid, d / "blend-weights.png", crop)
            written.append(d / "blend-weights.png")
        return written

    def models_record(self) -> dict:
        from .components import models_record

        unet = self.grounding_record.get("unet")
        # the fine-tuned UNet from the grounding folder replaced the model set's
        extra = {"audioldm_unet": {"ref": unet["ref"], "revision": unet["revision"]}} if unet else None
        return models_record((("clip", self.clip), ("audioldm", self.generator), ("sam", self._segmenter)),
                             self.clap, self.model_set, extra)


#: Sub-folder of a grounding folder holding the UNet fine-tuned with it (the trainer's ``final/unet``).
GROUNDING_UNET_SUBFOLDER = "unet"
_UNET_MUST_MATCH = ("in_channels", "out_channels", "class_embed_type", "projection_class_embeddings_input_dim")


def _use_finetuned_unet(gen: AudioLDMGenerator, grounding: GroundingModule, path: Path,
                        ms: ModelSet) -> tuple[AudioLDMGenerator, dict]:
    """The generator with the UNet of ``path/unet`` when the grounding folder has one (a copy: the shared
    generator is left as it is), and the record entries.

    Loaded with the generator's dtype onto its device through :func:`load_pretrained` (the same path as
    every model). Refused when it cannot drive this model set's VAE or take the grounding's condition.
    """
    import json

    from diffusers import UNet2DConditionModel

    from ..encoders.loading import load_pretrained, to_device

    folder = path / GROUNDING_UNET_SUBFOLDER
    if not (folder / "config.json").is_file():
        rec: dict = {"unet": None}
        try:  # the trainer's record: was the UNet fine-tuned (the default) but not kept here?
            training = json.loads((path / "training.json").read_text())
            options = (training.get("run_config") or {}).get("options") or {}
        except (OSError, ValueError, AttributeError):
            training, options = {}, {}
        if training.get("task") == "grounding" and options.get("finetune_unet", True):
            rec["unet_note"] = (f"{path} was trained with the UNet fine-tuned but holds no {GROUNDING_UNET_SUBFOLDER}/ "
                                "sub-folder: the model set's (not fine-tuned) UNet was used")
        return gen, rec
    try:
        unet, src = load_pretrained(UNet2DConditionModel, str(path), subfolder=GROUNDING_UNET_SUBFOLDER,
                                    torch_dtype=gen.dtype)
    except ModelNotAvailableError as exc:
        raise InputError(f"grounding {path}: its fine-tuned UNet could not be loaded: {exc}") from None
    base = gen.unet.config
    want = {"projection_class_embeddings_input_dim": grounding.config.out_dim}
    for key in _UNET_MUST_MATCH:
        expected = want.get(key, base.get(key))
        if unet.config.get(key) != expected or base.get(key) != expected:
            raise InputError(
                f"grounding {path}: its fine-tuned UNet has {key}={unet.config.get(key)!r}, but the model set "
                f"{ms.name!r} and the grounding module need {expected!r}; train it from the same model set"
            )
    gen = gen.with_unet(to_device(unet, gen.device, gen.dtype))
    return gen, {"unet": {"ref": str(folder.resolve()), "revision": src.revision, "fine_tuned": True,
                     "replaces": f"the UNet of {ms.audioldm}"}}


# ---------------------------------------------------------------------- writing outputs


def stem_names(objects: Sequence[SelectedObject] | None = None, *, clicks: Sequence = (), boxes: Sequence = (),
               texts: Sequence[str] = (), suffix: str = ".wav") -> list[str]:
    """File names of the per-object stems, in object order (known before generation from the prompts)."""
    if objects is None:
        objs = [SelectedObject(0, "click", tuple(parse_point(c)), torch.zeros(1), torch.zeros(1), torch.zeros(1)) for c in clicks]
        objs += [SelectedObject(0, "box", tuple(parse_box(b)), torch.zeros(1), torch.zeros(1), torch.zeros(1)) for b in boxes]
        objs += [SelectedObject(0, "text", str(t), torch.zeros(1), torch.zeros(1), torch.zeros(1)) for t in texts]
        for i, o in enumerate(objs):
            o.index = i + 1
        objects = objs
    return [f"object-{o.index:02d}-{o.slug}{suffix}" for o in objects]


def check_stems_dir(stems_dir: str | os.PathLike, names: Sequence[str], *, overwrite: bool) -> Path:
    """Refuse a stems folder that is a file, whose parent is missing, or that already holds these stems."""
    d = Path(stems_dir).expanduser()
    if d.exists() and not d.is_dir():
        raise OutputError(f"stems folder {d} is a file; give a folder")
    parent = d.resolve().parent
    if not d.exists() and not parent.is_dir():
        raise OutputError(f"stems folder {d}: its parent {parent} does not exist")
    if not os.access(d if d.exists() else parent, os.W_OK):
        raise OutputError(f"stems folder {d} is not writable")
    if not overwrite:
        clash = [n for n in names if (d / n).exists() or (d / (n + ".json")).exists()]
        if clash:
            raise OutputError(f"stems folder {d} already holds {clash[0]}; pass --overwrite to replace it")
    return d


def write_objects_outputs(
    result: ObjectsResult,
    out_path: Path,
    *,
    record: dict,
    stems_dir: str | os.PathLike | None = None,
    video_source: object = None,
    loudness: float | None = None,
    stems_relative: bool = False,
    mux: dict | None = None,
) -> tuple[list[Path], list[Path], list[str]]:
    """Write the blend to ``out_path`` and the stems to ``stems_dir``, each with its JSON sidecar
    (:func:`foleykit.io.outputs.write_mix_and_stems`: staged, all or nothing).
    ``loudness``/``stems_relative``: output levels (:func:`foleykit.io.outputs.level_outputs`).
    Returns (outputs, sidecars, notes).
    """
    from ..io.outputs import StemFile, write_mix_and_stems

    stems = []
    if stems_dir is not None:
        folder = Path(stems_dir).expanduser()
        stems = [StemFile(folder / name, sound.waveform, sound.sample_rate, {**record, "object": sound.object.to_record()},
                          {"what": f"stem: {sound.object.label}", "sample_rate": sound.sample_rate,
                           "duration_s": round(sound.duration_s, 6), "channels": 1})
                 for name, sound in zip(stem_names([s.object for s in result.objects]), result.objects)]
    output = {"what": "blend", "sample_rate": result.sample_rate, "duration_s": round(result.duration_s, 6),
              "channels": 1}
    return write_mix_and_stems(out_path, result.waveform, result.sample_rate, record, output, stems_dir=stems_dir,
                               stems=stems, video_source=video_source, loudness=loudness,
                               stems_relative=stems_relative, mux=mux)
