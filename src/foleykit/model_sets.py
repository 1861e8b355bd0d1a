"""Named model sets: which foundation models foleykit loads, and the offline ``tiny`` stand-ins.

A model set maps *roles* (``clip``, ``clip_mapper``, ``clap``, ``clap_judge``, ``audioldm``,
``mapper``) to model references. A reference is a hub id (``openai/clip-vit-large-patch14``) or a
local directory in the hub layout. Three kinds of set exist:

* ``default``: the hub ids of the papers' checkpoints (needs the hub, or a filled HF cache).
* ``tiny``: deterministic tiny random models of the *same classes*, built in code once into a local
  cache in the hub layout and then loaded through the same ``from_pretrained`` path as real weights.
  They make every code path runnable offline (tests, CI, the quick start without hub access).
* a directory: a folder with ``model_set.json`` ({role: relative dir or hub id}), or with one
  sub-folder per role named as in the ``tiny`` layout.

Two CLAPs, two jobs (one CLAP currency):

* ``clap``: AudioLDM's *own* CLAP, the space the generator was trained on. Its text tower is the
  generator checkpoint's ``text_encoder`` (always available with ``audioldm``); its audio tower is
  converted from the original AudioLDM checkpoint by ``foleykit models import-audioldm-clap`` into a
  transformers ``ClapModel`` folder. The ``default`` set looks for that folder at
  :func:`audioldm_clap_dir` (``$FOLEYKIT_AUDIOLDM_CLAP``, else ``$FOLEYKIT_CACHE/audioldm-clap``);
  ``clap`` is None while it is absent (text paths still work, audio-conditioned paths say how to convert).
* ``clap_judge``: ``laion/clap-htsat-unfused``, another training run (another space), used only as
  the independent judge of ``foleykit evaluate`` (CLAP score, C-FAD). Never fed to the generator.

The real-size architecture configs are kept here too (:func:`real_size_configs`) so benchmarks can
build full-size models with random weights.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .encoders.tiny_vocab import byte_level_vocab, clip_vocab
from .errors import InputError

#: Bump when the tiny stand-ins change, so stale caches are rebuilt.
TINY_VERSION = "8"

DEFAULT_MODELS: dict[str, str] = {
    # SS2A and Sounding-that-Object use ViT-L/14 (768-d joint space).
    "clip": "openai/clip-vit-large-patch14",
    # V2A-Mapper uses ViT-B/32 (512-d joint space).
    "clip_mapper": "openai/clip-vit-base-patch32",
    # AudioLDM-S components (unet, vae, vocoder, scheduler, text_encoder, tokenizer) by subfolder.
    "audioldm": "cvssp/audioldm-s-full-v2",
}

#: The independent judge of ``foleykit evaluate`` (LAION's 630k-audioset run: not AudioLDM's space).
DEFAULT_CLAP_JUDGE = "laion/clap-htsat-unfused"

#: Where ``foleykit models import-audioldm-clap`` writes by default and the ``default`` set looks.
AUDIOLDM_CLAP_DIRNAME = "audioldm-clap"

#: Optional roles used by some methods (SS2A perception, Sounding-that-Object). Kept in
#: ``ModelSet.extra``; each has a tiny builder registered in ``EXTRA_TINY_BUILDERS``.
DEFAULT_EXTRA_MODELS: dict[str, str] = {
    "sam": "facebook/sam-vit-base",
    "detector": "google/owlv2-base-patch16-ensemble",
    "prior": "kakaobrain/karlo-v1-alpha",
}

#: Sub-folder names used by the tiny set and by local model-set directories without a manifest.
ROLE_DIRS: dict[str, str] = {
    "clip": "clip-vit-large-patch14",
    "clip_mapper": "clip-vit-base-patch32",
    "clap": "audioldm-clap",
    "clap_judge": "clap-htsat-unfused",
    "audioldm": "audioldm-s-full-v2",
    "mapper": "v2a-mapper",
    "sam": "sam-vit-base",
    "detector": "owlv2-base-patch16",
    "prior": "karlo-prior",
    "ss2a": "ss2a",
}

#: role -> "module:function" writing that role's tiny stand-in into a folder: ``fn(path, seed=...)``.
#: Builders live beside the encoder that loads the role, so each encoder owns its stand-in.
EXTRA_TINY_BUILDERS: dict[str, str] = {
    "sam": "foleykit.encoders.segmenter:write_tiny_sam",
    "detector": "foleykit.encoders.detector:write_tiny_detector",
    "prior": "foleykit.encoders.prior:write_tiny_prior",
    # SS2A bundle (manifold/, remixer/, temporal/); no published weights, so no hub id in the default set.
    "ss2a": "foleykit.pipelines.ss2a_bundle:write_tiny_ss2a",
}


@dataclass(frozen=True)
class ModelSet:
    """Where each role's weights come from. ``mapper`` is None when no trained mapper is known;
    ``clap`` (AudioLDM's own CLAP, both towers) is None when it has not been converted yet."""

    name: str
    clip: str
    clip_mapper: str
    clap: str | None
    audioldm: str
    mapper: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    clap_judge: str = DEFAULT_CLAP_JUDGE

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def default_cache_dir() -> Path:
    """``$FOLEYKIT_CACHE`` or ``~/.cache/foleykit``: where the tiny stand-ins are written."""
    env = os.environ.get("FOLEYKIT_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "foleykit"


def audioldm_clap_dir() -> Path:
    """Where the converted AudioLDM CLAP lives for the ``default`` set: ``$FOLEYKIT_AUDIOLDM_CLAP``,
    else ``$FOLEYKIT_CACHE/audioldm-clap`` (``~/.cache/foleykit/audioldm-clap``)."""
    env = os.environ.get("FOLEYKIT_AUDIOLDM_CLAP")
    if env:
        return Path(env).expanduser()
    return default_cache_dir() / AUDIOLDM_CLAP_DIRNAME


def resolve_model_set(models: str | os.PathLike | None = None, *, cache_dir: str | os.PathLike | None = None) -> ModelSet:
    """Turn ``default`` / ``tiny`` / a directory into a :class:`ModelSet`.

    ``None`` reads ``$FOLEYKIT_MODELS`` and falls back to ``default``.
    """
    if models is None:
        models = os.environ.get("FOLEYKIT_MODELS", "default")
    models = str(models)
    if models == "default":
        own = audioldm_clap_dir()
        clap = str(own) if (own / "config.json").is_file() else None
        return ModelSet(name="default", **DEFAULT_MODELS, clap=clap, extra=dict(DEFAULT_EXTRA_MODELS))
    if models in ("tiny", "debug"):
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        return _model_set_from_dir(build_tiny_model_set(root / f"tiny-v{TINY_VERSION}"), name="tiny")
    path = Path(models).expanduser()
    if path.is_dir():
        return _model_set_from_dir(path, name=str(path))
    raise InputError(
        f"unknown model set {models!r}: use 'default' (hub ids), 'tiny' (offline stand-ins) or an existing directory"
    )


def _model_set_from_dir(path: Path, *, name: str) -> ModelSet:
    manifest = path / "model_set.json"
    roles: dict[str, str] = {}
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{manifest} is not valid JSON: {exc}") from None
        for role, ref in data.items():
            local = path / str(ref)
            roles[role] = str(local) if local.exists() else str(ref)
    else:
        for role, sub in ROLE_DIRS.items():
            if (path / sub).is_dir():
                roles[role] = str(path / sub)
    missing = [r for r in ("clip", "audioldm") if r not in roles]
    if missing:
        raise InputError(
            f"model-set directory {path} has no {', '.join(missing)}: add model_set.json or sub-folders "
            f"named {', '.join(ROLE_DIRS[r] for r in missing)}"
        )
    roles.setdefault("clip_mapper", roles["clip"])
    known = {"clip", "clip_mapper", "clap", "clap_judge", "audioldm", "mapper"}
    extra = {k: v for k, v in roles.items() if k not in known}
    return ModelSet(
        name=name,
        clip=roles["clip"],
        clip_mapper=roles["clip_mapper"],
        clap=roles.get("clap"),
        audioldm=roles["audioldm"],
        mapper=roles.get("mapper"),
        extra=extra,
        clap_judge=roles.get("clap_judge", DEFAULT_CLAP_JUDGE),
    )


# ----------------------------------------------------------------------------------------------
# Tiny stand-ins
# ----------------------------------------------------------------------------------------------


def build_tiny_model_set(root: str | os.PathLike) -> Path:
    """Build the tiny stand-ins into ``root`` (once) and return ``root``.

    Each component is created after ``torch.manual_seed`` with a fixed seed, so the stand-ins are
    identical on every machine. The folder is assembled in a temporary directory and renamed into
    place, so a crash never leaves a half-built cache.
    """
    root = Path(root)
    if (root / "model_set.json").is_file():
        return root
    from .encoders.loading import quiet_loading

    quiet_loading()
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        _write_tiny_clip(tmp / ROLE_DIRS["clip"], projection_dim=768, patch_size=14, seed=0)
        _write_tiny_clip(tmp / ROLE_DIRS["clip_mapper"], projection_dim=512, patch_size=32, seed=1)
        # The LAION-like judge and the generator's text tower are different random models (two
        # spaces, as in reality); the tiny "AudioLDM own CLAP" shares the generator's text tower.
        _write_tiny_clap(tmp / ROLE_DIRS["clap_judge"], seed=2)
        _write_tiny_audioldm(tmp / ROLE_DIRS["audioldm"], seed=3)
        _write_tiny_clap(tmp / ROLE_DIRS["clap"], seed=5, text_tower_from=tmp / ROLE_DIRS["audioldm"] / "text_encoder")
        _write_tiny_mapper(tmp / ROLE_DIRS["mapper"], seed=4)
        roles = {role: ROLE_DIRS[role] for role in ("clip", "clip_mapper", "clap", "clap_judge", "audioldm", "mapper")}
        for i, (role, target) in enumerate(EXTRA_TINY_BUILDERS.items()):
            builder = _import_builder(target)
            if builder is None:
                continue
            builder(tmp / ROLE_DIRS[role], seed=10 + i)
            roles[role] = ROLE_DIRS[role]
        (tmp / "model_set.json").write_text(json.dumps(roles, indent=2))
        (tmp / "README.md").write_text(
            "Tiny random stand-ins of foleykit's foundation models (same classes as the real ones). "
            "They produce noise, not meaningful sound: they exist to run every code path offline.\n"
        )
        try:
            os.replace(tmp, root)
        except OSError:
            # Another process finished first: keep its copy.
            if not (root / "model_set.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _import_builder(target: str):
    """The tiny builder ``module:function``, or None while that encoder does not exist yet."""
    import importlib

    module, func = target.split(":")
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError):
        return None


def _write_tiny_clip(path: Path, *, projection_dim: int, patch_size: int, seed: int) -> None:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

    vocab, merges = clip_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=224,
            patch_size=patch_size,
        ),
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(path)


def tiny_clap_text_config(vocab_size: int) -> dict:
    return dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=80,
        projection_dim=512,
        bos_token_id=0,
        pad_token_id=1,
        eos_token_id=2,
    )


def _write_tiny_clap(path: Path, *, seed: int, text_tower_from: Path | None = None) -> None:
    """A tiny ``ClapModel`` folder; ``text_tower_from``: a ``ClapTextModelWithProjection`` folder whose
    weights become its text tower (``text_model.*``, ``text_projection.*``: the same names)."""
    import torch
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, RobertaTokenizer

    vocab, merges = byte_level_vocab()
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    config = ClapConfig(
        text_config=tiny_clap_text_config(len(vocab)),
        audio_config=dict(
            # Same input geometry as HTSAT-tiny (64 mels, spec 256, patch 4), tiny widths.
            patch_embeds_hidden_size=16,
            hidden_size=32,
            depths=[1, 1],
            num_attention_heads=[1, 2],
            window_size=8,
            projection_dim=512,
        ),
        projection_dim=512,
    )
    torch.manual_seed(seed)
    model = ClapModel(config).eval()
    if text_tower_from is not None:
        from transformers import ClapTextModelWithProjection

        tower = ClapTextModelWithProjection.from_pretrained(str(text_tower_from)).state_dict()
        missing, unexpected = model.load_state_dict(tower, strict=False)
        if unexpected or any(k.startswith(("text_model.", "text_projection.")) for k in missing):
            raise RuntimeError(f"tiny CLAP text tower does not fit: {unexpected or missing}")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    ClapFeatureExtractor(truncation="rand_trunc", padding="repeatpad").save_pretrained(path)


def _write_tiny_audioldm(path: Path, *, seed: int) -> None:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import ClapTextConfig, ClapTextModelWithProjection, RobertaTokenizer, SpeechT5HifiGan
    from transformers import SpeechT5HifiGanConfig

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=8,
        out_channels=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=(32, 64),
        attention_head_dim=8,
        class_embed_type="simple_projection",
        projection_class_embeddings_input_dim=512,
        class_embeddings_concat=True,
    )
    unet.save_pretrained(path / "unet")
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(8, 16, 16),
        layers_per_block=1,
        latent_channels=8,
        norm_num_groups=8,
        sample_size=64,
    )
    vae.save_pretrained(path / "vae")
    torch.manual_seed(seed + 2)
    vocoder = SpeechT5HifiGan(
        SpeechT5HifiGanConfig(
            model_in_dim=64,
            sampling_rate=16000,
            upsample_initial_channel=32,
            upsample_rates=[5, 4, 2, 2, 2],
            upsample_kernel_sizes=[10, 8, 4, 4, 4],
            resblock_kernel_sizes=[3],
            resblock_dilation_sizes=[[1, 3]],
            normalize_before=False,
        )
    ).eval()
    # HiFi-GAN's N(0, 0.01) init shrinks the signal ~100x per layer; He-init keeps the tiny
    # stand-in audible so loudness handling and muxing are exercised on real-looking levels.
    with torch.no_grad():
        for mod in vocoder.modules():
            if isinstance(mod, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
                torch.nn.init.kaiming_normal_(mod.weight, a=0.1, nonlinearity="leaky_relu")
    vocoder.save_pretrained(path / "vocoder")
    _audioldm_scheduler().save_pretrained(path / "scheduler")
    vocab, merges = byte_level_vocab()
    torch.manual_seed(seed + 3)
    text_encoder = ClapTextModelWithProjection(ClapTextConfig(**tiny_clap_text_config(len(vocab)))).eval()
    text_encoder.save_pretrained(path / "text_encoder")
    RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=77).save_pretrained(path / "tokenizer")
    (path / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "AudioLDMPipeline",
                "_diffusers_version": "0.42.1",
                "scheduler": ["diffusers", "DDIMScheduler"],
                "text_encoder": ["transformers", "ClapTextModelWithProjection"],
                "tokenizer": ["transformers", "RobertaTokenizer"],
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
                "vocoder": ["transformers", "SpeechT5HifiGan"],
            },
            indent=2,
        )
    )


def _audioldm_scheduler():
    """AudioLDM's training noise schedule (linear_start 0.0015, linear_end 0.0195, 1000 steps)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.0015,
        beta_end=0.0195,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )


def _write_tiny_mapper(path: Path, *, seed: int) -> None:
    import torch

    from .modules.mapper import MapperConfig, V2AMapper

    torch.manual_seed(seed)
    config = MapperConfig(kind="diffusion_transformer", clip_dim=512, clap_dim=512, width=64, depth=2, heads=2, head_dim=32)
    V2AMapper(config).save_pretrained(path)


# ----------------------------------------------------------------------------------------------
# Real-size architectures (random weights) for benchmarks
# ----------------------------------------------------------------------------------------------


def real_size_configs() -> dict[str, dict]:
    """Architecture settings of the default checkpoints, for building full-size random models.

    AudioLDM-S (``cvssp/audioldm-s-full-v2``): original config model_channels 128, channel_mult
    [1,2,3,5], num_res_blocks 2, attention at resolutions [8,4,2], FiLM condition 512 concatenated;
    VAE ch 128, ch_mult [1,2,4], z 8; HiFi-GAN 64 mels, upsample [5,4,2,2,2] at 16 kHz.
    """
    return {
        "unet": dict(
            sample_size=128,
            in_channels=8,
            out_channels=8,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(128, 256, 384, 640),
            layers_per_block=2,
            cross_attention_dim=(128, 256, 384, 640),
            attention_head_dim=8,
            class_embed_type="simple_projection",
            projection_class_embeddings_input_dim=512,
            class_embeddings_concat=True,
        ),
        "vae": dict(
            in_channels=1,
            out_channels=1,
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3,
            block_out_channels=(128, 256, 512),
            layers_per_block=2,
            latent_channels=8,
            sample_size=512,
        ),
        "vocoder": dict(
            model_in_dim=64,
            sampling_rate=16000,
            upsample_initial_channel=1024,
            upsample_rates=[5, 4, 2, 2, 2],
            upsample_kernel_sizes=[16, 16, 8, 4, 4],
            resblock_kernel_sizes=[3, 7, 11],
            resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
            normalize_before=False,
        ),
    }
