"""Single-device SS2A trainers on cached embeddings (files of named tensors), and the Remixer's codes.

``foleykit train manifold|remixer|temporal`` use the accelerate trainer
(:mod:`foleykit.cli.train`); these functions remain as a library path and share the file
layouts (``.safetensors``, ``.pt`` weights-only or ``.npz``; N examples, one row each):

========  =================================================================================
manifold  ``clip`` [N, 768] and ``clap`` [N, 512]: single-source (image, audio) pairs
remixer   ``clips`` [N, M, 768] (zero for audio and empty slots), ``target_clap`` [N, 512],
          optional ``padding_mask`` [N, M] (nonzero = empty slot), and either ``codes``
          [N, M, S] (ready-made source codes) or, with ``--manifold DIR``, optional
          ``audio_claps`` [N, M, 512] + ``is_audio`` [N, M] from which the codes are computed
          (:func:`compute_remixer_codes`)
temporal  ``frame_claps`` [N, T, 512], ``target_clap`` [N, 512], optional ``padding_mask`` [N, T]
========  =================================================================================

The names match :mod:`foleykit.training.accelerate_tasks`, so one cache serves both trainers. The
trained folders go side by side as ``BUNDLE/manifold``, ``BUNDLE/remixer``, ``BUNDLE/temporal``;
pass ``--ss2a BUNDLE`` to ``foleykit generate --method sources``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import InputError
from .ss2a_common import check_shape, load_named_tensors


def run_train_manifold(pairs: str | os.PathLike, *, manifold_dim: int, widths: tuple[int, ...], epochs: int,
                       batch_size: int, lr: float, ccmr_alpha: float, kl_weight: float, ema_decay: float,
                       seed: int | None, device: str, progress: bool):
    from ..modules.manifold import ManifoldConfig
    from .ss2a_manifold import train_manifold

    data = load_named_tensors(pairs, ("clip", "clap"), what="embedding pairs")
    check_shape(pairs, "clip", data["clip"], (None, None))
    check_shape(pairs, "clap", data["clap"], (None, None))
    config = ManifoldConfig(clip_dim=int(data["clip"].shape[1]), clap_dim=int(data["clap"].shape[1]),
                            manifold_dim=manifold_dim, projector_widths=widths, reconstructor_widths=widths)
    return train_manifold(data["clip"], data["clap"], config, epochs, batch_size=batch_size, lr=lr,
                          ccmr_alpha=ccmr_alpha, kl_weight=kl_weight, ema_decay=ema_decay, seed=seed, device=device,
                          progress=progress)


def run_train_remixer(scenes: str | os.PathLike, *, manifold: str | os.PathLike | None, embed_dim: int, layers: int,
                      heads: int, token_dropout: float, epochs: int, batch_size: int, lr: float, kl_weight: float,
                      seed: int | None, device: str, progress: bool):
    from ..modules.remixer import RemixerConfig
    from .ss2a_remixer import train_remixer

    data = load_named_tensors(scenes, ("clips", "target_clap"),
                              ("padding_mask", "codes", "audio_claps", "is_audio"), what="remixer scenes")
    clips, target = data["clips"], data["target_clap"]
    check_shape(scenes, "clips", clips, (None, None, None))
    n, m, clip_dim = clips.shape
    check_shape(scenes, "target_clap", target, (n, None))
    padding = data.get("padding_mask")
    if padding is not None:
        check_shape(scenes, "padding_mask", padding, (n, m))
        if padding.all(dim=1).any():
            raise InputError(f"{scenes}: scene {int(padding.all(dim=1).nonzero()[0])} has no source (all slots padded)")
    if "codes" in data:
        codes = data["codes"]
        check_shape(scenes, "codes", codes, (n, m, None))
    else:
        if manifold is None:
            raise InputError(f"{scenes} has no 'codes'; pass --manifold DIR (a trained CMSS manifold) to compute them")
        codes = compute_remixer_codes(scenes, manifold, clips, padding, data.get("audio_claps"), data.get("is_audio"))
    manifold_dim = int(codes.shape[-1])
    config = RemixerConfig(manifold_dim=manifold_dim, clip_dim=clip_dim, clap_dim=int(target.shape[1]),
                           embed_dim=embed_dim, num_layers=layers, num_heads=heads, max_sources=max(64, m),
                           token_dropout=token_dropout)
    return train_remixer(codes, clips, target, config, epochs, padding_mask=padding, batch_size=batch_size, lr=lr,
                         kl_weight=kl_weight, seed=seed, device=device, progress=progress)


def compute_remixer_codes(scenes: str | os.PathLike, manifold: str | os.PathLike, clips: torch.Tensor,
                          padding: torch.Tensor | None, audio: torch.Tensor | None,
                          is_audio: torch.Tensor | None) -> torch.Tensor:
    """The Remixer's source codes [N, M, S] of scene slots, from a trained CMSS manifold folder.

    ``clips`` [N, M, C] (zero for audio and empty slots), ``padding`` [N, M] (True = empty slot),
    optional ``audio`` [N, M, 512] + ``is_audio`` [N, M] for slots that are audio clips.
    """
    from ..modules.cycle_mix import SourceSlots, manifold_codes, remixer_source_codes
    from ..modules.manifold import CMSSManifold

    check_shape(scenes, "clips", clips, (None, None, None))
    n, m, clip_dim = clips.shape
    if padding is not None:
        check_shape(scenes, "padding_mask", padding, (n, m))
    path = Path(manifold).expanduser()
    if not (path / "config.json").is_file():
        raise InputError(f"manifold {path}: expected a folder with config.json + model.safetensors")
    man = CMSSManifold.from_pretrained(str(path)).eval()
    if man.config.clip_dim != clip_dim:
        raise InputError(f"manifold {path} takes {man.config.clip_dim}-d CLIP, {scenes} holds {clip_dim}-d")
    if (audio is None) != (is_audio is None):
        raise InputError(f"{scenes}: 'audio_claps' and 'is_audio' go together")
    if audio is not None:
        check_shape(scenes, "audio_claps", audio, (n, m, man.config.clap_dim))
        check_shape(scenes, "is_audio", is_audio, (n, m))
        audio, is_audio = audio.float(), is_audio.bool()
    mask = padding.bool() if padding is not None else torch.zeros(n, m, dtype=torch.bool)
    with torch.no_grad():
        return torch.cat([
            remixer_source_codes(man, manifold_codes(man, SourceSlots(
                clips[i:i + 256].float(), mask[i:i + 256], None if audio is None else audio[i:i + 256],
                None if is_audio is None else is_audio[i:i + 256])), "manifold")
            for i in range(0, n, 256)
        ])


def run_train_temporal(windows: str | os.PathLike, *, layers: int, heads: int, epochs: int, batch_size: int,
                       lr: float, seed: int | None, device: str, progress: bool):
    from ..modules.temporal import TemporalConfig
    from .ss2a_temporal import train_temporal

    data = load_named_tensors(windows, ("frame_claps", "target_clap"), ("padding_mask",), what="video windows")
    frames, target = data["frame_claps"], data["target_clap"]
    check_shape(windows, "frame_claps", frames, (None, None, None))
    n, t, d = frames.shape
    check_shape(windows, "target_clap", target, (n, d))
    padding = data.get("padding_mask")
    if padding is not None:
        check_shape(windows, "padding_mask", padding, (n, t))
    config = TemporalConfig(clap_dim=d, num_frames=t, num_layers=layers, num_heads=heads,
                            position_resolution=max(1024, t + 2))
    return train_temporal(frames, target, config, epochs, padding_mask=padding, batch_size=batch_size, lr=lr,
                          seed=seed, device=device, progress=progress)
