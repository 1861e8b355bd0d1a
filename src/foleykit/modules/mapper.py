"""V2A-Mapper: translate a CLIP image embedding into a CLAP audio embedding (Wang et al., AAAI 2024).

Four variants share one class so that a saved mapper is loaded the same way whatever it is:

* ``regression_mlp`` / ``regression_transformer``: one-to-one regression trained with MSE (paper Eq. 1).
* ``diffusion_transformer`` / ``diffusion_mlp``: a DALL·E-2-style prior (paper Eq. 2). The network
  predicts the clean CLAP embedding x0 from ``(t, x_t, clip)``; sampling is DDIM with classifier-free
  guidance, which models the one-to-many image→sound mapping. The paper's best mapper is the diffusion
  transformer.

Inputs are L2-normalised CLIP embeddings and outputs L2-normalised CLAP embeddings. Every entry point
normalises its CLIP input itself, so callers can pass raw encoder outputs and a mapper never sees a
scale it was not trained on.
"""

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from .hub_mixin import ModuleHubMixin

MapperKind = Literal["regression_mlp", "regression_transformer", "diffusion_transformer", "diffusion_mlp"]
KINDS: tuple[str, ...] = get_args(MapperKind)

# Best depth per variant in the paper's appendix (Tab. 7-10): MLPs D=1 (with E=4), regression
# transformer 8 layers, diffusion transformer 12 layers.
BEST_DEPTH: dict[str, int] = {
    "regression_mlp": 1,
    "regression_transformer": 8,
    "diffusion_transformer": 12,
    "diffusion_mlp": 1,
}

COSINE_S = 0.008  # Nichol & Dhariwal's offset: keeps beta_1 from being vanishingly small.
MAX_BETA = 0.999  # and their clip on the last betas, where alpha_bar reaches 0.


@dataclass
class MapperConfig:
    """Architecture and diffusion settings; the defaults are the paper's best diffusion transformer.

    ``width`` is the token size of the transformers (the paper's tokens are 512-d) and the base of the
    MLPs' hidden size, ``width * mlp_ratio`` (the paper's expansion rate E: 4 is its best MLP). The
    attention uses ``heads`` × ``head_dim`` (12 × 64 in the paper), which need not equal ``width``.
    ``depth=None`` picks the paper's best depth for ``kind``.

    ``guidance_scale`` defaults to 0.9, the paper's best mapper guidance (appendix, Fig. 8): below 1 it
    blends the conditional x0 prediction with the unconditional one, which the authors found gives
    more diverse and still visually relevant sound. 1.0 is purely conditional. The paper samples with
    200 DDIM steps; fewer work too, at some cost in fidelity.
    """

    kind: MapperKind = "diffusion_transformer"
    clip_dim: int = 512  # CLIP ViT-B/32 image embedding
    clap_dim: int = 512  # CLAP audio embedding (AudioLDM's)
    width: int = 512
    depth: int | None = None
    heads: int = 12
    head_dim: int = 64
    mlp_ratio: int = 4
    dropout: float = 0.0
    num_train_timesteps: int = 1000
    noise_schedule: str = "cosine"
    cond_drop_prob: float = 0.1
    default_inference_steps: int = 200
    guidance_scale: float = 0.9
    normalise_output: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"unknown mapper kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.depth is None:
            self.depth = BEST_DEPTH[self.kind]
        for name in ("clip_dim", "clap_dim", "width", "depth", "heads", "head_dim", "mlp_ratio",
                     "num_train_timesteps", "default_inference_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"mapper {name} must be a positive integer, got {value!r}")
        if self.noise_schedule != "cosine":
            raise InputError(f"only the cosine noise schedule is supported, got {self.noise_schedule!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"mapper dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.cond_drop_prob < 1.0:
            raise InputError(f"cond_drop_prob must be in [0, 1), got {self.cond_drop_prob}")
        if self.default_inference_steps > self.num_train_timesteps:
            raise InputError("default_inference_steps cannot exceed num_train_timesteps")
        if self.guidance_scale < 0:
            raise InputError(f"guidance_scale must be >= 0, got {self.guidance_scale}")

    @property
    def is_diffusion(self) -> bool:
        return self.kind.startswith("diffusion")


def cosine_alphas_cumprod(num_timesteps: int, s: float = COSINE_S) -> Tensor:
    """ᾱ for steps 1..T (index i holds ᾱ(i+1)) of the cosine schedule, float64.

    ᾱ(t) = f(t)/f(0) with f(t) = cos²(((t/T)+s)/(1+s)·π/2). Built from clipped betas, so it equals the
    closed form except at the very last step, where the clip keeps ᾱ_T from being exactly 0.
    """
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=MAX_BETA)
    return torch.cumprod(1 - betas, dim=0)


class _MLP(nn.Module):
    """``depth`` blocks of Linear→SiLU→LayerNorm, then a linear read-out (the paper's MLP mapper)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, depth: int, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(in_dim if i == 0 else hidden, hidden), nn.SiLU(), nn.LayerNorm(hidden)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(hidden, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class _Attention(nn.Module):
    """Bidirectional multi-head self-attention whose inner size (heads × head_dim) is free of the width."""

    def __init__(self, width: int, heads: int, head_dim: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(width, 3 * heads * head_dim)
        self.out = nn.Linear(heads * head_dim, width)

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, n, -1))


class _Block(nn.Module):
    """Pre-norm transformer layer: attention then a ×``mlp_ratio`` GELU feed-forward."""

    def __init__(self, width: int, heads: int, head_dim: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = _Attention(width, heads, head_dim, dropout)
        self.norm2 = nn.LayerNorm(width)
        self.ff = nn.Sequential(
            nn.Linear(width, width * mlp_ratio),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(width * mlp_ratio, width),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.ff(self.norm2(x)))


class _TokenTransformer(nn.Module):
    """Transformer encoder over a few role tokens plus a learned query; returns the query's output.

    A learned embedding per token position tells the encoder which token plays which role.
    """

    def __init__(self, num_inputs: int, out_dim: int, config: MapperConfig) -> None:
        super().__init__()
        w = config.width
        self.query = nn.Parameter(torch.randn(w) * 0.02)
        self.positions = nn.Parameter(torch.randn(num_inputs + 1, w) * 0.02)
        self.blocks = nn.ModuleList(
            _Block(w, config.heads, config.head_dim, config.mlp_ratio, config.dropout)
            for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(w)
        self.head = nn.Linear(w, out_dim)

    def forward(self, tokens: list[Tensor]) -> Tensor:
        query = self.query.expand(tokens[0].shape[0], -1)
        x = torch.stack([*tokens, query], dim=1) + self.positions
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, -1]))


class V2AMapper(nn.Module, ModuleHubMixin):
    """CLIP → CLAP mapper (any of the four paper variants, chosen by ``config.kind``).

    ``save_pretrained(dir)`` writes ``config.json`` + ``model.safetensors``;
    ``V2AMapper.from_pretrained(dir)`` restores it (strictly: a missing weight is an error, not a
    silently random layer).
    """

    def __init__(self, config: MapperConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        if c.kind == "regression_mlp":
            self.mlp = _MLP(c.clip_dim, c.width * c.mlp_ratio, c.clap_dim, c.depth, c.dropout)
        elif c.kind == "regression_transformer":
            self.clip_proj = nn.Linear(c.clip_dim, c.width)
            self.transformer = _TokenTransformer(1, c.clap_dim, c)
        else:
            # Paper appendix: "learnable embedding followed by a linear projection" for the timestep.
            self.time_embed = nn.Sequential(nn.Embedding(c.num_train_timesteps, c.width),
                                            nn.Linear(c.width, c.width))
            if c.kind == "diffusion_transformer":
                self.clip_proj = nn.Linear(c.clip_dim, c.width)
                self.noisy_proj = nn.Linear(c.clap_dim, c.width)
                self.null_cond = nn.Parameter(torch.randn(c.width) * 0.02)  # replaces the CLIP token
                self.transformer = _TokenTransformer(3, c.clap_dim, c)
            else:
                self.null_cond = nn.Parameter(torch.randn(c.clip_dim) * 0.02)  # replaces the CLIP input
                self.mlp = _MLP(c.width + c.clap_dim + c.clip_dim, c.width * c.mlp_ratio, c.clap_dim,
                                c.depth, c.dropout)
            # Derived from the config, so not saved with the weights.
            self.register_buffer("alphas_cumprod", cosine_alphas_cumprod(c.num_train_timesteps).float(),
                                 persistent=False)

    @property
    def _param(self) -> Tensor:
        return next(self.parameters())

    @property
    def _diffusion_scale(self) -> float:
        """Unit CLAP vectors are scaled by sqrt(d) in diffusion space so each coordinate has the noise's
        unit variance, as the cosine schedule assumes (otherwise almost every step would be pure noise)."""
        return math.sqrt(self.config.clap_dim)

    def _check_clip(self, clip: Tensor) -> Tensor:
        if clip.ndim != 2 or clip.shape[1] != self.config.clip_dim:
            raise InputError(
                f"mapper expects CLIP embeddings of shape [batch, {self.config.clip_dim}], "
                f"got {tuple(clip.shape)}"
            )
        return F.normalize(clip.to(self._param), dim=-1)

    def _finish(self, out: Tensor) -> Tensor:
        return F.normalize(out, dim=-1) if self.config.normalise_output else out

    def forward(
        self,
        clip: Tensor,
        noisy_clap: Tensor | None = None,
        timesteps: Tensor | None = None,
        drop_condition: Tensor | None = None,
    ) -> Tensor:
        """Regression: ``forward(clip)`` → CLAP prediction. Diffusion: ``forward(clip, x_t, t)`` → x0.

        ``timesteps`` are step indices in ``[0, num_train_timesteps)``; ``x_t`` lives in diffusion space
        (unit CLAP × sqrt(clap_dim)); the returned x0 is in unit space. ``drop_condition`` [B] bool
        replaces the CLIP condition by the learned null embedding (classifier-free guidance).
        Predictions are L2-normalised when ``config.normalise_output``.
        """
        c = self.config
        clip = self._check_clip(clip)
        if not c.is_diffusion:
            if noisy_clap is not None or timesteps is not None or drop_condition is not None:
                raise ValueError(f"a {c.kind} mapper takes only the CLIP embedding")
            if c.kind == "regression_mlp":
                return self._finish(self.mlp(clip))
            return self._finish(self.transformer([self.clip_proj(clip)]))
        if noisy_clap is None or timesteps is None:
            raise ValueError(f"a {c.kind} mapper needs the noisy CLAP embedding and the timesteps")
        noisy_clap = noisy_clap.to(clip)
        time = self.time_embed(timesteps.to(clip.device))
        if c.kind == "diffusion_transformer":
            cond = self.clip_proj(clip)
            if drop_condition is not None:
                cond = torch.where(drop_condition.to(clip.device)[:, None], self.null_cond.to(cond), cond)
            return self._finish(self.transformer([time, self.noisy_proj(noisy_clap), cond]))
        if drop_condition is not None:
            clip = torch.where(drop_condition.to(clip.device)[:, None], self.null_cond.to(clip), clip)
        return self._finish(self.mlp(torch.cat([time, noisy_clap, clip], dim=-1)))

    def training_loss(self, clip: Tensor, clap: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Mean squared L2 error to the normalised CLAP target (paper Eq. 1 / Eq. 2).

        Diffusion: t ~ U[1, T], x_t = sqrt(ᾱ_t)·x0 + sqrt(1-ᾱ_t)·ε, and the network predicts x0 (as
        DALL·E 2's prior). In training mode the CLIP condition is dropped with ``cond_drop_prob`` so
        the same network also learns the unconditional prediction that guidance needs. Randomness comes
        from the CPU ``generator`` (or torch's global CPU RNG) so runs are reproducible on any device.
        """
        target = F.normalize(clap.to(self._param), dim=-1)
        if clip.shape[0] != target.shape[0]:
            raise ValueError(f"batch mismatch: {clip.shape[0]} CLIP vs {target.shape[0]} CLAP embeddings")
        if not self.config.is_diffusion:
            pred = self(clip)
        else:
            b, device = target.shape[0], target.device
            t = torch.randint(0, self.config.num_train_timesteps, (b,), generator=generator)
            noise = torch.randn(target.shape, generator=generator).to(target)
            drop = None
            if self.training and self.config.cond_drop_prob > 0:
                drop = (torch.rand(b, generator=generator) < self.config.cond_drop_prob).to(device)
            t = t.to(device)
            abar = self.alphas_cumprod[t].to(target)[:, None]
            x_t = abar.sqrt() * target * self._diffusion_scale + (1 - abar).sqrt() * noise
            pred = self(clip, x_t, t, drop)
        return ((pred - target) ** 2).sum(-1).mean()

    def _guided_x0(self, clip: Tensor, x_t: Tensor, t: int, guidance_scale: float) -> Tensor:
        """x0 = uncond + s·(cond − uncond) from one batched pass; s = 1 needs no unconditional half."""
        b = clip.shape[0]
        if guidance_scale == 1.0:
            return self(clip, x_t, torch.full((b,), t, dtype=torch.long)).float()
        drop = torch.cat([torch.zeros(b, dtype=torch.bool), torch.ones(b, dtype=torch.bool)])
        t_both = torch.full((2 * b,), t, dtype=torch.long)
        both = self(clip.repeat(2, 1), x_t.repeat(2, 1), t_both, drop).float()
        cond, uncond = both[:b], both[b:]
        return self._finish(uncond + guidance_scale * (cond - uncond))

    @torch.no_grad()
    def map(
        self,
        clip: Tensor,
        *,
        steps: int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Map CLIP embeddings [B, clip_dim] to L2-normalised float32 CLAP embeddings [B, clap_dim].

        Regression mappers ignore ``steps``, ``guidance_scale`` and ``generator``. Diffusion mappers run
        a deterministic DDIM sampler (η = 0) over ``steps`` evenly spaced timesteps (default
        ``config.default_inference_steps``, 200 in the paper) with classifier-free guidance
        (default ``config.guidance_scale``). The starting noise is drawn on CPU from ``generator`` and
        moved to the module's device, so a seed gives the same result on every device. The sampler
        state is kept in float32 whatever the weights' dtype.
        """
        c = self.config
        clip = self._check_clip(clip)
        if not c.is_diffusion:
            return F.normalize(self(clip).float(), dim=-1)
        steps = c.default_inference_steps if steps is None else steps
        guidance_scale = c.guidance_scale if guidance_scale is None else guidance_scale
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= c.num_train_timesteps:
            raise InputError(
                f"mapper steps must be an integer in [1, {c.num_train_timesteps}], got {steps!r}"
            )
        if guidance_scale < 0:
            raise InputError(f"mapper guidance scale must be >= 0, got {guidance_scale}")
        device = clip.device
        abar = self.alphas_cumprod.to(device=device, dtype=torch.float32)
        timesteps = torch.linspace(c.num_train_timesteps - 1, 0, steps).round().long().tolist()
        x = torch.randn((clip.shape[0], c.clap_dim), generator=generator).to(device)
        for i, t in enumerate(timesteps):
            x0 = self._guided_x0(clip, x, t, guidance_scale) * self._diffusion_scale
            if i == len(timesteps) - 1:
                x = x0
                break
            eps = (x - abar[t].sqrt() * x0) / (1 - abar[t]).sqrt()
            nxt = abar[timesteps[i + 1]]
            x = nxt.sqrt() * x0 + (1 - nxt).sqrt() * eps
        return F.normalize(x, dim=-1)
