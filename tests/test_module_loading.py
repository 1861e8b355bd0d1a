"""Our modules load from a folder silently (stdout stays the CLI's) and strictly (no silent random init)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file


def _saved(tmp_path):
    from foleykit.modules.temporal import TemporalAggregator, TemporalConfig

    torch.manual_seed(0)
    model = TemporalAggregator(TemporalConfig())
    model.save_pretrained(tmp_path / "agg")
    return TemporalAggregator, model, tmp_path / "agg"


def test_a_folder_loads_without_printing_and_gives_the_same_weights(tmp_path, capsys):
    cls, model, folder = _saved(tmp_path)
    capsys.readouterr()
    loaded = cls.from_pretrained(str(folder))
    assert capsys.readouterr().out == ""
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_missing_tensor_is_an_error_not_a_random_init(tmp_path):
    cls, _, folder = _saved(tmp_path)
    weights = load_file(str(folder / "model.safetensors"))
    weights.pop(sorted(weights)[0])
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(RuntimeError, match="Missing key"):
        cls.from_pretrained(str(folder))
