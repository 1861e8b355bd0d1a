"""Training the CMSS manifold on single-source (CLIP, CLAP) pairs with a mean teacher.

Per batch (paper Eq. 5, "alternatively optimize the projectors and generator with L_fold"):

1. projectors step: v, φ and the temperature minimise L_fold (gradients reach them through χ too)
   plus a mean-teacher consistency term;
2. reconstructor step: χ alone minimises the reconstruction and KL terms on the (detached) codes;
3. the teacher becomes an EMA of the student (Tarvainen & Valpola 2017).

Consistency = cosine distance between the student's codes and the teacher's codes for the same
pairs (each seeing its own input noise when ``input_noise`` > 0), ramped up with Tarvainen's sigmoid
schedule. The paper trains a first teacher on its clean VGG-SS pairs and the student on all pairs:
pass that model as ``init_from`` for the second stage. The returned model is the teacher.

Hyper-parameters the paper's main text does not give (lr, batch, λ1, EMA decay, consistency weight)
are our defaults; λ1 = 5e-4 follows a checkpoint name in the released code ("kl00005").
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from ..devices import resolve_device
from ..errors import InputError
from ..modules.ccmr import DEFAULT_CCMR_ALPHA
from ..modules.manifold import CMSSManifold, ManifoldConfig
from ..seeding import make_generator, resolve_seed, seed_everything
from .ss2a_common import (
    EVAL_BATCH,
    autocast_for,
    check_training_args,
    ema_update,
    minibatches,
    resolve_train_dtype,
    sigmoid_rampup,
    split_indices,
    write_history,
)
from .ss2a_losses import cosine_distance_loss, manifold_loss, variational_kl


@dataclass
class ManifoldEpochStats:
    """Mean training terms over one epoch; ``val_top1`` is the teacher's CLIP→CLAP retrieval top-1."""

    epoch: int
    loss: float
    contrastive: float
    reconstruction: float
    kl: float
    consistency: float
    temperature_scale: float
    val_top1: float | None = None


@dataclass
class ManifoldTrainResult:
    """``model`` is the mean teacher (use it), ``student`` the last student; both in eval mode."""

    model: CMSSManifold
    student: CMSSManifold
    history: list[ManifoldEpochStats] = field(default_factory=list)
    seed: int = 0


@torch.no_grad()
def retrieval_top1(manifold: CMSSManifold, clip: Tensor, clap: Tensor, labels: Tensor | None = None) -> float:
    """CLIP→CLAP retrieval accuracy in the manifold: query i is right when its nearest CLAP code is
    pair i (or, with ``labels``, any pair of the same class). Chance is 1/N (1/classes)."""
    was_training = manifold.training
    manifold.eval()
    try:
        device = manifold.logit_scale.device
        gallery = torch.cat(
            [F.normalize(manifold.fold_claps(c.to(device)), dim=-1) for c in clap.split(EVAL_BATCH)]
        )
        correct = 0
        for start in range(0, clip.shape[0], EVAL_BATCH):
            queries = F.normalize(manifold.fold_clips(clip[start : start + EVAL_BATCH].to(device)), dim=-1)
            nearest = (queries @ gallery.T).argmax(dim=1).cpu()
            expected = torch.arange(start, start + queries.shape[0])
            if labels is not None:
                correct += int((labels[nearest] == labels[expected]).sum())
            else:
                correct += int((nearest == expected).sum())
        return correct / clip.shape[0]
    finally:
        manifold.train(was_training)


def _noisy(x: Tensor, std: float, generator: torch.Generator) -> Tensor:
    if std <= 0:
        return x
    return x + std * torch.randn(x.shape, generator=generator).to(x)


def consistency_loss(
    teacher: CMSSManifold, clip: Tensor, clap: Tensor, student_clip_mu: Tensor, student_clap_mu: Tensor
) -> Tensor:
    """Mean-teacher consistency: cosine distance from the student's code means to the teacher's codes
    of (its own view of) the same pairs, averaged over both modalities. No gradient to the teacher."""
    with torch.no_grad():
        teacher_clip = teacher.encode_clips(clip).mu
        teacher_clap = teacher.encode_claps(clap).mu
    return 0.5 * (
        cosine_distance_loss(teacher_clip, student_clip_mu)
        + cosine_distance_loss(teacher_clap, student_clap_mu)
    )


def train_manifold(
    clip: Tensor,
    clap: Tensor,
    config: ManifoldConfig,
    epochs: int,
    *,
    init_from: CMSSManifold | None = None,
    batch_size: int = 256,
    lr: float = 1e-4,
    weight_decay: float = 0.0,
    ccmr_alpha: float = DEFAULT_CCMR_ALPHA,
    kl_weight: float = 5e-4,
    ema_decay: float = 0.999,
    consistency_weight: float = 1.0,
    consistency_rampup: float = 0.3,
    input_noise: float = 0.0,
    val_fraction: float = 0.1,
    seed: int | None = None,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = None,
    progress: bool = True,
    log_path: str | os.PathLike | None = None,
) -> ManifoldTrainResult:
    """Train a CMSS manifold on paired single-source embeddings clip [N, clip_dim], clap [N, clap_dim].

    ``ccmr_alpha`` 0.35 is the paper's best (0 disables CCMR). ``consistency_rampup`` is the fraction
    of all steps over which the consistency weight ramps up. The EMA decay is warmed up as in
    Tarvainen & Valpola (min(decay, 1 − 1/(step + 1))) so a short run still yields a usable teacher.
    ``seed`` fixes initialisation, the split, batch order, noise and variational draws.
    """
    if clip.ndim != 2 or clap.ndim != 2 or clip.shape[0] != clap.shape[0]:
        raise InputError(
            f"need paired [N, dim] embeddings, got CLIP {tuple(clip.shape)} and CLAP {tuple(clap.shape)}"
        )
    if clip.shape[1] != config.clip_dim or clap.shape[1] != config.clap_dim:
        raise InputError(
            f"pairs are {clip.shape[1]}-d CLIP / {clap.shape[1]}-d CLAP but the manifold config expects "
            f"{config.clip_dim}/{config.clap_dim}"
        )
    if clip.shape[0] < 2:
        raise InputError("contrastive training needs at least 2 pairs")
    check_training_args(epochs, batch_size, val_fraction)
    if not 0.0 <= ema_decay < 1.0:
        raise InputError(f"ema_decay must be in [0, 1), got {ema_decay}")

    seed = resolve_seed(seed)
    seed_everything(seed)  # initialisation and dropout use the global RNGs
    gen = make_generator(seed)
    dev = resolve_device(device)
    autocast = autocast_for(dev, resolve_train_dtype(dtype))
    clip, clap = clip.float(), clap.float()
    train_idx, val_idx = split_indices(clip.shape[0], val_fraction, gen)

    student = CMSSManifold(config)
    if init_from is not None:
        student.load_state_dict(init_from.state_dict())
    student.to(dev)
    teacher = copy.deepcopy(student).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    projector_params = [
        *student.clip_projector.parameters(),
        *student.clap_projector.parameters(),
        student.logit_scale,
    ]
    projector_opt = torch.optim.AdamW(projector_params, lr=lr, weight_decay=weight_decay)
    reconstructor_opt = torch.optim.AdamW(
        student.reconstructor.parameters(), lr=lr, weight_decay=weight_decay
    )

    steps_per_epoch = (len(train_idx) + batch_size - 1) // batch_size
    rampup_steps = round(consistency_rampup * epochs * steps_per_epoch)
    history: list[ManifoldEpochStats] = []
    step = 0
    bar = tqdm(total=epochs * steps_per_epoch, desc="train CMSS manifold", unit="step", disable=not progress)
    for epoch in range(1, epochs + 1):
        student.train()
        sums = dict.fromkeys(("loss", "contrastive", "reconstruction", "kl", "consistency"), 0.0)
        seen = 0
        for idx in minibatches(train_idx, batch_size, gen):
            if len(idx) < 2:  # a contrastive batch of one has no negatives
                continue
            clip_b, clap_b = clip[idx].to(dev), clap[idx].to(dev)
            clip_s, clap_s = _noisy(clip_b, input_noise, gen), _noisy(clap_b, input_noise, gen)
            clip_t, clap_t = _noisy(clip_b, input_noise, gen), _noisy(clap_b, input_noise, gen)
            with autocast:
                out = student(clip_s, clap_s, gen)
                terms = manifold_loss(out, clip_b, clap_b, student.temperature_scale(), ccmr_alpha, kl_weight)
                consistency = consistency_loss(teacher, clip_t, clap_t, out.clip_code.mu, out.clap_code.mu)
                weight = consistency_weight * sigmoid_rampup(step, rampup_steps)
                loss = terms.total + weight * consistency
            projector_opt.zero_grad(set_to_none=True)
            loss.backward()
            projector_opt.step()

            # χ step on the (now fixed) codes: reconstruction + its KL only.
            with autocast:
                from_clip = student.reconstructor(out.clip_sample.detach())
                from_clap = student.reconstructor(out.clap_sample.detach())
                recon_loss = 0.5 * (
                    cosine_distance_loss(clap_b, from_clip.sample(gen))
                    + cosine_distance_loss(clap_b, from_clap.sample(gen))
                )
                recon_kl = 0.5 * (variational_kl(from_clip) + variational_kl(from_clap))
                recon_total = recon_loss + kl_weight * recon_kl
            reconstructor_opt.zero_grad(set_to_none=True)
            recon_total.backward()
            reconstructor_opt.step()

            ema_update(teacher, student, min(ema_decay, 1.0 - 1.0 / (step + 1)))
            step += 1
            n = len(idx)
            seen += n
            sums["loss"] += terms.total.item() * n
            sums["contrastive"] += terms.contrastive.item() * n
            sums["reconstruction"] += terms.reconstruction.item() * n
            sums["kl"] += terms.kl.item() * n
            sums["consistency"] += consistency.item() * n
            bar.update(1)
        seen = max(1, seen)
        stats = ManifoldEpochStats(
            epoch=epoch,
            **{k: v / seen for k, v in sums.items()},
            temperature_scale=student.temperature_scale().item(),
        )
        if len(val_idx):
            stats.val_top1 = retrieval_top1(teacher, clip[val_idx], clap[val_idx])
        history.append(stats)
        bar.set_postfix(
            loss=f"{stats.loss:.4f}", top1="-" if stats.val_top1 is None else f"{stats.val_top1:.3f}"
        )
        write_history(log_path, history)
    bar.close()
    teacher.eval()
    student.eval()
    for p in teacher.parameters():
        p.requires_grad_(True)
    return ManifoldTrainResult(model=teacher, student=student, history=history, seed=seed)
