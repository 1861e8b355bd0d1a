"""SSMS on toy label sets: top-M of the reference against top-N of the generated clip, F1."""

from __future__ import annotations

import numpy as np
import pytest

from foleykit.errors import InputError
from foleykit.evaluation.ssms import ssms, top_labels


def _scores(top: list[int], n_classes: int = 8) -> np.ndarray:
    """Scores whose ranking starts with ``top`` in that order."""
    s = np.zeros(n_classes)
    for rank, idx in enumerate(top):
        s[idx] = 10.0 - rank
    return s


def test_top_labels_with_ties_is_deterministic():
    assert top_labels(np.array([0.5, 0.9, 0.5, 0.1]), 2) == {1, 0}


def test_equal_m_and_n_gives_precision_equal_recall():
    res = ssms({"x": _scores([0, 1])}, {"x": _scores([1, 2])}, m=2, n=2)
    assert res.precision == res.recall == res.f1 == pytest.approx(0.5)
    assert res.paper_scale == pytest.approx(5.0)  # SS2A prints F1 x 10


def test_m_different_from_n():
    # reference top-2 {0, 1}; generated top-4 {1, 2, 3, 4}: one hit
    res = ssms({"x": _scores([0, 1])}, {"x": _scores([1, 2, 3, 4])}, m=2, n=4)
    assert (res.precision, res.recall) == (pytest.approx(1 / 4), pytest.approx(1 / 2))
    assert res.f1 == pytest.approx(2 * (1 / 4) * (1 / 2) / (1 / 4 + 1 / 2))


def test_averages_over_clips_and_ground_truth_scores_ten():
    ref = {"a": _scores([0, 1]), "b": _scores([2, 3])}
    gen = {"a": _scores([0, 1]), "b": _scores([4, 5])}
    res = ssms(ref, gen, m=2, n=2)
    assert res.f1 == pytest.approx(0.5) and res.pairs == 2
    assert ssms(ref, ref, m=2, n=2).paper_scale == pytest.approx(10.0)


def test_rejects_impossible_m_n():
    with pytest.raises(InputError, match="M and N"):
        ssms({"x": np.zeros(8)}, {"x": np.zeros(8)}, m=9, n=2)
