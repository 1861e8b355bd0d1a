"""Data builders: from an extraction folder (and trained modules) to exactly the tensors file a
trainer reads (``foleykit build-data TASK``). Each file carries the provenance of its encoders
(:mod:`foleykit.training.provenance`), so its trainer can check them.

========  ======================================  ===================================================
task      from                                    writes
========  ======================================  ===================================================
remixer   ``extract --config extract_ss2a_scenes``  ``clips`` [N, 1+M, 768] (slot 0: the global CLIP,
          (clip, clip_crops, clap) + a trained      then the crops, as the sources pipeline packs one
          manifold (``--manifold``)                 image), ``padding_mask``, ``target_clap`` = clap,
                                                    ``codes`` [N, 1+M, S] from the manifold
temporal  ``extract --config extract_ss2a``         ``frame_claps`` [N, F, 512]: each frame's CLAP made
          (clip_frames, clap) + a trained SS2A      as the sources pipeline makes it for a video frame
          bundle (``--ss2a``: manifold, remixer)    without detections (its global CLIP through Cycle
                                                    Mix), ``target_clap`` = clap
grounding ``extract --config extract_grounding``    ``latents`` (AudioLDM VAE of the item's audio mel),
          (clip_patches) + the manifest + models    ``text_emb`` (the generator's own CLAP text tower
                                                    on the caption or label), ``patch_emb``
========  ======================================  ===================================================

Deliberate simplification (temporal): at inference each video frame is also searched for sound
sources by the detector; the builder uses each frame's global CLIP only (the pipeline's behaviour
on a frame without detections), which keeps building cheap and deterministic.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .provenance import provenance_metadata, read_provenance

BUILD_TASKS = ("remixer", "temporal", "grounding")
#: The extraction preset each builder reads (``foleykit extract --config NAME``).
BUILD_PRESETS = {"remixer": "extract_ss2a_scenes", "temporal": "extract_ss2a", "grounding": "extract_grounding"}


def _store(extraction: str | os.PathLike, features: tuple[str, ...], task: str):
    from .extraction import EmbeddingStore

    store = EmbeddingStore(extraction)
    missing = [f for f in features if f not in store.features]
    if missing:
        raise InputError(f"{extraction} has no feature(s) {', '.join(missing)} for {task} data; extract it with "
                         f"--config {BUILD_PRESETS[task]}")
    if len(store) == 0:
        raise InputError(f"{extraction} holds no extracted items")
    return store


def _save(out: str | os.PathLike, tensors: dict[str, torch.Tensor], provenance: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    from ..io.atomic import atomic_path

    path = Path(out).expanduser()
    if path.suffix.lower() != ".safetensors":
        raise InputError(f"{path}: the built data is written as a .safetensors file")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=provenance_metadata(provenance))
    return path


def build_remixer_scenes(extraction: str | os.PathLike, out: str | os.PathLike, *,
                         manifold: str | os.PathLike) -> Path:
    """Remixer scenes from an extraction with ``clip``, ``clip_crops`` and ``clap`` and a trained manifold."""
    from .accelerate_config import compute_remixer_codes

    store = _store(extraction, ("clip", "clip_crops", "clap"), "remixer")
    data = store.load(["clip", "clip_crops", "crop_padding_mask", "clap"])
    n = data["clip"].shape[0]
    clips = torch.cat([data["clip"].float()[:, None], data["clip_crops"].float()], dim=1)
    padding = torch.cat([torch.zeros(n, 1, dtype=torch.bool), data["crop_padding_mask"].bool()], dim=1)
    codes = compute_remixer_codes(extraction, manifold, clips, padding, None, None)
    return _save(out, {"clips": clips, "padding_mask": padding, "target_clap": data["clap"].float(),
                       "codes": codes.float()}, read_provenance(extraction) or {})


def build_temporal_windows(extraction: str | os.PathLike, out: str | os.PathLike, *,
                           ss2a: str | os.PathLike, seed: int = 0, rounds: int | None = None,
                           samples: int | None = None) -> Path:
    """Temporal windows from an extraction with ``clip_frames`` and ``clap`` and a trained SS2A bundle."""
    from ..modules.cycle_mix import SourceSlots, cycle_mix
    from ..modules.manifold import CMSSManifold
    from ..modules.remixer import SoundSourceRemixer
    from ..seeding import make_generator

    store = _store(extraction, ("clip_frames", "clap"), "temporal")
    data = store.load(["clip_frames", "clap"])
    frames = data["clip_frames"].float()  # [N, F, D]
    n, f, d = frames.shape
    folder = Path(ss2a).expanduser()
    missing = [s for s in ("manifold", "remixer") if not (folder / s / "config.json").is_file()]
    if missing:
        raise InputError(f"SS2A bundle {folder} has no trained {' or '.join(missing)} (train them first: "
                         "foleykit train manifold / remixer -o BUNDLE/manifold, BUNDLE/remixer)")
    manifold = CMSSManifold.from_pretrained(str(folder / "manifold")).eval()
    remixer = SoundSourceRemixer.from_pretrained(str(folder / "remixer")).eval()
    if manifold.config.clip_dim != d:
        raise InputError(f"SS2A bundle {folder} takes {manifold.config.clip_dim}-d CLIP, {extraction} holds {d}-d")
    slots = SourceSlots(frames.reshape(n * f, 1, d), torch.zeros(n * f, 1, dtype=torch.bool))
    options = {k: v for k, v in {"rounds": rounds, "samples": samples}.items() if v is not None}
    with torch.no_grad():  # cycle_mix's defaults are the sources pipeline's (4 rounds of 16)
        res = cycle_mix(manifold, remixer, slots, generator=make_generator(seed), **options)
    frame_claps = F.normalize(res.clap.float(), dim=-1).reshape(n, f, -1)
    return _save(out, {"frame_claps": frame_claps, "target_clap": data["clap"].float()},
                 read_provenance(extraction) or {})


def audioldm_mel(wave: np.ndarray, frames: int) -> torch.Tensor:
    """AudioLDM's log-mel spectrogram of 16 kHz audio: [frames, 64] (STFT 1024 / hop 160 / Hann,
    magnitude, Slaney mel 0-8 kHz, log of max(x, 1e-5)), cut or padded (at the log floor) to ``frames``."""
    from transformers.audio_utils import mel_filter_bank

    n_fft, hop = 1024, 160
    y = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))[None, None]
    pad = (n_fft - hop) // 2
    y = F.pad(y, (pad, pad), mode="reflect")[0]
    spec = torch.stft(y, n_fft, hop_length=hop, win_length=n_fft, window=torch.hann_window(n_fft), center=False,
                      return_complex=True).abs()[0]  # [513, T]
    bank = torch.from_numpy(mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=64, min_frequency=0.0,
                                            max_frequency=8000.0, sampling_rate=16000, norm="slaney",
                                            mel_scale="slaney")).float()  # [513, 64]
    mel = torch.log(torch.clamp(bank.T @ spec, min=1e-5)).T  # [T, 64]
    out = torch.full((frames, 64), float(np.log(1e-5)))
    out[: min(frames, mel.shape[0])] = mel[:frames]
    return out


def _item_audio(item, seconds: float) -> np.ndarray:
    from ..io.audio import load_audio, resample

    start = item.start_s or 0.0
    if item.audio:
        wave, sr = load_audio(item.audio, target_sr=16000)
        wave = wave[int(start * sr):]
    elif item.video:
        from ..io.video import read_video_audio

        wave, sr = read_video_audio(item.video, start, start + seconds)
        wave = resample(wave, sr, 16000)
    else:
        raise InputError(f"item {item.id} has no audio or video for its latents")
    return wave[: int(round(seconds * 16000))]


def build_grounding_pairs(extraction: str | os.PathLike, out: str | os.PathLike, *, manifest: Any,
                          models: str | None = None, seconds: float = 10.24, device: str = "cpu") -> Path:
    """Grounding tensors: the AudioLDM VAE latents of each item's audio, the generator's CLAP text
    embedding of its caption (else label), and its CLIP patches from the extraction."""
    from ..generator.pipeline import AudioLDMGenerator
    from ..model_sets import resolve_model_set

    store = _store(extraction, ("clip_patches",), "grounding")
    if store.manifest_fingerprint != manifest.fingerprint:
        raise InputError(f"{extraction} was extracted from another manifest than {manifest.source}")
    patches = store.load(["clip_patches"])["clip_patches"].float()
    gen = AudioLDMGenerator.from_pretrained(resolve_model_set(models).audioldm, device=device)
    shape = gen.latent_shape(1, seconds)
    frames = shape[2] * gen.vae_scale_factor
    latents, texts = [], []
    for item_id in store.ids:
        item = manifest[manifest.index_of(item_id)]
        mel = audioldm_mel(_item_audio(item, seconds), frames)
        with torch.no_grad():
            z = gen.vae.encode(mel[None, None].to(gen.device, gen.dtype)).latent_dist.mode()
        latents.append((z * gen.vae.config.scaling_factor).float().cpu()[0])
        texts.append(item.captions[0] if item.captions else (item.labels[0] if item.labels else ""))
    with torch.no_grad():
        tok = gen.tokenizer(texts, padding="max_length", max_length=gen.tokenizer.model_max_length, truncation=True,
                            return_tensors="pt").to(gen.device)
        text_emb = F.normalize(gen.text_encoder(input_ids=tok.input_ids, attention_mask=tok.attention_mask)
                               .text_embeds.float(), dim=-1).cpu()
    prov = dict(read_provenance(extraction) or {})
    prov["text"] = {"role": "audioldm", "model": str(gen.loaded_from.ref if gen.loaded_from else None),
                    "dim": int(text_emb.shape[-1])}
    return _save(out, {"latents": torch.stack(latents), "text_emb": text_emb, "patch_emb": patches}, prov)
