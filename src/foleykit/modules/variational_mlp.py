"""Variational building blocks shared by the SS2A modules (manifold, remixer, temporal aggregation).

SS2A models every mapping variationally (paper Eq. 5 and 9): a network predicts a mean and a
log-variance, a sample is drawn with the reparameterisation trick, and a KL term keeps the posterior
close to N(0, I). The second head is a *log-variance* (std = exp(logvar / 2)), as in the released code.

All noise is drawn from an optional CPU ``torch.Generator`` and moved to the tensors' device, so a
seed gives the same numbers on any device.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class VariationalOutput:
    """A diagonal Gaussian: ``mu`` and ``logvar`` with the same shape."""

    mu: Tensor
    logvar: Tensor

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """One reparameterised draw (differentiable in ``mu`` and ``logvar``)."""
        return reparameterize(self.mu, self.logvar, generator)

    def mean_of_samples(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Average of ``num_samples`` draws; 0 returns ``mu`` (the deterministic answer)."""
        return mean_of_samples(self.mu, self.logvar, num_samples, generator)


def standard_normal_like(
    reference: Tensor, generator: torch.Generator | None = None, leading: tuple[int, ...] = ()
) -> Tensor:
    """N(0, 1) noise of shape ``leading + reference.shape``, drawn on the generator's device."""
    shape = (*leading, *reference.shape)
    if generator is None:
        return torch.randn(shape, device=reference.device, dtype=reference.dtype)
    noise = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)
    return noise.to(device=reference.device, dtype=reference.dtype)


def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """mu + exp(logvar / 2) · ε, ε ~ N(0, I)."""
    return mu + torch.exp(0.5 * logvar) * standard_normal_like(mu, generator)


def mean_of_samples(
    mu: Tensor, logvar: Tensor, num_samples: int, generator: torch.Generator | None = None
) -> Tensor:
    """Mean of ``num_samples`` reparameterised draws (the released code's ``var_samples``); 0 → ``mu``."""
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    if num_samples == 0:
        return mu
    noise = standard_normal_like(mu, generator, leading=(num_samples,))
    return mu + torch.exp(0.5 * logvar) * noise.mean(dim=0)


class PlainLayer(nn.Module):
    """Linear → LayerNorm → Dropout → GELU (one step of a non-residual MLP)."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)
        self.norm = nn.LayerNorm(out_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.dropout(self.norm(self.fc(x))))


class ResidualBlock(nn.Module):
    """Two Linear+LayerNorm steps (a→b→c) added to a learned linear shortcut a→c, then GELU.

    The shortcut is a Linear rather than the identity so widths may change inside a block; this is
    the block the released checkpoints use, so they can be imported.
    """

    def __init__(self, in_dim: int, mid_dim: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, mid_dim)
        self.norm1 = nn.LayerNorm(mid_dim)
        self.fc2 = nn.Linear(mid_dim, out_dim)
        self.norm2 = nn.LayerNorm(out_dim)
        self.shortcut = nn.Linear(in_dim, out_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = F.gelu(self.dropout(self.norm1(self.fc1(x))))
        h = self.dropout(self.norm2(self.fc2(h)))
        return F.gelu(h + self.shortcut(x))


def build_trunk(widths: tuple[int, ...], residual: bool, dropout: float) -> nn.ModuleList:
    """MLP over ``widths``: residual blocks consume the widths in pairs (w0→w1→w2, w2→w3→w4, …);
    a leftover single step, or every step when ``residual`` is off or there are < 3 widths, is a
    :class:`PlainLayer`."""
    layers: list[nn.Module] = []
    i = 0
    if residual and len(widths) >= 3:
        while i + 2 < len(widths):
            layers.append(ResidualBlock(widths[i], widths[i + 1], widths[i + 2], dropout))
            i += 2
    while i + 1 < len(widths):
        layers.append(PlainLayer(widths[i], widths[i + 1], dropout))
        i += 1
    return nn.ModuleList(layers)


class VariationalMLP(nn.Module):
    """input Linear → residual MLP trunk → (mu, logvar) heads.

    Used for the manifold projectors v (CLIP→manifold), φ (CLAP→manifold) and the reconstructor χ
    (manifold→CLAP). ``input_bias=False`` matches the released projectors, whose first Linear has no
    bias; the released reconstructor's has one.
    """

    def __init__(
        self,
        in_dim: int,
        widths: tuple[int, ...],
        out_dim: int,
        residual: bool = True,
        dropout: float = 0.1,
        input_bias: bool = True,
    ) -> None:
        super().__init__()
        if not widths:
            raise ValueError("VariationalMLP needs at least one hidden width")
        self.input_proj = nn.Linear(in_dim, widths[0], bias=input_bias)
        self.trunk = build_trunk(tuple(widths), residual, dropout)
        self.mu_head = nn.Linear(widths[-1], out_dim)
        self.logvar_head = nn.Linear(widths[-1], out_dim)

    def forward(self, x: Tensor) -> VariationalOutput:
        h = self.input_proj(x)
        for layer in self.trunk:
            h = layer(h)
        return VariationalOutput(self.mu_head(h), self.logvar_head(h))


class ReadoutHead(nn.Module):
    """Linear → LayerNorm → Dropout → GELU → Linear: turns a read-out token into mu or logvar."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.hidden = PlainLayer(in_dim, in_dim, dropout)
        self.out = nn.Linear(in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.hidden(x))
