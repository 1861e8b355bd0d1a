"""What the runner needs from an embedder, and the plumbing shared by our own torch architectures."""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ...errors import InputError, ModelNotAvailableError
from ..audio_frontend import PadMode


class AudioEmbedder(ABC):
    """Maps one front-end-prepared mono clip to named arrays.

    Outputs: ``"embedding"`` — ``(d,)`` per clip, or ``(frames, d)`` when ``frame_level``; taggers
    also give ``"logits"`` ``(classes,)``. ``id`` must change whenever the outputs could (weights,
    configuration): it keys the cache.
    """

    name: str
    id: str
    sample_rate: int
    pad_mode: PadMode = "zero"
    max_seconds: float | None = None
    frame_level: bool = False
    tagger: bool = False
    class_names: list[str] | None = None

    @abstractmethod
    def embed(self, wave: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs for one mono float32 clip at ``sample_rate``."""

    def describe(self) -> dict[str, object]:
        """What the report records about this embedder."""
        return {
            "name": self.name,
            "id": self.id,
            "sample_rate": self.sample_rate,
            "pad": self.pad_mode,
            "max_seconds": self.max_seconds,
            "frame_level": self.frame_level,
            "tagger": self.tagger,
        }


class TorchAudioEmbedder(AudioEmbedder):
    """An embedder around one of our ``nn.Module`` architectures, run frozen, batch of one clip."""

    def __init__(self, module: torch.nn.Module, *, id: str, device: torch.device, dtype: torch.dtype) -> None:
        self.module = module.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.id = id
        self.device, self.dtype = device, dtype

    def _tensor(self, wave: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))[None].to(
            self.device, self.dtype
        )


def checkpoint_id(path: str | os.PathLike) -> str:
    """A cheap identity for a checkpoint file (name, size, mtime), without hashing hundreds of MB."""
    p = Path(path)
    st = p.stat()
    return f"{p.name}:{st.st_size}:{st.st_mtime_ns}"


def pretrained_id(kind: str, ref: str, revision: str, path: str) -> str:
    """Id of a transformers model: hub id + commit, or for a local folder its weight files' identities."""
    if revision != "local":
        return f"{kind}:{ref}@{revision}"
    weights = sorted(Path(path).glob("*.safetensors")) + sorted(Path(path).glob("*.bin"))
    return f"{kind}:{Path(path).resolve()}@" + ",".join(checkpoint_id(w) for w in weights)


def read_state_dict(
    path: str | os.PathLike, *, unwrap: Iterable[str] = ("model", "state_dict")
) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` / ``.pt`` / ``.pth`` / ``.ckpt`` file, unwrapped from ``{"model": ...}``.

    ``torch.load`` runs with ``weights_only=True``: a checkpoint that pickles arbitrary objects
    (some Lightning files) is refused rather than executed.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise ModelNotAvailableError(f"checkpoint not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    try:
        data = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling errors come in many types
        raise InputError(
            f"cannot read checkpoint {p} safely ({type(exc).__name__}); re-save just its tensors, e.g. "
            "torch.save(torch.load(path, weights_only=False)['state_dict'], 'weights.pt') "
            "where you trust the file, then pass weights.pt"
        ) from None
    for key in unwrap:
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict):
        raise InputError(f"checkpoint {p} does not hold a state dict")
    return {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}


def load_exactly(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``module``, refusing any missing, unexpected or mis-shaped tensor, by name."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mis_shaped = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if state[k].shape != own[k].shape
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mis_shaped)):
        if items:
            problems.append(
                f"{label}: {', '.join(items[:4])}" + (f" (+{len(items) - 4})" if len(items) > 4 else "")
            )
    if problems:
        raise InputError(f"checkpoint {source} does not fit {type(module).__name__} ({'; '.join(problems)})")
    module.load_state_dict(state, strict=True)


def config_digest(config: object) -> str:
    """Short stable digest of a dataclass config, part of an embedder id."""
    return hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()[:10]


def seeded_init(seed: int, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """Build a module under a fixed torch seed without touching the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()
