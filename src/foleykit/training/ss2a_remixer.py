"""Training the Sound Source Remixer to output the CLAP embedding of a mixture (paper Eq. 9).

The inputs are ready-made token parts: ``codes`` [N, M, source_dim] (build them with
:func:`foleykit.modules.cycle_mix.manifold_codes` and ``remixer_source_codes`` from a trained
manifold) and ``clips`` [N, M, clip_dim], with a ``padding_mask`` [N, M] for empty slots; the target
is the CLAP embedding of the scene's real audio. Loss: |1 − cos(a, a_mix)| on one reparameterised
draw + λ2·KL. Token dropout (classifier-free training) is applied by the model in training mode.

Defaults not in the paper's main text (lr, batch, λ2, weight decay) are ours: AdamW 1e-4 as the
released aggregator trainer, λ2 = 1e-3 as the released code's KL weight default.
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
from ..modules.remixer import RemixerConfig, SoundSourceRemixer
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
class RemixerEpochStats:
    """Mean loss/cosine of the training draws, and the validation cosine of the mean prediction."""

    epoch: int
    loss: float
    cosine: float
    kl: float
    val_cosine: float | None = None


@dataclass
class RemixerTrainResult:
    model: SoundSourceRemixer  # eval mode
    history: list[RemixerEpochStats] = field(default_factory=list)
    seed: int = 0


@torch.no_grad()
def evaluate_remixer(
    model: SoundSourceRemixer,
    codes: Tensor,
    clips: Tensor,
    target_clap: Tensor,
    padding_mask: Tensor | None = None,
) -> float:
    """Mean cosine between the remixer's mean prediction and the target CLAP."""
    was_training = model.training
    model.eval()
    try:
        total = 0.0
        device = model.readout_tokens.device
        for start in range(0, codes.shape[0], EVAL_BATCH):
            sl = slice(start, start + EVAL_BATCH)
            mask = None if padding_mask is None else padding_mask[sl]
            pred = model.sample(codes[sl], clips[sl], mask, num_samples=0)
            total += F.cosine_similarity(pred, target_clap[sl].to(device).float(), dim=-1).sum().item()
        return total / codes.shape[0]
    finally:
        model.train(was_training)


def train_remixer(
    codes: Tensor,
    clips: Tensor,
    target_clap: Tensor,
    config: RemixerConfig,
    epochs: int,
    *,
    padding_mask: Tensor | None = None,
    init_from: SoundSourceRemixer | None = None,
    batch_size: int = 64,
    lr: float = 1e-4,
    weight_decay: float = 0.01,
    kl_weight: float = 1e-3,
    val_fraction: float = 0.1,
    seed: int | None = None,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = None,
    progress: bool = True,
    log_path: str | os.PathLike | None = None,
) -> RemixerTrainResult:
    """Train a Remixer on scenes (codes, clips, padding_mask) → target CLAP [N, clap_dim]."""
    n = codes.shape[0]
    if codes.ndim != 3 or clips.ndim != 3 or codes.shape[:2] != clips.shape[:2]:
        raise InputError(
            f"need codes [N, M, S] and clips [N, M, C], got {tuple(codes.shape)} and {tuple(clips.shape)}"
        )
    if target_clap.shape != (n, config.clap_dim):
        raise InputError(f"target_clap must be [{n}, {config.clap_dim}], got {tuple(target_clap.shape)}")
    if padding_mask is not None and padding_mask.shape != codes.shape[:2]:
        raise InputError(f"padding_mask must be {tuple(codes.shape[:2])}, got {tuple(padding_mask.shape)}")
    check_training_args(epochs, batch_size, val_fraction)

    seed = resolve_seed(seed)
    seed_everything(seed)
    gen = make_generator(seed)
    dev = resolve_device(device)
    autocast = autocast_for(dev, resolve_train_dtype(dtype))
    codes, clips, target_clap = codes.float(), clips.float(), target_clap.float()
    train_idx, val_idx = split_indices(n, val_fraction, gen)

    model = SoundSourceRemixer(config)
    if init_from is not None:
        model.load_state_dict(init_from.state_dict())
    model.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    history: list[RemixerEpochStats] = []
    steps_per_epoch = (len(train_idx) + batch_size - 1) // batch_size
    bar = tqdm(total=epochs * steps_per_epoch, desc="train remixer", unit="step", disable=not progress)
    for epoch in range(1, epochs + 1):
        model.train()
        sums = {"loss": 0.0, "cosine": 0.0, "kl": 0.0}
        for idx in minibatches(train_idx, batch_size, gen):
            mask = None if padding_mask is None else padding_mask[idx]
            with autocast:
                out = model(codes[idx], clips[idx], mask, gen)
                loss, cosine, kl = variational_cosine_loss(target_clap[idx].to(dev), out, kl_weight, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for key, value in (("loss", loss), ("cosine", cosine), ("kl", kl)):
                sums[key] += value.item() * len(idx)
            bar.update(1)
        stats = RemixerEpochStats(epoch, **{k: v / len(train_idx) for k, v in sums.items()})
        stats.cosine = 1.0 - stats.cosine  # report similarity, not distance
        if len(val_idx):
            vmask = None if padding_mask is None else padding_mask[val_idx]
            stats.val_cosine = evaluate_remixer(
                model, codes[val_idx], clips[val_idx], target_clap[val_idx], vmask
            )
        history.append(stats)
        bar.set_postfix(
            loss=f"{stats.loss:.4f}", val_cos="-" if stats.val_cosine is None else f"{stats.val_cosine:.3f}"
        )
        write_history(log_path, history)
    bar.close()
    model.eval()
    return RemixerTrainResult(model=model, history=history, seed=seed)
