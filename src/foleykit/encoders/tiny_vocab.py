"""Vocabularies for the tiny stand-in tokenizers (byte-level BPE without merges), shared by the
tiny builders of the encoders and of :mod:`foleykit.model_sets`. Pure Python: no torch, no transformers."""

from __future__ import annotations


def _byte_symbols() -> list[str]:
    """The 256 printable symbols byte-level BPE uses for raw bytes (GPT-2's reversible mapping)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    symbols = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def byte_level_vocab() -> tuple[dict[str, int], list[str]]:
    """A RoBERTa (byte-level BPE) vocabulary of the 256 byte symbols plus specials, no merges."""
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for ch in _byte_symbols():
        vocab.setdefault(ch, len(vocab))
    vocab["<mask>"] = len(vocab)
    return vocab, []


def clip_vocab() -> tuple[dict[str, int], list[str]]:
    """A CLIP BPE vocabulary: byte symbols and their end-of-word forms, no merges."""
    vocab: dict[str, int] = {}
    for ch in _byte_symbols():
        vocab.setdefault(ch, len(vocab))
    for ch in _byte_symbols():
        vocab.setdefault(ch + "</w>", len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, []
