"""A training-free CLIP→CLAP bridge: used by the mapper when no trained V2A-Mapper is given, and by the
training-free routes of ``sources`` and ``objects`` (:mod:`foleykit.pipelines.training_free`).

The image (or crop) is scored against CLIP text embeddings of a vocabulary of sounding things
(``clip_prompt``, default ``"a photo of {}"``); the ``top_k`` best words are weighted by a softmax of
their cosine similarities over ``temperature`` (0.01 = CLIP's own logit scale of 100), and their
CLAP text embeddings (``clap_prompt``, default ``"the sound of {}"``) are averaged with those
weights and renormalised. The CLAP side is the generator's own text tower
(:class:`~foleykit.encoders.generator_clap.GeneratorClap`): the space AudioLDM was trained on. It is
coarser than a trained mapper but needs no training data.

Vocabulary (:mod:`foleykit.vocabulary`): by default the 527 AudioSet and 309 VGGSound classes,
deduplicated (806 names); ``objects`` (the detector's 126 visible things) or a text file, one name
per line, instead.

Both sides are embedded once per (model, prompt, vocabulary) and cached on disk under
``$FOLEYKIT_CACHE/bridge/`` (safetensors, written atomically), keyed by the encoder's identity (hub
id and revision, or a local folder with its weight files' sizes and times; and dtype), the prompt
and a hash of the word list; a second run, in this or any later process, runs no text-encoder
forward. An encoder without provenance (built in code) is cached in memory only.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..vocabulary import DEFAULT_BRIDGE_VOCABULARY, load_vocabulary, vocabulary_hash

__all__ = [
    "DEFAULT_CLAP_PROMPT",
    "DEFAULT_CLIP_PROMPT",
    "DEFAULT_TEMPERATURE",
    "DEFAULT_TOP_K",
    "BridgeSettings",
    "ZeroShotBridge",
    "bridge_cache_dir",
    "cached_text_embeddings",
    "encoder_identity",
]

DEFAULT_CLIP_PROMPT = "a photo of {}"
DEFAULT_CLAP_PROMPT = "the sound of {}"
DEFAULT_TOP_K = 3
DEFAULT_TEMPERATURE = 0.01


@dataclass(frozen=True)
class BridgeSettings:
    """How the bridge maps: vocabulary (a name or a file), the two prompts, ``top_k``, ``temperature``."""

    vocabulary: str | None = None
    clip_prompt: str = DEFAULT_CLIP_PROMPT
    clap_prompt: str = DEFAULT_CLAP_PROMPT
    top_k: int = DEFAULT_TOP_K
    temperature: float = DEFAULT_TEMPERATURE

    def check(self) -> BridgeSettings:
        """Refuse impossible settings (one line each) before any model runs."""
        for name, prompt in (("CLIP prompt", self.clip_prompt), ("CLAP prompt", self.clap_prompt)):
            if not isinstance(prompt, str) or prompt.count("{}") != 1:
                raise InputError(f"the bridge's {name} must contain '{{}}' exactly once (where the word goes), "
                                 f"got {prompt!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise InputError(f"bridge top_k must be a whole number >= 1, got {self.top_k!r}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise InputError(f"bridge temperature must be a finite number > 0, got {t!r}")
        return self

    def to_record(self) -> dict:
        rec = asdict(self)
        rec["vocabulary"] = self.vocabulary or DEFAULT_BRIDGE_VOCABULARY
        return rec


# ---------------------------------------------------------------------- the on-disk cache


def bridge_cache_dir() -> Path:
    """``$FOLEYKIT_CACHE/bridge`` (default ``~/.cache/foleykit/bridge``)."""
    from ..model_sets import default_cache_dir

    return default_cache_dir() / "bridge"


def encoder_identity(encoder) -> str | None:
    """What fixes an encoder's text embeddings: its class, hub id + revision (or local folder and its
    weight files' sizes and modification times) and dtype. None when it has no provenance."""
    src = getattr(encoder, "loaded_from", None)
    if src is None:
        return None
    parts = [type(encoder).__name__, str(src.ref), str(src.revision), str(getattr(encoder, "dtype", ""))]
    folder = Path(src.path) if src.path else None
    if folder is not None and folder.is_dir():  # a generator's folder: its text tower's weights
        for f in sorted([*folder.glob("*.safetensors"), *folder.glob("*.bin"),
                         *folder.glob("text_encoder/*.safetensors"), *folder.glob("text_encoder/*.bin")]):
            st = f.stat()
            parts.append(f"{f.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


_memory: dict[str, torch.Tensor] = {}
_memory_lock = threading.Lock()


def _check_tokens(encoder, words: Sequence[str], what: str, source: str) -> None:
    tok = getattr(encoder, "tokenizer", None)
    if tok is None:
        return
    ids = tok(list(words), add_special_tokens=False)["input_ids"]
    for word, seq in zip(words, ids):
        if len(seq) == 0:
            raise InputError(f"vocabulary {source}: the name {word!r} tokenises to nothing for the {what} text encoder")


def cached_text_embeddings(encoder, words: Sequence[str], prompt: str, *, side: str, source: str,
                           cache_dir: str | os.PathLike | None = None) -> tuple[torch.Tensor, str]:
    """[N, D] unit text embeddings of ``prompt.format(word)``, from the disk cache when there.

    Returns (embeddings on the CPU, how: ``"disk"``, ``"memory"`` or ``"computed"``)."""
    from safetensors.torch import load_file, save_file

    identity = encoder_identity(encoder)
    key = hashlib.sha256(f"{side}|{identity}|{prompt}|{vocabulary_hash(words)}|{len(words)}".encode()).hexdigest()[:32]
    with _memory_lock:
        hit = _memory.get(key) if identity is not None else None
    if hit is not None:
        return hit, "memory"
    folder = Path(cache_dir).expanduser() if cache_dir is not None else bridge_cache_dir()
    path = folder / f"{side}-{key}.safetensors"
    if identity is not None and path.is_file():
        try:
            emb = load_file(str(path))["embeddings"]
            if emb.shape[0] == len(words):
                with _memory_lock:
                    _memory[key] = emb
                return emb, "disk"
        except (OSError, KeyError, RuntimeError, ValueError):
            pass  # a damaged cache file is recomputed and replaced
    _check_tokens(encoder, words, side.upper(), source)
    emb = F.normalize(encoder.embed_texts([prompt.format(w) for w in words]).float(), dim=-1).cpu().contiguous()
    if identity is not None:
        with _memory_lock:
            _memory[key] = emb
        try:  # atomically: a reader never sees half a file; concurrent writers write the same bytes
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{path.name}.{os.getpid()}.{threading.get_ident()}.part"
            save_file({"embeddings": emb}, str(tmp), metadata={"side": side, "prompt": prompt, "model": identity,
                                                                "words": vocabulary_hash(words), "count": str(len(words))})
            os.replace(tmp, path)
        except OSError:
            pass  # an unwritable cache only costs the next run the forward pass
    return emb, "computed"


# ---------------------------------------------------------------------- the bridge


class ZeroShotBridge:
    """Maps CLIP image embeddings to unit CLAP vectors through a text vocabulary."""

    kind = "zero_shot_bridge"

    def __init__(self, clip, clap, settings: BridgeSettings | None = None, *,
                 cache_dir: str | os.PathLike | None = None) -> None:
        self.settings = (settings or BridgeSettings()).check()
        words, name = load_vocabulary(self.settings.vocabulary)
        if self.settings.top_k > len(words):
            raise InputError(f"bridge top_k {self.settings.top_k} is larger than the vocabulary "
                             f"{name} ({len(words)} names)")
        self.vocabulary = list(words)
        self.vocabulary_name = name
        self._clip_text, clip_how = cached_text_embeddings(clip, words, self.settings.clip_prompt, side="clip",
                                                           source=name, cache_dir=cache_dir)
        self._clap_text, clap_how = cached_text_embeddings(clap, words, self.settings.clap_prompt, side="clap",
                                                           source=name, cache_dir=cache_dir)
        self.cache = {"clip": clip_how, "clap": clap_how}

    @property
    def clip_text(self) -> torch.Tensor:
        """[V, clip_dim] unit CLIP text embeddings of the prompted vocabulary."""
        return self._clip_text

    @property
    def clap_text(self) -> torch.Tensor:
        """[V, clap_dim] unit CLAP text embeddings of the prompted vocabulary."""
        return self._clap_text

    def _resolve(self, top_k: int | None, temperature: float | None) -> tuple[int, float]:
        s = BridgeSettings(self.settings.vocabulary, top_k=self.settings.top_k if top_k is None else top_k,
                           temperature=self.settings.temperature if temperature is None else temperature).check()
        if s.top_k > len(self.vocabulary):
            raise InputError(f"bridge top_k {s.top_k} is larger than the vocabulary {self.vocabulary_name} "
                             f"({len(self.vocabulary)} names)")
        return s.top_k, float(s.temperature)

    def _weights(self, clip_embeds: torch.Tensor, top_k: int | None = None, temperature: float | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        k, t = self._resolve(top_k, temperature)
        sims = F.normalize(clip_embeds.float(), dim=-1) @ self._clip_text.to(clip_embeds.device).T
        top, idx = sims.topk(k, dim=-1)
        return torch.softmax(top / t, dim=-1), idx

    def labels(self, clip_embeds: torch.Tensor, *, top_k: int | None = None, temperature: float | None = None
               ) -> list[list[tuple[str, float]]]:
        """The top-k vocabulary words and their weights per image (for sidecars and messages)."""
        weights, idx = self._weights(clip_embeds, top_k, temperature)
        return [[(self.vocabulary[j], float(w)) for j, w in zip(i.tolist(), ws.tolist())] for i, ws in zip(idx, weights)]

    @torch.no_grad()
    def map(self, clip_embeds: torch.Tensor, *, top_k: int | None = None, temperature: float | None = None,
            **_: object) -> torch.Tensor:
        """[B, clap_dim] unit CLAP vectors: softmax-weighted CLAP text embeddings of the best words."""
        weights, idx = self._weights(clip_embeds, top_k, temperature)
        clap = self._clap_text.to(clip_embeds.device)[idx]  # [B, k, clap_dim]
        return F.normalize((weights[..., None] * clap).sum(1), dim=-1)

    def record(self, settings: BridgeSettings | None = None) -> dict:
        """Vocabulary, prompts and embeddings' provenance; ``top_k``/``temperature`` of ``settings`` (a call's)
        when given, else the bridge's own."""
        s = self.settings if settings is None else settings
        rec = {**self.settings.to_record(), "top_k": s.top_k, "temperature": s.temperature}
        return {"kind": self.kind, **rec, "vocabulary": self.vocabulary_name,
                "vocabulary_size": len(self.vocabulary), "vocabulary_hash": vocabulary_hash(self.vocabulary),
                "embeddings": dict(self.cache)}
