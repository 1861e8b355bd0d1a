"""Fréchet distance between two sets of embeddings (FD on PANNs, FAD on VGGish, C-FAD on CLAP).

FD = ‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2·(Σ_a Σ_b)^½), with unbiased (n−1) covariances, computed in
float64. The matrix square root is where published tools silently go wrong, so it is handled
explicitly here: a non-finite root is retried with ``eps·I`` added to both covariances, a complex
root keeps its real part only when the imaginary part on the diagonal (the only part the trace
sees) is below ``imag_tol``, and the amounts involved are returned with the value.

The set of *samples* is the caller's choice and matters: one row per clip for clip-level
embedders (PANNs, CLAP), one row per frame, pooled over all clips, for VGGish
(:func:`pool_frames`). Never flatten a whole set into one vector: its mean and covariance become
scalars and the "distance" is one-dimensional.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import linalg

from ..errors import InputError

#: Largest negative FD put down to rounding and reported as 0 (fadtk #38 saw tiny negatives).
NEGATIVE_TOL = 1e-6


class FrechetWarning(UserWarning):
    """A Fréchet distance was computed, but on shaky ground (too few samples, regularised root)."""


@dataclass(frozen=True)
class FrechetResult:
    """The distance and what it rests on: sample counts, dimension and the square-root repairs."""

    value: float
    n_a: int
    n_b: int
    dim: int
    mean_term: float
    trace_term: float
    imag_max: float
    eps: float
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["warnings"] = list(self.warnings)
        return out


def pool_frames(per_clip: Sequence[np.ndarray]) -> np.ndarray:
    """Stack per-clip ``(frames_i, d)`` embeddings into one ``(Σ frames_i, d)`` sample matrix.

    Frame-level FAD treats every frame of every clip as one sample of the distribution.
    """
    mats = [np.asarray(m) for m in per_clip]
    if not mats:
        raise InputError("no clips to pool frames from")
    dims = {m.shape[-1] for m in mats}
    if any(m.ndim != 2 for m in mats) or len(dims) != 1:
        shapes = sorted({m.shape for m in mats})[:3]
        raise InputError(f"frame embeddings must all be (frames, d) with one d, got shapes like {shapes}")
    return np.concatenate(mats, axis=0)


def gaussian_stats(x: np.ndarray, what: str = "embeddings") -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of an ``(n, d)`` sample matrix, in float64."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise InputError(f"{what}: expected an (n_samples, dim) matrix, got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise InputError(f"{what}: a covariance needs at least 2 samples, got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        raise InputError(f"{what} contain NaN or infinite values")
    return arr.mean(axis=0), np.atleast_2d(np.cov(arr, rowvar=False))


def frechet_distance(
    a: np.ndarray, b: np.ndarray, *, eps: float = 1e-6, imag_tol: float = 1e-3
) -> FrechetResult:
    """Fréchet distance between the Gaussians fitted to sample matrices ``a`` (n_a, d) and ``b`` (n_b, d).

    Warns (:class:`FrechetWarning`, and in ``result.warnings``) when a set has fewer samples than
    dimensions: its covariance is then rank-deficient and the distance is dominated by noise.
    """
    mu_a, sigma_a = gaussian_stats(a, "first set of embeddings")
    mu_b, sigma_b = gaussian_stats(b, "second set of embeddings")
    n_a, n_b = int(np.shape(a)[0]), int(np.shape(b)[0])
    notes = []
    dim = mu_a.shape[0]
    for label, n in (("first", n_a), ("second", n_b)):
        if n < dim:
            notes.append(
                f"the {label} set has {n} samples for {dim} dimensions: its covariance is rank-deficient "
                "and the distance is biased and unstable (use more clips)"
            )
    return frechet_distance_from_stats(
        mu_a, sigma_a, mu_b, sigma_b, eps=eps, imag_tol=imag_tol, n_a=n_a, n_b=n_b, notes=notes
    )


def frechet_distance_from_stats(
    mu_a: np.ndarray,
    sigma_a: np.ndarray,
    mu_b: np.ndarray,
    sigma_b: np.ndarray,
    *,
    eps: float = 1e-6,
    imag_tol: float = 1e-3,
    n_a: int = 0,
    n_b: int = 0,
    notes: Sequence[str] = (),
) -> FrechetResult:
    """Fréchet distance between N(mu_a, sigma_a) and N(mu_b, sigma_b) (exact, given the statistics)."""
    mu_a, mu_b = np.atleast_1d(np.asarray(mu_a, np.float64)), np.atleast_1d(np.asarray(mu_b, np.float64))
    sigma_a, sigma_b = (
        np.atleast_2d(np.asarray(sigma_a, np.float64)),
        np.atleast_2d(np.asarray(sigma_b, np.float64)),
    )
    dim = mu_a.shape[0]
    if mu_b.shape != (dim,) or sigma_a.shape != (dim, dim) or sigma_b.shape != (dim, dim):
        raise InputError(
            f"Fréchet statistics do not match: means {mu_a.shape} / {mu_b.shape}, "
            f"covariances {sigma_a.shape} / {sigma_b.shape}"
        )
    notes = list(notes)
    covmean, imag_max, eps_used = _sqrt_of_product(sigma_a, sigma_b, eps=eps, imag_tol=imag_tol, notes=notes)
    diff = mu_a - mu_b
    mean_term = float(diff @ diff)
    trace_term = float(np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * np.trace(covmean))
    value = mean_term + trace_term
    if value < 0:
        scale = max(1.0, float(np.trace(sigma_a) + np.trace(sigma_b)))
        if value < -NEGATIVE_TOL * scale:
            raise InputError(
                f"Fréchet distance came out negative ({value:.3g}): the covariances are numerically broken"
            )
        if value < -1e-9 * scale:
            notes.append(f"rounding gave a negative distance ({value:.2e}); reported as 0")
        value = 0.0
    for note in notes:
        warnings.warn(note, FrechetWarning, stacklevel=2)
    return FrechetResult(
        value=value,
        n_a=n_a,
        n_b=n_b,
        dim=dim,
        mean_term=mean_term,
        trace_term=trace_term,
        imag_max=imag_max,
        eps=eps_used,
        warnings=tuple(notes),
    )


def _sqrt_of_product(
    sigma_a: np.ndarray, sigma_b: np.ndarray, *, eps: float, imag_tol: float, notes: list[str]
) -> tuple[np.ndarray, float, float]:
    """(Σ_a Σ_b)^½ as a real matrix, the imaginary part discarded, and the diagonal offset used.

    First tried as is; a non-finite or clearly complex root (a singular or near-singular product)
    is retried once with ``eps·I`` added to both covariances. Still clearly complex is an error.
    """
    eye = np.eye(sigma_a.shape[0])
    problem = ""
    for offset in (0.0, eps):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", linalg.LinAlgWarning)  # judged below, with our own message
            covmean = linalg.sqrtm((sigma_a + offset * eye) @ (sigma_b + offset * eye))
        if not np.isfinite(covmean).all():
            problem = "the product of covariances is singular (non-finite square root)"
        else:
            imag_max = float(np.abs(np.diagonal(covmean).imag).max()) if np.iscomplexobj(covmean) else 0.0
            if imag_max <= imag_tol:
                return np.real(covmean), imag_max, offset
            problem = f"the matrix square root has an imaginary part of {imag_max:.3g} on its diagonal"
        if offset == 0.0:
            notes.append(f"{problem}; retried with {eps:g}·I added to both covariances")
    raise InputError(
        f"Fréchet distance: {problem} even with {eps:g}·I added (tolerance {imag_tol:g}); "
        "there are probably far too few samples"
    )
