"""The Sound Source Remixer ψ of SS2A (paper Eq. 8-9, Fig. 3b).

Each sound source m becomes one token x_m = concat(e_m, v_m): its source code e_m (manifold code,
its χ CLAP, or both — ``source_code``) and its CLIP embedding v_m (zero for audio sources). A stack of
efficient-attention layers mixes up to M = 64 tokens; two learned read-out tokens are prepended and
give the mean and log-variance of the mixture's CLAP embedding.

Padding: a batch of scenes with different numbers of sources is padded to a common length and
``padding_mask`` (True = empty slot) removes the empty slots from attention, so the output does not
depend on how much padding there is or what it holds. The released code had no mask: it ran all
``max_sources`` slots through its encoders and attended to every one of them, so an empty slot
carried the released encoders' code of "nothing" (not a zero token), and the released weights were
trained on those tokens. ``attend_to_padding=True`` (set when importing released weights) drops the
mask and attends to every slot as given; the released *contents* of empty slots depend on the
manifold and the scene layout, so :func:`foleykit.modules.cycle_mix.cycle_mix` builds them (all
``max_sources`` slots). Called directly in this mode, masked slots are zeroed and missing slots are
appended as zero tokens, which matches the released tokens only in its multimodal layout under
manifold guidance.

Classifier-free training (paper: "randomly zeroing out tokens"): in training mode each source token
of each item is zeroed with probability ``token_dropout``.
"""

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from .efficient_attention import KEY_SOFTMAX_CHOICES, NUM_READOUT_TOKENS, readout_encoder
from .hub_mixin import ModuleHubMixin
from .variational_mlp import VariationalOutput, mean_of_samples

SourceCode = Literal["manifold", "clap", "manifold+clap"]
SOURCE_CODE_CHOICES: tuple[str, ...] = ("manifold", "clap", "manifold+clap")


@dataclass
class RemixerConfig:
    """Remixer sizes and behaviour.

    From the paper: M = 64 sources (``max_sources``), tokens concat(e, v) with e the manifold code
    (``source_code="manifold"``, its best setting in Tab. 3). From the released code: two read-out
    tokens, Linear+LN+GELU heads, FFN width ``embed_dim * ffn_multiplier``. ``embed_dim``, layers,
    heads and dropout are the released layer defaults (512, 3, 8, 0.2); the real values sit in the
    unpublished ``ssv2a.json``. ``token_dropout`` 0.1 is our choice (the paper gives no rate).
    ``key_softmax="tokens"`` is Shen et al.'s efficient attention; ``"features"`` is the released
    code's. ``attend_to_padding=True`` (released weights) attends to every slot with no mask; the
    released tokens for empty slots come from ``cycle_mix`` (see the module docstring).
    """

    manifold_dim: int = 512
    clip_dim: int = 768
    clap_dim: int = 512
    source_code: SourceCode = "manifold"
    embed_dim: int = 512
    num_layers: int = 3
    num_heads: int = 8
    ffn_multiplier: int = 1
    dropout: float = 0.2
    max_sources: int = 64
    token_dropout: float = 0.1
    key_softmax: str = "tokens"
    attend_to_padding: bool = False

    def __post_init__(self) -> None:
        for name in (
            "manifold_dim",
            "clip_dim",
            "clap_dim",
            "embed_dim",
            "num_layers",
            "num_heads",
            "ffn_multiplier",
            "max_sources",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"remixer {name} must be a positive integer, got {value!r}")
        if self.source_code not in SOURCE_CODE_CHOICES:
            raise InputError(
                f"remixer source_code must be one of {SOURCE_CODE_CHOICES}, got {self.source_code!r}"
            )
        if self.key_softmax not in KEY_SOFTMAX_CHOICES:
            raise InputError(
                f"remixer key_softmax must be one of {KEY_SOFTMAX_CHOICES}, got {self.key_softmax!r}"
            )
        if self.embed_dim % self.num_heads:
            raise InputError(f"remixer embed_dim {self.embed_dim} is not divisible by {self.num_heads} heads")
        for name in ("dropout", "token_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise InputError(f"remixer {name} must be in [0, 1), got {getattr(self, name)}")

    @property
    def source_dim(self) -> int:
        """Width of the e part of a token."""
        return {
            "manifold": self.manifold_dim,
            "clap": self.clap_dim,
            "manifold+clap": self.manifold_dim + self.clap_dim,
        }[self.source_code]


class SoundSourceRemixer(nn.Module, ModuleHubMixin):
    """ψ(x_1 … x_M) → a_mix: a variational CLAP embedding of the mixture of the given sources."""

    def __init__(self, config: RemixerConfig) -> None:
        super().__init__()
        if isinstance(config, dict):  # from_pretrained hands over the decoded config.json
            config = RemixerConfig(**config)
        self.config = config
        c = config
        self.input_proj = nn.Linear(c.source_dim + c.clip_dim, c.embed_dim)
        self.readout_tokens, self.encoder, self.mu_head, self.logvar_head = readout_encoder(c.embed_dim, c.clap_dim, c)

    def _prepare(
        self, codes: Tensor, clips: Tensor, padding_mask: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """Validate shapes; returns the token tensor [B, M, S+C] and the mask [B, M] (or None)."""
        c = self.config
        if codes.ndim != 3 or clips.ndim != 3 or codes.shape[:2] != clips.shape[:2]:
            raise InputError(
                f"remixer expects codes [B, M, {c.source_dim}] and clips [B, M, {c.clip_dim}], "
                f"got {tuple(codes.shape)} and {tuple(clips.shape)}"
            )
        if codes.shape[-1] != c.source_dim or clips.shape[-1] != c.clip_dim:
            raise InputError(
                f"remixer expects codes with {c.source_dim} and clips with {c.clip_dim} features, "
                f"got {codes.shape[-1]} and {clips.shape[-1]}"
            )
        if codes.shape[1] > c.max_sources:
            raise InputError(f"the remixer takes at most {c.max_sources} sources, got {codes.shape[1]}")
        param = self.readout_tokens
        tokens = torch.cat([codes.to(param), clips.to(param)], dim=-1)
        if padding_mask is not None:
            if padding_mask.shape != codes.shape[:2]:
                raise InputError(
                    f"padding_mask must have shape {tuple(codes.shape[:2])}, got {tuple(padding_mask.shape)}"
                )
            padding_mask = padding_mask.to(device=param.device, dtype=torch.bool)
        return tokens, padding_mask

    def _drop_tokens(self, tokens: Tensor, generator: torch.Generator | None) -> Tensor:
        """Zero each source token with probability ``token_dropout`` (classifier-free training)."""
        p = self.config.token_dropout
        if not self.training or p == 0.0:
            return tokens
        shape = tokens.shape[:2]
        if generator is None:
            keep = torch.rand(shape, device=tokens.device) >= p
        else:
            keep = (torch.rand(shape, generator=generator, device=generator.device) >= p).to(tokens.device)
        return tokens * keep[..., None].to(tokens)

    def forward(
        self,
        codes: Tensor,
        clips: Tensor,
        padding_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> VariationalOutput:
        """codes [B, M, source_dim], clips [B, M, clip_dim], padding_mask [B, M] (True = empty slot)
        → Gaussian over the (unnormalised) mixture CLAP [B, clap_dim]."""
        c = self.config
        tokens, padding_mask = self._prepare(codes, clips, padding_mask)
        tokens = self._drop_tokens(tokens, generator)
        if c.attend_to_padding:
            # Released behaviour: empty slots are zero tokens, always max_sources of them in all.
            if padding_mask is not None:
                tokens = tokens.masked_fill(padding_mask[..., None], 0.0)
            tokens = F.pad(tokens, (0, 0, 0, c.max_sources - tokens.shape[1]))
            key_padding_mask = None
        elif padding_mask is not None:
            readout_keep = padding_mask.new_zeros(padding_mask.shape[0], NUM_READOUT_TOKENS)
            key_padding_mask = torch.cat([readout_keep, padding_mask], dim=1)
        else:
            key_padding_mask = None
        x = self.input_proj(tokens)
        readout = self.readout_tokens.unsqueeze(0).expand(x.shape[0], -1, -1)
        x = self.encoder(torch.cat([readout, x], dim=1), key_padding_mask)
        return VariationalOutput(self.mu_head(x[:, 0]), self.logvar_head(x[:, 1]))

    def sample(
        self,
        codes: Tensor,
        clips: Tensor,
        padding_mask: Tensor | None = None,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """A mixture CLAP [B, clap_dim], L2-normalised: the average of ``num_samples`` draws
        (0 = the mean, deterministic)."""
        out = self(codes, clips, padding_mask, generator)
        return F.normalize(mean_of_samples(out.mu, out.logvar, num_samples, generator), dim=-1)
