"""CLIP score and CLAP score (raw cosine and x100, multi-partner averaging, matching by name) and ACC."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from foleykit.errors import InputError
from foleykit.evaluation.acc import acc, label_indices
from foleykit.evaluation.annotations import read_captions, read_labels
from foleykit.evaluation.clap_score import clap_score
from foleykit.evaluation.clip_score import clip_score, match_images


def test_clip_score_raw_and_scaled():
    res = clip_score({"dog": np.array([2.0, 0.0])}, {"dog": [np.array([1.0, 1.0])]})
    assert res.raw == pytest.approx(1 / math.sqrt(2))
    assert res.scaled == pytest.approx(100 / math.sqrt(2))  # papers print x100: CS 9.720 = cosine 0.0972


def test_clip_score_averages_images_then_clips():
    audio = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0])}
    images = {"a": [np.array([1.0, 0.0]), np.array([0.0, 1.0])], "b": [np.array([0.0, -1.0])]}
    res = clip_score(audio, images)
    assert res.per_clip == {"a": pytest.approx(0.5), "b": pytest.approx(-1.0)}
    assert res.raw == pytest.approx(-0.25)


def test_clip_score_refuses_mismatched_spaces_and_missing_images():
    with pytest.raises(InputError, match="joint space"):
        clip_score({"a": np.ones(3)}, {"a": [np.ones(4)]})
    with pytest.raises(InputError, match="without a match"):
        clip_score({"a": np.ones(3), "b": np.ones(3)}, {"a": [np.ones(3)]})


def test_match_images_by_name_longest_clip_first():
    images = {s: Path(f"{s}.png") for s in ("dog", "dog_0", "dog-left", "dog_2", "catfish", "cat.crop1")}
    matched = match_images(["dog", "dog_2", "cat"], images)
    assert [p.stem for p in matched["dog"]] == ["dog", "dog-left", "dog_0"]
    assert [p.stem for p in matched["dog_2"]] == ["dog_2"]
    assert [p.stem for p in matched["cat"]] == ["cat.crop1"]  # "catfish" is not a crop of "cat"


def test_clap_score_with_captions_csv(tmp_path):
    csv = tmp_path / "captions.csv"
    csv.write_text("filename,caption\nrain.wav,rain on a roof\nrain.wav,heavy rain\ndog.flac,a dog barks\n")
    caps = read_captions(csv)
    assert caps == {"rain": ["rain on a roof", "heavy rain"], "dog": ["a dog barks"]}
    text = {"rain": [np.array([1.0, 0.0]), np.array([0.6, 0.8])], "dog": [np.array([0.0, 1.0])]}
    res = clap_score({"rain": np.array([1.0, 0.0]), "dog": np.array([0.0, 3.0])}, text)
    assert res.per_clip["rain"] == pytest.approx(0.8) and res.per_clip["dog"] == pytest.approx(1.0)
    assert res.scaled == pytest.approx(90.0)


def test_read_labels_splits_cells(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text('name,labels\nclip1.wav,"Dog; Bark"\nclip2,3\n')
    assert read_labels(csv) == {"clip1": ["Dog", "Bark"], "clip2": ["3"]}


def test_acc_modes_by_hand():
    names = ["Speech", "Dog", "Cat", "Rain"]
    logits = {"x": np.array([5.0, 0.0, math.log(3.0), -1.0])}  # sigmoid(Dog) = 0.5, sigmoid(Cat) = 0.75
    labels = {"x": label_indices(["dog", "2"], names, 4)}
    assert acc(logits, labels, mode="sigmoid").value == pytest.approx((0.5 + 0.75) / 2)
    kept = np.exp([0.0, math.log(3.0), -1.0])
    soft = acc(logits, labels, mode="softmax", exclude=[0])
    assert soft.value == pytest.approx((kept[0] + kept[1]) / 2 / kept.sum())
    assert acc(logits, labels, mode="top1").value == 0.0  # top class is Speech
    assert acc(logits, labels, mode="top1", exclude=[0]).value == 1.0  # Speech excluded: Cat, a label


def test_acc_unknown_label_names_are_listed():
    with pytest.raises(InputError, match="unknown tagger classes: Zebra"):
        label_indices(["Dog", "Zebra"], ["Dog", "Cat"], 2)
