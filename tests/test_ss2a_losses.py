"""SS2A loss math against hand computations: CCMR mask, symmetric contrastive loss, KL, cosine terms."""

import math

import pytest
import torch
from foleykit.training.losses import (
    contrastive_logits,
    cosine_distance_loss,
    gaussian_kl,
    manifold_kl,
    manifold_loss,
    reconstruction_loss,
    symmetric_contrastive_loss,
    variational_cosine_loss,
)

from foleykit.modules.ccmr import apply_ccmr, ccmr_mask
from foleykit.modules.manifold import CMSSManifold, ManifoldConfig
from foleykit.modules.variational_mlp import VariationalOutput


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


CLIP = [[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 0.0, 1.0]]
CLAP = [[1.0, 1.0], [1.0, 0.0], [-1.0, 0.2]]


def test_ccmr_mask_matches_hand_computation():
    alpha = 0.35
    mask = ccmr_mask(torch.tensor(CLIP), torch.tensor(CLAP), alpha)
    for i in range(3):
        for j in range(3):
            joint = min(max(_cos(CLIP[i], CLIP[j]) * _cos(CLAP[i], CLAP[j]), 0.0), 1.0)
            expected = math.exp(-alpha * joint**alpha)
            assert mask[i, j].item() == pytest.approx(expected, abs=1e-6), (i, j)
    # Pair (0, 1): cos_clip = 0.8, cos_clap = 1/sqrt(2) → the mask is strictly between exp(-α) and 1.
    assert math.exp(-alpha) < mask[0, 1].item() < 1.0
    # Pair (0, 2): orthogonal CLIPs → product 0 → no regularisation.
    assert mask[0, 2].item() == pytest.approx(1.0)
    # Diagonal: product 1 → exp(-α), as Eq. 7 is written.
    assert torch.allclose(mask.diagonal(), torch.full((3,), math.exp(-alpha)))


def test_ccmr_negative_products_are_clamped_to_no_regularisation():
    clip = torch.tensor([[1.0, 0.0], [1.0, 0.1]])  # similar images ...
    clap = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # ... opposite sounds: product < 0 → clamp to 0
    mask = ccmr_mask(clip, clap, 0.35)
    assert mask[0, 1].item() == pytest.approx(1.0)


def test_ccmr_alpha_zero_leaves_similarities_unchanged():
    g = torch.Generator().manual_seed(0)
    clip, clap = torch.randn(5, 7, generator=g), torch.randn(5, 4, generator=g)
    mask = ccmr_mask(clip, clap, alpha=0.0)
    assert torch.equal(mask, torch.ones(5, 5))
    sims = torch.randn(5, 5, generator=g)
    assert torch.equal(apply_ccmr(sims, mask), sims)
    e1, e2 = torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g)
    assert torch.equal(contrastive_logits(e1, e2, 3.0, mask), contrastive_logits(e1, e2, 3.0))
    # ... while a positive alpha does change them.
    assert not torch.allclose(
        contrastive_logits(e1, e2, 3.0, ccmr_mask(clip, clap, 0.35)), contrastive_logits(e1, e2, 3.0)
    )


def test_symmetric_contrastive_loss_matches_explicit_loops():
    g = torch.Generator().manual_seed(1)
    n, scale = 4, 2.5
    e_clip, e_clap = torch.randn(n, 5, generator=g), torch.randn(n, 5, generator=g)
    raw_clip, raw_clap = torch.randn(n, 7, generator=g), torch.randn(n, 3, generator=g)
    for alpha in (0.0, 0.35, 1.0):
        mask = ccmr_mask(raw_clip, raw_clap, alpha)
        c = [
            [scale * _cos(e_clip[i].tolist(), e_clap[j].tolist()) * mask[i, j].item() for j in range(n)]
            for i in range(n)
        ]
        l_clip = (
            -sum(math.log(math.exp(c[i][i]) / sum(math.exp(c[i][j]) for j in range(n))) for i in range(n)) / n
        )
        # ℓ_CLAP swaps the roles: rows are CLAP codes, i.e. the columns of C.
        l_clap = (
            -sum(math.log(math.exp(c[j][j]) / sum(math.exp(c[i][j]) for i in range(n))) for j in range(n)) / n
        )
        got = symmetric_contrastive_loss(e_clip, e_clap, scale, mask).item()
        assert got == pytest.approx((l_clip + l_clap) / 2, abs=1e-5), alpha


def test_gaussian_kl_equals_closed_form():
    g = torch.Generator().manual_seed(2)
    mu, logvar = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    std = (0.5 * logvar).exp()
    reference = (
        torch.distributions.kl_divergence(
            torch.distributions.Normal(mu, std),
            torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(std)),
        )
        .sum(-1)
        .mean()
    )
    assert gaussian_kl(mu, logvar).item() == pytest.approx(reference.item(), rel=1e-5)
    # Hand value for one element: mu=1, logvar=0 → ½(1 + 1 − 1 − 0) = 0.5.
    assert gaussian_kl(torch.tensor([[1.0]]), torch.tensor([[0.0]])).item() == pytest.approx(0.5)
    assert gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0


def test_cosine_distance_loss_hand_values():
    target = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    pred = torch.tensor([[3.0, 0.0], [1.0, 1.0]])  # cos 1 and cos 1/sqrt(2)
    expected = ((1 - 1.0) + (1 - 1 / math.sqrt(2))) / 2
    assert cosine_distance_loss(target, pred).item() == pytest.approx(expected, abs=1e-6)


def test_manifold_loss_is_the_sum_of_its_terms():
    torch.manual_seed(0)
    config = ManifoldConfig(
        clip_dim=6,
        clap_dim=5,
        manifold_dim=4,
        projector_widths=(8, 8, 8),
        reconstructor_widths=(8,),
        dropout=0.0,
    )
    model = CMSSManifold(config)
    g = torch.Generator().manual_seed(3)
    clip, clap = torch.randn(5, 6, generator=g), torch.randn(5, 5, generator=g)
    out = model(clip, clap, torch.Generator().manual_seed(4))
    scale = model.temperature_scale()
    terms = manifold_loss(out, clip, clap, scale, ccmr_alpha=0.35, kl_weight=0.01)
    contrastive = symmetric_contrastive_loss(
        out.clip_sample, out.clap_sample, scale, ccmr_mask(clip, clap, 0.35)
    )
    recon = 0.5 * (
        cosine_distance_loss(clap, out.clap_from_clip_sample)
        + cosine_distance_loss(clap, out.clap_from_clap_sample)
    )
    kl = (
        gaussian_kl(out.clip_code.mu, out.clip_code.logvar)
        + gaussian_kl(out.clap_code.mu, out.clap_code.logvar)
        + 0.5
        * (
            gaussian_kl(out.clap_from_clip.mu, out.clap_from_clip.logvar)
            + gaussian_kl(out.clap_from_clap.mu, out.clap_from_clap.logvar)
        )
    )
    assert terms.contrastive.item() == pytest.approx(contrastive.item(), abs=1e-6)
    assert terms.reconstruction.item() == pytest.approx(recon.item(), abs=1e-6)
    assert reconstruction_loss(out, clap).item() == pytest.approx(recon.item(), abs=1e-6)
    assert terms.kl.item() == pytest.approx(kl.item(), rel=1e-5)
    assert manifold_kl(out).item() == pytest.approx(kl.item(), rel=1e-5)
    assert terms.total.item() == pytest.approx((contrastive + recon + 0.01 * kl).item(), rel=1e-5)
    terms.total.backward()
    assert model.logit_scale.grad is not None and model.reconstructor.mu_head.weight.grad is not None


def test_variational_cosine_loss_uses_a_reparameterised_draw():
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[-20.0, -20.0]])  # σ ≈ 5e-5: the draw ≈ mu
    total, cosine, kl = variational_cosine_loss(
        torch.tensor([[0.0, 1.0]]), VariationalOutput(mu, logvar), 0.5
    )
    assert cosine.item() == pytest.approx(1.0, abs=1e-3)  # orthogonal target
    assert kl.item() == pytest.approx(gaussian_kl(mu, logvar).item())
    assert total.item() == pytest.approx(cosine.item() + 0.5 * kl.item(), rel=1e-6)
