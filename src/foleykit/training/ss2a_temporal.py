"""Training the Temporal Aggregation module ω (SS2A paper Eq. 10).

Data: for each training video window, the SS2A CLAP of each of its (64) evenly spaced frames
``frame_claps`` [N, T, clap_dim] and the CLAP of the window's real audio ``target_clap``
[N, clap_dim]. Loss: |1 − cos(a, ω(pos(a_gen), t))| on one reparameterised draw, plus an optional
``kl_weight``·KL (0 by default: Eq. 10 has no KL term; the released trainer's was 0 too).
Released trainer settings, used as defaults: AdamW, lr 1e-4, batch 64 (it ran 64 epochs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from ..devices import resolve_device
from ..errors import InputError
from ..modules.temporal import TemporalAggregator, TemporalConfig
from ..seeding import make_generator, resolve_seed, seed_everything
from .ss2a_common import (
    EVAL_BATCH,
    autocast_for,
    check_training_args,
    minibatches,
    resolve_train_dtype,
    split_indices,
    write_history,
)
from .ss2a_losses import variational_cosine_loss


@dataclass
class TemporalEpochStats:
    epoch: int
    loss: float
    cosine: float
    kl: float
    val_cosine: float | None = None


@dataclass
class TemporalTrainResult:
    model: TemporalAggregator  # eval mode
    history: list[TemporalEpochStats] = field(default_factory=list)
    seed: int = 0


@torch.no_grad()
def evaluate_temporal(
    model: TemporalAggregator, frame_claps: Tensor, target_clap: Tensor, padding_mask: Tensor | None = None
) -> float:
    """Mean cosine between the aggregated (mean) CLAP and the target CLAP."""
    was_training = model.training
    model.eval()
    try:
        total = 0.0
        for start in range(0, frame_claps.shape[0], EVAL_BATCH):
            sl = slice(start, start + EVAL_BATCH)
            mask = None if padding_mask is None else padding_mask[sl]
            pred = model.aggregate(frame_claps[sl], padding_mask=mask)
            total += F.cosine_similarity(pred, target_clap[sl].to(pred).float(), dim=-1).sum().item()
        return total / frame_claps.shape[0]
    finally:
        model.train(was_training)


def train_temporal(
    frame_claps: Tensor,
    target_clap: Tensor,
    config: TemporalConfig,
    epochs: int,
    *,
    padding_mask: Tensor | None = None,
    batch_size: int = 64,
    lr: float = 1e-4,
    weight_decay: float = 0.01,
    kl_weight: float = 0.0,
    val_fraction: float = 0.1,
    seed: int | None = None,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = None,
    progress: bool = True,
    log_path: str | os.PathLike | None = None,
) -> TemporalTrainResult:
    """Train ω on per-frame CLAPs [N, T, clap_dim] → window CLAP [N, clap_dim]."""
    if frame_claps.ndim != 3 or frame_claps.shape[-1] != config.clap_dim:
        raise InputError(f"frame_claps must be [N, T, {config.clap_dim}], got {tuple(frame_claps.shape)}")
    n, t = frame_claps.shape[:2]
    if t + 2 > config.position_resolution:
        raise InputError(f"{t} frames exceed the aggregator's {config.position_resolution - 2} positions")
    if target_clap.shape != (n, config.clap_dim):
        raise InputError(f"target_clap must be [{n}, {config.clap_dim}], got {tuple(target_clap.shape)}")
    if padding_mask is not None and padding_mask.shape != (n, t):
        raise InputError(f"padding_mask must be {(n, t)}, got {tuple(padding_mask.shape)}")
    check_training_args(epochs, batch_size, val_fraction)

    seed = resolve_seed(seed)
    seed_everything(seed)
    gen = make_generator(seed)
    dev = resolve_device(device)
    autocast = autocast_for(dev, resolve_train_dtype(dtype))
    frame_claps, target_clap = frame_claps.float(), target_clap.float()
    train_idx, val_idx = split_indices(n, val_fraction, gen)

    model = TemporalAggregator(config).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    history: list[TemporalEpochStats] = []
    steps_per_epoch = (len(train_idx) + batch_size - 1) // batch_size
    bar = tqdm(
        total=epochs * steps_per_epoch, desc="train temporal aggregation", unit="step", disable=not progress
    )
    for epoch in range(1, epochs + 1):
        model.train()
        sums = {"loss": 0.0, "cosine": 0.0, "kl": 0.0}
        for idx in minibatches(train_idx, batch_size, gen):
            mask = None if padding_mask is None else padding_mask[idx]
            with autocast:
                out = model(frame_claps[idx].to(dev), padding_mask=mask)
                loss, cosine, kl = variational_cosine_loss(target_clap[idx].to(dev), out, kl_weight, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for key, value in (("loss", loss), ("cosine", cosine), ("kl", kl)):
                sums[key] += value.item() * len(idx)
            bar.update(1)
        stats = TemporalEpochStats(epoch, **{k: v / len(train_idx) for k, v in sums.items()})
        stats.cosine = 1.0 - stats.cosine  # report similarity, not distance
        if len(val_idx):
            vmask = None if padding_mask is None else padding_mask[val_idx]
            stats.val_cosine = evaluate_temporal(model, frame_claps[val_idx], target_clap[val_idx], vmask)
        history.append(stats)
        bar.set_postfix(
            loss=f"{stats.loss:.4f}", val_cos="-" if stats.val_cosine is None else f"{stats.val_cosine:.3f}"
        )
        write_history(log_path, history)
    bar.close()
    model.eval()
    return TemporalTrainResult(model=model, history=history, seed=seed)
