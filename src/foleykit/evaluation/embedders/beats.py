"""BEATs (Chen et al. 2022, arXiv 2212.09058) fine-tuned on AudioSet-2M: SS2A's SSMS tagger, 527 classes.

Front end (fixed by the released models): 16 kHz mono, waveform × 2¹⁵, a Kaldi filterbank (128 bins,
25 ms povey frames every 10 ms, pre-emphasis 0.97, DC removed per frame, 512-point power spectrum,
Kaldi mel banks from 20 Hz to Nyquist, natural log floored at float32 eps, ``snip_edges``), then
``(x − 15.41663) / (2 · 6.55582)``. Written here with torch; torchaudio is not used.

Architecture: 16 × 16 patch embedding (a stride-16 ``Conv2d``) over the ``[frames, 128]`` fbank ->
patches flattened time-major (``t · 8 + f``) -> LayerNorm -> ``post_extract_proj`` (when the patch
and encoder widths differ) -> a convolutional positional embedding (weight-normed grouped
``Conv1d``, ``weight_g``/``weight_v``, the last output dropped for an even kernel, GELU) added to the
tokens -> encoder layers with a bucketed relative position bias (one table, shared by every layer),
gated per query by ``grep_linear``/``grep_a`` (``gru_rel_pos``), post-LN with the deep-norm residual
scale ``(2 · layers)^¼`` (or pre-LN when ``layer_norm_first``) -> ``predictor`` per token.

Outputs: the released ``extract_features`` returns ``sigmoid(mean over the patch sequence of the
token logits)``. The runner's ``logits`` are pre-sigmoid scores, so :class:`BeatsEmbedder` stores the
token-averaged logits under ``logits`` (``sigmoid(logits)`` is exactly BEATs' output, kept as
``probabilities``): SSMS ranks them identically, KL-sigmoid and ACC-sigmoid see BEATs'
probabilities, and softmax-based metrics (KL-softmax, IS) get a softmax over those logits.

Module names and :class:`BEATsConfig` fields follow the released checkpoints
(``BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt``: ``{"cfg": dict, "model": state_dict,
"label_dict": {index: AudioSet MID}}``), so their ``model`` tensors load one to one.

SS2A's SSMS reads audio with ``read_wav_file`` (mean removed, peak-normalised to 0.5 before and after
padding to 10.24 s); the embedder rescales each prepared clip to a 0.5 peak (``peak``) to match —
the log fbank is not scale-free. ``peak=None`` feeds the front end's clip unchanged.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InputError, ModelNotAvailableError
from .base import TorchAudioEmbedder, checkpoint_id, config_digest, load_exactly, seeded_init

BEATS_SAMPLE_RATE = 16_000
FBANK_BINS = 128
FRAME_LENGTH = 400  # 25 ms at 16 kHz
FRAME_SHIFT = 160  # 10 ms
PADDED_WINDOW = 512  # next power of two
PREEMPHASIS = 0.97
LOW_FREQ = 20.0
WAVE_SCALE = 2.0**15
FBANK_MEAN = 15.41663
FBANK_STD = 6.55582
LOG_FLOOR = float(np.finfo(np.float32).eps)
FRONTEND_ID = "kaldi-fbank128-povey-v1"
SS2A_PEAK = 0.5
_PEAK_EPS = 1e-8


# --------------------------------------------------------------------------- Kaldi filterbank


def _kaldi_mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def kaldi_mel_banks(
    n_bins: int = FBANK_BINS,
    padded_window: int = PADDED_WINDOW,
    sample_rate: int = BEATS_SAMPLE_RATE,
    low_freq: float = LOW_FREQ,
    high_freq: float = 0.0,
) -> np.ndarray:
    """``(padded_window // 2 + 1, n_bins)`` Kaldi mel triangles (peak 1, evenly spaced in Kaldi mel).

    ``high_freq <= 0`` counts down from Nyquist, as Kaldi does. Only the FFT bins below Nyquist carry
    weight; the Nyquist bin's row is zero.
    """
    nyquist = sample_rate / 2.0
    high = high_freq if high_freq > 0 else nyquist + high_freq
    n_fft_bins = padded_window // 2
    mel_low, mel_high = _kaldi_mel(low_freq), _kaldi_mel(high)
    delta = (mel_high - mel_low) / (n_bins + 1)
    left = mel_low + delta * np.arange(n_bins)
    centre, right = left + delta, left + 2.0 * delta
    bin_mel = _kaldi_mel(np.arange(n_fft_bins) * (sample_rate / padded_window))[:, None]
    up = (bin_mel - left) / (centre - left)
    down = (right - bin_mel) / (right - centre)
    banks = np.zeros((n_fft_bins + 1, n_bins))
    banks[:n_fft_bins] = np.maximum(0.0, np.minimum(up, down))
    return banks


def povey_window(length: int = FRAME_LENGTH) -> np.ndarray:
    """Kaldi's povey window: a symmetric Hann window raised to 0.85."""
    n = np.arange(length)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / (length - 1))) ** 0.85


_MEL_BANKS = torch.from_numpy(kaldi_mel_banks())
_POVEY = torch.from_numpy(povey_window())


def kaldi_fbank(wave: torch.Tensor) -> torch.Tensor:
    """``(..., frames, 128)`` Kaldi log-mel fbank of ``(..., samples)`` audio at 16 kHz, on the given scale.

    Frames start every 160 samples and only whole 400-sample frames are kept (``snip_edges``);
    no dither, no energy column. Computed in float64, returned in float32.
    """
    x = wave.to(torch.float64)
    if x.shape[-1] < FRAME_LENGTH:
        return torch.zeros((*x.shape[:-1], 0, FBANK_BINS), dtype=torch.float32, device=wave.device)
    frames = x.unfold(-1, FRAME_LENGTH, FRAME_SHIFT)
    frames = frames - frames.mean(dim=-1, keepdim=True)
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)  # the first sample is its own past
    frames = (frames - PREEMPHASIS * previous) * _POVEY.to(x.device)
    power = torch.fft.rfft(frames, n=PADDED_WINDOW).abs().pow(2)
    mel = power @ _MEL_BANKS.to(x.device)
    return torch.log(torch.clamp(mel, min=LOG_FLOOR)).to(torch.float32)


def beats_fbank(wave: torch.Tensor) -> torch.Tensor:
    """BEATs' input: the Kaldi fbank of ``wave × 2¹⁵``, normalised to ``(x − 15.41663) / (2 · 6.55582)``."""
    return (kaldi_fbank(wave * WAVE_SCALE) - FBANK_MEAN) / (2.0 * FBANK_STD)


# --------------------------------------------------------------------------- configuration

_ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),
    "gelu_accurate": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "tanh": torch.tanh,
    "linear": lambda x: x,
}


@dataclass(frozen=True)
class BEATsConfig:
    """The released checkpoints' ``cfg`` fields (defaults as in the reference ``BEATsConfig``).

    ``input_patch_size`` defaults to 16 (the reference's placeholder is -1; every release sets 16).
    Dropouts, ``encoder_layerdrop`` and ``layer_wise_gradient_decay_ratio`` only matter in training
    and are kept so a ``cfg`` round-trips.
    """

    input_patch_size: int = 16
    embed_dim: int = 512
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_wise_gradient_decay_ratio: float = 1.0
    layer_norm_first: bool = False
    deep_norm: bool = False
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    encoder_layerdrop: float = 0.0
    dropout_input: float = 0.0
    conv_pos: int = 128
    conv_pos_groups: int = 16
    relative_position_embedding: bool = False
    num_buckets: int = 320
    max_distance: int = 1280
    gru_rel_pos: bool = False
    finetuned_model: bool = False
    predictor_dropout: float = 0.1
    predictor_class: int = 527

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.input_patch_size <= FBANK_BINS:
            problems.append(f"input_patch_size={self.input_patch_size} (1..{FBANK_BINS})")
        if self.encoder_embed_dim % self.encoder_attention_heads:
            problems.append(
                f"encoder_embed_dim={self.encoder_embed_dim} not divisible by "
                f"encoder_attention_heads={self.encoder_attention_heads}"
            )
        if self.encoder_embed_dim % self.conv_pos_groups:
            problems.append(
                f"encoder_embed_dim={self.encoder_embed_dim} not divisible by "
                f"conv_pos_groups={self.conv_pos_groups}"
            )
        if self.activation_fn not in _ACTIVATIONS:
            problems.append(f"activation_fn={self.activation_fn!r} (supported: {', '.join(_ACTIVATIONS)})")
        if self.deep_norm and self.layer_norm_first:
            problems.append("deep_norm and layer_norm_first together")
        if self.relative_position_embedding and self.num_buckets // 2 // 2 < 1:
            problems.append(f"num_buckets={self.num_buckets} (needs at least 4)")
        elif self.relative_position_embedding and self.max_distance <= self.num_buckets // 4:
            problems.append(f"max_distance={self.max_distance} (must exceed num_buckets // 4)")
        if problems:
            raise InputError(f"unsupported BEATs configuration: {'; '.join(problems)}")

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any]) -> tuple[BEATsConfig, list[str]]:
        """A config from a checkpoint's ``cfg`` dict, and the keys it ignored (not part of the model)."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in cfg.items():
            if key in known:
                kind = type(known[key].default)
                wrong_bool = kind is bool and not isinstance(value, (bool, int))
                if wrong_bool or (kind is str and not isinstance(value, str)):
                    raise InputError(f"BEATs cfg {key}={value!r} is not a {kind.__name__}")
                try:
                    values[key] = kind(value)
                except (TypeError, ValueError):
                    raise InputError(f"BEATs cfg {key}={value!r} is not a {kind.__name__}") from None
        return cls(**values), sorted(str(k) for k in cfg if k not in known)

    @classmethod
    def tiny(cls) -> BEATsConfig:
        """Random-weight stand-in for tests: every feature of iter3+ AS2M (deep norm, gated bias), narrow."""
        return cls(
            embed_dim=16,
            encoder_layers=2,
            encoder_embed_dim=32,
            encoder_ffn_embed_dim=64,
            encoder_attention_heads=2,
            deep_norm=True,
            conv_pos=16,
            conv_pos_groups=4,
            relative_position_embedding=True,
            num_buckets=32,
            max_distance=64,
            gru_rel_pos=True,
            finetuned_model=True,
        )


# --------------------------------------------------------------------------- architecture


def relative_position_buckets(length: int, num_buckets: int, max_distance: int) -> torch.Tensor:
    """``(length, length)`` bucket of each (query, key) offset, bidirectional T5-style.

    Half the buckets hold keys after the query, half the rest. Offsets below a quarter of the
    buckets get their own bucket; larger ones are binned logarithmically up to ``max_distance``.
    """
    pos = torch.arange(length)
    offset = pos[None, :] - pos[:, None]
    half = num_buckets // 2
    exact = half // 2
    base = (offset > 0).long() * half
    distance = offset.abs()
    log_ratio = torch.log(distance.clamp(min=1).float() / exact) / math.log(max_distance / exact)
    scaled = log_ratio * (half - exact)
    far = (exact + scaled.long()).clamp(max=half - 1)
    return base + torch.where(distance < exact, distance, far)


class _WeightNormConv1d(nn.Module):
    """Grouped ``Conv1d``, weight-normed over dim 2: ``w[:, :, k] = g[k] · v[:, :, k] / ‖v[:, :, k]‖``."""

    def __init__(self, channels: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.kernel, self.groups = kernel, groups
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel))
        self.weight_v = nn.Parameter(torch.randn(channels, channels // groups, kernel) * 0.02)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.weight_v
        weight = v * (self.weight_g / v.norm(dim=(0, 1), keepdim=True))
        return F.conv1d(x, weight, self.bias, padding=self.kernel // 2, groups=self.groups)


class _DropLastIfEven(nn.Module):
    """Trim the extra output a symmetric pad of an even kernel adds, keeping the length."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.trim = 1 if kernel % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : x.shape[-1] - self.trim]


class BEATsAttention(nn.Module):
    """Multi-head self-attention with an additive relative position bias, gated per query position."""

    def __init__(self, config: BEATsConfig) -> None:
        super().__init__()
        dim, heads = config.encoder_embed_dim, config.encoder_attention_heads
        self.heads, self.head_dim = heads, dim // heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        if config.relative_position_embedding:
            self.relative_attention_bias = nn.Embedding(config.num_buckets, heads)
        self.gated = config.gru_rel_pos
        if self.gated:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, heads, 1, 1))

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor | None) -> torch.Tensor:
        b, t, c = x.shape

        def heads(z: torch.Tensor) -> torch.Tensor:
            return z.view(b, t, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        mask = None
        if position_bias is not None:
            mask = position_bias[None].to(q.dtype)  # (1, H, T, T)
            if self.gated:
                # two sigmoid gates from the (unscaled) query: bias · (a · (b · grep_a − 1) + 2)
                gates = torch.sigmoid(self.grep_linear(q).view(b, self.heads, t, 2, 4).sum(-1))
                gate_a, gate_b = gates[..., :1], gates[..., 1:]
                mask = (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * mask
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, c))


class BEATsLayer(nn.Module):
    def __init__(self, config: BEATsConfig) -> None:
        super().__init__()
        dim = config.encoder_embed_dim
        self.self_attn = BEATsAttention(config)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, config.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_embed_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.pre_norm = config.layer_norm_first
        self.residual_scale = (2.0 * config.encoder_layers) ** 0.25 if config.deep_norm else 1.0
        self.activation = _ACTIVATIONS[config.activation_fn]

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor | None) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.self_attn(self.self_attn_layer_norm(x), position_bias)
            return x + self.fc2(self.activation(self.fc1(self.final_layer_norm(x))))
        x = self.self_attn_layer_norm(x * self.residual_scale + self.self_attn(x, position_bias))
        return self.final_layer_norm(x * self.residual_scale + self.fc2(self.activation(self.fc1(x))))


class BEATsEncoder(nn.Module):
    def __init__(self, config: BEATsConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.encoder_embed_dim
        self.pos_conv = nn.Sequential(
            _WeightNormConv1d(dim, config.conv_pos, config.conv_pos_groups),
            _DropLastIfEven(config.conv_pos),
            nn.GELU(),
        )
        self.layers = nn.ModuleList(BEATsLayer(config) for _ in range(config.encoder_layers))
        if config.relative_position_embedding:
            # one bias table for all layers, registered under each (as the released state dicts list it)
            shared = self.layers[0].self_attn.relative_attention_bias
            for layer in self.layers[1:]:
                layer.self_attn.relative_attention_bias = shared
        self.layer_norm = nn.LayerNorm(dim)

    def position_bias(self, length: int) -> torch.Tensor | None:
        """``(heads, length, length)`` bias from the shared bucket table, or None without one."""
        if not self.config.relative_position_embedding:
            return None
        table = self.layers[0].self_attn.relative_attention_bias
        buckets = relative_position_buckets(length, self.config.num_buckets, self.config.max_distance)
        return table(buckets.to(table.weight.device)).permute(2, 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not self.config.layer_norm_first:
            x = self.layer_norm(x)
        bias = self.position_bias(x.shape[1])
        for layer in self.layers:
            x = layer(x, bias)
        return self.layer_norm(x) if self.config.layer_norm_first else x


class BEATs(nn.Module):
    """BEATs; ``forward(fbank (B, frames, 128)) -> (tokens (B, N, D), token logits (B, N, classes) | None)``.

    ``N = (frames // p) · (128 // p)`` patches of side ``p``, time-major.
    """

    def __init__(self, config: BEATsConfig) -> None:
        super().__init__()
        self.config = config
        p = config.input_patch_size
        self.patch_embedding = nn.Conv2d(1, config.embed_dim, kernel_size=p, stride=p, bias=config.conv_bias)
        self.layer_norm = nn.LayerNorm(config.embed_dim)
        self.post_extract_proj = (
            nn.Linear(config.embed_dim, config.encoder_embed_dim)
            if config.embed_dim != config.encoder_embed_dim
            else None
        )
        self.encoder = BEATsEncoder(config)
        self.predictor = (
            nn.Linear(config.encoder_embed_dim, config.predictor_class) if config.finetuned_model else None
        )

    def min_frames(self) -> int:
        return self.config.input_patch_size

    def forward(self, fbank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.patch_embedding(fbank[:, None])  # (B, E, T', F')
        x = self.layer_norm(x.flatten(2).transpose(1, 2))  # (B, T'·F', E), time-major
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        x = self.encoder(x)
        return x, (self.predictor(x) if self.predictor is not None else None)


# --------------------------------------------------------------------------- checkpoint


def read_beats_checkpoint(path: str | os.PathLike, *, weights_only: bool = True) -> dict[str, Any]:
    """The released checkpoint's dict (``cfg``, ``model``, ``label_dict``), read with ``torch.load``."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ModelNotAvailableError(f"BEATs checkpoint not found: {p}")
    try:
        data = torch.load(str(p), map_location="cpu", weights_only=weights_only)
    except Exception as exc:  # noqa: BLE001 - unpickling errors come in many types
        raise InputError(
            f"cannot read BEATs checkpoint {p} safely ({type(exc).__name__}); where you trust the file, "
            "pass {'checkpoint': path, 'weights_only': False}, or re-save its cfg/model/label_dict as plain "
            "dicts and tensors"
        ) from None
    if not isinstance(data, Mapping) or not isinstance(data.get("cfg"), Mapping) or not isinstance(
        data.get("model"), Mapping
    ):
        keys = sorted(map(str, data)) if isinstance(data, Mapping) else type(data).__name__
        raise InputError(f"{p} is not a released BEATs checkpoint: needs dicts 'cfg' and 'model', has {keys}")
    return dict(data)


def _share_bias_copies(model: BEATs, state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Layers after the first alias layer 0's bias table; fill their keys when a file leaves them out."""
    if not model.config.relative_position_embedding:
        return state
    key = "encoder.layers.{}.self_attn.relative_attention_bias.weight"
    first = state.get(key.format(0))
    if first is None:
        return state  # reported as missing by load_exactly
    state = dict(state)
    for i in range(1, model.config.encoder_layers):
        other = state.setdefault(key.format(i), first)
        if other.shape == first.shape and not torch.equal(other, first):
            raise InputError(
                f"checkpoint {source}: {key.format(i)} differs from {key.format(0)}; BEATs shares one table"
            )
    return state


def load_beats(
    path: str | os.PathLike, *, weights_only: bool = True
) -> tuple[BEATs, dict[int, str] | None, list[str]]:
    """A released BEATs checkpoint as (model, label_dict or None, ignored cfg keys); tensors must fit 1:1."""
    data = read_beats_checkpoint(path, weights_only=weights_only)
    config, ignored = BEATsConfig.from_cfg(data["cfg"])
    model = BEATs(config)
    state = {str(k): v for k, v in data["model"].items()}
    not_tensors = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        shown = ", ".join(not_tensors[:4])
        raise InputError(f"checkpoint {path}: 'model' entries that are not tensors: {shown}")
    load_exactly(model, _share_bias_copies(model, state, str(path)), str(path))
    labels = data.get("label_dict")
    label_dict = {int(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else None
    return model, label_dict, ignored


# --------------------------------------------------------------------------- embedder


class BeatsEmbedder(TorchAudioEmbedder):
    """BEATs as a tagger: ``logits`` (token-averaged, pre-sigmoid), ``probabilities`` (their sigmoid,
    the released output) and ``embedding`` (token-averaged encoder output, used by no metric)."""

    name = "beats"
    tagger = True
    sample_rate = BEATS_SAMPLE_RATE

    def __init__(
        self,
        model: BEATs,
        *,
        id: str,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        class_names: list[str] | None = None,
        peak: float | None = SS2A_PEAK,
        ignored_cfg: list[str] | None = None,
    ) -> None:
        if model.predictor is None:
            raise InputError(
                "this BEATs model has no predictor (cfg finetuned_model=False): the tagger needs the "
                "AudioSet fine-tuned checkpoint, e.g. BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt"
            )
        if peak is not None and not peak > 0:
            raise InputError(f"BEATs peak must be positive or None, got {peak!r}")
        super().__init__(model, id=id, device=device, dtype=dtype)
        self.config = model.config
        self.class_names = class_names
        self.peak = peak
        self.ignored_cfg = ignored_cfg or []

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        *,
        device: torch.device | str = "cpu",
        weights_only: bool = True,
        class_names: list[str] | None = None,
        peak: float | None = SS2A_PEAK,
    ) -> BeatsEmbedder:
        """Load a released fine-tuned checkpoint; class names default to its ``label_dict`` (MIDs)."""
        model, label_dict, ignored = load_beats(path, weights_only=weights_only)
        n = model.config.predictor_class
        if class_names is None and label_dict is not None:
            if sorted(label_dict) != list(range(n)):
                raise InputError(f"checkpoint {path}: label_dict does not cover the {n} classes 0..{n - 1}")
            class_names = [label_dict[i] for i in range(n)]
        return cls(
            model,
            id=f"beats:{config_digest(model.config)}:{checkpoint_id(path)}:{FRONTEND_ID}:peak={peak}",
            device=torch.device(device),
            class_names=class_names,
            peak=peak,
            ignored_cfg=ignored,
        )

    @classmethod
    def tiny(
        cls, *, seed: int = 0, device: torch.device | str = "cpu", peak: float | None = SS2A_PEAK
    ) -> BeatsEmbedder:
        config = BEATsConfig.tiny()
        model = seeded_init(seed, lambda: _randomised(BEATs(config), seed))
        return cls(
            model,
            id=f"beats-tiny:seed{seed}:{config_digest(config)}:{FRONTEND_ID}:peak={peak}",
            device=torch.device(device),
            peak=peak,
        )

    def prepare(self, wave: np.ndarray) -> np.ndarray:
        """The clip as BEATs hears it: rescaled to ``peak`` (SS2A's ``read_wav_file``), unless None."""
        x = np.asarray(wave, dtype=np.float32)
        if self.peak is None:
            return x
        return (x * (self.peak / (float(np.abs(x).max(initial=0.0)) + _PEAK_EPS))).astype(np.float32)

    def fbank(self, wave: np.ndarray) -> torch.Tensor:
        """``(1, frames, 128)`` normalised fbank of one clip, on the module's device and dtype."""
        x = torch.from_numpy(np.ascontiguousarray(self.prepare(wave), dtype=np.float64))[None]
        fb = beats_fbank(x)
        need = self.module.min_frames()
        if fb.shape[1] < need:
            samples = FRAME_LENGTH + FRAME_SHIFT * (need - 1)
            raise InputError(
                f"BEATs needs at least {samples} samples ({samples / BEATS_SAMPLE_RATE:.3f} s) at 16 kHz, "
                f"got {x.shape[1]}"
            )
        return fb.to(self.device, self.dtype)

    @torch.no_grad()
    def embed(self, wave: np.ndarray) -> dict[str, np.ndarray]:
        tokens, token_logits = self.module(self.fbank(wave))
        logits = token_logits.mean(dim=1)[0].float()
        return {
            "embedding": tokens.mean(dim=1)[0].float().cpu().numpy(),
            "logits": logits.cpu().numpy(),
            "probabilities": torch.sigmoid(logits).cpu().numpy(),
        }

    def describe(self) -> dict[str, object]:
        out = {
            **super().describe(),
            "config": asdict(self.config),
            "fbank": FRONTEND_ID,
            "peak": self.peak,
            "outputs": "logits = mean over patches of token logits; probabilities = sigmoid(logits)",
        }
        if self.ignored_cfg:
            out["ignored_cfg_keys"] = self.ignored_cfg
        return out


def _randomised(model: BEATs, seed: int) -> BEATs:
    """Spread a fresh stand-in's parameters (unit gains and zero biases would make its outputs bland)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or name.endswith("weight_g") or name.endswith("grep_a"):
                param.add_(0.1 * torch.randn(param.shape, generator=gen))
    return model
