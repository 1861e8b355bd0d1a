"""KL divergence (paired) and Inception Score over an AudioSet tagger's 527 logits.

KL is mean_i KL(reference_i ‖ generated_i), clips paired by name. Two variants exist and papers
rarely say which one they print, so both are kept under their own names:

* ``softmax``: a proper KL between the softmax distributions (av-benchmark's KL_PANNs, MMAudio);
  exact log-softmax, no epsilon unless one is asked for.
* ``sigmoid``: the same sum over the 527 per-class sigmoid probabilities, Σ_c p·(log p − log(q + 1e-6))
  (audioldm_eval). Not a Bernoulli KL (the 1 − p terms are missing); kept because AudioLDM-style
  tables report it.

IS = exp(E_x KL(p(y|x) ‖ p(y))) on softmax probabilities of the generated set, shuffled with a
seeded permutation and averaged over 10 splits (seed 2020, as audioldm_eval and av-benchmark).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.special import expit, log_softmax, softmax, xlogy

from ..errors import InputError
from .pairing import require_same_names

KLMode = Literal["softmax", "sigmoid"]
#: Epsilon added to the generated probabilities, per variant (matching the tools each one follows).
DEFAULT_KL_EPS: dict[str, float] = {"softmax": 0.0, "sigmoid": 1e-6}
IS_SEED = 2020
IS_SPLITS = 10


@dataclass(frozen=True)
class KLResult:
    value: float
    mode: str
    eps: float
    n: int
    per_clip: dict[str, float] = field(repr=False)


@dataclass(frozen=True)
class ISResult:
    mean: float
    std: float
    splits: int
    n: int
    seed: int


def _logit_matrix(logits: Mapping[str, np.ndarray], names: list[str], what: str) -> np.ndarray:
    mat = np.stack([np.asarray(logits[n], dtype=np.float64).reshape(-1) for n in names])
    if not np.isfinite(mat).all():
        raise InputError(f"{what} logits contain NaN or infinite values")
    return mat


def kl_divergence(
    reference: Mapping[str, np.ndarray],
    generated: Mapping[str, np.ndarray],
    *,
    mode: KLMode = "softmax",
    eps: float | None = None,
) -> KLResult:
    """Mean KL(reference ‖ generated) over clips paired by name; ``per_clip`` keeps each term."""
    if mode not in DEFAULT_KL_EPS:
        raise InputError(f"unknown KL mode {mode!r}; use 'softmax' or 'sigmoid'")
    names = require_same_names(reference, generated, "reference", "generated")
    if not names:
        raise InputError("KL needs at least one pair of clips")
    eps = DEFAULT_KL_EPS[mode] if eps is None else float(eps)
    ref = _logit_matrix(reference, names, "reference")
    gen = _logit_matrix(generated, names, "generated")
    if ref.shape != gen.shape:
        raise InputError(f"reference and generated logits differ in shape: {ref.shape} vs {gen.shape}")
    if mode == "softmax":
        log_p = log_softmax(ref, axis=1)
        p = np.exp(log_p)
        log_q = log_softmax(gen, axis=1) if eps == 0 else np.log(softmax(gen, axis=1) + eps)
        terms = (p * (log_p - log_q)).sum(axis=1)
    else:
        p, q = expit(ref), expit(gen)
        terms = (xlogy(p, p) - p * np.log(q + eps)).sum(axis=1)
    return KLResult(
        value=float(terms.mean()),
        mode=mode,
        eps=eps,
        n=len(names),
        per_clip=dict(zip(names, terms.tolist(), strict=True)),
    )


def inception_score(logits: np.ndarray, *, splits: int = IS_SPLITS, seed: int = IS_SEED) -> ISResult:
    """Inception Score (mean and std over ``splits``) of an ``(n, classes)`` logit matrix."""
    arr = np.asarray(logits, dtype=np.float64)
    if arr.ndim != 2:
        raise InputError(f"IS expects an (n_clips, n_classes) logit matrix, got shape {arr.shape}")
    n = arr.shape[0]
    if splits < 1 or n < splits:
        raise InputError(f"IS with {splits} splits needs at least {splits} clips, got {n}")
    if not np.isfinite(arr).all():
        raise InputError("IS logits contain NaN or infinite values")
    probs = softmax(arr, axis=1)[np.random.RandomState(seed).permutation(n)]
    scores = []
    for k in range(splits):
        part = probs[k * n // splits : (k + 1) * n // splits]
        marginal = part.mean(axis=0, keepdims=True)
        kl = (xlogy(part, part) - xlogy(part, marginal)).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return ISResult(mean=float(np.mean(scores)), std=float(np.std(scores)), splits=splits, n=n, seed=seed)
