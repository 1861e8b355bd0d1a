"""Test-time segmentation-mask substitution ("Sounding that Object", Sec. 3.2 and 3.3).

After training, the softmax attention weights of :class:`~foleykit.modules.grounding.GroundingModule`
are replaced by a SAM mask so a click selects the sounding object. The mask is

1. merged: several selected objects → their union (one region, the scene still conditions the rest),
2. brought to the patch grid by area averaging (a patch half covered by the object gets 0.5),
3. rescaled so that over the P patches it has the *mean and variance* of the attention weights it
   replaces: ``m' = mean_a + std_a * (m - mean_m) / std_m``. The mean of softmax weights is 1/P, so
   ``m'`` sums to 1 like the weights. If the attention was more peaked than the mask is large,
   background patches get (small) negative weights; that is the paper's recipe and we keep it exact.

The PNG helpers import Pillow/numpy lazily so the module itself needs torch only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

__all__ = [
    "union_masks",
    "masks_to_patch_grid",
    "rescale_to_attention",
    "mask_to_attention_override",
    "attention_to_image",
    "save_attention_png",
    "save_mask_png",
]

MaskLike = Any  # torch.Tensor | numpy.ndarray (bool or float, H×W)


def _as_mask_tensor(mask: MaskLike) -> torch.Tensor:
    t = torch.as_tensor(mask)
    if t.dim() != 2:
        raise InputError(f"a mask must be a 2-D H×W image, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise InputError("a mask is empty (zero height or width)")
    return t


def union_masks(masks: MaskLike | Sequence[MaskLike]) -> torch.Tensor:
    """Union of one or several H×W masks (bool, or soft in [0, 1] → elementwise max). Shape (H, W)."""
    if isinstance(masks, torch.Tensor) and masks.dim() == 3:
        items = list(masks.unbind(0))
    elif isinstance(masks, (list, tuple)):
        items = list(masks)
    else:
        t = torch.as_tensor(masks)
        items = list(t.unbind(0)) if t.dim() == 3 else [t]
    if not items:
        raise InputError("no mask given: select at least one object")
    tensors = [_as_mask_tensor(m) for m in items]
    shape = tensors[0].shape
    for t in tensors[1:]:
        if t.shape != shape:
            raise InputError(
                f"masks must share one size to be merged, got {tuple(shape)} and {tuple(t.shape)}"
            )
    if all(t.dtype == torch.bool for t in tensors):
        out = tensors[0].clone()
        for t in tensors[1:]:
            out |= t
        return out
    return torch.stack([t.float() for t in tensors]).amax(dim=0)


def _center_crop_square(mask: torch.Tensor) -> torch.Tensor:
    """The square centre crop CLIP's processor takes after resizing the short side."""
    h, w = mask.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return mask[..., top : top + s, left : left + s]


def _area_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) matrix whose row i averages input cells over [i, i+1) * n_in / n_out, weighting
    cells by their overlap so sizes that do not divide evenly are still exact area averages."""
    edges = torch.arange(n_out + 1, dtype=torch.float64) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    cells = torch.arange(n_in, dtype=torch.float64)[None, :]
    overlap = (torch.minimum(hi, cells + 1) - torch.maximum(lo, cells)).clamp_min(0)
    return (overlap / (n_in / n_out)).float()


def masks_to_patch_grid(
    masks: MaskLike | Sequence[MaskLike],
    grid_size: tuple[int, int],
    *,
    center_crop: bool = False,
) -> torch.Tensor:
    """Union of the masks, area-averaged to the patch grid: (grid_h * grid_w,) values in [0, 1].

    The mask must cover the same image region as the patch grid. Set ``center_crop`` when the
    patches come from a square centre crop of the image (CLIP's default preprocessing).
    """
    gh, gw = int(grid_size[0]), int(grid_size[1])
    if gh <= 0 or gw <= 0:
        raise InputError(f"grid size must be positive, got {grid_size}")
    mask = union_masks(masks).float()
    if bool((mask < 0).any()) or bool((mask > 1).any()):
        raise InputError("mask values must lie in [0, 1]; pass booleans or probabilities (sigmoid of logits)")
    if center_crop:
        mask = _center_crop_square(mask)
    # Exact area average: each patch is the mean over its (possibly fractional) pixel rectangle.
    grid = (_area_matrix(mask.shape[0], gh) @ mask @ _area_matrix(mask.shape[1], gw).T).reshape(-1)
    if not bool((grid > 0).any()):
        raise InputError("the selected mask covers no image patch; select a (larger) object")
    return grid


def rescale_to_attention(
    mask_grid: torch.Tensor,
    attention: torch.Tensor | None = None,
    *,
    mean: float | torch.Tensor | None = None,
    var: float | torch.Tensor | None = None,
    eps: float = 1e-12,
) -> torch.Tensor:
    """Affinely rescale a patch mask to the mean and (population) variance of attention weights.

    Either give ``attention`` (B, P) or (P,) — the weights being replaced — or explicit ``mean`` and
    ``var`` (e.g. :meth:`GroundingModule.reference_attention_stats`). Rows are processed
    independently; output has the broadcast batch shape. A mask that is constant over the patches
    (e.g. the whole image) has no variance to scale, so it becomes the constant ``mean``.
    """
    m = torch.as_tensor(mask_grid).float()
    if attention is not None:
        if mean is not None or var is not None:
            raise InputError("give either the attention weights or mean/var, not both")
        a = torch.as_tensor(attention).float().to(m.device)
        if a.shape[-1] != m.shape[-1]:
            raise InputError(f"mask has {m.shape[-1]} patches but attention has {a.shape[-1]}")
        target_mean = a.mean(dim=-1, keepdim=True)
        target_var = a.var(dim=-1, unbiased=False, keepdim=True)
    else:
        if mean is None or var is None:
            raise InputError("rescaling a mask needs the attention weights or both mean and var")
        target_mean = torch.as_tensor(mean, dtype=torch.float32, device=m.device).reshape(-1, 1)
        target_var = torch.as_tensor(var, dtype=torch.float32, device=m.device).reshape(-1, 1)
        if bool((target_var < 0).any()):
            raise InputError(f"variance must be non-negative, got {var}")
    squeeze = m.dim() == 1 and (attention is None or torch.as_tensor(attention).dim() == 1)
    m2 = m.reshape(-1, m.shape[-1])
    m_mean = m2.mean(dim=-1, keepdim=True)
    m_std = m2.std(dim=-1, unbiased=False, keepdim=True)
    z = torch.where(m_std > eps, (m2 - m_mean) / m_std.clamp_min(eps), torch.zeros_like(m2))
    out = target_mean + target_var.sqrt() * z
    return out.reshape(-1) if squeeze else out


def mask_to_attention_override(
    masks: MaskLike | Sequence[MaskLike],
    grid_size: tuple[int, int],
    attention: torch.Tensor | None = None,
    *,
    mean: float | None = None,
    var: float | None = None,
    center_crop: bool = False,
) -> torch.Tensor:
    """SAM mask(s) → union → patch grid → rescaled weights ready for ``attention_override``."""
    grid = masks_to_patch_grid(masks, grid_size, center_crop=center_crop)
    return rescale_to_attention(grid, attention, mean=mean, var=var)


# ---------------------------------------------------------------------- visualisation

# A perceptually ordered dark→bright ramp (black, purple, red, orange, pale yellow) for heat maps.
_RAMP = (
    (0.00, (0, 0, 4)),
    (0.25, (87, 16, 110)),
    (0.50, (188, 55, 84)),
    (0.75, (249, 142, 9)),
    (1.00, (252, 255, 164)),
)


def _colorize(values: torch.Tensor) -> torch.Tensor:
    """(H, W) in [0, 1] → (H, W, 3) uint8 using the ramp above."""
    v = values.clamp(0.0, 1.0)
    out = torch.zeros(*v.shape, 3)
    for (x0, c0), (x1, c1) in zip(_RAMP[:-1], _RAMP[1:]):
        sel = (v >= x0) & (v <= x1)
        t = ((v - x0) / (x1 - x0))[sel].unsqueeze(-1)
        out[sel] = torch.tensor(c0, dtype=torch.float32) * (1 - t) + torch.tensor(c1, dtype=torch.float32) * t
    return out.round().to(torch.uint8)


def _image_array(image: Image.Image | Any | None, size: tuple[int, int] | None) -> Any:
    """The base image as an (H, W, 3) uint8 numpy array, or None."""
    import numpy as np
    from PIL import Image as PILImage

    if image is None:
        return None
    if isinstance(image, (str, os.PathLike)):
        image = PILImage.open(image)
    if isinstance(image, PILImage.Image):
        arr = np.asarray(image.convert("RGB"))
    else:
        arr = np.asarray(image)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=-1)
        if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
            raise InputError(f"image must be H×W×3, got shape {arr.shape}")
        arr = arr[..., :3]
        if arr.dtype != np.uint8:
            scale = 255.0 if arr.max() <= 1.0 else 1.0
            arr = np.clip(arr * scale, 0, 255).astype(np.uint8)
    if size is not None and arr.shape[:2] != size:
        arr = np.asarray(PILImage.fromarray(arr).resize((size[1], size[0]), PILImage.BILINEAR))
    return arr


def attention_to_image(
    weights: torch.Tensor,
    grid_size: tuple[int, int],
    image: Image.Image | Any | None = None,
    *,
    size: tuple[int, int] | None = None,
    alpha: float = 0.5,
) -> Image.Image:
    """Patch weights → heat map bilinearly upscaled to the image (as in the paper's Fig. 4), blended.

    Weights are min-max normalised for display. ``size`` (H, W) is used when no image is given.
    """
    import numpy as np
    from PIL import Image as PILImage

    gh, gw = grid_size
    w = torch.as_tensor(weights).detach().float().reshape(-1).cpu()
    if w.numel() != gh * gw:
        raise InputError(f"{w.numel()} weights do not fill a {gh}x{gw} patch grid")
    base = _image_array(image, None)
    if base is not None:
        size = (base.shape[0], base.shape[1])
    elif size is None:
        size = (gh * 16, gw * 16)
    up = F.interpolate(w.reshape(1, 1, gh, gw), size=size, mode="bilinear", align_corners=False)[0, 0]
    lo, hi = up.min(), up.max()
    norm = (up - lo) / (hi - lo) if hi > lo else torch.zeros_like(up)
    heat = _colorize(norm).numpy()
    if base is None:
        return PILImage.fromarray(heat)
    blended = (1 - alpha) * base.astype(np.float32) + alpha * heat.astype(np.float32)
    return PILImage.fromarray(np.clip(blended.round(), 0, 255).astype(np.uint8))


def _save_png(img: Image.Image, path: str | os.PathLike) -> None:
    from ..io.atomic import atomic_path

    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def save_attention_png(
    weights: torch.Tensor,
    grid_size: tuple[int, int],
    path: str | os.PathLike,
    image: Image.Image | Any | None = None,
    *,
    size: tuple[int, int] | None = None,
    alpha: float = 0.5,
) -> None:
    """Write :func:`attention_to_image` to ``path`` as PNG (atomically)."""
    _save_png(attention_to_image(weights, grid_size, image, size=size, alpha=alpha), path)


def save_mask_png(
    masks: MaskLike | Sequence[MaskLike],
    path: str | os.PathLike,
    image: Image.Image | Any | None = None,
    *,
    color: tuple[int, int, int] = (255, 64, 64),
    alpha: float = 0.5,
) -> None:
    """Write the union of the masks as PNG: tinted over the image, or white-on-black without one."""
    import numpy as np
    from PIL import Image as PILImage

    mask = union_masks(masks).float().clamp(0, 1)
    h, w = mask.shape
    base = _image_array(image, (h, w))
    m = mask.numpy()[..., None]
    if base is None:
        img = (m[..., 0] * 255).round().astype(np.uint8)
        _save_png(PILImage.fromarray(img, mode="L"), path)
        return
    tint = np.asarray(color, dtype=np.float32)[None, None]
    out = base.astype(np.float32) * (1 - alpha * m) + tint * (alpha * m)
    _save_png(PILImage.fromarray(np.clip(out.round(), 0, 255).astype(np.uint8)), path)
