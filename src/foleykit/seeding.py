"""Seeds: every public entry point takes ``seed`` (None = draw one) and reports the one it used."""

from __future__ import annotations

import random
import secrets

import numpy as np
import torch

from .errors import InputError

MAX_SEED = 2**63 - 1


def resolve_seed(seed: int | None) -> int:
    """Return ``seed`` checked, or a fresh random one when ``seed`` is None or negative (-1 = random)."""
    if seed is None or (isinstance(seed, int) and seed < 0):
        return secrets.randbelow(2**31)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise InputError(f"seed must be an integer, got {seed!r}")
    if seed > MAX_SEED:
        raise InputError(f"seed must be below 2**63, got {seed}")
    return int(seed)


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator: noise drawn on CPU is identical whatever device the model runs on."""
    return torch.Generator(device="cpu").manual_seed(seed)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch global state (training loops that use global RNGs)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
