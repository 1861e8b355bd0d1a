"""Device/dtype resolution: ``auto`` follows the CPU's native bf16 (faked here), explicit names override."""

from __future__ import annotations

import logging

import pytest
import torch

import foleykit.devices as dv
from foleykit.devices import auto_dtype, cpu_has_native_bf16, resolve_dtype
from foleykit.errors import InputError

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")


def _fake_cpu(monkeypatch, *, avx512_bf16=False, amx=False):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(dv, "_said_emulated_bf16", False)


@pytest.mark.parametrize(("avx512_bf16", "amx", "want"), [
    (True, False, torch.bfloat16),   # Zen 4, Cooper Lake
    (False, True, torch.bfloat16),   # Sapphire Rapids and later (AMX tiles)
    (True, True, torch.bfloat16),
    (False, False, torch.float32),   # AVX2 / AVX-512 without bf16: emulated bf16 would be slower
])
def test_auto_on_cpu_follows_native_bf16(monkeypatch, avx512_bf16, amx, want):
    _fake_cpu(monkeypatch, avx512_bf16=avx512_bf16, amx=amx)
    assert cpu_has_native_bf16() == (want == torch.bfloat16)
    for spelled in (None, "auto", "AUTO"):
        assert resolve_dtype(spelled, CPU) == want


@pytest.mark.parametrize("native", [True, False])
def test_auto_off_cpu_ignores_the_cpu(monkeypatch, native):
    _fake_cpu(monkeypatch, avx512_bf16=native)
    assert auto_dtype(CUDA) == torch.float16
    assert auto_dtype(MPS) == torch.float32


@pytest.mark.parametrize("native", [True, False])
def test_explicit_names_override_auto(monkeypatch, native):
    _fake_cpu(monkeypatch, avx512_bf16=native)
    for name in ("fp32", "float32", "FP32"):
        assert resolve_dtype(name, CPU) == torch.float32
    for name in ("bf16", "bfloat16"):
        assert resolve_dtype(name, CPU) == torch.bfloat16
    assert resolve_dtype(torch.float32, CPU) == torch.float32
    assert resolve_dtype("fp16", CUDA) == torch.float16
    assert resolve_dtype("bf16", CUDA) == torch.bfloat16


def test_emulated_bf16_works_and_says_so_once(monkeypatch, caplog):
    _fake_cpu(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="foleykit.devices"):
        assert resolve_dtype("bf16", CPU) == torch.bfloat16
        assert resolve_dtype(torch.bfloat16, CPU) == torch.bfloat16
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1 and "no native bfloat16" in notes[0] and "\n" not in notes[0]


def test_native_bf16_says_nothing(monkeypatch, caplog):
    _fake_cpu(monkeypatch, amx=True)
    with caplog.at_level(logging.WARNING, logger="foleykit.devices"):
        assert resolve_dtype("bf16", CPU) == torch.bfloat16
    assert caplog.records == []


@pytest.mark.parametrize(("dtype", "device", "words"), [
    ("fp16", CPU, "float16 is not supported on CPU"),
    ("float16", CPU, "float16 is not supported on CPU"),
    (torch.float16, CPU, "float16 is not supported on CPU"),
    ("bf16", MPS, "bfloat16 is not supported on MPS"),
    ("int8", CPU, "unknown dtype 'int8'"),
    ("float64", CPU, "unknown dtype"),
    (torch.float64, CPU, "unsupported dtype"),
])
def test_refused_in_one_line(dtype, device, words):
    with pytest.raises(InputError) as err:
        resolve_dtype(dtype, device)
    msg = str(err.value)
    assert words in msg and "\n" not in msg
