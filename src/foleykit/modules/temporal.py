"""Temporal Aggregation ω for video (SS2A paper Eq. 10, Fig. 3d).

A video window is sampled at ``num_frames`` (64) evenly spaced frames; SS2A turns every frame into a
CLAP embedding. Rather than averaging them, ω adds a sinusoidal embedding of each frame's position in
time and runs an efficient-attention stack over the sequence; two prepended read-out tokens give the
mean and log-variance of one CLAP embedding for the whole window.

As in the released aggregator the position table is a buffer ``[position_resolution, clap_dim]``
with frequency base ``2 · position_resolution`` and it also covers the two read-out tokens (positions
0 and 1); frame t sits at position t + 2. Frames are placed by index by default.

**Timestamp positions** (the paper's timestamp embedding): :func:`frame_time_positions` turns the
frames' times into positions in units of the frame spacing of a full (10 s, :data:`FULL_WINDOW_S`)
window, counted from the first frame. A full window's T frames get exactly 0..T-1, the released index
convention (so imported weights behave as released), while the frames of a shorter window (the last
window of a long video, a short clip) sit closer together. Integer positions are looked up in the
table; fractional ones use the same sinusoid evaluated at the fractional position. A
``padding_mask`` lets shorter videos share a batch.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from .efficient_attention import KEY_SOFTMAX_CHOICES, NUM_READOUT_TOKENS, readout_encoder
from .hub_mixin import ModuleHubMixin
from .variational_mlp import VariationalOutput, mean_of_samples

#: The window the aggregator's frame positions are scaled to: the released model saw 10 s clips.
FULL_WINDOW_S = 10.0


@dataclass
class TemporalConfig:
    """Aggregator sizes. 64 frames is the paper's; the rest (1 layer, 8 heads, FFN ×2, dropout 0.2,
    1024 positions) are the released aggregator's fixed settings."""

    clap_dim: int = 512
    num_frames: int = 64
    num_layers: int = 1
    num_heads: int = 8
    ffn_multiplier: int = 2
    dropout: float = 0.2
    position_resolution: int = 1024
    key_softmax: str = "tokens"

    def __post_init__(self) -> None:
        for name in (
            "clap_dim",
            "num_frames",
            "num_layers",
            "num_heads",
            "ffn_multiplier",
            "position_resolution",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"temporal {name} must be a positive integer, got {value!r}")
        if self.clap_dim % self.num_heads or self.clap_dim % 2:
            raise InputError(
                f"temporal clap_dim {self.clap_dim} must be even and divisible by {self.num_heads} heads"
            )
        if self.num_frames + NUM_READOUT_TOKENS > self.position_resolution:
            raise InputError("position_resolution must cover num_frames + 2 read-out positions")
        if self.key_softmax not in KEY_SOFTMAX_CHOICES:
            raise InputError(
                f"temporal key_softmax must be one of {KEY_SOFTMAX_CHOICES}, got {self.key_softmax!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"temporal dropout must be in [0, 1), got {self.dropout}")


def sinusoidal_embedding(positions: Tensor, dim: int, base: float) -> Tensor:
    """[..., dim] for (possibly fractional) ``positions`` [...]: sin on even features, cos on odd ones,
    wavelengths up to 2π·base. At integer positions it equals the rows of :func:`sinusoidal_table`."""
    position = positions.to(torch.float32)[..., None]
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=position.device) * (-math.log(base) / dim))
    out = torch.zeros(*positions.shape, dim, device=position.device)
    out[..., 0::2] = torch.sin(position * inv_freq)
    out[..., 1::2] = torch.cos(position * inv_freq)
    return out


def sinusoidal_table(num_positions: int, dim: int, base: float) -> Tensor:
    """[num_positions, dim]: :func:`sinusoidal_embedding` of 0..num_positions-1."""
    return sinusoidal_embedding(torch.arange(num_positions), dim, base)


def frame_time_positions(frame_times_s: Tensor, full_window_s: float = FULL_WINDOW_S) -> Tensor:
    """Frame times (seconds, [T] or [B, T], increasing) → float positions
    ``(t - t_0) · T / full_window_s``: the time since the window's first frame in units of the frame
    spacing of a full window of T evenly spaced frames. A full window gives exactly 0..T-1 (values
    within 1e-6 of an integer are snapped to it); a window half as long gives 0, 0.5, 1, …"""
    times = torch.as_tensor(frame_times_s, dtype=torch.float64)
    if times.ndim not in (1, 2) or times.shape[-1] < 1:
        raise InputError(f"frame times must be [T] or [B, T] with T >= 1, got {tuple(times.shape)}")
    if not torch.isfinite(times).all() or (times.diff(dim=-1) < 0).any():
        raise InputError("frame times must be finite and in increasing order")
    if not (isinstance(full_window_s, (int, float)) and full_window_s > 0):
        raise InputError(f"full window must be a positive number of seconds, got {full_window_s!r}")
    positions = (times - times[..., :1]) * (times.shape[-1] / float(full_window_s))
    rounded = positions.round()
    return torch.where((positions - rounded).abs() < 1e-6, rounded, positions).to(torch.float32)


class TemporalAggregator(nn.Module, ModuleHubMixin):
    """ω: per-frame CLAPs [B, T, clap_dim] → one CLAP per window [B, clap_dim]."""

    def __init__(self, config: TemporalConfig) -> None:
        super().__init__()
        if isinstance(config, dict):  # from_pretrained hands over the decoded config.json
            config = TemporalConfig(**config)
        self.config = config
        c = config
        self.register_buffer(
            "position_table", sinusoidal_table(c.position_resolution, c.clap_dim, 2.0 * c.position_resolution)
        )
        self.readout_tokens, self.encoder, self.mu_head, self.logvar_head = readout_encoder(c.clap_dim, c.clap_dim, c)

    def forward(
        self,
        frame_claps: Tensor,
        positions: Tensor | None = None,
        padding_mask: Tensor | None = None,
    ) -> VariationalOutput:
        """frame_claps [B, T, clap_dim]; positions [T] or [B, T] frame positions (default 0..T-1;
        integer or fractional, e.g. :func:`frame_time_positions`); padding_mask [B, T] (True = missing
        frame) → Gaussian over the window's CLAP."""
        c = self.config
        if frame_claps.ndim != 3 or frame_claps.shape[-1] != c.clap_dim:
            raise InputError(
                f"temporal aggregator expects [B, T, {c.clap_dim}] frame CLAPs, "
                f"got {tuple(frame_claps.shape)}"
            )
        b, t, _ = frame_claps.shape
        table = self.position_table
        x = torch.cat([self.readout_tokens.unsqueeze(0).expand(b, -1, -1), frame_claps.to(table)], dim=1)
        if positions is None:
            positions = torch.arange(t, device=table.device)
        positions = torch.as_tensor(positions, device=table.device)
        if positions.ndim not in (1, 2) or positions.shape[-1] != t:
            raise InputError(f"positions must be [{t}] or [{b}, {t}], got {tuple(positions.shape)}")
        positions = positions.expand(b, t)
        if positions.is_floating_point() and not torch.isfinite(positions).all():
            raise InputError("frame positions must be finite")
        if positions.min() < 0 or positions.max() + NUM_READOUT_TOKENS > c.position_resolution - 1:
            raise InputError(f"frame positions must lie in [0, {c.position_resolution - NUM_READOUT_TOKENS})")
        fractional = None
        if positions.is_floating_point():
            whole = positions.round()
            fractional = positions != whole
            positions, fractional_positions = whole.long(), positions
        readout_positions = torch.arange(NUM_READOUT_TOKENS, device=table.device).expand(b, -1)
        embedding = table[torch.cat([readout_positions, positions + NUM_READOUT_TOKENS], dim=1)]
        if fractional is not None and fractional.any():  # the table's sinusoid between its rows
            exact = sinusoidal_embedding(fractional_positions + NUM_READOUT_TOKENS, c.clap_dim,
                                         2.0 * c.position_resolution).to(table)
            frame_part = torch.where(fractional[..., None], exact, embedding[:, NUM_READOUT_TOKENS:])
            embedding = torch.cat([embedding[:, :NUM_READOUT_TOKENS], frame_part], dim=1)
        x = x + embedding
        key_padding_mask = None
        if padding_mask is not None:
            if padding_mask.shape != (b, t):
                raise InputError(f"padding_mask must have shape {(b, t)}, got {tuple(padding_mask.shape)}")
            padding_mask = padding_mask.to(device=table.device, dtype=torch.bool)
            key_padding_mask = torch.cat([padding_mask.new_zeros(b, NUM_READOUT_TOKENS), padding_mask], dim=1)
        x = self.encoder(x, key_padding_mask)
        return VariationalOutput(self.mu_head(x[:, 0]), self.logvar_head(x[:, 1]))

    def aggregate(
        self,
        frame_claps: Tensor,
        positions: Tensor | None = None,
        padding_mask: Tensor | None = None,
        num_samples: int = 0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """One L2-normalised CLAP per window: the mean (``num_samples=0``) or the average of draws."""
        out = self(frame_claps, positions, padding_mask)
        return F.normalize(mean_of_samples(out.mu, out.logvar, num_samples, generator), dim=-1)


def evenly_spaced_frame_indices(num_video_frames: int, num_frames: int = 64) -> Tensor:
    """round(linspace(0, L-1, num_frames)): the frames SS2A samples from a window of L frames."""
    if num_video_frames < 1:
        raise InputError("a video window needs at least one frame")
    return torch.linspace(0, num_video_frames - 1, num_frames).round().long()
