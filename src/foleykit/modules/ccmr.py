"""Cross-Modal Contrastive Mask Regularization (CCMR), SS2A paper Eq. 6-7.

With a small single-source training set, a plain contrastive loss pushes apart pairs that are in
fact alike (two dogs barking in different clips), erasing semantics CLIP and CLAP already had. CCMR
weakens the contrastive logits of cross-pair entries that *both* foundation models find similar:

    M_CLIP^ij = cos(v_i, v_j)       (input CLIP embeddings of the batch)
    M_CLAP^ij = cos(a_i, a_j)       (input CLAP embeddings of the batch)
    M_ij      = exp(-α · clamp(M_CLIP^ij · M_CLAP^ij, 0, 1) ** α)
    C*_ij     = C_ij · M_ij

α = 0 gives M = 1 (no regularisation); the paper's best is α = 0.35 (Tab. 4). As written in the paper
the mask also covers the diagonal (M_ii = exp(-α)); we keep that. The mask is built from the frozen
input embeddings, so it carries no gradient.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

DEFAULT_CCMR_ALPHA = 0.35  # paper, Tab. 4


def pairwise_cosine(x: Tensor) -> Tensor:
    """[N, D] → [N, N] cosine similarities between all rows."""
    x = F.normalize(x.float(), dim=-1)
    return x @ x.T


def ccmr_mask(clip: Tensor, clap: Tensor, alpha: float = DEFAULT_CCMR_ALPHA) -> Tensor:
    """The [N, N] CCMR mask for a batch of paired CLIP [N, Dv] and CLAP [N, Da] input embeddings."""
    if clip.ndim != 2 or clap.ndim != 2 or clip.shape[0] != clap.shape[0]:
        raise ValueError(
            f"ccmr_mask needs paired [N, D] batches, got {tuple(clip.shape)} and {tuple(clap.shape)}"
        )
    if alpha < 0:
        raise ValueError(f"CCMR alpha must be >= 0, got {alpha}")
    with torch.no_grad():
        if alpha == 0:
            return torch.ones(clip.shape[0], clip.shape[0], device=clip.device)
        joint = (pairwise_cosine(clip) * pairwise_cosine(clap)).clamp(0.0, 1.0)
        return torch.exp(-alpha * joint.pow(alpha))


def apply_ccmr(similarity: Tensor, mask: Tensor) -> Tensor:
    """C* = C ⊙ M (element-wise); the mask is symmetric, so it serves both loss directions."""
    if similarity.shape != mask.shape:
        raise ValueError(f"similarity {tuple(similarity.shape)} and mask {tuple(mask.shape)} differ in shape")
    return similarity * mask.to(similarity)
