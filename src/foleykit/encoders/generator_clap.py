"""The generator's own CLAP: the one CLAP currency of foleykit.

AudioLDM was trained on the CLAP inside its original checkpoint (``cond_stage_model.``: HTSAT-tiny
audio tower + RoBERTa text tower). Every vector that is fed to the generator, compared with its
condition or used as a training target must come from that space:

* text → the generator checkpoint's own text tower (``text_encoder`` + ``tokenizer`` sub-folders,
  a ``ClapTextModelWithProjection``), always available with the generator;
* audio → AudioLDM's own audio tower, converted from the original checkpoint into a transformers
  ``ClapModel`` folder by ``foleykit models import-audioldm-clap`` (the model set's ``clap`` role).

:class:`GeneratorClap` bundles both behind ``embed_texts`` / ``embed_audio``. Before its audio tower
is used it runs the *space check*: a fixed handful of probe captions is embedded with both text
towers (the generator's and the one stored beside the audio tower); if their mean cosine is below
:data:`SAME_SPACE_THRESHOLD` the two are different embedding spaces (a LAION CLAP, AudioLDM-M's
CLAP, ...) and every audio-conditioned path stops with one line naming the fix. The same weights give
~1.0; two independently trained CLAPs give ~0 (their spaces are unrelated rotations), so the
threshold sits far from both.

The LAION CLAP (``laion/clap-htsat-unfused``) is *not* used here: it is only the independent judge
of ``foleykit evaluate`` (the model set's ``clap_judge`` role).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..devices import resolve_device, resolve_dtype
from ..errors import InputError, ModelNotAvailableError
from .clap import ClapEncoder, embed_texts_batched
from .loading import LoadedFrom, load_pretrained, to_device

#: Captions embedded by both text towers for the space check (fixed: part of the check's definition).
PROBE_CAPTIONS: tuple[str, ...] = (
    "a dog barking",
    "rain falling on a tin roof",
    "a car engine starting",
    "people talking in a crowded room",
    "birds chirping in the forest",
    "a piano playing a slow melody",
    "waves crashing on the shore",
    "a door slamming shut",
)

#: Mean probe cosine at or above which two text towers are taken to share one embedding space.
#: Identical weights give 1.0 (up to float error); unrelated CLAP training runs give ~0.
SAME_SPACE_THRESHOLD = 0.9

#: The one-line fix named whenever AudioLDM's own audio tower is missing or the wrong one is given.
IMPORT_HINT = "convert AudioLDM's own CLAP with `foleykit models import-audioldm-clap audioldm-s-full-v2.ckpt -o DIR`"


@dataclass(frozen=True)
class SpaceCheck:
    """Agreement of a CLAP model's text tower with the generator's on :data:`PROBE_CAPTIONS`."""

    clap_ref: str
    generator_ref: str
    agreement: float  # mean cosine over the probes (-1..1); nan when the dimensions differ
    minimum: float
    threshold: float = SAME_SPACE_THRESHOLD
    reason: str | None = None  # why the check could not compare (e.g. different dimensions)

    @property
    def same_space(self) -> bool:
        return self.reason is None and self.agreement >= self.threshold

    def record(self) -> dict[str, Any]:
        rec = {"clap": self.clap_ref, "generator": self.generator_ref, "probe_agreement": _round(self.agreement),
               "probe_minimum": _round(self.minimum), "threshold": self.threshold, "same_space": self.same_space}
        if self.reason:
            rec["reason"] = self.reason
        return rec

    def error(self) -> str:
        """The one line an audio-conditioned path stops with when the spaces differ."""
        why = self.reason or f"probe agreement {self.agreement:.2f} < {self.threshold:g}"
        return (f"CLAP {self.clap_ref!r} is not the generator's CLAP space ({self.generator_ref!r}: {why}); "
                f"{IMPORT_HINT} and point the model set's 'clap' role at DIR")


def _round(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 4)


def compare_spaces(generator_text: torch.Tensor, clap_text: torch.Tensor, *, clap_ref: str, generator_ref: str,
                   threshold: float = SAME_SPACE_THRESHOLD) -> SpaceCheck:
    """The space check from the probe embeddings of both towers ([P, D] each, any norm)."""
    if generator_text.shape != clap_text.shape:
        return SpaceCheck(clap_ref, generator_ref, float("nan"), float("nan"), threshold,
                          reason=f"{clap_text.shape[-1]}-d text embeddings, the generator's are {generator_text.shape[-1]}-d")
    cos = (F.normalize(generator_text.float(), dim=-1) * F.normalize(clap_text.float(), dim=-1)).sum(-1)
    return SpaceCheck(clap_ref, generator_ref, float(cos.mean()), float(cos.min()), threshold)


def space_fingerprint(probe_embeds: torch.Tensor) -> str:
    """A short digest of a text tower's probe embeddings (rounded to 2 decimals): names a CLAP space in
    extraction records, so trainers can tell embeddings of another generator's space."""
    q = torch.round(F.normalize(probe_embeds.float().cpu(), dim=-1) * 100).to(torch.int16).numpy()
    return hashlib.sha256(q.tobytes()).hexdigest()[:16]


class GeneratorClap:
    """The generator's own CLAP (AudioLDM's): ``embed_texts`` with the generator's text tower,
    ``embed_audio`` with AudioLDM's converted audio tower (space-checked), both [N, 512] unit vectors.

    Build it with :meth:`from_pretrained` (a generator reference and the model set's ``clap`` role) or
    :meth:`for_generator` (reuses a loaded generator's text tower). Both load the audio tower on its
    first use (audio sources, re-ranking, extraction), not before: a run that embeds no audio never
    reads it, and the CLI's cold start does not pay for it. Without a ``clap`` role, audio paths raise
    :class:`ModelNotAvailableError` naming ``foleykit models import-audioldm-clap``.
    """

    def __init__(self, text_encoder, tokenizer, *, text_loaded_from: LoadedFrom | None = None,
                 audio: ClapEncoder | None = None, audio_ref: str | None = None,
                 audio_loader: Callable[[], ClapEncoder] | None = None) -> None:
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.loaded_from = text_loaded_from
        self._audio = audio
        self._audio_loader = audio_loader  # loads the audio tower on first use (None: loaded or none)
        self.audio_ref = audio_ref if audio_ref is not None else (audio.loaded_from.ref if audio is not None and audio.loaded_from else None)
        self._probes: torch.Tensor | None = None
        self._space: SpaceCheck | None = None
        self._lock = threading.Lock()  # the lazily computed probes / space check, shared between threads

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, generator_ref: str, clap_ref: str | None = None, *,
                        device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None) -> GeneratorClap:
        """The text tower from ``generator_ref``'s ``text_encoder``/``tokenizer`` sub-folders; the audio
        tower from ``clap_ref`` (a ``ClapModel`` folder or hub id; None = no audio tower), on first use."""
        from transformers import AutoTokenizer, ClapTextModelWithProjection

        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev) if dtype is not None else torch.float32
        text, src = load_pretrained(ClapTextModelWithProjection, generator_ref, subfolder="text_encoder", dtype=dt)
        tok, _ = load_pretrained(AutoTokenizer, generator_ref, subfolder="tokenizer")
        text_src = LoadedFrom(ref=generator_ref, revision=src.revision, path=src.path)
        return cls(to_device(text, dev, dt), tok, text_loaded_from=text_src, audio_ref=clap_ref,
                   audio_loader=_audio_loader(clap_ref, dev, dt))

    @classmethod
    def for_generator(cls, generator: Any, clap_ref: str | None = None) -> GeneratorClap:
        """Share a loaded generator's text tower (``generator.text_encoder``/``tokenizer``); the audio
        tower from ``clap_ref``, on the generator's device and dtype, on first use."""
        if getattr(generator, "text_encoder", None) is None or getattr(generator, "tokenizer", None) is None:
            raise InputError("this generator has no text tower (text_encoder/tokenizer), so it has no CLAP space to use")
        return cls(generator.text_encoder, generator.tokenizer, text_loaded_from=getattr(generator, "loaded_from", None),
                   audio_ref=clap_ref, audio_loader=_audio_loader(clap_ref, generator.device, generator.dtype))

    @property
    def audio(self) -> ClapEncoder | None:
        """AudioLDM's audio tower (None without a ``clap`` role), loaded on first use.

        At that load the space check runs, then the audio CLAP's own text tower is freed: it is needed
        only for the check (a converted AudioLDM CLAP's text tower is the generator's ``text_encoder``
        again), so the process holds one RoBERTa instead of two (about 0.5 GB at fp32). Thread-safe: the
        load runs under the process-wide model-load lock and the tower is published once settled."""
        if self._audio is None and self._audio_loader is not None:
            from .loading import MODEL_LOAD_LOCK

            with MODEL_LOAD_LOCK:
                if self._audio is None and self._audio_loader is not None:
                    audio = self._audio_loader()
                    check = self._space_of(audio)
                    audio.release_text_tower()
                    with self._lock:
                        self._space = check
                    self._audio, self._audio_loader = audio, None
        return self._audio

    def load_audio(self) -> GeneratorClap:
        """Load (and check) the audio tower now rather than on first use, where a caller wants a broken
        ``clap`` folder to fail at load time (``foleykit models check``). Returns ``self``."""
        _ = self.audio
        return self

    @property
    def audio_loaded(self) -> bool:
        """Whether the audio tower is in memory (it loads on first use)."""
        return self._audio is not None

    # -- geometry ----------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.text_encoder.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.text_encoder.parameters()).dtype

    @property
    def dim(self) -> int:
        return int(self.text_encoder.config.projection_dim)

    @property
    def generator_ref(self) -> str:
        return self.loaded_from.ref if self.loaded_from is not None else "in-memory generator"

    # -- text --------------------------------------------------------------------------------------
    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str], *, batch_size: int = 64) -> torch.Tensor:
        """[N, 512] unit embeddings from the generator's own text tower."""
        def forward(ids, mask):
            return self.text_encoder(input_ids=ids, attention_mask=mask).text_embeds

        return embed_texts_batched(self.tokenizer, forward, texts, batch_size=batch_size, device=self.device,
                                   dim=self.dim)

    def probe_embeddings(self) -> torch.Tensor:
        """[P, 512] the generator's text-tower embeddings of :data:`PROBE_CAPTIONS` (cached)."""
        with self._lock:
            if self._probes is None:
                self._probes = self.embed_texts(PROBE_CAPTIONS).cpu()
            return self._probes

    @property
    def fingerprint(self) -> str:
        """:func:`space_fingerprint` of this generator's text tower."""
        return space_fingerprint(self.probe_embeddings())

    # -- space check and audio ---------------------------------------------------------------------
    def _space_of(self, audio: ClapEncoder) -> SpaceCheck:
        """The space check of ``audio``'s CLAP (its own text tower) against the generator's text tower."""
        ours = self.probe_embeddings()
        theirs = audio.embed_texts(PROBE_CAPTIONS).cpu()
        return compare_spaces(ours, theirs, clap_ref=self.audio_ref or "in-memory CLAP",
                              generator_ref=self.generator_ref)

    @property
    def space(self) -> SpaceCheck | None:
        """The space check of the audio tower's CLAP against the generator's text tower (None: no audio
        tower). Loads the audio tower if it is not loaded yet."""
        audio = self.audio
        if audio is None:
            return None
        if self._space is None:  # an audio tower given to the constructor, not checked yet
            check = self._space_of(audio)
            with self._lock:
                if self._space is None:
                    self._space = check
        return self._space

    @property
    def audio_encoder(self) -> ClapEncoder:
        """AudioLDM's audio tower, after the space check; else one line naming the fix."""
        if self.audio is None:
            raise ModelNotAvailableError(
                f"no AudioLDM audio CLAP in this model set (audio sources, re-ranking and extraction need it): "
                f"{IMPORT_HINT} (the default set looks in $FOLEYKIT_CACHE/audioldm-clap)"
            )
        check = self.space
        if not check.same_space:
            raise InputError(check.error())
        return self.audio

    @torch.no_grad()
    def embed_audio(self, waves: Sequence[np.ndarray], sample_rate: int, *, batch_size: int = 8,
                    return_windows: bool = False) -> torch.Tensor | list[torch.Tensor]:
        """[N, 512] unit audio embeddings from AudioLDM's own audio tower (see :meth:`ClapEncoder.embed_audio`)."""
        return self.audio_encoder.embed_audio(waves, sample_rate, batch_size=batch_size, return_windows=return_windows)

    def record(self) -> dict[str, Any]:
        """What sidecars and extraction records say about the CLAP used. The space check's figures are
        there once the audio tower was used (a run that embedded no audio did not load it)."""
        rec: dict[str, Any] = {"text": self.generator_ref + " (text_encoder)", "audio": self.audio_ref}
        if self.loaded_from is not None:
            rec["revision"] = self.loaded_from.revision
        if self._audio is None and self._audio_loader is not None:
            rec["audio_used"] = False
            return rec
        check = self.space
        if check is not None:
            rec["probe_agreement"] = _round(check.agreement)
            rec["same_space"] = check.same_space
        return rec


def _audio_loader(clap_ref: str | None, device: torch.device, dtype: torch.dtype) -> Callable[[], ClapEncoder] | None:
    """A deferred ``ClapEncoder.from_pretrained(clap_ref)`` on ``device``/``dtype`` (None without a ref)."""
    if not clap_ref:
        return None
    return lambda: ClapEncoder.from_pretrained(clap_ref, device=device, dtype=dtype)
