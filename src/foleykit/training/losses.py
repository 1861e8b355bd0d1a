"""The training objectives of foleykit's learnable modules, one function per term so each can be checked
on its own; the task modules in :mod:`foleykit.training.accelerate_tasks` combine them. (The V2A-Mapper's
loss, Eq. 1/2 of its paper, is the network's own ``V2AMapper.training_loss``.)

SS2A:

* :func:`contrastive_logits` / :func:`symmetric_contrastive_loss`: paper Eq. 3 with the CCMR mask
  (Eq. 7) multiplied into the similarity matrix.
* :func:`cosine_distance_loss`: |1 − cos| of Eq. 4 (reconstruction), 9 (Remixer) and 10 (temporal).
* :func:`gaussian_kl`: closed-form KL(N(mu, σ²) ‖ N(0, I)).
* :func:`manifold_loss`: L_fold = L_c + L_r + λ1·L_kl (Eq. 5).
* :func:`variational_cosine_loss`: L_mix = |1 − cos(a, a_mix)| + λ2·L_kl (Eq. 9), also the temporal
  aggregation loss (Eq. 10, with λ = 0 by default).
* :func:`consistency_loss`: the mean teacher's consistency term of the manifold.

Sounding that Object (grounding):

* :func:`diffusion_loss`: the latent-diffusion noise-prediction loss (Eq. 1) through the AudioLDM UNet;
* :func:`output_contrastive_loss`: InfoNCE of the conditioning against target audio embeddings (a
  cheap stand-in without the UNet, still self-supervised about *where* the source is);
* :func:`attention_nll_loss`: cross-entropy of the attention against a known patch distribution
  (the "contrastive error" of the paper's Theorem 3.1; needs patch labels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from ..modules.ccmr import DEFAULT_CCMR_ALPHA, apply_ccmr, ccmr_mask
from ..modules.manifold import ManifoldForward
from ..modules.variational_mlp import VariationalOutput


def contrastive_logits(
    clip_codes: Tensor, clap_codes: Tensor, scale: Tensor | float, mask: Tensor | None = None
) -> Tensor:
    """C*_ij = τ · cos(e_CLIP^i, e_CLAP^j) · M_ij (rows: CLIP, columns: CLAP); ``mask`` None = no CCMR."""
    sim = F.normalize(clip_codes, dim=-1) @ F.normalize(clap_codes, dim=-1).T
    logits = sim * scale
    return logits if mask is None else apply_ccmr(logits, mask)


def symmetric_contrastive_loss(
    clip_codes: Tensor, clap_codes: Tensor, scale: Tensor | float, mask: Tensor | None = None
) -> Tensor:
    """L_c = (ℓ_CLIP(C*) + ℓ_CLAP(C*ᵀ)) / 2, each the mean −log of the diagonal of a row softmax."""
    logits = contrastive_logits(clip_codes, clap_codes, scale, mask)
    targets = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


def cosine_distance_loss(target: Tensor, prediction: Tensor) -> Tensor:
    """Mean over the batch of |1 − cos(target, prediction)|."""
    return (1.0 - F.cosine_similarity(prediction, target.to(prediction), dim=-1)).abs().mean()


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) ‖ N(0, I)) = ½ Σ (mu² + σ² − 1 − log σ²), summed over features and
    averaged over all leading (batch) dimensions."""
    per_item = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)
    return per_item.mean()


def variational_kl(output: VariationalOutput) -> Tensor:
    """:func:`gaussian_kl` of a :class:`VariationalOutput`."""
    return gaussian_kl(output.mu, output.logvar)


@dataclass
class ManifoldLossTerms:
    """L_fold and its parts (all scalars; ``total`` carries the gradient)."""

    total: Tensor
    contrastive: Tensor
    reconstruction: Tensor
    kl: Tensor


def reconstruction_loss(out: ManifoldForward, clap: Tensor) -> Tensor:
    """L_r (Eq. 4): mean of the cosine distances of χ(e_CLAP) and χ(e_CLIP) (drawn samples) to the
    true CLAP."""
    return 0.5 * (
        cosine_distance_loss(clap, out.clap_from_clap_sample)
        + cosine_distance_loss(clap, out.clap_from_clip_sample)
    )


def manifold_kl(out: ManifoldForward) -> Tensor:
    """Summed KL of the three modules: KL(v) + KL(φ) + KL(χ), χ's averaged over its two inputs."""
    return (
        variational_kl(out.clip_code)
        + variational_kl(out.clap_code)
        + 0.5 * (variational_kl(out.clap_from_clip) + variational_kl(out.clap_from_clap))
    )


def manifold_loss(
    out: ManifoldForward,
    clip: Tensor,
    clap: Tensor,
    scale: Tensor | float,
    ccmr_alpha: float = DEFAULT_CCMR_ALPHA,
    kl_weight: float = 5e-4,
) -> ManifoldLossTerms:
    """L_fold = L_c (with CCMR from the *input* CLIP/CLAP batch) + L_r + λ1·L_kl (paper Eq. 5)."""
    mask = ccmr_mask(clip, clap, ccmr_alpha) if ccmr_alpha > 0 else None
    contrastive = symmetric_contrastive_loss(out.clip_sample, out.clap_sample, scale, mask)
    reconstruction = reconstruction_loss(out, clap)
    kl = manifold_kl(out)
    return ManifoldLossTerms(contrastive + reconstruction + kl_weight * kl, contrastive, reconstruction, kl)


def variational_cosine_loss(
    target_clap: Tensor, output: VariationalOutput, kl_weight: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """|1 − cos(target, draw)| + kl_weight·KL on one reparameterised draw of ``output``:
    the Remixer's L_mix (Eq. 9) and the temporal L_ta (Eq. 10). Returns (total, cosine term, KL)."""
    cosine = cosine_distance_loss(target_clap, output.sample(generator))
    kl = variational_kl(output)
    return cosine + kl_weight * kl, cosine, kl


def consistency_loss(teacher: nn.Module, clip: Tensor, clap: Tensor, student_clip_mu: Tensor,
                     student_clap_mu: Tensor) -> Tensor:
    """Mean-teacher consistency: cosine distance from the student's code means to the teacher's codes
    of (its own view of) the same pairs, averaged over both modalities. No gradient to the teacher."""
    with torch.no_grad():
        teacher_clip = teacher.encode_clips(clip).mu
        teacher_clap = teacher.encode_claps(clap).mu
    return 0.5 * (
        cosine_distance_loss(teacher_clip, student_clip_mu)
        + cosine_distance_loss(teacher_clap, student_clap_mu)
    )


# ------------------------------------------------------------------------------------------------
# Sounding that Object
# ------------------------------------------------------------------------------------------------


class GroundingBatch(NamedTuple):
    """One grounding batch; a plain ``(latents, text_emb, patch_emb)`` tuple works too."""

    latents: Tensor  # (B, C, T', F') VAE latents of the reference audio (AudioLDM: C = 8)
    text_emb: Tensor  # (B, text_dim) CLAP text embedding of the caption (the query)
    patch_emb: Tensor  # (B, P, patch_dim) CLIP patch embeddings of one frame


def _unpack(batch: GroundingBatch | tuple, device: torch.device) -> GroundingBatch:
    if len(batch) != 3:
        raise InputError("a grounding batch is (latents, text_emb, patch_emb)")
    latents, text_emb, patch_emb = (torch.as_tensor(x).to(device=device, dtype=torch.float32) for x in batch)
    if not latents.shape[0] == text_emb.shape[0] == patch_emb.shape[0]:
        raise InputError(
            f"batch sizes differ: latents {latents.shape[0]}, text {text_emb.shape[0]}, "
            f"patches {patch_emb.shape[0]}"
        )
    return GroundingBatch(latents, text_emb, patch_emb)


def diffusion_loss(
    grounding: nn.Module,
    unet: nn.Module,
    scheduler,
    batch: GroundingBatch | tuple,
    *,
    cond_dropout: float = 0.1,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
    timesteps: Tensor | None = None,
    drop_mask: Tensor | None = None,
) -> Tensor:
    """Eq. (1): ‖ε − ε_θ(z_n, n, cond)‖², the grounding output ``cond`` as AudioLDM ``class_labels``.

    Random draws (timesteps, noise, which samples lose their condition) come from the CPU
    ``generator`` unless given explicitly (fixed noise/timesteps make losses comparable across steps).
    ``scheduler`` is a diffusers DDPM/DDIM scheduler providing ``add_noise`` and its config.
    """
    device = next(grounding.parameters()).device
    latents, text_emb, patch_emb = _unpack(batch, device)
    b = latents.shape[0]
    n_train = int(scheduler.config.num_train_timesteps)
    if timesteps is None:
        timesteps = torch.randint(0, n_train, (b,), generator=generator)
    if noise is None:
        noise = torch.randn(latents.shape, generator=generator)
    if drop_mask is None:
        drop_mask = torch.rand(b, generator=generator) < cond_dropout
    timesteps, noise, drop_mask = timesteps.to(device).long(), noise.to(device), drop_mask.to(device)

    cond, _ = grounding(text_emb, patch_emb)
    cond = torch.where(drop_mask[:, None], grounding.null_cond.to(cond.dtype).expand_as(cond), cond)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    # AudioLDM's UNet has no text cross-attention input: the condition enters only via class_labels.
    pred = unet(noisy, timesteps, encoder_hidden_states=None, class_labels=cond).sample
    kind = getattr(scheduler.config, "prediction_type", "epsilon")
    if kind == "epsilon":
        target = noise
    elif kind == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    elif kind == "sample":
        target = latents
    else:
        raise InputError(f"unsupported scheduler prediction_type {kind!r}")
    return F.mse_loss(pred.float(), target.float())


def output_contrastive_loss(cond: Tensor, candidates: Tensor, labels: Tensor, temperature: float = 0.07) -> Tensor:
    """InfoNCE of each conditioning (B, D) against candidate targets (N, D); ``labels`` (B,) index them.

    Use in-batch targets with ``labels = arange(B)``, or a bank of per-class audio embeddings.
    """
    logits = F.normalize(cond, dim=-1) @ F.normalize(candidates, dim=-1).T / temperature
    return F.cross_entropy(logits, labels)


def attention_nll_loss(logits: Tensor, target: Tensor) -> Tensor:
    """−Σ_p p_p log softmax(logits)_p, p = target normalised per row (Thm 3.1's ε_contrast + H(p))."""
    p = target.float() / target.float().sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return -(p * logits.log_softmax(dim=-1)).sum(dim=-1).mean()
