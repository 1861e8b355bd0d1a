"""Resolve a model reference (hub id or local directory) to a local folder, failing fast offline.

Real checkpoints come from the Hugging Face hub cache; nothing here downloads while
``HF_HUB_OFFLINE=1``, and a model that is neither local nor reachable raises one clear
:class:`~foleykit.errors.ModelNotAvailableError` naming the model and the ways out, instead of
letting a loader retry for minutes.
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlparse

from .errors import ModelNotAvailableError

#: Files worth fetching from a model repo: configs, tokenizers and safetensors weights.
_ALLOW_PATTERNS = ["*.json", "*.txt", "*.safetensors", "*.model", "**/*.json", "**/*.txt", "**/*.safetensors"]
_BIN_PATTERNS = ["*.bin", "**/*.bin"]


def _ways_out(ref: str) -> str:
    return (
        f"ways out: run with --models tiny (offline stand-ins), pass a local copy (--models DIR), "
        "or fetch the model set where the hub is reachable (`foleykit models download`) and reuse that HF_HOME"
    )


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check of the hub endpoint, so an unreachable hub fails in seconds, not minutes."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _patterns(subfolder: str | None, base: list[str]) -> list[str]:
    """Restrict downloads to one component's folder (a Karlo repo also holds GBs of decoders we never use)."""
    if subfolder is None:
        return base
    return ["*.json"] + [f"{subfolder}/{p.removeprefix('**/')}" for p in base if not p.startswith("**/")]


def wanted_suffixes(*, with_bin: bool = False) -> tuple[str, ...]:
    """File suffixes a model folder is loaded from (configs, tokenizers, weights): the same set as the
    download patterns above, so a folder fetched by ``foleykit models download`` resolves offline."""
    base = _ALLOW_PATTERNS + (_BIN_PATTERNS if with_bin else [])
    return tuple(sorted({p.rsplit("*", 1)[-1] for p in base}))


def resolve_pretrained(ref: str, *, revision: str | None = None, subfolder: str | None = None) -> tuple[Path, str]:
    """Return (local folder, revision label) for ``ref``.

    A local directory is used as is (revision ``"local"``). A hub id is looked up in the cache
    first; only if it is missing, the hub is not offline and it answers, is it downloaded — only
    ``subfolder``'s files when one is named.
    """
    path = Path(ref).expanduser()
    if path.is_dir():
        return path, "local"
    if path.is_absolute() or ref.startswith((".", "~")) or ref.count("/") != 1:
        raise ModelNotAvailableError(f"model {ref!r}: no such directory, and not a hub id of the form org/name")

    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        local = snapshot_download(ref, revision=revision, local_files_only=True,
                                  allow_patterns=_patterns(subfolder, _ALLOW_PATTERNS))
        probe = Path(local) / subfolder if subfolder else Path(local)
        if probe.is_dir() and any(probe.rglob("*.json")):
            return Path(local), _revision_of(local, revision)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        pass
    if constants.HF_HUB_OFFLINE:
        raise ModelNotAvailableError(
            f"model {ref!r} is not in the local Hugging Face cache and the hub is offline (HF_HUB_OFFLINE=1); "
            + _ways_out(ref)
        )
    if not hub_reachable():
        raise ModelNotAvailableError(
            f"model {ref!r} is not in the local Hugging Face cache and the hub ({constants.ENDPOINT}) is unreachable; "
            + _ways_out(ref)
        )
    try:
        local = snapshot_download(ref, revision=revision, allow_patterns=_patterns(subfolder, _ALLOW_PATTERNS))
        probe = Path(local) / subfolder if subfolder else Path(local)
        if not any(probe.rglob("*.safetensors")):
            local = snapshot_download(ref, revision=revision,
                                      allow_patterns=_patterns(subfolder, _ALLOW_PATTERNS + _BIN_PATTERNS))
    except Exception as exc:  # network, auth, missing repo: all end the same way for the user
        raise ModelNotAvailableError(f"model {ref!r} could not be downloaded ({type(exc).__name__}: {exc}); " + _ways_out(ref)) from None
    return Path(local), _revision_of(local, revision)


def _revision_of(local: str | Path, requested: str | None) -> str:
    """The commit hash of a hub snapshot folder (its directory name), else what was asked for."""
    name = Path(local).name
    if len(name) == 40 and all(c in "0123456789abcdef" for c in name):
        return name
    return requested or "unknown"
