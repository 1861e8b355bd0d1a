"""The learnable modules of the three papers as :class:`~foleykit.training.trainer.TrainModule` s.

Each wraps the network and computes its paper loss inside ``forward(batch, generator)`` (so DDP and
autocast apply) from the terms in :mod:`foleykit.training.losses`. This is the only way foleykit trains
a module: ``foleykit train TASK``, :func:`foleykit.api.train` and the :class:`~foleykit.training.trainer.Trainer`
used directly all run these.

==========  ===========================================  ======================================
task        batch keys                                   loss
==========  ===========================================  ======================================
mapper      clip [B, Dv], clap [B, 512]                  V2A-Mapper Eq. 1/2 (``training_loss``)
manifold    clip [B, 768], clap [B, 512]                 SS2A L_fold (Eq. 5, CCMR) + mean teacher
remixer     codes [B, M, S], clips [B, M, C],            SS2A L_mix (Eq. 9)
            target_clap [B, 512], (padding_mask [B, M])
temporal    frame_claps [B, T, 512], target_clap,        SS2A L_ta (Eq. 10)
            (padding_mask [B, T])
grounding   latents [B, 8, T', F'], text_emb [B, 512],   Sounding-that-Object Eq. 1 through the
            patch_emb [B, P, 768]                        AudioLDM UNet (fine-tuned by default)
==========  ===========================================  ======================================

Besides the registry (:func:`build_task`): :class:`GroundingContrastiveTask`, the grounding module alone
against a bank of audio embeddings (a quick check without the UNet, e.g. on
:mod:`foleykit.training.synthetic_scenes`).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from .trainer import TrainModule, batch_len

# ------------------------------------------------------------------------------------------------
# V2A-Mapper
# ------------------------------------------------------------------------------------------------


class MapperTask(TrainModule):
    """V2A-Mapper (any variant). Validation: loss, and the cosine of mapped CLIP to true CLAP
    (regression always; diffusion with ``val_sample_steps`` DDIM steps when set)."""

    batch_keys = ("clip", "clap")

    def __init__(self, config: Any, *, val_sample_steps: int | None = None) -> None:
        super().__init__()
        from ..modules.mapper import MapperConfig, V2AMapper

        if isinstance(config, Mapping):
            config = MapperConfig(**config)
        self.model = V2AMapper(config)
        self.val_sample_steps = val_sample_steps

    def forward(self, batch, generator=None):
        return {"loss": self.model.training_loss(batch["clip"], batch["clap"], generator), "metrics": {}}

    @torch.no_grad()
    def validation_step(self, batch, generator=None):
        sums = super().validation_step(batch, generator)
        if not self.model.config.is_diffusion or self.val_sample_steps:
            pred = self.model.map(batch["clip"], steps=self.val_sample_steps, generator=generator)
            target = F.normalize(batch["clap"].to(pred).float(), dim=-1)
            sums["cosine"] = (pred.float() * target).sum()
        return sums


# ------------------------------------------------------------------------------------------------
# SS2A CMSS manifold with a mean teacher
# ------------------------------------------------------------------------------------------------


def _forget_steps_cache(module: nn.Module, incompatible_keys: Any) -> None:
    module._steps_cache = None  # the buffers were just (re)loaded


class ManifoldTask(TrainModule):
    """Student manifold trained with L_fold + mean-teacher consistency; the teacher (an EMA of the
    student, part of the checkpoints) is what is exported.

    One backward per step does the paper's alternating optimisation of the projectors and the
    generator ("alternatively optimize ... with L_fold"): L_fold reaches the projectors and τ through a
    *parameter-detached* copy of χ, and χ is trained only by its reconstruction + KL terms on detached
    codes (AdamW per parameter, so one optimizer over the two disjoint gradient sets equals two).
    Consistency: cosine distance of the student's codes to the teacher's for the same pairs (each with
    its own input noise when ``input_noise`` > 0), ramped up with Tarvainen's sigmoid over
    ``consistency_rampup`` of all steps; the EMA decay is warmed up (min(decay, 1 − 1/(step + 1))) so
    a short run still yields a usable teacher. The paper trains a first teacher on its clean VGG-SS
    pairs and the student on all pairs: pass that model as ``init_from`` for the second stage.
    Defaults the paper's main text does not give (λ1, EMA decay, consistency weight) are ours;
    λ1 = 5e-4 follows a checkpoint name in the released code ("kl00005").
    """

    batch_keys = ("clip", "clap")

    def __init__(self, config: Any, *, init_from: str | None = None, ccmr_alpha: float | None = None,
                 kl_weight: float = 5e-4, ema_decay: float = 0.999, consistency_weight: float = 1.0,
                 consistency_rampup: float = 0.3, input_noise: float = 0.0) -> None:
        super().__init__()
        from ..modules.ccmr import DEFAULT_CCMR_ALPHA
        from ..modules.manifold import CMSSManifold, ManifoldConfig

        if isinstance(config, Mapping):
            config = ManifoldConfig(**config)
        if not 0.0 <= ema_decay < 1.0:
            raise InputError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.student = CMSSManifold(config)
        if init_from:
            self.student.load_state_dict(CMSSManifold.from_pretrained(init_from).state_dict())
        self.teacher = copy.deepcopy(self.student)
        self.teacher.requires_grad_(False)
        self.ccmr_alpha = DEFAULT_CCMR_ALPHA if ccmr_alpha is None else ccmr_alpha
        self.kl_weight = kl_weight
        self.ema_decay = ema_decay
        self.consistency_weight = consistency_weight
        self.consistency_rampup = consistency_rampup
        self.input_noise = input_noise
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("total_steps", torch.ones((), dtype=torch.long))
        self._steps_cache: tuple[int, int] | None = None  # host copies of the buffers (no sync per step)
        self.register_load_state_dict_post_hook(_forget_steps_cache)

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()
        return self

    def export(self) -> nn.Module:
        return self.teacher

    def extra_exports(self) -> dict[str, nn.Module]:
        return {"student": self.student}

    def on_train_start(self, total_steps: int) -> None:
        self.total_steps.fill_(total_steps)
        self._steps_cache = None

    def _noisy(self, x: Tensor, generator) -> Tensor:
        if self.input_noise <= 0:
            return x
        return x + self.input_noise * torch.randn(x.shape, generator=generator).to(x)

    def forward(self, batch, generator=None):
        from torch.func import functional_call

        from ..modules.manifold import ManifoldForward
        from .losses import consistency_loss, cosine_distance_loss, manifold_loss, variational_kl

        clip, clap = batch["clip"].float(), batch["clap"].float()
        s = self.student
        clip_s, clap_s = self._noisy(clip, generator), self._noisy(clap, generator)
        clip_t, clap_t = self._noisy(clip, generator), self._noisy(clap, generator)
        clip_code, clap_code = s.encode_clips(clip_s), s.encode_claps(clap_s)
        clip_sample, clap_sample = clip_code.sample(generator), clap_code.sample(generator)
        frozen = {n: p.detach() for n, p in s.reconstructor.named_parameters()}
        from_clip = functional_call(s.reconstructor, frozen, (clip_sample,))
        from_clap = functional_call(s.reconstructor, frozen, (clap_sample,))
        out = ManifoldForward(clip_code, clap_code, from_clip, from_clap, clip_sample, clap_sample,
                              from_clip.sample(generator), from_clap.sample(generator))
        terms = manifold_loss(out, clip, clap, s.temperature_scale(), self.ccmr_alpha, self.kl_weight)
        consistency = consistency_loss(self.teacher, clip_t, clap_t, clip_code.mu, clap_code.mu)
        if self._steps_cache is None:  # first step, or just restored from a checkpoint
            self._steps_cache = (int(self.step), int(self.total_steps))
        step, total = self._steps_cache
        weight = self.consistency_weight * sigmoid_rampup(step, round(self.consistency_rampup * total))
        rc, rp = s.reconstructor(clip_sample.detach()), s.reconstructor(clap_sample.detach())
        recon = 0.5 * (cosine_distance_loss(clap, rc.sample(generator)) + cosine_distance_loss(clap, rp.sample(generator)))
        recon_kl = 0.5 * (variational_kl(rc) + variational_kl(rp))
        loss = terms.total + weight * consistency + recon + self.kl_weight * recon_kl
        return {"loss": loss, "metrics": {
            "fold": terms.total.detach(), "contrastive": terms.contrastive.detach(),
            "reconstruction": terms.reconstruction.detach(), "kl": terms.kl.detach(),
            "consistency": consistency.detach(), "chi_reconstruction": recon.detach(),
        }}

    @torch.no_grad()
    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        ema_update(self.teacher, self.student, min(self.ema_decay, 1.0 - 1.0 / (step + 1)))
        self.step.fill_(step + 1)
        self._steps_cache = (step + 1, total_steps)

    @torch.no_grad()
    def validation_step(self, batch, generator=None):
        """Loss terms of the student, and the teacher's in-batch CLIP→CLAP retrieval top-1."""
        sums = super().validation_step(batch, generator)
        q = F.normalize(self.teacher.fold_clips(batch["clip"].float()), dim=-1)
        g = F.normalize(self.teacher.fold_claps(batch["clap"].float()), dim=-1)
        hits = (q @ g.T).argmax(dim=1) == torch.arange(q.shape[0], device=q.device)
        sums["top1_in_batch"] = hits.float().sum()
        return sums


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """teacher ← decay·teacher + (1 − decay)·student, parameters and float buffers alike."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.lerp_(s, 1.0 - decay)
    for t, s in zip(teacher.buffers(), student.buffers(), strict=True):
        if t.is_floating_point():
            t.lerp_(s, 1.0 - decay)
        else:
            t.copy_(s)


def sigmoid_rampup(step: int, rampup_steps: int) -> float:
    """exp(−5(1 − t)²) for t = step / rampup_steps ≤ 1 (Tarvainen & Valpola's consistency ramp-up)."""
    if rampup_steps <= 0:
        return 1.0
    t = min(step, rampup_steps) / rampup_steps
    return math.exp(-5.0 * (1.0 - t) ** 2)


@torch.no_grad()
def retrieval_top1(manifold: nn.Module, clip: Tensor, clap: Tensor, labels: Tensor | None = None,
                   chunk: int = 1024) -> float:
    """CLIP→CLAP retrieval accuracy of a CMSS manifold over a whole set (the validation's
    ``top1_in_batch`` is the same within one batch): query i is right when its nearest CLAP code is
    pair i (or, with ``labels``, any pair of the same class). Chance is 1/N (1/classes)."""
    was_training = manifold.training
    manifold.eval()
    try:
        device = manifold.logit_scale.device
        gallery = torch.cat([F.normalize(manifold.fold_claps(c.to(device)), dim=-1) for c in clap.split(chunk)])
        correct = 0
        for start in range(0, clip.shape[0], chunk):
            queries = F.normalize(manifold.fold_clips(clip[start:start + chunk].to(device)), dim=-1)
            nearest = (queries @ gallery.T).argmax(dim=1).cpu()
            expected = torch.arange(start, start + queries.shape[0])
            hits = labels[nearest] == labels[expected] if labels is not None else nearest == expected
            correct += int(hits.sum())
        return correct / clip.shape[0]
    finally:
        manifold.train(was_training)


# ------------------------------------------------------------------------------------------------
# SS2A remixer and temporal aggregation
# ------------------------------------------------------------------------------------------------


def _mask(batch: Mapping[str, Tensor]) -> Tensor | None:
    m = batch.get("padding_mask")
    return None if m is None else m.bool()


class RemixerTask(TrainModule):
    batch_keys = ("codes", "clips", "target_clap")
    optional_keys = ("padding_mask",)

    def __init__(self, config: Any, *, kl_weight: float = 1e-3, init_from: str | None = None) -> None:
        super().__init__()
        from ..modules.remixer import RemixerConfig, SoundSourceRemixer

        if isinstance(config, Mapping):
            config = RemixerConfig(**config)
        self.model = SoundSourceRemixer(config)
        if init_from:
            self.model.load_state_dict(SoundSourceRemixer.from_pretrained(init_from).state_dict())
        self.kl_weight = kl_weight

    def forward(self, batch, generator=None):
        from .losses import variational_cosine_loss

        out = self.model(batch["codes"], batch["clips"], _mask(batch), generator)
        loss, cosine, kl = variational_cosine_loss(batch["target_clap"], out, self.kl_weight, generator)
        return {"loss": loss, "metrics": {"cosine_distance": cosine.detach(), "kl": kl.detach()}}

    @torch.no_grad()
    def validation_step(self, batch, generator=None):
        sums = super().validation_step(batch, generator)
        pred = self.model.sample(batch["codes"], batch["clips"], _mask(batch), num_samples=0)
        sums["cosine"] = F.cosine_similarity(pred, batch["target_clap"].to(pred).float(), dim=-1).sum()
        return sums


class TemporalTask(TrainModule):
    batch_keys = ("frame_claps", "target_clap")
    optional_keys = ("padding_mask",)

    def __init__(self, config: Any, *, kl_weight: float = 0.0) -> None:
        super().__init__()
        from ..modules.temporal import TemporalAggregator, TemporalConfig

        if isinstance(config, Mapping):
            config = TemporalConfig(**config)
        self.model = TemporalAggregator(config)
        self.kl_weight = kl_weight

    def forward(self, batch, generator=None):
        from .losses import variational_cosine_loss

        out = self.model(batch["frame_claps"], padding_mask=_mask(batch))
        loss, cosine, kl = variational_cosine_loss(batch["target_clap"], out, self.kl_weight, generator)
        return {"loss": loss, "metrics": {"cosine_distance": cosine.detach(), "kl": kl.detach()}}

    @torch.no_grad()
    def validation_step(self, batch, generator=None):
        sums = super().validation_step(batch, generator)
        pred = self.model.aggregate(batch["frame_claps"], padding_mask=_mask(batch))
        sums["cosine"] = F.cosine_similarity(pred, batch["target_clap"].to(pred).float(), dim=-1).sum()
        return sums


# ------------------------------------------------------------------------------------------------
# Sounding-that-Object grounding (diffusion objective through the AudioLDM UNet)
# ------------------------------------------------------------------------------------------------


class GroundingTask(TrainModule):
    """Grounding module + AudioLDM UNet trained with the latent-diffusion loss (paper Eq. 1).

    ``unet``/``scheduler``: the generator's (e.g. ``AudioLDMGenerator``'s ``pipe.unet`` and
    ``pipe.scheduler``), or loaded from a model set's ``audioldm`` folder by :func:`build_task`.
    ``finetune_unet=False`` freezes the UNet (the paper's ablation (i)). ``null_cond`` is the
    unconditional vector for the 10 % condition dropout (CLAP of the empty string).
    """

    batch_keys = ("latents", "text_emb", "patch_emb")

    def __init__(self, config: Any, unet: nn.Module, scheduler: Any, *, cond_dropout: float = 0.1,
                 finetune_unet: bool = True, null_cond: Tensor | None = None) -> None:
        super().__init__()
        from ..modules.grounding import GroundingConfig, GroundingModule

        if isinstance(config, Mapping):
            config = GroundingConfig(**config)
        self.model = GroundingModule(config)
        if null_cond is not None:
            self.model.set_null_condition(null_cond)
        if cond_dropout > 0 and not bool(self.model.null_cond.any()):
            warnings.warn(
                "grounding null_cond is all zeros: dropped conditions will not match AudioLDM's unconditional "
                "input; pass null_cond (the generator's unconditional_embedding(), CLAP of \"\")", stacklevel=2)
        self.unet = unet
        self.unet.requires_grad_(finetune_unet)
        self.finetune_unet = finetune_unet
        self.noise_scheduler = scheduler
        self.cond_dropout = cond_dropout

    def forward(self, batch, generator=None):
        from .losses import diffusion_loss

        loss = diffusion_loss(self.model, self.unet, self.noise_scheduler,
                              (batch["latents"], batch["text_emb"], batch["patch_emb"]),
                              cond_dropout=self.cond_dropout if self.training else 0.0, generator=generator)
        return {"loss": loss, "metrics": {}}

    def extra_exports(self) -> dict[str, nn.Module]:
        return {"unet": self.unet} if self.finetune_unet else {}


class GroundingContrastiveTask(TrainModule):
    """The grounding module alone, trained with :func:`~foleykit.training.losses.output_contrastive_loss`:
    its conditioning must pick the named source's embedding out of ``audio_bank`` [S, D], which it can
    only do by attending to that source's patches (no patch labels). A cheap stand-in for the diffusion
    objective (no UNet), for sanity checks. Batch keys: text_emb, patch_emb, target_id (index into the bank).
    """

    batch_keys = ("text_emb", "patch_emb", "target_id")

    def __init__(self, config: Any, audio_bank: Tensor, *, temperature: float = 0.1) -> None:
        super().__init__()
        from ..modules.grounding import GroundingConfig, GroundingModule

        if isinstance(config, Mapping):
            config = GroundingConfig(**config)
        self.model = GroundingModule(config)
        self.register_buffer("audio_bank", torch.as_tensor(audio_bank).float(), persistent=False)
        self.temperature = temperature

    def forward(self, batch, generator=None):
        from .losses import output_contrastive_loss

        cond, _ = self.model(batch["text_emb"].float(), batch["patch_emb"].float())
        loss = output_contrastive_loss(cond, self.audio_bank, batch["target_id"].long(), self.temperature)
        return {"loss": loss, "metrics": {}}


# ------------------------------------------------------------------------------------------------
# registry
# ------------------------------------------------------------------------------------------------

TASK_NAMES = ("mapper", "manifold", "remixer", "temporal", "grounding")


_DIM_SOURCES: dict[str, list[tuple[str, str]]] = {
    # task -> (config field, batch key whose last dimension it must equal)
    "mapper": [("clip_dim", "clip"), ("clap_dim", "clap")],
    "manifold": [("clip_dim", "clip"), ("clap_dim", "clap")],
    "temporal": [("clap_dim", "frame_claps"), ("clap_dim", "target_clap")],
    "remixer": [("clip_dim", "clips"), ("clap_dim", "target_clap"), ("manifold_dim", "codes")],
    "grounding": [("text_dim", "text_emb"), ("patch_dim", "patch_emb")],
}

#: Sizes the data sets rather than contradicts: (config field, batch key, axis, rule). ``set`` takes
#: the data's size (the temporal aggregator's frames per window), ``at_least`` raises the run file's
#: value to the data's (the remixer's slot count).
_DATA_SIZED: dict[str, list[tuple[str, str, int, str]]] = {
    "temporal": [("num_frames", "frame_claps", 0, "set")],
    "remixer": [("max_sources", "clips", 0, "at_least")],
}


def _infer_dims(task: str, model: dict[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    """Fill the model's input sizes from the data; refuse a run file whose sizes contradict it."""
    model = dict(model)
    for name, key in _DIM_SOURCES.get(task, []):
        if key not in shapes or not shapes[key]:
            continue
        have = int(shapes[key][-1])
        if name in model and model[name] is not None and int(model[name]) != have:
            raise InputError(f"{task}: model.{name} is {model[name]} but the data's {key} has {have} features; "
                             f"fix the run file (or drop {name} to take it from the data)")
        model[name] = have
    for name, key, axis, rule in _DATA_SIZED.get(task, []):
        shape = shapes.get(key)
        if not shape or len(shape) <= axis:
            continue
        have = int(shape[axis])
        if rule == "set" or model.get(name) is None:
            model[name] = have
        else:
            model[name] = max(int(model[name]), have)
        if task == "temporal" and name == "num_frames":  # positions must cover the frames + 2 read-outs
            model["position_resolution"] = max(int(model.get("position_resolution") or 1024), have + 2)
    return model


@torch.no_grad()
def _clap_of_empty_text(audioldm_folder: str) -> Tensor:
    """[512] unit CLAP text embedding of "" from the AudioLDM folder's own text encoder: the unconditional
    input classifier-free guidance uses at inference (``AudioLDMGenerator.unconditional_embedding``), so
    the 10 % dropped conditions train that same branch."""
    from transformers import AutoTokenizer, ClapTextModelWithProjection

    tokenizer = AutoTokenizer.from_pretrained(audioldm_folder, subfolder="tokenizer")
    encoder = ClapTextModelWithProjection.from_pretrained(audioldm_folder, subfolder="text_encoder").eval()
    tok = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt")
    emb = encoder(input_ids=tok.input_ids, attention_mask=tok.attention_mask).text_embeds
    return F.normalize(emb.float(), dim=-1)[0]


def build_task(task: str, model: Mapping[str, Any] | None = None, options: Mapping[str, Any] | None = None, *,
               data_shapes: Mapping[str, tuple[int, ...]] | None = None,
               models: str | None = None) -> Callable[[], TrainModule]:
    """A factory for the task's TrainModule (the Trainer calls it after seeding). ``model`` holds
    the network's config fields (dimensions missing are read from ``data_shapes``), ``options`` the
    loss settings; ``models`` (grounding) names the model set whose AudioLDM UNet is fine-tuned (its text
    encoder's CLAP of "" is the null condition unless ``options["null_cond"]`` gives one)."""
    if task not in TASK_NAMES:
        raise InputError(f"unknown task {task!r}; choose one of {', '.join(TASK_NAMES)}")
    model_cfg = _infer_dims(task, dict(model or {}), data_shapes or {})
    opts = dict(options or {})
    if task == "mapper":
        return lambda: MapperTask(model_cfg, **opts)
    if task == "manifold":
        return lambda: ManifoldTask(model_cfg, **opts)
    if task == "remixer":
        return lambda: RemixerTask(model_cfg, **opts)
    if task == "temporal":
        return lambda: TemporalTask(model_cfg, **opts)

    def grounding() -> TrainModule:
        from diffusers import DDPMScheduler, UNet2DConditionModel

        from ..hub import resolve_pretrained
        from ..model_sets import resolve_model_set

        ref = resolve_model_set(models).audioldm
        local, _ = resolve_pretrained(ref)
        unet = UNet2DConditionModel.from_pretrained(local, subfolder="unet")
        scheduler = DDPMScheduler.from_pretrained(local, subfolder="scheduler")
        task_opts = dict(opts)
        null = task_opts.pop("null_cond", None)
        null = _clap_of_empty_text(local) if null is None else torch.as_tensor(null)
        return GroundingTask(model_cfg, unet, scheduler, null_cond=null, **task_opts)

    return grounding


__all__ = ["MapperTask", "ManifoldTask", "RemixerTask", "TemporalTask", "GroundingTask", "GroundingContrastiveTask",
           "TASK_NAMES", "build_task", "batch_len", "ema_update", "sigmoid_rampup", "retrieval_top1"]
