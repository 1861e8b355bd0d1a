"""Fréchet distance: closed forms, the square-root repairs, and frame pooling (not clip concatenation)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from foleykit.errors import InputError
from foleykit.evaluation import frechet
from foleykit.evaluation.frechet import (
    FrechetWarning,
    frechet_distance,
    frechet_distance_from_stats,
    pool_frames,
)


def _spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T + 0.1 * np.eye(d)


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def test_exact_formula_from_given_statistics():
    """Against Tr((Σa^½ Σb Σa^½)^½), an independent symmetric route to the same trace."""
    rng = np.random.default_rng(0)
    mu_a, mu_b = rng.standard_normal(6), rng.standard_normal(6)
    sa, sb = _spd(rng, 6), _spd(rng, 6)
    root_a = _psd_sqrt(sa)
    expected = np.sum((mu_a - mu_b) ** 2) + np.trace(sa + sb - 2 * _psd_sqrt(root_a @ sb @ root_a))
    res = frechet_distance_from_stats(mu_a, sa, mu_b, sb)
    assert res.value == pytest.approx(expected, rel=1e-9)
    assert res.dim == 6 and res.eps == 0.0 and res.imag_max < 1e-8


def test_diagonal_gaussians_closed_form_and_samples():
    """FD of N(μa, diag a) and N(μb, diag b) is ‖Δμ‖² + Σ(√a − √b)²; many samples get close to it."""
    mu_a, mu_b = np.array([1.0, -2.0, 0.5]), np.array([0.0, 0.0, 0.5])
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 0.25])
    closed = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    assert frechet_distance_from_stats(mu_a, np.diag(var_a), mu_b, np.diag(var_b)).value == pytest.approx(
        closed
    )

    rng = np.random.default_rng(1)
    a = mu_a + rng.standard_normal((40_000, 3)) * np.sqrt(var_a)
    b = mu_b + rng.standard_normal((40_000, 3)) * np.sqrt(var_b)
    res = frechet_distance(a, b)
    assert res.value == pytest.approx(closed, abs=0.1)
    assert (res.n_a, res.n_b, res.dim) == (40_000, 40_000, 3)
    assert frechet_distance(b, a).value == pytest.approx(res.value, rel=1e-6)  # symmetric


def test_identical_sets_give_zero():
    x = np.random.default_rng(2).standard_normal((200, 8))
    assert frechet_distance(x, x.copy()).value == pytest.approx(0.0, abs=1e-8)


def test_fewer_samples_than_dimensions_warns_and_reports_counts():
    rng = np.random.default_rng(3)
    with pytest.warns(FrechetWarning, match="rank-deficient"):
        res = frechet_distance(rng.standard_normal((5, 16)), rng.standard_normal((30, 16)))
    assert (res.n_a, res.n_b, res.dim) == (5, 30, 16)
    assert len(res.warnings) == 1 and "5 samples for 16 dimensions" in res.warnings[0]


def test_too_few_samples_is_an_error():
    with pytest.raises(InputError, match="at least 2 samples"):
        frechet_distance(np.zeros((1, 4)), np.zeros((10, 4)))


def test_small_imaginary_part_is_discarded_and_reported(monkeypatch):
    real_sqrtm = linalg.sqrtm
    monkeypatch.setattr(frechet.linalg, "sqrtm", lambda m: real_sqrtm(m) + 1e-5j * np.eye(len(m)))
    res = frechet_distance_from_stats(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2))
    assert res.value == pytest.approx(0.0, abs=1e-9)
    assert res.imag_max == pytest.approx(1e-5) and res.eps == 0.0


def test_singular_product_is_retried_with_eps(monkeypatch):
    real_sqrtm = linalg.sqrtm
    calls = []

    def flaky(m):
        calls.append(m)
        return np.full_like(m, np.nan) if len(calls) == 1 else real_sqrtm(m)

    monkeypatch.setattr(frechet.linalg, "sqrtm", flaky)
    with pytest.warns(FrechetWarning, match="singular"):
        res = frechet_distance_from_stats(np.zeros(2), np.eye(2), np.ones(2), np.eye(2), eps=1e-6)
    assert len(calls) == 2 and res.eps == 1e-6
    assert np.allclose(calls[1], (1 + 1e-6) ** 2 * np.eye(2))
    assert res.value == pytest.approx(2.0, abs=1e-5)


def test_large_imaginary_part_is_an_error(monkeypatch):
    monkeypatch.setattr(frechet.linalg, "sqrtm", lambda m: m + 0.5j * np.eye(len(m)))
    with pytest.raises(InputError, match="imaginary part of 0.5"):
        frechet_distance_from_stats(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2))


def test_frames_are_pooled_as_samples_not_concatenated_into_one_vector():
    """gudgud96's PANN bug: concatenating every clip into one 1-D vector makes μ and Σ scalars.

    The two sets below have the same pooled 1-D value distribution (dimensions swapped), so the
    buggy distance is ~0, while the true 2-D distance is ‖(1,-1) - (-1,1)‖² = 8.
    """
    rng = np.random.default_rng(4)
    clips_a = [rng.standard_normal((10, 2)) + [1.0, -1.0] for _ in range(300)]
    clips_b = [rng.standard_normal((10, 2)) + [-1.0, 1.0] for _ in range(300)]
    pooled_a, pooled_b = pool_frames(clips_a), pool_frames(clips_b)
    assert pooled_a.shape == (3000, 2)
    res = frechet_distance(pooled_a, pooled_b)
    assert (res.n_a, res.dim) == (3000, 2)
    assert res.value == pytest.approx(8.0, abs=0.3)
    buggy = frechet_distance(
        np.concatenate(clips_a, axis=None)[:, None], np.concatenate(clips_b, axis=None)[:, None]
    )
    assert buggy.value < 0.05  # what the bug would report: this test tells the two apart


def test_pool_frames_refuses_mixed_dimensions():
    with pytest.raises(InputError, match="one d"):
        pool_frames([np.zeros((3, 4)), np.zeros((3, 5))])
