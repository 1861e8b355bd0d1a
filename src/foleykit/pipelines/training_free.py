"""Training-free routes for ``sources`` and ``objects``: every source gets its own CLAP vector in the
generator's space, with public weights only (no SS2A bundle, no grounding module).

Which route runs (:func:`choose_route`, ``--route``):

* ``trained``: a bundle / grounding module trained with foleykit (``--ss2a DIR``, ``--grounding DIR`` or
  the model set's ``ss2a`` / ``grounding`` role);
* ``released``: the authors' released SS2A checkpoint (``--ss2a .../ssv2a.pth``; sources only — no
  grounding weights are published);
* ``training-free``: this module;
* ``auto`` (default): the trained or released module when one is given or in the model set, else
  training-free. A route whose weights are absent is refused with one line.

Per source (:class:`TrainingFree`):

* an image, a detected / boxed / masked region, or a clicked object (SAM mask → the object cut out
  on a neutral grey background, cropped to its box and letterboxed) → CLIP ViT-L/14 → the zero-shot
  bridge (:mod:`foleykit.pipelines.zero_shot_bridge`: the top-k words of a vocabulary of sounds, their
  CLAP captions averaged with softmax weights); the words and weights go into the record;
* a text → the generator CLAP's text tower, directly;
* an audio clip → the generator CLAP's audio tower.

The mix (:func:`mix_vectors`): the sources' vectors weighted by their weights, summed and
renormalised; refined like Cycle Mix when ``rounds * samples > 1``: each round draws ``samples``
candidate weightings (log-normal jitter of the weights around the best so far, the first candidate
being the plain weighted mix) and keeps the candidate mix whose cosine similarities to the
per-source vectors are most even (``spread``, weighted std) or highest (``relevance``, weighted
mean), scored exactly as :func:`foleykit.modules.cycle_mix.score_candidates` scores Cycle Mix.
Stems are generated from each source's own vector.

Objects: each object's vector conditions its stem; the blend is the renormalised mean of the objects'
vectors, with ``context`` of the whole image's bridged vector mixed in:
``blend = normalise((1 - context) * normalise(mean(objects)) + context * image)``.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import InputError
from ..io.image import cut_out
from ..modules.cycle_mix import CRITERIA, CycleMixResult, score_candidates
from ..seeding import make_generator
from .zero_shot_bridge import BridgeSettings, ZeroShotBridge

__all__ = [
    "NEUTRAL_GREY",
    "ROUTES",
    "TRAINING_FREE",
    "MixResult",
    "TrainingFree",
    "choose_route",
    "generator_clap",
    "is_released_ss2a",
    "mix_vectors",
]

ROUTES = ("auto", "trained", "released", "training-free")
TRAINING_FREE = "training-free"
#: The background a clicked object is cut out onto (CLIP sees the object, not its surroundings).
NEUTRAL_GREY = (128, 128, 128)
#: Log-weight jitter of candidate mixes (σ of a log-normal factor per source).
MIX_JITTER = 0.5


def generator_clap(pipeline):
    """The CLAP the generator is conditioned in (the seam of the CLAP currency): its text tower embeds
    text sources and the bridge's captions, its audio tower audio sources."""
    return pipeline.clap


# ---------------------------------------------------------------------- routes


def is_released_ss2a(ref: str | os.PathLike) -> bool:
    """Whether an ``--ss2a`` reference is the authors' released checkpoint (a .pth, or a folder holding it)."""
    path = Path(ref).expanduser()
    if path.is_file():
        return path.suffix.lower() in (".pth", ".pt")
    return path.is_dir() and (path / "ssv2a.pth").is_file() and not (path / "manifold").is_dir()


def choose_route(method: str, route: str | None, given: str | os.PathLike | None, role: str | None
                 ) -> tuple[str, str | None, str]:
    """(route, weights reference or None, why) for ``sources`` or ``objects``.

    ``given``: the weights the user passed (``--ss2a`` / ``--grounding``); ``role``: the model set's.
    """
    route = "auto" if route is None else str(route)
    if route not in ROUTES:
        raise InputError(f"route must be one of {', '.join(ROUTES)}, got {route!r}")
    flag = "--ss2a" if method == "sources" else "--grounding"
    what = "SS2A weights" if method == "sources" else "a grounding module"
    none = "no SS2A weights" if method == "sources" else "no grounding module"
    ref = str(given) if given is not None else role
    if route == TRAINING_FREE:
        if given is not None:
            raise InputError(f"{flag} is not used by --route training-free; drop one of them")
        return TRAINING_FREE, None, "asked for (--route training-free)"
    if route == "auto":
        if ref is None:
            return TRAINING_FREE, None, f"{none} given ({flag}) and none in the model set"
        kind = "released" if method == "sources" and is_released_ss2a(ref) else "trained"
        return kind, ref, f"{what} {'given' if given is not None else 'in the model set'}"
    if route == "released":
        if method != "sources":
            raise InputError("no released grounding weights exist: use --route trained with --grounding DIR, "
                             "or --route training-free")
        if given is None:
            raise InputError("--route released needs --ss2a PATH (the released ssv2a.pth, with ssv2a.json beside it)")
        if not is_released_ss2a(given):
            raise InputError(f"--route released: {given} is not the released ssv2a.pth; use --route trained for a "
                             "bundle trained with foleykit")
        return "released", str(given), "asked for (--route released)"
    # trained
    if ref is None:
        how = ("a bundle folder (manifold/, remixer/) from foleykit train" if method == "sources"
               else "a folder from foleykit train grounding")
        raise InputError(f"--route trained needs {what}: pass {flag} DIR ({how})")
    if method == "sources" and is_released_ss2a(ref):
        raise InputError(f"--route trained: {ref} is the released ssv2a.pth; use --route released")
    return "trained", ref, "asked for (--route trained)"


def route_record(route: str, why: str, bridge: ZeroShotBridge | None = None,
                 settings: BridgeSettings | None = None) -> dict:
    """The sidecar's ``route``: its name, why it ran and (training-free) the bridge with this call's settings."""
    rec: dict = {"name": route, "why": why}
    if route == TRAINING_FREE:
        rec["how"] = ("each source's own CLAP vector: images and regions through CLIP ViT-L/14 and the zero-shot "
                      "bridge, texts through the CLAP text tower, audios through the CLAP audio tower; no trained "
                      "module")
        if bridge is not None:
            rec["bridge"] = bridge.record(settings)
    return rec


# ---------------------------------------------------------------------- the mix


@dataclass
class MixResult:
    """The chosen mix of one scene and how it scored."""

    clap: torch.Tensor  # [D] unit
    weights: torch.Tensor  # [n] the chosen mixing weights (sum 1)
    similarity: torch.Tensor  # [n] cos(mix, source vector)
    score: float
    criterion_used: str


@torch.no_grad()
def mix_vectors(vectors: torch.Tensor, weights: Sequence[float] | torch.Tensor, *, rounds: int = 1, samples: int = 1,
                criterion: str = "spread", generator: torch.Generator | None = None,
                jitter: float = MIX_JITTER) -> MixResult:
    """Mix unit vectors [n, D] with ``weights`` [n] (> 0): see the module docstring."""
    if criterion not in CRITERIA:
        raise InputError(f"cycle mix criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
    v = F.normalize(vectors.float().cpu(), dim=-1)
    w = torch.as_tensor(weights, dtype=torch.float32).cpu()
    if v.ndim != 2 or w.shape != (v.shape[0],) or v.shape[0] == 0:
        raise InputError(f"mix_vectors needs [n, D] vectors and n weights, got {tuple(v.shape)} and {tuple(w.shape)}")
    if not torch.isfinite(w).all() or (w <= 0).any():
        raise InputError("mixing weights must be finite and > 0")
    n = v.shape[0]
    p = w / w.sum()
    used = criterion if n > 1 else "relevance"  # the spread of one similarity is always 0
    scored = torch.ones(1, n, dtype=torch.bool)
    center = p.log()
    best = (math.inf, p, None)  # (key: lower is better, weights, similarity)
    for r in range(max(1, rounds)):
        z = torch.randn(samples, n, generator=generator) if generator is not None else torch.randn(samples, n)
        if r == 0:
            z[0] = 0.0  # candidate 0: the plain weighted mix
        cand = torch.softmax(center + jitter * z, dim=-1)  # [S, n] weightings, each summing to 1
        mixes = F.normalize(cand @ v, dim=-1)
        sim = mixes @ v.T  # [S, n]
        score = score_candidates(sim[None], scored, used, p[None])[0]
        key = -score if used == "relevance" else score
        i = int(key.argmin())
        if float(key[i]) < best[0]:
            best = (float(key[i]), cand[i], sim[i])
        center = best[1].log()
    key, chosen, sim = best
    mix = F.normalize(chosen @ v, dim=-1)
    return MixResult(mix, chosen, mix @ v.T if sim is None else sim, -key if used == "relevance" else key, used)


# ---------------------------------------------------------------------- per-source vectors


class TrainingFree:
    """The training-free route's state: the CLIP encoder, the generator CLAP and the bridges (one per
    vocabulary and prompt pair, built on first use and then reused; safe under concurrent calls)."""

    def __init__(self, clip, clap, *, cache_dir: str | os.PathLike | None = None) -> None:
        self.clip = clip
        self.clap = clap
        self.cache_dir = cache_dir
        self._bridges: dict[tuple, ZeroShotBridge] = {}
        self._lock = threading.Lock()

    def bridge(self, settings: BridgeSettings | None = None) -> ZeroShotBridge:
        s = (settings or BridgeSettings()).check()
        key = (s.vocabulary, s.clip_prompt, s.clap_prompt)
        with self._lock:  # the first call embeds the vocabulary; others wait for it instead of repeating it
            b = self._bridges.get(key)
            if b is None:
                b = ZeroShotBridge(self.clip, self.clap, s, cache_dir=self.cache_dir)
                self._bridges[key] = b
        b._resolve(s.top_k, s.temperature)  # top_k against this vocabulary's size
        return b

    @torch.no_grad()
    def bridge_images(self, clip_embeds: torch.Tensor, settings: BridgeSettings | None = None
                      ) -> tuple[torch.Tensor, list[list[list]]]:
        """[n, D] bridged CLAP vectors of CLIP image embeddings, and per row its [word, weight] pairs."""
        s = (settings or BridgeSettings()).check()
        if clip_embeds.shape[0] == 0:
            return torch.empty(0, self.clap.dim), []
        b = self.bridge(s)
        vec = b.map(clip_embeds, top_k=s.top_k, temperature=s.temperature).cpu()
        words = [[[w, round(x, 4)] for w, x in row]
                 for row in b.labels(clip_embeds, top_k=s.top_k, temperature=s.temperature)]
        return vec, words

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """[n, D] unit CLAP text vectors of text sources (the generator CLAP's text tower)."""
        if not texts:
            return torch.empty(0, self.clap.dim)
        return F.normalize(self.clap.embed_texts(list(texts)).float(), dim=-1).cpu()

    # -- sources ---------------------------------------------------------------------------------
    def source_vectors(self, sources: Sequence, settings: BridgeSettings | None = None) -> torch.Tensor:
        """[n, D]: per source its own CLAP vector (visual sources bridged in one batch; texts and audios
        carry theirs already). Visual sources get ``info["bridge_words"]``."""
        visual = [i for i, s in enumerate(sources) if s.clap is None]
        out = torch.zeros(len(sources), self.clap.dim)
        if visual:
            vec, words = self.bridge_images(torch.stack([sources[i].clip for i in visual]), settings)
            for j, i in enumerate(visual):
                out[i] = vec[j]
                sources[i].info["bridge_words"] = words[j]
        for i, s in enumerate(sources):
            if s.clap is not None:
                out[i] = s.clap.float().cpu()
        return F.normalize(out, dim=-1)

    def mix(self, sources: Sequence, *, seed: int, cycle, settings: BridgeSettings | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(mix [D], per-source vectors [n, D], a Cycle-Mix-like record with ``similarity`` and ``notes``)."""
        rounds, samples, _, criterion = cycle
        vectors = self.source_vectors(sources, settings)
        res = mix_vectors(vectors, [s.weight for s in sources], rounds=rounds, samples=samples, criterion=criterion,
                          generator=make_generator(seed))
        notes = []
        if res.criterion_used != criterion:
            notes.append("one sound source: the mix is its own vector")
        return res.clap, vectors, {
            "how": "training-free: candidate weightings of the sources' own CLAP vectors (log-normal jitter, "
                   f"sigma {MIX_JITTER}), the best by {res.criterion_used}",
            "score": res.score, "similarity": res.similarity.tolist(), "rounds": rounds, "samples": samples,
            "criterion": criterion, "criterion_used": res.criterion_used,
            "mixing_weights": [round(float(x), 4) for x in res.weights], "notes": notes,
        }

    def mix_scenes(self, scenes: Sequence[Sequence], *, seed: int, cycle, settings: BridgeSettings | None = None
                   ) -> CycleMixResult:
        """Video frames: each scene (a frame's sources) mixed as :meth:`mix`, visual sources bridged in one batch."""
        rounds, samples, _, criterion = cycle
        flat = [s for scene in scenes for s in scene]
        vectors = self.source_vectors(flat, settings)
        gen = make_generator(seed)
        claps, scores, used, start = [], [], [], 0
        for scene in scenes:
            res = mix_vectors(vectors[start : start + len(scene)], [s.weight for s in scene], rounds=rounds,
                              samples=samples, criterion=criterion, generator=gen)
            start += len(scene)
            claps.append(res.clap)
            scores.append(res.score)
            used.append(res.criterion_used)
        return CycleMixResult(torch.stack(claps), torch.tensor(scores), torch.empty(len(scenes), 0), tuple(used))

    # -- objects ---------------------------------------------------------------------------------
    @torch.no_grad()
    def plan_objects(self, pipe, img: Image.Image, clicks, boxes, texts, context: float,
                     settings: BridgeSettings | None = None):
        """An :class:`~foleykit.pipelines.objects.ObjectsPlan` for the training-free route (no patch weights)."""
        from .objects import ObjectsPlan, SelectedObject

        self.bridge(settings)  # vocabulary and top_k checked before SAM runs
        crops, objects = [img], []
        if clicks or boxes:
            for kind, prompt, mask, score in pipe.segment_prompts(img, clicks, boxes):
                label = f"{kind} {len(objects) + 1}"
                if not mask.any():
                    raise InputError(f"{label}: SAM found no object there; click on (or box) a visible object")
                crop, bbox = cut_out(img, mask, NEUTRAL_GREY)
                crops.append(crop)
                objects.append(SelectedObject(len(objects) + 1, kind, tuple(prompt), None, torch.zeros(0), None,
                                              mask=mask, sam_score=score, crop=crop,
                                              info={"cut_out_box": [round(v, 2) for v in bbox]}))
        clip = self.clip.embed_images(crops, normalize=True)
        vec, words = self.bridge_images(clip, settings)
        image_vec = vec[0]
        for o, v, wd in zip(objects, vec[1:], words[1:]):
            o.cond, o.info["bridge_words"] = v, wd
        if texts:
            for t, v in zip(texts, self.embed_texts(texts)):
                objects.append(SelectedObject(len(objects) + 1, "text", t, None, v, None,
                                              info={"vector": "CLAP text tower"}))
        if len(objects) == 1 and context == 0.0:
            blend = objects[0].cond
        else:
            blend = F.normalize(torch.stack([o.cond for o in objects]).mean(0), dim=-1)
            if context > 0:
                blend = F.normalize((1.0 - context) * blend + context * image_vec, dim=-1)
        how = ("the renormalised mean of the objects' CLAP vectors"
               + (f", mixed with {context:g} of the whole image's bridged vector" if context > 0 else "")
               + ("" if len(objects) > 1 or context > 0 else " (a single object: the blend is its sound)"))
        return ObjectsPlan(image=img, objects=objects, blend_weights=None, blend_cond=blend, grid=None,
                           rescale=None, context=context, blend_how=how,
                           image_words=words[0])
