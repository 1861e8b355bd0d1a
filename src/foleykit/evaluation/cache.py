"""Embedding cache: each clip goes through each embedder once, however many metrics read the result.

Entries are keyed by the file's resolved path, modification time (ns) and size, and by the
embedder's id (weights, configuration and front end), so an edited file or another checkpoint
never reuses a stale entry; caption embeddings by the caption's text and the embedder's id (audioldm_eval reuses ``*_feature_cache.npy`` unless told otherwise).
Kept in memory, and on disk as one ``.npz`` per entry when a directory is given.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..io.atomic import atomic_path

Outputs = dict[str, np.ndarray]


class EmbeddingCache:
    """Memory (and optionally disk) cache of per-file outputs ``{name: array}``, with hit counts."""

    def __init__(self, directory: str | os.PathLike | None = None) -> None:
        self.directory = Path(directory).expanduser() if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self._memory: dict[str, Outputs] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(path: str | os.PathLike, embedder_id: str) -> str:
        p = Path(path).resolve()
        st = p.stat()
        raw = json.dumps([str(p), st.st_mtime_ns, st.st_size, embedder_id])
        return hashlib.sha256(raw.encode()).hexdigest()

    @staticmethod
    def text_key(text: str, embedder_id: str) -> str:
        """Key of a text's embedding (a caption): the text itself and the embedder's id."""
        return hashlib.sha256(json.dumps(["text", text, embedder_id]).encode()).hexdigest()

    def _load(self, k: str) -> Outputs | None:
        if k in self._memory:
            return self._memory[k]
        if self.directory is not None and (self.directory / f"{k}.npz").is_file():
            with np.load(self.directory / f"{k}.npz") as data:
                self._memory[k] = {name: data[name] for name in data.files}
            return self._memory[k]
        return None

    def _store(self, k: str, outputs: Outputs) -> None:
        self._memory[k] = outputs
        if self.directory is not None:
            with atomic_path(self.directory / f"{k}.npz") as tmp, open(tmp, "wb") as fh:
                np.savez(fh, **outputs)

    def get(self, path: str | os.PathLike, embedder_id: str) -> Outputs | None:
        return self._load(self.key(path, embedder_id))

    def put(self, path: str | os.PathLike, embedder_id: str, outputs: Outputs) -> None:
        self._store(self.key(path, embedder_id), outputs)

    def get_or_compute(
        self, path: str | os.PathLike, embedder_id: str, compute: Callable[[], Outputs]
    ) -> Outputs:
        found = self.get(path, embedder_id)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        outputs = compute()
        self.put(path, embedder_id, outputs)
        return outputs

    def texts_or_compute(
        self, texts: list[str], embedder_id: str, compute: Callable[[list[str]], np.ndarray]
    ) -> dict[str, np.ndarray]:
        """``{text: embedding}`` for ``texts``; the ones not cached go through ``compute`` in one batch."""
        found: dict[str, np.ndarray] = {}
        missing: list[str] = []
        for text in dict.fromkeys(texts):
            hit = self._load(self.text_key(text, embedder_id))
            if hit is None:
                missing.append(text)
            else:
                found[text] = hit["embedding"]
        self.hits += len(found)
        self.misses += len(missing)
        if missing:
            for text, emb in zip(missing, compute(missing), strict=True):
                self._store(self.text_key(text, embedder_id), {"embedding": np.asarray(emb)})
                found[text] = np.asarray(emb)
        return found

    def stats(self) -> dict[str, object]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "directory": str(self.directory) if self.directory else None,
        }
