"""Test setup: offline, CPU, deterministic, and no socket may connect anywhere but loopback."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import socket  # noqa: E402

import pytest  # noqa: E402

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


class NetworkBlockedError(RuntimeError):
    """Raised when a test tries to reach the network."""


def _is_local(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX
        return True
    host = address[0] if isinstance(address, tuple) else address
    return host in ("127.0.0.1", "::1", "localhost") or str(host).startswith("127.")


def _guarded_connect(self, address):
    if not _is_local(address):
        raise NetworkBlockedError(f"test tried to open a network connection to {address!r}")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if not _is_local(address):
        raise NetworkBlockedError(f"test tried to open a network connection to {address!r}")
    return _real_connect_ex(self, address)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


def pytest_collection_modifyitems(config, items):
    if os.environ.get("FOLEYKIT_SLOW") == "1":
        return
    skip_slow = pytest.mark.skip(reason="slow test: set FOLEYKIT_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory):
    """The tiny model set, built once per test session into a temporary cache."""
    from foleykit.model_sets import build_tiny_model_set

    root = tmp_path_factory.mktemp("tiny-models")
    return build_tiny_model_set(root)


@pytest.fixture()
def tiny_cache_env(tiny_models_dir, tmp_path_factory, monkeypatch):
    """FOLEYKIT_CACHE pointing at a cache that already holds the session's tiny set (``--models tiny``)."""
    from foleykit.model_sets import TINY_VERSION

    cache = tmp_path_factory.mktemp("fk-cache")
    (cache / f"tiny-v{TINY_VERSION}").symlink_to(tiny_models_dir, target_is_directory=True)
    monkeypatch.setenv("FOLEYKIT_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module of tiny models (``pytestmark = pytest.mark.usefixtures(...)``).

    On a loaded 2-core machine OpenMP threads contending with other processes make small ops 10-40x
    slower than one thread (measured); one thread also keeps results comparable across runs.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
