"""ACC (Sounding that Object): how strongly a tagger hears the clip's annotated sound events.

The paper runs PANNs on each generated clip, reads the class probabilities at the clip's annotated
AudioSet labels (excluding general classes such as Speech and Music) and averages them over the
dataset. The exact recipe is unpublished [U], so the variant is a switch:

* ``sigmoid`` (default): mean sigmoid probability at the labels (PANNs' own clip-wise output);
* ``softmax``: the same with a softmax over the non-excluded classes (the paper calls its scores
  "softmax outputs");
* ``top1``: 1 when the top non-excluded class is one of the labels (Im2Wav-style hit rate).

A clip's score is the mean over its labels; ACC is the mean over clips that have labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import expit, softmax

from ..errors import InputError

AccMode = Literal["sigmoid", "softmax", "top1"]
ACC_MODES = ("sigmoid", "softmax", "top1")
#: Classes the paper leaves out as too general (AudioSet display names).
DEFAULT_EXCLUDED = ("Speech", "Music")


@dataclass(frozen=True)
class ACCResult:
    value: float
    mode: str
    n: int
    unlabelled: tuple[str, ...]
    excluded: tuple[int, ...]


def label_indices(labels: Sequence[str], class_names: Sequence[str] | None, n_classes: int) -> list[int]:
    """Class indices for labels given as integers or as class names (case-insensitive)."""
    lookup = {name.strip().lower(): i for i, name in enumerate(class_names or ())}
    out, unknown = [], []
    for lab in labels:
        key = str(lab).strip()
        idx = int(key) if key.isdigit() else lookup.get(key.lower())
        if idx is None or not 0 <= idx < n_classes:
            unknown.append(key)
        else:
            out.append(idx)
    if unknown:
        hint = "" if class_names else " (this tagger has no class names: give class indices)"
        raise InputError(f"unknown tagger classes: {', '.join(sorted(set(unknown))[:8])}{hint}")
    return out


def acc(
    logits: Mapping[str, np.ndarray],
    labels: Mapping[str, Sequence[int]],
    *,
    mode: AccMode = "sigmoid",
    exclude: Sequence[int] = (),
) -> ACCResult:
    """ACC over the clips of ``logits`` that have labels; clips without labels are listed, not scored."""
    if mode not in ACC_MODES:
        raise InputError(f"unknown ACC mode {mode!r}; use one of {', '.join(ACC_MODES)}")
    excluded = sorted(set(exclude))
    scored, unlabelled = [], []
    for name in sorted(logits):
        z = np.asarray(logits[name], dtype=np.float64).reshape(-1)
        keep = np.ones(z.shape[0], dtype=bool)
        keep[excluded] = False
        targets = [i for i in labels.get(name, ()) if keep[i]]
        if not targets:
            unlabelled.append(name)
            continue
        if mode == "sigmoid":
            scored.append(expit(z[targets]).mean())
        elif mode == "softmax":
            probs = np.zeros_like(z)
            probs[keep] = softmax(z[keep])
            scored.append(probs[targets].mean())
        else:
            top = int(np.flatnonzero(keep)[np.argmax(z[keep])])
            scored.append(float(top in targets))
    if not scored:
        raise InputError("ACC: none of the clips has a (non-excluded) label")
    return ACCResult(
        value=float(np.mean(scored)),
        mode=mode,
        n=len(scored),
        unlabelled=tuple(unlabelled),
        excluded=tuple(excluded),
    )
