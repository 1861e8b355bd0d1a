"""Cycle Mix (SS2A paper, Fig. 3c): refine the Remixer's mixture with per-source track semantics.

Each source's manifold code e has a CLAP "track" a_src = χ(e). Every round draws ``samples``
candidate mixtures from the variational Remixer, scores each candidate against the tracks, and keeps
the best; from the second round on the best mixture so far is folded back into the manifold
(φ(a_mix)) and fed to the Remixer in the *feedback slot* (slot 0: the global image, or an empty
slot), so the mix is refined by its own best guess.

Selection criteria:

* ``"spread"`` (released code): the lowest spread (std) of the candidate's cosine similarity to the
  tracks, i.e. the mix most evenly related to every source.
* ``"relevance"``: the highest mean cosine similarity to the tracks.

Differences from the released code, on purpose: empty (padding) slots and the feedback slot are not
scored (the released score included them, so it changed with the number of slots); a Remixer of
ours is given the padding mask (released weights get the released tokens, below); std is the
population std; every random draw comes from the caller's ``torch.Generator``, so a seed fixes the
result.

Released weights (a Remixer with ``attend_to_padding=True``, as imported from ``ssv2a.pth``): the
released code has no padding mask and always runs all M = 64 slots through its encoders, so an empty
slot is not a zero token but carries what the released encoders make of "nothing", and the released
Remixer was trained on exactly those tokens. :func:`cycle_mix` therefore fills every empty slot up to
``max_sources`` with the released content (:func:`released_empty_codes`) and attends to all slots:

* image layout (slot 0 holds the global image; released ``image_to_audio``, and video per frame): the
  manifold code of an all-zero CLIP, v(0);
* multimodal layout (slot 0 empty; released ``srcs_to_audio``): a zero manifold code (the released
  ``fixed_src`` rows of empty slots are zero);

and under ``source_code`` "clap"/"manifold+clap" (released ``guidance`` "generator"/"manifold+generator")
the χ part of an empty slot is the normalised CLAP that χ decodes from that code. The CLIP part of an
empty slot is zero in both layouts. Our own bundles keep the padding mask instead.

Degenerate scenes (no ranking signal otherwise, so the first draw would win and later rounds could
never improve on it):

* **The feedback slot is the only filled slot** (one image, no detections, regions, texts or audios):
  its *original* track χ(v(global CLIP)) from round 0 is scored, and stays the target in later rounds
  even though the slot's code is replaced by the feedback.
* **One scored track with** ``criterion="spread"``: the std of a single similarity is 0 for every
  candidate, so that scene is ranked by relevance (its cosine to the track) instead;
  :attr:`CycleMixResult.criterion_used` says which criterion each scene was ranked by.
"""

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from .manifold import CMSSManifold
from .remixer import SoundSourceRemixer

Criterion = Literal["spread", "relevance"]
CRITERIA: tuple[str, ...] = ("spread", "relevance")
FEEDBACK_SLOT = 0


@dataclass
class SourceSlots:
    """A batch of scenes laid out as Remixer slots.

    ``clips`` [B, M, clip_dim]: CLIP embedding per slot (zero for audio sources and empty slots).
    ``padding_mask`` [B, M] bool: True = empty slot.
    ``audio_claps`` [B, M, clap_dim] and ``is_audio`` [B, M]: CLAP embeddings of audio sources;
    their manifold code is φ(clap) instead of v(clip).
    """

    clips: Tensor
    padding_mask: Tensor
    audio_claps: Tensor | None = None
    is_audio: Tensor | None = None

    def __post_init__(self) -> None:
        if self.clips.ndim != 3:
            raise InputError(f"slot clips must be [B, M, clip_dim], got {tuple(self.clips.shape)}")
        if self.padding_mask.shape != self.clips.shape[:2]:
            raise InputError(
                f"padding_mask must be {tuple(self.clips.shape[:2])}, got {tuple(self.padding_mask.shape)}"
            )
        self.padding_mask = self.padding_mask.to(torch.bool)
        if (self.audio_claps is None) != (self.is_audio is None):
            raise InputError("audio_claps and is_audio must be given together")
        if self.audio_claps is not None and self.is_audio is not None:
            if (
                self.audio_claps.shape[:2] != self.clips.shape[:2]
                or self.is_audio.shape != self.clips.shape[:2]
            ):
                raise InputError("audio_claps/is_audio must have the same [B, M] as clips")
            self.is_audio = self.is_audio.to(torch.bool) & ~self.padding_mask

    @property
    def num_slots(self) -> int:
        return self.clips.shape[1]


def pack_sources(
    clip_sources: Tensor | None = None,
    audio_sources: Tensor | None = None,
    global_clip: Tensor | None = None,
    *,
    max_sources: int = 64,
    clip_dim: int = 768,
    clap_dim: int = 512,
) -> SourceSlots:
    """One scene → :class:`SourceSlots` with B = 1.

    Slot 0 holds ``global_clip`` (the whole image) or stays empty; it is the Cycle Mix feedback slot.
    Image/text sources (``clip_sources`` [n, clip_dim]) follow, then audio sources
    (``audio_sources`` [k, clap_dim]), each in its own slot. More than ``max_sources - 1`` sources is
    an error: choose which sources matter rather than have some dropped at random.
    """
    clip_sources = torch.zeros(0, clip_dim) if clip_sources is None else clip_sources.float().cpu()
    audio_sources = torch.zeros(0, clap_dim) if audio_sources is None else audio_sources.float().cpu()
    if clip_sources.ndim != 2 or clip_sources.shape[1] != clip_dim:
        raise InputError(f"clip sources must be [n, {clip_dim}], got {tuple(clip_sources.shape)}")
    if audio_sources.ndim != 2 or audio_sources.shape[1] != clap_dim:
        raise InputError(f"audio sources must be [k, {clap_dim}], got {tuple(audio_sources.shape)}")
    n, k = clip_sources.shape[0], audio_sources.shape[0]
    if n + k > max_sources - 1:
        raise InputError(f"at most {max_sources - 1} sound sources fit in one scene, got {n + k}")
    m = 1 + n + k
    clips = torch.zeros(1, m, clip_dim)
    audio = torch.zeros(1, m, clap_dim)
    padding = torch.ones(1, m, dtype=torch.bool)
    is_audio = torch.zeros(1, m, dtype=torch.bool)
    if global_clip is not None:
        clips[0, 0] = global_clip.float().cpu().reshape(clip_dim)
        padding[0, 0] = False
    clips[0, 1 : 1 + n] = clip_sources
    padding[0, 1:m] = False
    audio[0, 1 + n :] = audio_sources
    is_audio[0, 1 + n :] = True
    return SourceSlots(clips, padding, audio if k else None, is_audio if k else None)


def stack_slots(scenes: list[SourceSlots]) -> SourceSlots:
    """Batch scenes with different slot counts by padding each to the longest."""
    if not scenes:
        raise InputError("no scenes to stack")
    m = max(s.num_slots for s in scenes)
    any_audio = any(s.audio_claps is not None for s in scenes)
    clap_dim = next((s.audio_claps.shape[-1] for s in scenes if s.audio_claps is not None), 0)

    def pad(x: Tensor, value: float | bool) -> Tensor:
        extra = m - x.shape[1]
        filler = torch.full((x.shape[0], extra, *x.shape[2:]), value, dtype=x.dtype, device=x.device)
        return torch.cat([x, filler], dim=1)

    clips = torch.cat([pad(s.clips, 0.0) for s in scenes])
    padding = torch.cat([pad(s.padding_mask, True) for s in scenes])
    if not any_audio:
        return SourceSlots(clips, padding)
    audio, is_audio = [], []
    for s in scenes:
        b, n = s.clips.shape[:2]
        a = s.audio_claps if s.audio_claps is not None else torch.zeros(b, n, clap_dim)
        f = s.is_audio if s.is_audio is not None else torch.zeros(b, n, dtype=torch.bool)
        audio.append(pad(a, 0.0))
        is_audio.append(pad(f, False))
    return SourceSlots(clips, padding, torch.cat(audio), torch.cat(is_audio))


def manifold_codes(
    manifold: CMSSManifold, slots: SourceSlots, num_samples: int = 0, generator: torch.Generator | None = None
) -> Tensor:
    """[B, M, manifold_dim]: v(clip) for visual/text slots, φ(clap) for audio slots."""
    codes = manifold.fold_clips(slots.clips, num_samples, generator)
    if slots.audio_claps is not None and slots.is_audio is not None:
        audio_codes = manifold.fold_claps(slots.audio_claps, num_samples, generator)
        codes = torch.where(slots.is_audio.to(codes.device)[..., None], audio_codes, codes)
    return codes


def released_empty_codes(codes: Tensor, padding_mask: Tensor) -> Tensor:
    """The manifold codes the released pipeline gives its empty slots (see the module docstring).

    ``codes`` [B, M, D] from :func:`manifold_codes` (an empty slot's CLIP is zero, so it already holds
    v(0) there); scenes whose slot 0 is empty are in the released multimodal layout, where empty slots
    carry a zero code instead."""
    multimodal = padding_mask[:, :1] & padding_mask  # [B, M]: empty slots of multimodal-layout scenes
    return codes.masked_fill(multimodal[..., None].to(codes.device), 0.0)


def _pad_to(slots: SourceSlots, m: int) -> SourceSlots:
    """``slots`` padded with empty slots to ``m`` (the released Remixer always sees all of its slots)."""
    if slots.num_slots > m:
        raise InputError(f"the remixer takes at most {m} sources, got {slots.num_slots}")
    extra = m - slots.num_slots

    def pad(x: Tensor | None, value: float | bool) -> Tensor | None:
        if x is None:
            return None
        filler = torch.full((x.shape[0], extra, *x.shape[2:]), value, dtype=x.dtype, device=x.device)
        return torch.cat([x, filler], dim=1)

    return SourceSlots(pad(slots.clips, 0.0), pad(slots.padding_mask, True),  # type: ignore[arg-type]
                       pad(slots.audio_claps, 0.0), pad(slots.is_audio, False))


def remixer_source_codes(
    manifold: CMSSManifold,
    codes: Tensor,
    source_code: str,
    num_samples: int = 0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The e part of the Remixer tokens for ``source_code``: the manifold codes, their χ CLAPs, or both."""
    if source_code == "manifold":
        return codes
    tracks = manifold.to_clap(codes, num_samples, generator)
    if source_code == "clap":
        return tracks
    return torch.cat([codes, tracks], dim=-1)


@dataclass
class CycleMixResult:
    """The chosen mixture and how it scored."""

    clap: Tensor  # [B, clap_dim], L2-normalised
    score: Tensor  # [B]: std (spread) or mean (relevance) of its similarities to the scored tracks
    track_similarity: Tensor  # [B, M]: cos(clap, track) per slot; NaN where a slot was not scored
    criterion_used: tuple[str, ...] = ()  # per scene: "spread" or "relevance" (see the module docstring)


def score_candidates(similarity: Tensor, scored: Tensor, criterion: str, slot_weights: Tensor | None = None) -> Tensor:
    """similarity [B, S, M], scored [B, M] → [B, S] (lower is better for spread, higher for relevance).

    ``slot_weights`` [B, M] (optional, >= 0) turn the mean and std into weighted ones; they are
    rescaled to average 1 over the scored slots, so equal weights give the unweighted score."""
    weight = scored[:, None, :].to(similarity)
    if slot_weights is not None:
        w = slot_weights.to(similarity) * scored.to(similarity)
        w = w * scored.to(similarity).sum(-1, keepdim=True) / w.sum(-1, keepdim=True).clamp(min=1e-12)
        weight = w[:, None, :]
    count = weight.sum(-1).clamp(min=1.0)
    mean = (similarity * weight).sum(-1) / count
    if criterion == "relevance":
        return mean
    var = ((similarity - mean[..., None]).pow(2) * weight).sum(-1) / count
    return var.sqrt()


@torch.no_grad()
def cycle_mix(
    manifold: CMSSManifold,
    remixer: SoundSourceRemixer,
    slots: SourceSlots,
    *,
    rounds: int = 4,
    samples: int = 16,
    var_samples: int = 1,
    criterion: Criterion = "spread",
    feedback_slot: int | None = FEEDBACK_SLOT,
    generator: torch.Generator | None = None,
    slot_weights: Tensor | None = None,
) -> CycleMixResult:
    """Mix the sources in ``slots`` into one CLAP embedding per scene.

    ``rounds`` = the released ``its + 1`` (its image default 3 → 4 rounds); ``samples`` candidates per
    round (released default 16); ``var_samples`` variational draws averaged per code and candidate
    (0 = means only, which makes all candidates equal). ``feedback_slot=None`` turns the feedback off.
    ``slot_weights`` [B, M] (>= 0) weight each source's track in the selection score (a composition's
    per-source weights); ``None`` scores every source equally.
    A Remixer with ``attend_to_padding=True`` (released weights) gets the released tokens: all
    ``max_sources`` slots, empty ones filled by :func:`released_empty_codes` (module docstring).
    Both modules run in eval mode for the call and are restored afterwards.
    """
    if criterion not in CRITERIA:
        raise InputError(f"cycle mix criterion must be one of {CRITERIA}, got {criterion!r}")
    if rounds < 1 or samples < 1 or var_samples < 0:
        raise InputError("cycle mix needs rounds >= 1, samples >= 1 and var_samples >= 0")
    b, m = slots.clips.shape[:2]
    if feedback_slot is not None and not 0 <= feedback_slot < m:
        raise InputError(f"feedback slot {feedback_slot} is outside the {m} slots")
    if manifold.config.manifold_dim != remixer.config.manifold_dim:
        raise InputError("manifold and remixer disagree on manifold_dim")
    if slot_weights is not None:
        if slot_weights.shape != (b, m) or not torch.isfinite(slot_weights).all() or (slot_weights < 0).any():
            raise InputError(f"slot_weights must be a finite, non-negative [{b}, {m}] tensor")
    released = remixer.config.attend_to_padding
    caller_slots = m
    if released:  # the released Remixer sees all of its slots, empty ones with the released content
        slots = _pad_to(slots, remixer.config.max_sources)
        if slot_weights is not None:
            slot_weights = F.pad(slot_weights, (0, slots.num_slots - m))
        m = slots.num_slots
    modes = (manifold.training, remixer.training)
    manifold.eval()
    remixer.eval()
    try:
        device = manifold.logit_scale.device
        padding = slots.padding_mask.to(device)
        clips = slots.clips.to(device)
        scored = ~padding
        alone = torch.zeros(b, dtype=torch.bool, device=device)  # the feedback slot is the only source
        if feedback_slot is not None:
            scored[:, feedback_slot] = False
            alone = ~scored.any(-1) & ~padding[:, feedback_slot]
            scored[:, feedback_slot] = alone  # score its original track (kept from round 0)
        # Ranked by relevance: every scene for "relevance"; for "spread", scenes with one scored track.
        use_relevance = torch.ones(b, dtype=torch.bool, device=device) if criterion == "relevance" \
            else scored.sum(-1) == 1
        weights = None if slot_weights is None else slot_weights.to(device)
        base_codes = manifold_codes(manifold, slots, var_samples, generator)
        if released:
            base_codes = released_empty_codes(base_codes, padding)
        best_key = torch.full((b,), float("inf"), device=device)  # lower is better: std, or -mean
        best_clap = torch.zeros(b, manifold.config.clap_dim, device=device)
        best_similarity = torch.full((b, m), float("nan"), device=device)
        feedback_track = None
        for round_index in range(rounds):
            codes, remix_padding = base_codes, padding
            if round_index > 0 and feedback_slot is not None:
                codes = base_codes.clone()
                codes[:, feedback_slot] = manifold.fold_claps(best_clap, var_samples, generator)
                remix_padding = padding.clone()
                remix_padding[:, feedback_slot] = False
            tracks = manifold.to_clap(codes, var_samples, generator)  # [B, M, clap]
            if feedback_slot is not None and alone.any():
                if feedback_track is None:  # round 0: the slot still holds the global source's own code
                    feedback_track = tracks[:, feedback_slot].clone()
                else:
                    tracks[:, feedback_slot] = torch.where(alone[:, None], feedback_track, tracks[:, feedback_slot])
            many = codes.repeat_interleave(samples, dim=0)  # [B*S, M, D], candidate-major per scene
            candidates = remixer.sample(
                remixer_source_codes(manifold, many, remixer.config.source_code, var_samples, generator),
                clips.repeat_interleave(samples, dim=0),
                None if released else remix_padding.repeat_interleave(samples, dim=0),
                num_samples=var_samples,
                generator=generator,
            ).view(b, samples, -1)
            similarity = torch.einsum("bsc,bmc->bsm", candidates, tracks)
            key = -score_candidates(similarity, scored, "relevance", weights)
            if not use_relevance.all():
                key = torch.where(use_relevance[:, None], key, score_candidates(similarity, scored, "spread", weights))
            pick = key.argmin(dim=1)
            rows = torch.arange(b, device=device)
            round_key = key[rows, pick]
            improved = round_key < best_key
            best_key = torch.where(improved, round_key, best_key)
            best_clap = torch.where(improved[:, None], candidates[rows, pick], best_clap)
            picked_similarity = similarity[rows, pick].masked_fill(~scored, float("nan"))
            best_similarity = torch.where(improved[:, None], picked_similarity, best_similarity)
        best_score = torch.where(use_relevance, -best_key, best_key)
        used = tuple("relevance" if r else "spread" for r in use_relevance.tolist())
        similarity = best_similarity[:, :caller_slots]  # the caller's slots (released: padded to 64 here)
        return CycleMixResult(F.normalize(best_clap, dim=-1), best_score, similarity, used)
    finally:
        manifold.train(modes[0])
        remixer.train(modes[1])
