"""Test-time mask substitution: union, area averaging, mean/variance rescaling, PNG helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from foleykit.errors import InputError
from foleykit.modules.mask_substitution import (
    mask_to_attention_override,
    masks_to_patch_grid,
    rescale_to_attention,
    save_attention_png,
    save_mask_png,
    union_masks,
)


def test_rescaled_mask_has_attention_mean_and_variance_closed_form() -> None:
    p, k = 16, 4
    grid = torch.zeros(p)
    grid[:k] = 1.0
    attention = torch.softmax(torch.randn(p, generator=torch.Generator().manual_seed(0)) * 2, dim=0)
    mu, sigma = attention.mean(), attention.var(unbiased=False).sqrt()
    out = rescale_to_attention(grid, attention)
    # standardised binary mask: ones → sqrt((P-k)/k), zeros → -sqrt(k/(P-k))
    torch.testing.assert_close(out[:k], (mu + sigma * math.sqrt((p - k) / k)).expand(k))
    torch.testing.assert_close(out[k:], (mu - sigma * math.sqrt(k / (p - k))).expand(p - k))
    torch.testing.assert_close(out.mean(), mu)
    torch.testing.assert_close(out.var(unbiased=False), attention.var(unbiased=False))
    torch.testing.assert_close(out.sum(), torch.tensor(1.0))  # softmax mean 1/P ⇒ sums to one


def test_mask_of_matching_area_becomes_normalised_mask() -> None:
    # attention spread uniformly over k patches ⇒ rescaled k-patch mask is exactly 1/k on it, 0 elsewhere
    p, k = 12, 3
    attention = torch.zeros(p)
    attention[-k:] = 1 / k
    grid = torch.zeros(p)
    grid[:k] = 1.0
    out = rescale_to_attention(grid, attention)
    expected = torch.zeros(p)
    expected[:k] = 1 / k
    torch.testing.assert_close(out, expected)


def test_rescale_batched_and_with_explicit_stats() -> None:
    g = torch.Generator().manual_seed(2)
    attention = torch.softmax(torch.randn(3, 10, generator=g), dim=-1)
    grid = torch.rand(10, generator=g)
    out = rescale_to_attention(grid, attention)
    assert out.shape == (3, 10)
    torch.testing.assert_close(out.mean(-1), attention.mean(-1))
    torch.testing.assert_close(out.var(-1, unbiased=False), attention.var(-1, unbiased=False))
    out2 = rescale_to_attention(grid, mean=0.1, var=0.04)
    assert out2.shape == (10,)
    assert float(out2.mean()) == pytest.approx(0.1, abs=1e-6)
    assert float(out2.var(unbiased=False)) == pytest.approx(0.04, rel=1e-5)
    # a constant mask (whole image) has no variance: becomes uniform at the target mean
    flat = rescale_to_attention(torch.ones(10), mean=0.1, var=0.04)
    torch.testing.assert_close(flat, torch.full((10,), 0.1))
    with pytest.raises(InputError):
        rescale_to_attention(grid)
    with pytest.raises(InputError):
        rescale_to_attention(grid, attention[:, :5])


def test_union_of_masks() -> None:
    a = torch.zeros(6, 6, dtype=torch.bool)
    b = torch.zeros(6, 6, dtype=torch.bool)
    a[:2, :2] = True
    b[1:4, 1:4] = True
    u = union_masks([a, b])
    assert u.dtype == torch.bool
    assert int(u.sum()) == 4 + 9 - 1
    assert torch.equal(u, a | b)
    assert torch.equal(union_masks(torch.stack([a, b])), u)
    assert torch.equal(union_masks(np.asarray(a)), a)  # numpy, single mask
    soft = union_masks([a.float() * 0.3, b.float() * 0.8])
    assert float(soft[0, 0]) == pytest.approx(0.3) and float(soft[1, 1]) == pytest.approx(0.8)
    with pytest.raises(InputError):
        union_masks([a, torch.zeros(5, 6, dtype=torch.bool)])
    with pytest.raises(InputError):
        union_masks([])


def test_area_average_to_patch_grid() -> None:
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[8:16, 0:8] = True  # exactly patch (1, 0) of a 4×4 grid
    mask[0:4, 24:32] = True  # upper half of patch (0, 3)
    grid = masks_to_patch_grid(mask, (4, 4)).reshape(4, 4)
    expected = torch.zeros(4, 4)
    expected[1, 0], expected[0, 3] = 1.0, 0.5
    torch.testing.assert_close(grid, expected)
    # sizes that do not divide: still an exact area average (the mean is preserved)
    odd = torch.rand(37, 23, generator=torch.Generator().manual_seed(3)) > 0.6
    g = masks_to_patch_grid(odd, (5, 4))
    assert g.shape == (20,)
    assert float(g.mean()) == pytest.approx(float(odd.float().mean()), abs=1e-5)
    assert float(g.min()) >= 0.0 and float(g.max()) <= 1.0


def test_center_crop_and_union_to_override() -> None:
    mask = torch.zeros(20, 40, dtype=torch.bool)
    mask[:, :10] = True  # left margin, cropped away by the centre square (columns 10..29)
    other = torch.zeros(20, 40, dtype=torch.bool)
    other[:10, 10:20] = True  # top-left quarter of the centre square
    grid = masks_to_patch_grid([mask, other], (2, 2), center_crop=True)
    torch.testing.assert_close(grid, torch.tensor([1.0, 0.0, 0.0, 0.0]))
    attention = torch.softmax(torch.tensor([0.1, 2.0, 0.3, 0.5]), dim=0)
    override = mask_to_attention_override([mask, other], (2, 2), attention, center_crop=True)
    assert int(override.argmax()) == 0
    torch.testing.assert_close(override.var(unbiased=False), attention.var(unbiased=False))
    with pytest.raises(InputError, match="covers no image patch"):
        masks_to_patch_grid(mask, (2, 2), center_crop=True)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        masks_to_patch_grid(torch.full((4, 4), 3.0), (2, 2))


def test_png_helpers_write_upscaled_overlays(tmp_path) -> None:
    image = Image.new("RGB", (64, 48), (40, 40, 40))
    weights = torch.zeros(3, 4)
    weights[2, 3] = 1.0  # bottom-right patch
    out = tmp_path / "attn.png"
    save_attention_png(weights.reshape(-1), (3, 4), out, image)
    heat = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert heat.shape == (48, 64, 3)
    assert heat[44, 60].sum() > heat[4, 4].sum() + 100  # hot where the weight is
    save_attention_png(weights.reshape(-1), (3, 4), tmp_path / "bare.png", size=(30, 40))
    assert Image.open(tmp_path / "bare.png").size == (40, 30)

    mask = torch.zeros(24, 32, dtype=torch.bool)
    mask[:12, :16] = True
    save_mask_png(mask, tmp_path / "mask.png", image)
    tinted = np.asarray(Image.open(tmp_path / "mask.png").convert("RGB")).astype(int)
    assert tinted.shape == (24, 32, 3)  # the image is resized to the mask
    assert tinted[2, 2, 0] > tinted[2, 2, 1] + 50 and tinted[20, 30, 0] == tinted[20, 30, 1]
    save_mask_png(mask, tmp_path / "mask_bw.png")
    bw = np.asarray(Image.open(tmp_path / "mask_bw.png"))
    assert bw[0, 0] == 255 and bw[-1, -1] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attn.png", "bare.png", "mask.png", "mask_bw.png"]
    with pytest.raises(InputError):
        save_attention_png(torch.ones(5), (3, 4), tmp_path / "bad.png")
