"""Efficient attention (Shen et al., WACV 2021) and the transformer layers SS2A builds from it.

    E(Q, K, V) = ρq(Q) · (ρk(K)ᵀ · V)

ρq is a softmax over each query's features and ρk a softmax over the tokens (per key feature). The
d×d context ρk(K)ᵀV is computed once, so the cost is linear in the number of tokens. Heads split the
feature dimension as usual.

A key padding mask (True = padding) removes padded tokens from the ρk softmax and from the sum that
builds the context, so padded tokens cannot change any other token's output.

``key_softmax="features"`` reproduces the released SS2A code, which applies ρk over the head features
instead of the tokens; it is kept only so released weights can be run as they were trained.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KeySoftmax = Literal["tokens", "features"]
KEY_SOFTMAX_CHOICES: tuple[str, ...] = ("tokens", "features")


def efficient_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    num_heads: int,
    key_padding_mask: Tensor | None = None,
    key_softmax: KeySoftmax = "tokens",
    dropout_p: float = 0.0,
    training: bool = False,
) -> Tensor:
    """Multi-head efficient attention.

    query [B, Lq, D], key [B, Lk, D], value [B, Lk, Dv] → [B, Lq, Dv]; D and Dv divisible by
    ``num_heads``. ``key_padding_mask`` [B, Lk] bool, True = padded key. ``dropout_p`` drops entries
    of the per-head context matrix in training.
    """
    if key_softmax not in KEY_SOFTMAX_CHOICES:
        raise ValueError(f"key_softmax must be one of {KEY_SOFTMAX_CHOICES}, got {key_softmax!r}")
    b, lq, d = query.shape
    lk, dv = key.shape[1], value.shape[-1]
    if d % num_heads or dv % num_heads:
        raise ValueError(f"feature dims {d}/{dv} are not divisible by {num_heads} heads")
    q = query.reshape(b, lq, num_heads, d // num_heads).softmax(dim=-1)
    k = key.reshape(b, lk, num_heads, d // num_heads)
    v = value.reshape(b, lk, num_heads, dv // num_heads)
    pad = None if key_padding_mask is None else key_padding_mask.to(torch.bool)[:, :, None, None]
    if key_softmax == "tokens":
        if pad is not None:
            # finfo.min rather than -inf: an all-padded row stays finite and is zeroed below.
            k = k.masked_fill(pad, torch.finfo(k.dtype).min)
        k = k.softmax(dim=1)
    else:
        k = k.softmax(dim=-1)
    if pad is not None:
        k = k.masked_fill(pad, 0.0)
        v = v.masked_fill(pad, 0.0)
    context = torch.einsum("blhd,blhe->bhde", k, v)
    if dropout_p > 0.0 and training:
        context = F.dropout(context, p=dropout_p, training=True)
    out = torch.einsum("bqhd,bhde->bqhe", q, context)
    return out.reshape(b, lq, dv)


class EfficientSelfAttention(nn.Module):
    """Pre-norm multi-head efficient self-attention with a learned linear residual ("highway").

    out = highway(x) + E(Wq·LN(x), Wk·LN(x), Wv·LN(x)). The highway is a Linear, not the identity,
    as in the released SS2A layers (their weights then map one-to-one).
    """

    def __init__(
        self, dim: int, num_heads: int, dropout: float = 0.0, key_softmax: KeySoftmax = "tokens"
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.dropout_p = dropout
        self.key_softmax = key_softmax
        self.norm = nn.LayerNorm(dim)
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.highway = nn.Linear(dim, dim)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        h = self.norm(x)
        y = efficient_attention(
            self.query(h),
            self.key(h),
            self.value(h),
            self.num_heads,
            key_padding_mask=key_padding_mask,
            key_softmax=self.key_softmax,  # type: ignore[arg-type]
            dropout_p=self.dropout_p,
            training=self.training,
        )
        return self.highway(x) + y


class FeedForward(nn.Module):
    """Pre-norm GELU feed-forward with an identity residual; the output Linear starts at zero so a
    fresh layer is the identity on top of the attention."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, hidden_dim)
        self.linear2 = nn.Linear(hidden_dim, dim)
        self.dropout = nn.Dropout(dropout)
        nn.init.zeros_(self.linear2.weight)
        nn.init.zeros_(self.linear2.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.linear2(self.dropout(F.gelu(self.linear1(self.norm(x)))))


class EfficientTransformerLayer(nn.Module):
    """Efficient self-attention followed by the feed-forward."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_multiplier: int = 1,
        dropout: float = 0.0,
        key_softmax: KeySoftmax = "tokens",
    ) -> None:
        super().__init__()
        self.attention = EfficientSelfAttention(dim, num_heads, dropout, key_softmax)
        self.feed_forward = FeedForward(dim, dim * ffn_multiplier, dropout)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        return self.feed_forward(self.attention(x, key_padding_mask))


class EfficientTransformerEncoder(nn.Module):
    """A stack of :class:`EfficientTransformerLayer` sharing one key padding mask."""

    def __init__(
        self,
        dim: int,
        num_layers: int,
        num_heads: int,
        ffn_multiplier: int = 1,
        dropout: float = 0.0,
        key_softmax: KeySoftmax = "tokens",
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            EfficientTransformerLayer(dim, num_heads, ffn_multiplier, dropout, key_softmax)
            for _ in range(num_layers)
        )

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        for layer in self.layers:
            x = layer(x, key_padding_mask)
        return x


#: Learned read-out tokens prepended to a read-out encoder's inputs: token 0 → mu, token 1 → logvar.
NUM_READOUT_TOKENS = 2


def readout_encoder(dim: int, out_dim: int, config) -> tuple[nn.Parameter, EfficientTransformerEncoder, nn.Module,
                                                             nn.Module]:
    """The variational read-out transformer of the SS2A Remixer and temporal aggregator: (read-out tokens
    [2, dim], the encoder stack of ``config`` (num_layers, num_heads, ffn_multiplier, dropout,
    key_softmax), the mu head, the logvar head), created in this order (the order the random
    initialisation draws in)."""
    from .variational_mlp import ReadoutHead

    tokens = nn.Parameter(torch.randn(NUM_READOUT_TOKENS, dim))
    encoder = EfficientTransformerEncoder(dim, config.num_layers, config.num_heads, config.ffn_multiplier,
                                          config.dropout, config.key_softmax)
    return tokens, encoder, ReadoutHead(dim, out_dim, config.dropout), ReadoutHead(dim, out_dim, config.dropout)
