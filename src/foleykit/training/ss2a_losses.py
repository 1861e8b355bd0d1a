"""SS2A training objectives, one function per term so each can be checked on its own.

* :func:`contrastive_logits` / :func:`symmetric_contrastive_loss`: paper Eq. 3 with the CCMR mask
  (Eq. 7) multiplied into the similarity matrix.
* :func:`cosine_distance_loss`: |1 − cos| of Eq. 4 (reconstruction), 9 (Remixer) and 10 (temporal).
* :func:`gaussian_kl`: closed-form KL(N(mu, σ²) ‖ N(0, I)).
* :func:`manifold_loss`: L_fold = L_c + L_r + λ1·L_kl (Eq. 5).
* :func:`variational_cosine_loss`: L_mix = |1 − cos(a, a_mix)| + λ2·L_kl (Eq. 9), also the temporal
  aggregation loss (Eq. 10, with λ = 0 by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

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
