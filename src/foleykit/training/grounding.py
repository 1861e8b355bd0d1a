"""Training the grounding module ("Sounding that Object", Sec. 3.1-3.2 and 4.1).

Main objective (the paper's): the latent-diffusion noise-prediction loss, Eq. (1), back-propagated
through the AudioLDM UNet into the grounding module, which supplies the UNet's ``class_labels``.
Grounding is learned *self-supervised*: nothing tells the attention where the source is; it finds
the patches because only they make the noise predictable. The UNet is fine-tuned jointly by default
(freezing it is ablation (i) of the paper, which loses accuracy) and can be frozen.

Lightweight objectives (no UNet) for sanity checks and quick experiments:
  * :func:`output_contrastive_loss` — InfoNCE between the conditioning and target embeddings
    (e.g. CLAP audio embeddings), still self-supervised w.r.t. where the source is;
  * :func:`attention_nll_loss` — cross-entropy of the softmax attention against a known patch
    distribution, i.e. the "contrastive error" of the paper's Theorem 3.1 (needs patch labels).

:func:`make_synthetic_scenes` builds toy scenes in which each patch carries a source identity vector
and the text query names one source, so grounding quality can be measured exactly.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..devices import resolve_device
from ..errors import InputError
from ..modules.grounding import GroundingModule
from ..seeding import make_generator, resolve_seed

__all__ = [
    "GroundingBatch",
    "GroundingTrainConfig",
    "GroundingTrainResult",
    "set_unet_trainable",
    "build_optimizer",
    "diffusion_loss",
    "train_grounding_diffusion",
    "output_contrastive_loss",
    "attention_nll_loss",
    "attention_mass",
    "SyntheticScenes",
    "make_synthetic_scenes",
    "train_grounding_direct",
]


class GroundingBatch(NamedTuple):
    """One training batch; a plain ``(latents, text_emb, patch_emb)`` tuple works too."""

    latents: torch.Tensor  # (B, C, T', F') VAE latents of the reference audio (AudioLDM: C = 8)
    text_emb: torch.Tensor  # (B, text_dim) CLAP text embedding of the caption (the query)
    patch_emb: torch.Tensor  # (B, P, patch_dim) CLIP patch embeddings of one frame


@dataclass
class GroundingTrainConfig:
    """Optimiser and schedule settings; defaults are the paper's (Sec. 4.1)."""

    lr: float = 1e-4
    betas: tuple[float, float] = (0.95, 0.999)
    eps: float = 1e-6
    weight_decay: float = 1e-3
    cond_dropout: float = 0.1  # classifier-free guidance: drop the condition 10 % of the time
    finetune_unet: bool = True  # False = ablation (i): frozen diffusion weights
    max_grad_norm: float | None = None  # the paper states none; set e.g. 1.0 for stability
    max_steps: int | None = None  # None = one pass over ``batches``

    def __post_init__(self) -> None:
        if not 0.0 <= self.cond_dropout < 1.0:
            raise InputError(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if self.lr <= 0:
            raise InputError(f"learning rate must be positive, got {self.lr}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))


@dataclass
class GroundingTrainResult:
    seed: int  # the seed actually used (report it)
    steps: int
    losses: list[float] = field(default_factory=list)


def set_unet_trainable(unet: nn.Module, trainable: bool) -> None:
    """Freeze or unfreeze the UNet's parameters (gradients still flow *through* a frozen UNet)."""
    for p in unet.parameters():
        p.requires_grad_(trainable)
    unet.train(trainable)


def build_optimizer(
    grounding: GroundingModule, unet: nn.Module | None, config: GroundingTrainConfig
) -> torch.optim.AdamW:
    """AdamW over the grounding module, plus the UNet when it is fine-tuned."""
    params = [p for p in grounding.parameters() if p.requires_grad]
    if unet is not None and config.finetune_unet:
        params += [p for p in unet.parameters() if p.requires_grad]
    return torch.optim.AdamW(
        params, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay
    )


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
    grounding: GroundingModule,
    unet: nn.Module,
    scheduler,
    batch: GroundingBatch | tuple,
    *,
    cond_dropout: float = 0.1,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
    timesteps: torch.Tensor | None = None,
    drop_mask: torch.Tensor | None = None,
) -> torch.Tensor:
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


def train_grounding_diffusion(
    grounding: GroundingModule,
    unet: nn.Module,
    scheduler,
    batches: Iterable[GroundingBatch | tuple],
    config: GroundingTrainConfig | None = None,
    *,
    seed: int | None = None,
    device: str | torch.device | None = "cpu",
    dtype: str | torch.dtype | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> GroundingTrainResult:
    """Fine-tune grounding (+ UNet unless frozen) with the diffusion loss; returns losses and seed.

    Set ``grounding.null_cond`` to the generator's unconditional vector (CLAP of "") beforehand, so
    the 10 % dropped conditions train the same unconditional branch that CFG uses at inference.

    Weights stay in float32; ``dtype`` = bfloat16 runs the forward pass under autocast. Iterates
    over ``batches`` once, or until ``config.max_steps``.
    """
    config = config or GroundingTrainConfig()
    if config.cond_dropout > 0 and not bool(grounding.null_cond.any()):
        warnings.warn(
            "grounding.null_cond is all zeros: dropped conditions will not match AudioLDM's unconditional "
            "input; call grounding.set_null_condition(generator.unconditional_embedding()) first",
            stacklevel=2,
        )
    used_seed = resolve_seed(seed)
    gen = make_generator(used_seed)
    dev = resolve_device(device)
    autocast_dtype = _training_dtype(dtype)
    grounding.to(dev).train()
    unet.to(dev)
    set_unet_trainable(unet, config.finetune_unet)
    opt = build_optimizer(grounding, unet, config)
    trained = [p for g in opt.param_groups for p in g["params"]]
    result = GroundingTrainResult(seed=used_seed, steps=0)
    for batch in batches:
        if config.max_steps is not None and result.steps >= config.max_steps:
            break
        with torch.autocast(dev.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = diffusion_loss(
                grounding, unet, scheduler, batch, cond_dropout=config.cond_dropout, generator=gen
            )
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite diffusion loss at step {result.steps}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(trained, config.max_grad_norm)
        opt.step()
        result.steps += 1
        result.losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(result.steps, result.losses[-1])
    return result


def _training_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """None/float32 → plain fp32; bfloat16 → autocast. fp16 would need a grad scaler: refused."""
    if dtype is None or dtype in ("auto", "float32", "fp32", torch.float32):
        return None
    if dtype in ("bfloat16", "bf16", torch.bfloat16):
        return torch.bfloat16
    raise InputError(f"training supports float32 or bfloat16, got {dtype!r}")


# ---------------------------------------------------------------------- lightweight objectives


def output_contrastive_loss(
    cond: torch.Tensor, candidates: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07
) -> torch.Tensor:
    """InfoNCE of each conditioning (B, D) against candidate targets (N, D); ``labels`` (B,) index them.

    Use in-batch targets with ``labels = arange(B)``, or a bank of per-class audio embeddings.
    """
    logits = F.normalize(cond, dim=-1) @ F.normalize(candidates, dim=-1).T / temperature
    return F.cross_entropy(logits, labels)


def attention_nll_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """−Σ_p p_p log softmax(logits)_p, p = target normalised per row (Thm 3.1's ε_contrast + H(p))."""
    p = target.float() / target.float().sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return -(p * logits.log_softmax(dim=-1)).sum(dim=-1).mean()


def attention_mass(weights: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Per-sample attention mass on a boolean patch region (B, P) → (B,). Uniform gives area / P."""
    return (weights * region.to(weights.dtype)).sum(dim=-1)


@dataclass
class SyntheticScenes:
    """Toy scenes: each patch carries one source's identity vector (+ noise); the text names one source."""

    text_emb: torch.Tensor  # (N, text_dim) query naming the target source (text-space identity + noise)
    patch_emb: torch.Tensor  # (N, P, patch_dim)
    target_ids: torch.Tensor  # (N,) the named source
    target_region: torch.Tensor  # (N, P) bool, patches carrying the named source
    audio_bank: torch.Tensor  # (num_sources, target_dim) "audio" embedding of each source

    def __len__(self) -> int:
        return self.text_emb.shape[0]

    def subset(self, index: slice | torch.Tensor) -> SyntheticScenes:
        """Some of the scenes, sharing the same source identities (for held-out evaluation)."""
        return SyntheticScenes(
            self.text_emb[index], self.patch_emb[index], self.target_ids[index], self.target_region[index],
            self.audio_bank,
        )

    @property
    def chance_mass(self) -> torch.Tensor:
        """Attention mass a uniform attention would put on the target region, per scene."""
        return self.target_region.float().mean(dim=-1)


def make_synthetic_scenes(
    num_scenes: int,
    *,
    num_sources: int = 8,
    sources_per_scene: int = 3,
    grid: tuple[int, int] = (8, 8),
    text_dim: int = 32,
    patch_dim: int = 32,
    target_dim: int = 32,
    max_object_size: int = 3,
    patch_noise: float = 0.3,
    text_noise: float = 0.1,
    seed: int = 0,
) -> SyntheticScenes:
    """Scenes of rectangles of distinct sources over a background, in unrelated text/image/audio spaces.

    Text, patch and audio identities are independent random vectors, so the attention has to *learn*
    the text→image matching (as W^Q, W^K must align CLAP with CLIP) and the MLP the image→audio map.
    """
    if sources_per_scene > num_sources:
        raise InputError("sources_per_scene cannot exceed num_sources")
    g = make_generator(seed)
    gh, gw = grid
    img_ids = torch.randn(num_sources + 1, patch_dim, generator=g)  # last row: background
    txt_ids = torch.randn(num_sources, text_dim, generator=g)
    audio_bank = torch.randn(num_sources, target_dim, generator=g)
    labels = torch.full((num_scenes, gh, gw), num_sources, dtype=torch.long)
    target_ids = torch.empty(num_scenes, dtype=torch.long)
    for i in range(num_scenes):
        chosen = torch.randperm(num_sources, generator=g)[:sources_per_scene]
        for s in chosen.tolist():
            h = int(torch.randint(1, max_object_size + 1, (1,), generator=g))
            w = int(torch.randint(1, max_object_size + 1, (1,), generator=g))
            top = int(torch.randint(0, gh - h + 1, (1,), generator=g))
            left = int(torch.randint(0, gw - w + 1, (1,), generator=g))
            labels[i, top : top + h, left : left + w] = s
        visible = [s for s in chosen.tolist() if bool((labels[i] == s).any())]  # later rects may cover
        target_ids[i] = visible[int(torch.randint(0, len(visible), (1,), generator=g))]
    labels = labels.reshape(num_scenes, gh * gw)
    patch_emb = img_ids[labels] + patch_noise * torch.randn(num_scenes, gh * gw, patch_dim, generator=g)
    text_emb = txt_ids[target_ids] + text_noise * torch.randn(num_scenes, text_dim, generator=g)
    scale = 1.0 / math.sqrt(patch_dim)
    return SyntheticScenes(
        text_emb=F.normalize(text_emb, dim=-1),  # CLAP embeddings are unit-norm
        patch_emb=patch_emb * scale,
        target_ids=target_ids,
        target_region=labels == target_ids[:, None],
        audio_bank=audio_bank,
    )


def train_grounding_direct(
    grounding: GroundingModule,
    scenes: SyntheticScenes,
    *,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 3e-3,
    temperature: float = 0.1,
    seed: int | None = None,
    device: str | torch.device | None = "cpu",
) -> GroundingTrainResult:
    """Train with :func:`output_contrastive_loss` against the scenes' audio bank (no patch labels).

    Cheap stand-in for the diffusion loss: the conditioning must identify the named source's sound,
    which is only possible by attending to that source's patches. AdamW with the paper's betas/eps.
    """
    used_seed = resolve_seed(seed)
    gen = make_generator(used_seed)
    dev = resolve_device(device)
    grounding.to(dev).train()
    opt = torch.optim.AdamW(grounding.parameters(), lr=lr, betas=(0.95, 0.999), eps=1e-6, weight_decay=1e-3)
    bank = scenes.audio_bank.to(dev)
    result = GroundingTrainResult(seed=used_seed, steps=0)
    for _ in range(steps):
        idx = torch.randint(0, len(scenes), (batch_size,), generator=gen)
        cond, _ = grounding(scenes.text_emb[idx].to(dev), scenes.patch_emb[idx].to(dev))
        loss = output_contrastive_loss(cond, bank, scenes.target_ids[idx].to(dev), temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        result.steps += 1
        result.losses.append(float(loss.detach()))
    return result
