"""KL (softmax / sigmoid, paired by name) and Inception Score against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from foleykit.errors import InputError
from foleykit.evaluation.kl_is import inception_score, kl_divergence


def test_softmax_kl_matches_hand_computation():
    # logits = log-probabilities, so softmax gives the probabilities back exactly
    ref = {"a": np.log([0.5, 0.25, 0.25]), "b": np.log([0.2, 0.3, 0.5])}
    gen = {"b": np.log([0.2, 0.3, 0.5]), "a": np.log([0.25, 0.5, 0.25])}  # other order: paired by name
    res = kl_divergence(ref, gen, mode="softmax")
    kl_a = 0.5 * math.log(0.5 / 0.25) + 0.25 * math.log(0.25 / 0.5) + 0.25 * math.log(1.0)
    assert res.per_clip["a"] == pytest.approx(kl_a)
    assert res.per_clip["b"] == pytest.approx(0.0, abs=1e-12)
    assert res.value == pytest.approx(kl_a / 2) and res.n == 2 and res.eps == 0.0


def test_kl_direction_is_reference_given_generated():
    p, q = np.log([0.9, 0.1]), np.log([0.5, 0.5])
    forward = kl_divergence({"x": p}, {"x": q}).value
    assert forward == pytest.approx(0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5))
    assert forward != pytest.approx(kl_divergence({"x": q}, {"x": p}).value)


def test_sigmoid_kl_matches_audioldm_eval_formula():
    ref = {"c": np.array([0.0, math.log(3.0)])}  # sigmoid -> 0.5, 0.75
    gen = {"c": np.array([math.log(3.0), 0.0])}  # sigmoid -> 0.75, 0.5
    eps = 1e-6
    expected = (0.5 * math.log(0.5) - 0.5 * math.log(0.75 + eps)) + (
        0.75 * math.log(0.75) - 0.75 * math.log(0.5 + eps)
    )
    res = kl_divergence(ref, gen, mode="sigmoid")
    assert res.value == pytest.approx(expected) and res.eps == eps


def test_kl_lists_unpaired_names():
    with pytest.raises(InputError, match=r"1 in reference without a match in generated: only_ref.*only_gen"):
        kl_divergence(
            {"a": np.zeros(3), "only_ref": np.zeros(3)}, {"a": np.zeros(3), "only_gen": np.zeros(3)}
        )


def test_is_hand_computation_single_split():
    p1, p2 = np.array([0.8, 0.2]), np.array([0.2, 0.8])
    kl = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)  # same for both clips
    res = inception_score(np.log(np.stack([p1, p2])), splits=1)
    assert res.mean == pytest.approx(math.exp(kl)) and res.std == 0.0


def test_is_bounds():
    confident = np.array([[50.0, 0.0], [0.0, 50.0]] * 5)
    assert inception_score(confident, splits=1).mean == pytest.approx(
        2.0, rel=1e-6
    )  # = number of classes used
    same = np.tile([1.0, 2.0, 3.0], (20, 1))
    res = inception_score(same)
    assert res.mean == pytest.approx(1.0) and res.splits == 10 and res.n == 20


def test_is_splits_are_seeded():
    logits = np.random.default_rng(0).standard_normal((50, 5)) * 3
    a, b = inception_score(logits, seed=2020), inception_score(logits, seed=2020)
    assert (a.mean, a.std) == (b.mean, b.std) and a.seed == 2020
    assert inception_score(logits, seed=7).std != a.std  # another shuffle, other splits


def test_is_needs_a_clip_per_split():
    with pytest.raises(InputError, match="at least 10 clips"):
        inception_score(np.zeros((9, 527)))
