"""The Cross-Modal Sound Source (CMSS) manifold of SS2A (paper Eq. 2-5, Fig. 3a).

Two variational projectors map single-source embeddings into one joint space where sources are
contrasted: v (CLIP image, 768-d) and φ (CLAP audio, 512-d). A variational reconstructor χ maps
manifold codes back to CLAP space: it anchors the manifold to audio semantics during training and
gives each source its own CLAP "track semantics" at inference (Cycle Mix).

Method names follow the released code's vocabulary so the two can be read side by side:
``fold_clips`` = v, ``fold_claps`` = φ, ``to_clap`` = χ.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from .hub_mixin import ModuleHubMixin
from .variational_mlp import VariationalMLP, VariationalOutput


@dataclass
class ManifoldConfig:
    """Sizes of the CMSS manifold.

    ``clip_dim``/``clap_dim`` are fixed by the encoders (CLIP ViT-L/14, AudioLDM's CLAP). The widths,
    ``manifold_dim`` and dropout are our defaults: neither the paper's main text nor the released
    code states them (they live in the unpublished ``ssv2a.json``); the released MLP's dropout default
    is 0.1. ``init_temperature`` 0.07 and the logit-scale ceiling 100 are the CLIP/CLAP conventions
    the released code uses.
    """

    clip_dim: int = 768
    clap_dim: int = 512
    manifold_dim: int = 512
    projector_widths: tuple[int, ...] = (1024, 1024, 1024)
    reconstructor_widths: tuple[int, ...] = (1024, 1024, 1024)
    residual: bool = True
    dropout: float = 0.1
    init_temperature: float = 0.07
    max_logit_scale: float = 100.0

    def __post_init__(self) -> None:
        # JSON (config.json) turns tuples into lists; keep them tuples so configs compare equal.
        self.projector_widths = tuple(int(w) for w in self.projector_widths)
        self.reconstructor_widths = tuple(int(w) for w in self.reconstructor_widths)
        for name in ("clip_dim", "clap_dim", "manifold_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"manifold {name} must be a positive integer, got {value!r}")
        for name in ("projector_widths", "reconstructor_widths"):
            widths = getattr(self, name)
            if not widths or any(w < 1 for w in widths):
                raise InputError(f"manifold {name} must be a non-empty list of positive widths, got {widths}")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"manifold dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.init_temperature <= 1.0:
            raise InputError(f"init_temperature must be in (0, 1], got {self.init_temperature}")
        if self.max_logit_scale < 1.0:
            raise InputError(f"max_logit_scale must be >= 1, got {self.max_logit_scale}")


@dataclass
class ManifoldForward:
    """Everything the training loss needs from one pass over a batch of (CLIP, CLAP) pairs."""

    clip_code: VariationalOutput  # v(clip)
    clap_code: VariationalOutput  # φ(clap)
    clap_from_clip: VariationalOutput  # χ(sampled v(clip))
    clap_from_clap: VariationalOutput  # χ(sampled φ(clap))
    clip_sample: Tensor  # the e_CLIP draw fed to the loss and to χ
    clap_sample: Tensor  # the e_CLAP draw
    clap_from_clip_sample: Tensor  # a draw of χ(e_CLIP), unnormalised
    clap_from_clap_sample: Tensor  # a draw of χ(e_CLAP), unnormalised


class CMSSManifold(nn.Module, ModuleHubMixin):
    """CMSS manifold: projectors v, φ, reconstructor χ and the learned contrastive temperature.

    ``save_pretrained(dir)`` writes ``config.json`` + ``model.safetensors``;
    ``CMSSManifold.from_pretrained(dir)`` restores it strictly.
    """

    def __init__(self, config: ManifoldConfig) -> None:
        super().__init__()
        if isinstance(config, dict):  # from_pretrained hands over the decoded config.json
            config = ManifoldConfig(**config)
        self.config = config
        c = config
        self.clip_projector = VariationalMLP(
            c.clip_dim, c.projector_widths, c.manifold_dim, c.residual, c.dropout, input_bias=False
        )
        self.clap_projector = VariationalMLP(
            c.clap_dim, c.projector_widths, c.manifold_dim, c.residual, c.dropout, input_bias=False
        )
        self.reconstructor = VariationalMLP(
            c.manifold_dim, c.reconstructor_widths, c.clap_dim, c.residual, c.dropout, input_bias=True
        )
        # τ = exp(logit_scale), learned, as in CLIP/CLAP (paper: "τ is a learned temperature").
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / c.init_temperature)))

    @property
    def _param(self) -> Tensor:
        return self.logit_scale

    def temperature_scale(self) -> Tensor:
        """τ = exp(logit_scale), clamped to [1, max_logit_scale] (logits at most ×100, as CLIP)."""
        return self.logit_scale.clamp(0.0, math.log(self.config.max_logit_scale)).exp()

    def _check(self, x: Tensor, dim: int, what: str) -> Tensor:
        if x.shape[-1] != dim:
            raise InputError(
                f"manifold expects {what} embeddings with {dim} features, got shape {tuple(x.shape)}"
            )
        return x.to(self._param)

    def encode_clips(self, clip: Tensor) -> VariationalOutput:
        """v(clip) as a Gaussian; any leading shape ([..., clip_dim])."""
        return self.clip_projector(self._check(clip, self.config.clip_dim, "CLIP"))

    def encode_claps(self, clap: Tensor) -> VariationalOutput:
        """φ(clap) as a Gaussian; any leading shape ([..., clap_dim])."""
        return self.clap_projector(self._check(clap, self.config.clap_dim, "CLAP"))

    def reconstruct(self, code: Tensor) -> VariationalOutput:
        """χ(code) as a Gaussian in (unnormalised) CLAP space."""
        return self.reconstructor(self._check(code, self.config.manifold_dim, "manifold"))

    def fold_clips(
        self, clip: Tensor, num_samples: int = 0, generator: torch.Generator | None = None
    ) -> Tensor:
        """Manifold codes of CLIP embeddings: the mean (``num_samples=0``) or the average of draws."""
        return self.encode_clips(clip).mean_of_samples(num_samples, generator)

    def fold_claps(
        self, clap: Tensor, num_samples: int = 0, generator: torch.Generator | None = None
    ) -> Tensor:
        """Manifold codes of CLAP embeddings (audio sources, Cycle Mix feedback)."""
        return self.encode_claps(clap).mean_of_samples(num_samples, generator)

    def to_clap(
        self,
        code: Tensor,
        num_samples: int = 0,
        generator: torch.Generator | None = None,
        normalize: bool = True,
    ) -> Tensor:
        """χ: manifold codes → CLAP vectors, L2-normalised by default (the generator's currency)."""
        out = self.reconstruct(code).mean_of_samples(num_samples, generator)
        return F.normalize(out, dim=-1) if normalize else out

    def forward(
        self, clip: Tensor, clap: Tensor, generator: torch.Generator | None = None
    ) -> ManifoldForward:
        """One training pass: encode both modalities, draw one code each, reconstruct CLAP from both."""
        clip_code = self.encode_clips(clip)
        clap_code = self.encode_claps(clap)
        clip_sample = clip_code.sample(generator)
        clap_sample = clap_code.sample(generator)
        clap_from_clip = self.reconstructor(clip_sample)
        clap_from_clap = self.reconstructor(clap_sample)
        return ManifoldForward(
            clip_code=clip_code,
            clap_code=clap_code,
            clap_from_clip=clap_from_clip,
            clap_from_clap=clap_from_clap,
            clip_sample=clip_sample,
            clap_sample=clap_sample,
            clap_from_clip_sample=clap_from_clip.sample(generator),
            clap_from_clap_sample=clap_from_clap.sample(generator),
        )
