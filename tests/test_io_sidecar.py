"""Sidecar JSON: location, auto-added provenance, JSON-safe conversion, atomic write."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from foleykit.errors import OutputError
from foleykit.io.sidecar import environment_versions, sidecar_path, to_jsonable, write_sidecar


def test_environment_versions_names_the_stack():
    versions = environment_versions()
    for key in ("foleykit", "torch", "transformers", "diffusers", "numpy", "python", "platform"):
        assert versions[key], key
    assert versions["torch"].startswith(torch.__version__.split("+")[0])


def test_sidecar_is_written_next_to_the_output_with_provenance(tmp_path):
    out = tmp_path / "out.wav"

    @dataclasses.dataclass
    class Params:
        steps: int
        guidance: float

    record = {
        "inputs": {"image": tmp_path / "cat.png"},
        "parameters": Params(steps=np.int64(50), guidance=np.float32(3.5)),
        "seed": 1234,
        "models": {"clap": {"id": "laion/clap", "revision": "abc123"}},
        "embedding": torch.zeros(2, 512),
        "window": np.arange(3),
        "big": np.zeros((100, 100), np.float16),
        "loss": float("nan"),
    }
    path = write_sidecar(out, record)
    assert path == tmp_path / "out.wav.json" == sidecar_path(out)
    data = json.loads(path.read_text())
    assert data["output"] == "out.wav" and data["seed"] == 1234
    assert data["inputs"]["image"] == str(tmp_path / "cat.png")
    assert data["parameters"] == {"steps": 50, "guidance": 3.5}
    assert data["models"]["clap"]["revision"] == "abc123"
    assert data["embedding"] == {"shape": [2, 512], "dtype": "float32", "device": "cpu"}
    assert data["window"] == [0, 1, 2]
    assert data["big"] == {"shape": [100, 100], "dtype": "float16"}
    assert data["loss"] is None
    assert data["versions"]["numpy"] == np.__version__
    created = dt.datetime.fromisoformat(data["created_utc"])
    assert created.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.UTC) - created).total_seconds()) < 60


def test_caller_values_win_and_odd_objects_become_strings(tmp_path):
    path = write_sidecar(
        tmp_path / "x.mp4", {"versions": {"custom": "1"}, "tags": {"b", "a"}, "obj": object()}
    )
    data = json.loads(path.read_text())
    assert data["versions"] == {"custom": "1"} and data["tags"] == ["a", "b"]
    assert data["obj"].startswith("<object object")
    assert to_jsonable({Path("k"): (1, 2)}) == {"k": [1, 2]}


def test_unwritable_sidecar_is_output_error(tmp_path):
    with pytest.raises(OutputError, match="sidecar"):
        write_sidecar(tmp_path / "missing" / "out.wav", {"seed": 1})
