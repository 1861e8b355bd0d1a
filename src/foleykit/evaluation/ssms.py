"""SSMS, the Sound Source Matching Score of SS2A: do the generated clip's top tags match the reference's?

For each pair i: G_i = the top-M tagger labels of the reference clip, P_i = the top-N labels of the
generated clip. Precision = mean_i |G_i ∩ P_i| / N, recall = mean_i |G_i ∩ P_i| / M, and
SSMS = 2PR / (P + R) from the *averaged* P and R (not a mean of per-clip F1s), as SS2A computes it.

The SS2A paper states N = M = 10 (then P = R = F1); its code defaults to M = 10, N = 50. Its
tables print SSMS on a 0–10 scale (ground truth scores 10), i.e. F1 × 10 with M = N = 10; both are
reported. Probabilities only rank the labels, so sigmoid or softmax outputs give the same score.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .pairing import require_same_names

#: SS2A's tables are F1 on a 0-10 scale (ground truth = 10).
PAPER_SCALE = 10.0


@dataclass(frozen=True)
class SSMSResult:
    f1: float
    precision: float
    recall: float
    m: int
    n: int
    pairs: int

    @property
    def paper_scale(self) -> float:
        return self.f1 * PAPER_SCALE


def top_labels(scores: np.ndarray, k: int) -> set[int]:
    """Indices of the ``k`` highest scores (ties broken by the lower index, deterministically)."""
    order = np.lexsort((np.arange(scores.shape[0]), -np.asarray(scores, dtype=np.float64)))
    return set(order[:k].tolist())


def ssms(
    reference: Mapping[str, np.ndarray], generated: Mapping[str, np.ndarray], *, m: int = 10, n: int = 10
) -> SSMSResult:
    """SSMS over clips paired by name; inputs are per-clip class scores (probabilities or logits)."""
    names = require_same_names(reference, generated, "reference", "generated")
    if not names:
        raise InputError("SSMS needs at least one pair of clips")
    classes = np.asarray(reference[names[0]]).shape[-1]
    if not (1 <= m <= classes and 1 <= n <= classes):
        raise InputError(f"SSMS: M and N must lie in 1..{classes}, got M={m}, N={n}")
    hits = np.array(
        [len(top_labels(reference[k], m) & top_labels(generated[k], n)) for k in names], dtype=float
    )
    precision, recall = float((hits / n).mean()), float((hits / m).mean())
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return SSMSResult(f1=f1, precision=precision, recall=recall, m=m, n=n, pairs=len(names))
