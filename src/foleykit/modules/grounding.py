"""Text-guided visual object grounding ("Sounding that Object", Sec. 3.2).

A CLAP text embedding (the query) attends over CLIP patch embeddings (keys and values) with a
*single-head* scaled dot-product attention; learnable positional encodings are added to the keys
and to the values so that the attended vector also says *where* the object is. An MLP turns the
attended vector into the 512-d, L2-normalised conditioning vector that the AudioLDM UNet receives as
``class_labels`` (the slot where plain AudioLDM puts the CLAP text embedding).

What is conditioned (our reading of the paper, see docs/objects.md): only ``MLP(a V)`` where ``a``
are the attention weights. The text enters *only* through the weights, never directly, because at
test time the weights are replaced by a SAM mask and no text is needed ("the test-time computation
involves only the image encoder"). This is what makes the substitution meaningful: the UNet has
only ever seen conditionings of the form ``MLP(weights @ V)``.

Single head and multiplicative (dot-product) scoring are deliberate: the paper's ablations show that
multi-head attention and additive attention both break mask substitution.

No ``from __future__ import annotations`` here: ``PyTorchModelHubMixin`` reads the ``config``
annotation at runtime to rebuild the dataclass in ``from_pretrained``.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .hub_mixin import ModuleHubMixin

__all__ = ["GroundingConfig", "GroundingModule"]


@dataclass
class GroundingConfig:
    """Sizes of the grounding module.

    Defaults: CLAP text (512) as query; CLIP ViT-L/14 at 224 px gives a 16x16 patch grid whose
    tokens, mapped through CLIP's visual projection, live in the 768-d joint space.
    """

    text_dim: int = 512  # CLAP embedding size (query input)
    patch_dim: int = 768  # CLIP patch embedding size (key/value input)
    grid_h: int = 16  # patch rows
    grid_w: int = 16  # patch columns
    attn_dim: int = 512  # d_k = d_v of the single attention head
    mlp_hidden_dim: int = 1024
    out_dim: int = 512  # AudioLDM UNet projection_class_embeddings_input_dim
    mlp_dropout: float = 0.0
    pos_init_std: float = 0.02  # BERT-style init for the learnable positional encodings
    normalize_output: bool = True  # AudioLDM expects L2-normalised class_labels
    stats_momentum: float = 0.01  # EMA momentum of the reference attention variance (training only)

    def __post_init__(self) -> None:
        for name in ("text_dim", "patch_dim", "grid_h", "grid_w", "attn_dim", "mlp_hidden_dim", "out_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InputError(f"GroundingConfig.{name} must be a positive integer, got {value!r}")
        if not 0.0 <= self.mlp_dropout < 1.0:
            raise InputError(f"GroundingConfig.mlp_dropout must be in [0, 1), got {self.mlp_dropout}")
        if not 0.0 < self.stats_momentum <= 1.0:
            raise InputError(f"GroundingConfig.stats_momentum must be in (0, 1], got {self.stats_momentum}")

    @property
    def num_patches(self) -> int:
        return self.grid_h * self.grid_w


class GroundingModule(nn.Module, ModuleHubMixin):
    """Single-head text→patch attention + MLP producing the UNet conditioning.

    Buffers saved with the weights:
      * ``null_cond`` (out_dim): the "no condition" vector used for the 10 % condition dropout in
        training and as the unconditional branch of classifier-free guidance at inference. Zero
        until set with :meth:`set_null_condition` (we suggest the normalised CLAP embedding of the
        empty string, which is what pretrained AudioLDM used as its unconditional input).
      * ``ref_attn_var`` / ``ref_attn_count``: running variance of the attention weights seen in
        training, so a SAM mask can be rescaled to typical statistics when no text is available.
    """

    def __init__(self, config: GroundingConfig):
        super().__init__()
        self.config = config
        c = config
        self.q_proj = nn.Linear(c.text_dim, c.attn_dim)
        self.k_proj = nn.Linear(c.patch_dim, c.attn_dim)
        self.v_proj = nn.Linear(c.patch_dim, c.attn_dim)
        # Separate learnable encodings for keys and values: keys need position to separate
        # look-alike objects, values carry it into the conditioning (where the sound comes from).
        self.pos_k = nn.Parameter(torch.randn(c.num_patches, c.attn_dim) * c.pos_init_std)
        self.pos_v = nn.Parameter(torch.randn(c.num_patches, c.attn_dim) * c.pos_init_std)
        self.mlp = nn.Sequential(
            nn.Linear(c.attn_dim, c.mlp_hidden_dim),
            nn.GELU(),
            nn.Dropout(c.mlp_dropout),
            nn.Linear(c.mlp_hidden_dim, c.out_dim),
        )
        self.register_buffer("null_cond", torch.zeros(c.out_dim))
        self.register_buffer("ref_attn_var", torch.zeros(()))
        self.register_buffer("ref_attn_count", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------ checks

    def _check_patches(self, patch_emb: torch.Tensor) -> torch.Tensor:
        c = self.config
        if patch_emb.dim() == 4:  # (B, H, W, D) grid layout
            patch_emb = patch_emb.flatten(1, 2)
        if patch_emb.dim() != 3 or patch_emb.shape[1] != c.num_patches or patch_emb.shape[2] != c.patch_dim:
            raise InputError(
                f"patch embeddings must be (batch, {c.num_patches}, {c.patch_dim}) "
                f"[grid {c.grid_h}x{c.grid_w}], got {tuple(patch_emb.shape)}"
            )
        return patch_emb

    @staticmethod
    def _match_batch(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Broadcast a batch of 1 against the other (one image, several prompts or vice versa)."""
        if a.shape[0] == b.shape[0]:
            return a, b
        if a.shape[0] == 1:
            return a.expand(b.shape[0], *a.shape[1:]), b
        if b.shape[0] == 1:
            return a, b.expand(a.shape[0], *b.shape[1:])
        raise InputError(f"batch sizes differ: {a.shape[0]} vs {b.shape[0]}")

    # ------------------------------------------------------------------ parts

    def keys(self, patch_emb: torch.Tensor) -> torch.Tensor:
        """K = E_v W^K + PE_K, shape (B, P, attn_dim)."""
        return self.k_proj(self._check_patches(patch_emb)) + self.pos_k

    def values(self, patch_emb: torch.Tensor) -> torch.Tensor:
        """V = E_v W^V + PE_V, shape (B, P, attn_dim)."""
        return self.v_proj(self._check_patches(patch_emb)) + self.pos_v

    def attention_logits(self, text_emb: torch.Tensor, patch_emb: torch.Tensor) -> torch.Tensor:
        """q Kᵀ / √d_k, shape (B, P); exposed so losses can use a numerically stable log-softmax."""
        if text_emb.dim() != 2 or text_emb.shape[1] != self.config.text_dim:
            raise InputError(
                f"text embeddings must be (batch, {self.config.text_dim}), got {tuple(text_emb.shape)}"
            )
        patch_emb = self._check_patches(patch_emb)
        text_emb, patch_emb = self._match_batch(text_emb, patch_emb)
        q = self.q_proj(text_emb)  # (B, d)
        k = self.keys(patch_emb)  # (B, P, d)
        return torch.einsum("bd,bpd->bp", q, k) / math.sqrt(self.config.attn_dim)

    def attention_weights(self, text_emb: torch.Tensor, patch_emb: torch.Tensor) -> torch.Tensor:
        """softmax(q Kᵀ / √d_k) over the patches, shape (B, P); each row sums to 1."""
        return self.attention_logits(text_emb, patch_emb).softmax(dim=-1)

    def condition(self, weights: torch.Tensor, patch_emb: torch.Tensor) -> torch.Tensor:
        """MLP(weights @ V) → (B, out_dim), L2-normalised if configured. Weights need not be a softmax."""
        patch_emb = self._check_patches(patch_emb)
        if weights.dim() == 1:
            weights = weights.unsqueeze(0)
        if weights.dim() != 2 or weights.shape[1] != self.config.num_patches:
            raise InputError(
                f"attention weights must be (batch, {self.config.num_patches}), got {tuple(weights.shape)}"
            )
        weights = weights.to(device=patch_emb.device, dtype=patch_emb.dtype)
        weights, patch_emb = self._match_batch(weights, patch_emb)
        attended = torch.einsum("bp,bpd->bd", weights, self.values(patch_emb))
        cond = self.mlp(attended)
        if self.config.normalize_output:
            cond = F.normalize(cond, dim=-1)
        return cond

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        text_emb: torch.Tensor | None,
        patch_emb: torch.Tensor,
        attention_override: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(cond, weights)``: the UNet conditioning and the (B, P) weights that produced it.

        ``attention_override`` (B, P) or (P,) replaces the softmax weights (test-time mask
        substitution); ``text_emb`` may then be None since the text only shapes the weights.
        """
        if attention_override is None:
            if text_emb is None:
                raise InputError("a text embedding is required unless attention_override is given")
            weights = self.attention_weights(text_emb, patch_emb)
            if self.training:
                self._track_attention_stats(weights)
        else:
            weights = attention_override
            if weights.dim() == 1:
                weights = weights.unsqueeze(0)
        return self.condition(weights, patch_emb), weights

    # ------------------------------------------------------------------ statistics and null condition

    @torch.no_grad()
    def _track_attention_stats(self, weights: torch.Tensor) -> None:
        """EMA of the per-sample variance of the softmax weights (their mean is always 1/P)."""
        var = weights.detach().float().var(dim=-1, unbiased=False).mean()
        if int(self.ref_attn_count) == 0:
            self.ref_attn_var.copy_(var)
        else:
            m = self.config.stats_momentum
            self.ref_attn_var.mul_(1.0 - m).add_(var, alpha=m)
        self.ref_attn_count.add_(1)

    def reference_attention_stats(self) -> tuple[float, float]:
        """(mean, variance) of attention weights seen in training, for rescaling masks without text."""
        if int(self.ref_attn_count) == 0:
            raise InputError(
                "this grounding module has no recorded attention statistics (never trained); "
                "pass a text embedding so the mask can be rescaled to its attention"
            )
        return 1.0 / self.config.num_patches, float(self.ref_attn_var)

    @torch.no_grad()
    def set_null_condition(self, vector: torch.Tensor) -> None:
        """Set the unconditional vector (e.g. CLAP("")); normalised like every conditioning."""
        vector = vector.detach().reshape(-1)
        if vector.numel() != self.config.out_dim:
            raise InputError(f"null condition must have {self.config.out_dim} values, got {vector.numel()}")
        if self.config.normalize_output and vector.norm() > 0:
            vector = F.normalize(vector, dim=0)
        self.null_cond.copy_(vector.to(self.null_cond))
