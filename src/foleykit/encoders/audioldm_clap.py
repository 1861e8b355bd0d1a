"""Convert AudioLDM's own CLAP (``cond_stage_model.`` of the original AudioLDM checkpoint) into a
transformers ``ClapModel`` folder: ``foleykit models import-audioldm-clap CKPT -o DIR``.

AudioLDM's conditioner (``CLAPAudioEmbeddingClassifierFreev2``) holds a LAION-CLAP module under
``cond_stage_model.model.``: an HTSAT-tiny audio branch (``audio_branch.*``), a RoBERTa text branch
(``text_branch.*``, the transformers ``RobertaModel`` layout) and two projection MLPs
(``audio_projection.{0,2}``, ``text_projection.{0,2}``: Linear, ReLU, Linear). The renaming below is
re-derived from the LAION-CLAP source and transformers' ``ClapModel`` (the same correspondence
transformers' own LAION conversion uses):

=============================================  ==================================================
original (under ``cond_stage_model.model.``)   transformers ``ClapModel``
=============================================  ==================================================
``text_branch.X``                              ``text_model.X`` (RoBERTa names are kept)
``text_projection.0`` / ``.2``                 ``text_projection.linear1`` / ``.linear2``
``audio_projection.0`` / ``.2``                ``audio_projection.linear1`` / ``.linear2``
``audio_branch.bn0``                           ``audio_model.audio_encoder.batch_norm``
``audio_branch.patch_embed`` / ``.norm``       ``audio_model.audio_encoder.patch_embed`` / ``.norm``
``...layers.i.blocks.j.norm1`` / ``norm2``     ``...blocks.j.layernorm_before`` / ``layernorm_after``
``...blocks.j.attn.qkv`` ([3C, C])             ``...attention.self.query|key|value`` (rows split in 3)
``...blocks.j.attn.proj``                      ``...attention.output.dense``
``...blocks.j.attn.relative_position_*``       ``...attention.self.relative_position_*``
``...blocks.j.mlp.fc1`` / ``fc2``              ``...intermediate.dense`` / ``output.dense``
``...layers.i.downsample.*``                   same names
``logit_scale_a`` / ``logit_scale_t``          same names
=============================================  ==================================================

Dropped (not part of the embedding): the waveform front end ``audio_branch.spectrogram_extractor``
and ``logmel_extractor`` (transformers' ``ClapFeatureExtractor`` computes the same log-mel: periodic
Hann 1024, hop 480, 64 Slaney mels 50-14000 Hz at 48 kHz, power dB), the classification head
(``tscam_conv``, ``head``), the shifted-window masks (``attn_mask``, recomputed) and the training-only
``text_transform`` / ``audio_transform`` MLPs.

Head counts are not stored in weights: RoBERTa-base uses 64-d heads and HTSAT 24-d heads (HTSAT-tiny:
embed 96, heads 4/8/16/32), so heads = width / head size. An AudioLDM-M checkpoint (HTSAT-base: embed
128, 1024-d audio output) is another CLAP space and is refused; so is anything without
``cond_stage_model.`` keys. Output is written to a temporary folder and renamed: nothing is left on error.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, OutputError

PREFIX = "cond_stage_model."
#: Where the RoBERTa tokenizer comes from by default: the generator AudioLDM's CLAP belongs to.
DEFAULT_TOKENIZER_FROM = "cvssp/audioldm-s-full-v2"
#: AudioLDM's CLAP sits under ``cond_stage_model.model.`` (the conditioner's ``self.model``).
MODEL_PREFIXES = ("cond_stage_model.model.", "cond_stage_model.")
TEXT_HEAD_DIM = 64  # RoBERTa-base: 768 / 12
AUDIO_HEAD_DIM = 24  # HTSAT: 96/4, 192/8, 384/16, 768/32
HTSAT_TINY_EMBED = 96
HTSAT_BASE_EMBED = 128
#: The original audio front end (LAION-CLAP ``model_configs/HTSAT-tiny.json`` audio_cfg).
AUDIO_CFG = dict(sampling_rate=48_000, fft_window_size=1024, hop_length=480, feature_size=64,
                 frequency_min=50, frequency_max=14_000, max_length_s=10)

_DROPPED = re.compile(
    r"^(audio_branch\.(spectrogram_extractor|logmel_extractor|tscam_conv|head)\.|text_transform\.|audio_transform\."
    r"|audio_branch\.layers\.\d+\.blocks\.\d+\.attn_mask$)"
)


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of an AudioLDM checkpoint (``.ckpt``/``.pt``/``.pth`` read weights-only, or
    ``.safetensors``); a Lightning ``state_dict`` wrapper is unwrapped. One line on any failure."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"checkpoint {p} does not exist")
    try:
        if p.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            data: Any = load_file(str(p))
        else:
            data = torch.load(str(p), map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # truncated zip, foreign pickle, not a checkpoint at all
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise InputError(f"{p} is not a readable AudioLDM checkpoint (truncated or another format: {first})") from None
    if isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping) or not any(isinstance(v, torch.Tensor) for v in data.values()):
        raise InputError(f"{p} holds no weights (expected an AudioLDM checkpoint with a state_dict)")
    return {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}


def clap_state_dict(state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The LAION-CLAP tensors of an AudioLDM state dict, with the ``cond_stage_model.model.`` prefix removed."""
    for prefix in MODEL_PREFIXES:
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if any(k.startswith("audio_branch.") for k in sub):
            return sub
    if not any(k.startswith(PREFIX) for k in state):
        raise InputError(f"{source} has no '{PREFIX}' keys: not an AudioLDM checkpoint (AudioLDM's CLAP lives there)")
    raise InputError(f"{source}: '{PREFIX}' holds no LAION-CLAP audio_branch/text_branch (not AudioLDM-S/M's CLAP)")


def _count(keys, pattern: str) -> int:
    rx = re.compile(pattern)
    found = {int(m.group(1)) for k in keys if (m := rx.match(k))}
    return max(found) + 1 if found else 0


def clap_config(sd: Mapping[str, torch.Tensor], source: str):
    """A transformers ``ClapConfig`` read off the original tensors' shapes (see the module notes)."""
    from transformers import ClapConfig

    def need(key: str) -> torch.Tensor:
        if key not in sd:
            raise InputError(f"{source}: AudioLDM CLAP tensor {key!r} is missing (not the LAION-CLAP layout)")
        return sd[key]

    patch = need("audio_branch.patch_embed.proj.weight")
    embed = int(patch.shape[0])
    if embed == HTSAT_BASE_EMBED:
        raise InputError(f"{source} holds an HTSAT-base CLAP (AudioLDM-M style, 1024-d audio features): another CLAP "
                         "space than AudioLDM-S's; convert audioldm-s-full-v2.ckpt (HTSAT-tiny)")
    n_stages = _count(sd, r"audio_branch\.layers\.(\d+)\.")
    depths = [_count(sd, rf"audio_branch\.layers\.{i}\.blocks\.(\d+)\.") for i in range(n_stages)]
    if not n_stages or not all(depths):
        raise InputError(f"{source}: no HTSAT layers under cond_stage_model (not the LAION-CLAP layout)")
    table = need("audio_branch.layers.0.blocks.0.attn.relative_position_bias_table")
    window = int((int(table.shape[0]) ** 0.5 + 1) // 2)
    audio_hidden = int(need("audio_branch.norm.weight").shape[0])
    fc1 = need("audio_branch.layers.0.blocks.0.mlp.fc1.weight")
    proj_a = need("audio_projection.2.weight")
    proj_t = need("text_projection.2.weight")
    if proj_a.shape[0] != proj_t.shape[0]:
        raise InputError(f"{source}: audio and text projections differ ({proj_a.shape[0]} vs {proj_t.shape[0]})")
    words = need("text_branch.embeddings.word_embeddings.weight")
    text_hidden = int(words.shape[1])
    text_layers = _count(sd, r"text_branch\.encoder\.layer\.(\d+)\.")
    audio_config = dict(
        patch_embeds_hidden_size=embed,
        hidden_size=audio_hidden,
        depths=depths,
        num_attention_heads=[max(1, embed * 2**i // AUDIO_HEAD_DIM) for i in range(n_stages)],
        window_size=window,
        patch_size=int(patch.shape[-1]),
        patch_stride=[int(patch.shape[-2]), int(patch.shape[-1])],
        num_mel_bins=int(need("audio_branch.bn0.weight").shape[0]),
        mlp_ratio=float(fc1.shape[0]) / embed,
        projection_dim=int(proj_a.shape[0]),
        enable_fusion=False,
    )
    text_config = dict(
        vocab_size=int(words.shape[0]),
        hidden_size=text_hidden,
        num_hidden_layers=text_layers,
        num_attention_heads=max(1, text_hidden // TEXT_HEAD_DIM),
        intermediate_size=int(need("text_branch.encoder.layer.0.intermediate.dense.weight").shape[0]),
        max_position_embeddings=int(need("text_branch.embeddings.position_embeddings.weight").shape[0]),
        type_vocab_size=int(need("text_branch.embeddings.token_type_embeddings.weight").shape[0]),
        layer_norm_eps=1e-5,  # roberta-base's config (transformers' ClapTextConfig default is 1e-12)
        projection_dim=int(proj_t.shape[0]),
        bos_token_id=0,
        pad_token_id=1,
        eos_token_id=2,
    )
    return ClapConfig(text_config=text_config, audio_config=audio_config, projection_dim=int(proj_t.shape[0]))


def rename_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original LAION-CLAP names → transformers ``ClapModel`` names (the table in the module notes)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if _DROPPED.match(key):
            continue
        new = key
        if new.startswith("text_branch."):
            new = "text_model." + new[len("text_branch."):]
        elif m := re.match(r"^(text|audio)_projection\.(0|2)\.(weight|bias)$", new):
            new = f"{m.group(1)}_projection.linear{1 if m.group(2) == '0' else 2}.{m.group(3)}"
        elif new.startswith("audio_branch."):
            new = "audio_model.audio_encoder." + new[len("audio_branch."):]
            new = new.replace(".bn0.", ".batch_norm.") if ".bn0." in new else new
            new = new.replace(".norm1.", ".layernorm_before.").replace(".norm2.", ".layernorm_after.")
            new = new.replace(".mlp.fc1.", ".intermediate.dense.").replace(".mlp.fc2.", ".output.dense.")
            new = new.replace(".attn.proj.", ".attention.output.dense.")
            new = new.replace(".attn.relative_position", ".attention.self.relative_position")
            if ".attn.qkv." in new:
                q, k, v = value.chunk(3, dim=0)
                base = new.replace(".attn.qkv.", ".attention.self.{}.")
                out[base.format("query")], out[base.format("key")], out[base.format("value")] = q, k, v
                continue
        out[new] = value
    return out


#: transformers keys the original checkpoint does not need to carry (buffers rebuilt on init).
_OPTIONAL_TARGETS = re.compile(r"(\.position_ids|\.token_type_ids|num_batches_tracked|relative_position_index)$")


def check_layout(renamed: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], source: str) -> None:
    """The renamed tensors must be exactly the ``ClapModel``'s (names and shapes; rebuilt buffers optional)."""
    unexpected = sorted(k for k in renamed if k not in target)
    missing = sorted(k for k in target if k not in renamed and not _OPTIONAL_TARGETS.search(k))
    wrong = sorted(k for k in renamed if k in target and tuple(renamed[k].shape) != tuple(target[k].shape))
    if unexpected or missing or wrong:
        what = (f"unexpected {unexpected[0]!r}" if unexpected else f"missing {missing[0]!r}" if missing
                else f"shape of {wrong[0]!r}")
        raise InputError(f"{source}: cond_stage_model is not the LAION-CLAP layout AudioLDM-S uses ({what})")


def convert_audioldm_clap(checkpoint: str | os.PathLike, output: str | os.PathLike, *,
                          tokenizer: str | None = None, overwrite: bool = False) -> Path:
    """Write AudioLDM's own CLAP from ``checkpoint`` as a transformers ``ClapModel`` folder at ``output``
    (model, config, ``ClapFeatureExtractor`` with the original front end, RoBERTa tokenizer).

    ``tokenizer``: a generator reference whose ``tokenizer`` sub-folder, or a tokenizer folder (default:
    ``cvssp/audioldm-s-full-v2``: AudioLDM's roberta-base tokenizer). Returns ``output``.
    """
    from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

    from ..hub import resolve_pretrained

    src = Path(checkpoint).expanduser()
    out = Path(output).expanduser()
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputError(f"{out} is not empty; choose a new folder or pass --overwrite")
    if not out.parent.is_dir():
        raise OutputError(f"the folder {out.parent} does not exist")
    sd = clap_state_dict(read_checkpoint(src), str(src))
    config = clap_config(sd, str(src))
    renamed = rename_state_dict(sd)
    model = ClapModel(config).eval()
    check_layout(renamed, model.state_dict(), str(src))
    model.load_state_dict({k: v.float().contiguous() for k, v in renamed.items()}, strict=False)

    tok_ref = tokenizer or DEFAULT_TOKENIZER_FROM
    tok_dir = Path(tok_ref).expanduser()
    if not (tok_dir / "tokenizer_config.json").is_file() and not (tok_dir / "vocab.json").is_file():
        local, _ = resolve_pretrained(tok_ref, subfolder="tokenizer")
        tok_dir = Path(local) / "tokenizer"
    try:
        tok = AutoTokenizer.from_pretrained(str(tok_dir))
    except (OSError, ValueError) as exc:
        raise InputError(f"tokenizer {tok_ref}: cannot be loaded ({str(exc).splitlines()[0][:120]})") from None
    fe = ClapFeatureExtractor(padding="repeatpad", truncation="rand_trunc", **AUDIO_CFG)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        fe.save_pretrained(tmp)
        (tmp / "SOURCE.txt").write_text(
            f"AudioLDM's own CLAP, converted by foleykit from {src.name} (cond_stage_model.model.*).\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
