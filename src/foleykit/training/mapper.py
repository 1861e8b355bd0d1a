"""Training the V2A-Mapper on pre-computed (CLIP, CLAP) embedding pairs.

The paper trains on frozen-encoder embeddings only (no images or audio in the loop), so the input is a
file of pairs and training is cheap: AdamW, lr 1.1e-4, batches of 448 pairs, 100 epochs.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from ..devices import resolve_device
from ..errors import InputError
from ..io.atomic import atomic_path
from ..modules.mapper import MapperConfig, V2AMapper
from ..seeding import make_generator, resolve_seed, seed_everything

MIN_PAIRS = 10  # fewer cannot give both a training and a validation split worth the name
EVAL_BATCH = 1024


@dataclass
class EpochStats:
    """One epoch's numbers; the validation fields are None when nothing was held out."""

    epoch: int
    train_loss: float
    val_loss: float | None
    val_cosine: float | None


@dataclass
class TrainResult:
    """The trained mapper (eval mode, float32 weights, on the training device) and how it got there."""

    model: V2AMapper
    history: list[EpochStats]
    seed: int


def load_embedding_pairs(path: str | os.PathLike) -> tuple[Tensor, Tensor]:
    """Read ``clip`` [N, Dv] and ``clap`` [N, Da] float32 tensors from .safetensors, .pt/.pth or .npz.

    Everything that would otherwise fail deep inside training (missing keys, mismatched N, NaNs, zero
    vectors, too few pairs) is reported here as one ``InputError`` line naming the file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"embedding pairs file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            data = load_file(str(path))
        elif suffix in (".pt", ".pth"):
            data = torch.load(path, map_location="cpu", weights_only=True)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                data = {k: npz[k] for k in npz.files}
        else:
            raise InputError(f"{path}: unsupported pairs format {suffix!r}; use .safetensors, .pt or .npz")
    except InputError:
        raise
    except Exception as exc:  # corrupt or foreign files fail in format-specific ways
        raise InputError(f"{path}: cannot read embedding pairs ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping with 'clip' and 'clap' tensors")
    missing = [k for k in ("clip", "clap") if k not in data]
    if missing:
        raise InputError(f"{path}: missing {', '.join(repr(k) for k in missing)}; found {sorted(data)}")
    pairs = []
    for key in ("clip", "clap"):
        t = data[key]
        if isinstance(t, np.ndarray):
            t = torch.from_numpy(t)
        if not isinstance(t, Tensor) or t.dtype == torch.bool or t.is_complex():
            raise InputError(f"{path}: '{key}' is not a real-valued tensor")
        if t.ndim != 2:
            raise InputError(f"{path}: '{key}' must be 2-D [N, dim], got shape {tuple(t.shape)}")
        t = t.float()
        if not torch.isfinite(t).all():
            raise InputError(f"{path}: '{key}' contains NaN or infinite values")
        zero = (t.norm(dim=-1) == 0).nonzero()
        if len(zero):
            raise InputError(f"{path}: '{key}' row {int(zero[0])} is all zeros (not an embedding)")
        pairs.append(t)
    clip, clap = pairs
    if clip.shape[0] != clap.shape[0]:
        raise InputError(
            f"{path}: {clip.shape[0]} CLIP but {clap.shape[0]} CLAP embeddings; they must pair up"
        )
    if clip.shape[0] < MIN_PAIRS:
        raise InputError(f"{path}: only {clip.shape[0]} pairs; need at least {MIN_PAIRS}")
    return clip, clap


@torch.no_grad()
def evaluate_mapper(
    model: V2AMapper,
    clip: Tensor,
    clap: Tensor,
    generator: torch.Generator | None = None,
    *,
    steps: int | None = None,
    guidance_scale: float | None = None,
) -> float:
    """Mean cosine between mapped CLIP embeddings and their true CLAP embeddings (what the paper's
    Fig. 3 histograms track). Runs in chunks so a whole validation set fits in memory."""
    device = next(model.parameters()).device
    total = 0.0
    for start in range(0, clip.shape[0], EVAL_BATCH):
        pred = model.map(clip[start:start + EVAL_BATCH].to(device), steps=steps,
                         guidance_scale=guidance_scale, generator=generator)
        target = F.normalize(clap[start:start + EVAL_BATCH].to(pred), dim=-1)
        total += (pred * target).sum().item()
    return total / clip.shape[0]


def _resolve_train_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """float32 unless bfloat16 is asked for (then autocast); float16 would need loss scaling, so no."""
    names = {"float32": torch.float32, "fp32": torch.float32,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype is None or dtype == "auto":
        return torch.float32
    if isinstance(dtype, torch.dtype) and dtype in (torch.float32, torch.bfloat16):
        return dtype
    if isinstance(dtype, str) and dtype.lower() in names:
        return names[dtype.lower()]
    raise InputError(f"mapper training supports float32 or bfloat16, got {dtype!r}")


def train_mapper(
    clip: Tensor,
    clap: Tensor,
    config: MapperConfig,
    *,
    epochs: int,
    batch_size: int = 448,
    lr: float = 1.1e-4,
    weight_decay: float = 0.01,
    val_fraction: float = 0.1,
    seed: int | None = None,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = None,
    val_steps: int | None = None,
    progress: bool = True,
    log_path: str | os.PathLike | None = None,
) -> TrainResult:
    """Train a fresh mapper with AdamW (paper: lr 1.1e-4, batch 448; weight decay is not stated, so
    AdamW's usual 0.01) and return it with per-epoch train/val loss and validation cosine.

    A random ``val_fraction`` of the pairs is held out. ``seed`` fixes initialisation, the split, batch
    order and diffusion noise. ``dtype`` float32 (default) or bfloat16 (autocast; weights stay float32).
    ``val_steps`` sets the DDIM steps for the per-epoch validation cosine of diffusion mappers (default:
    the config's inference steps). ``log_path``, if given, is rewritten atomically after each epoch as
    JSON lines, one per epoch, so a crash leaves a readable log.
    """
    if clip.ndim != 2 or clap.ndim != 2 or clip.shape[0] != clap.shape[0]:
        raise InputError(
            f"need paired [N, dim] embeddings, got CLIP {tuple(clip.shape)} and CLAP {tuple(clap.shape)}"
        )
    if clip.shape[1] != config.clip_dim or clap.shape[1] != config.clap_dim:
        raise InputError(
            f"pairs are {clip.shape[1]}-d CLIP / {clap.shape[1]}-d CLAP but the mapper config expects "
            f"{config.clip_dim}/{config.clap_dim}"
        )
    if epochs < 1 or batch_size < 1:
        raise InputError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = clip.shape[0]
    n_val = round(n * val_fraction) if val_fraction > 0 else 0
    if val_fraction > 0:
        n_val = max(1, n_val)
    if n - n_val < 1:
        raise InputError(f"{n} pairs leave nothing to train on after holding out {n_val} for validation")

    seed = resolve_seed(seed)
    seed_everything(seed)  # model initialisation and dropout use the global RNGs
    gen = make_generator(seed)
    dev = resolve_device(device)
    compute_dtype = _resolve_train_dtype(dtype)

    clip, clap = clip.float(), clap.float()
    order = torch.randperm(n, generator=gen)
    val_idx, train_idx = order[:n_val], order[n_val:]
    model = V2AMapper(config).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    autocast = torch.autocast(dev.type, dtype=compute_dtype, enabled=compute_dtype != torch.float32)

    history: list[EpochStats] = []
    batches = (len(train_idx) + batch_size - 1) // batch_size
    bar = tqdm(total=epochs * batches, desc=f"train {config.kind}", unit="step", disable=not progress)
    for epoch in range(1, epochs + 1):
        model.train()
        perm = train_idx[torch.randperm(len(train_idx), generator=gen)]
        total = 0.0
        for start in range(0, len(perm), batch_size):
            idx = perm[start:start + batch_size]
            with autocast:
                loss = model.training_loss(clip[idx].to(dev), clap[idx].to(dev), gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            bar.update(1)
        stats = EpochStats(epoch, total / len(perm), None, None)
        if n_val:
            model.eval()
            val_gen = make_generator(seed)  # same noise every epoch: numbers comparable across epochs
            with torch.no_grad(), autocast:
                stats.val_loss = sum(
                    model.training_loss(clip[i].to(dev), clap[i].to(dev), val_gen).item() * len(i)
                    for i in val_idx.split(EVAL_BATCH)
                ) / n_val
            stats.val_cosine = evaluate_mapper(model, clip[val_idx], clap[val_idx], val_gen, steps=val_steps)
        history.append(stats)
        bar.set_postfix(loss=f"{stats.train_loss:.4f}",
                        val_cos="-" if stats.val_cosine is None else f"{stats.val_cosine:.3f}")
        if log_path is not None:
            with atomic_path(log_path) as tmp:
                tmp.write_text("".join(json.dumps(asdict(s)) + "\n" for s in history))
    bar.close()
    model.eval()
    return TrainResult(model=model, history=history, seed=seed)
