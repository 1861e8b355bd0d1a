"""CLAP-conditioned latent diffusion (AudioLDM) on maintained diffusers/transformers parts.

diffusers' ``AudioLDMPipeline`` is deprecated and untested upstream, so this owns the denoise
loop over ``UNet2DConditionModel`` (FiLM condition = 512-d CLAP vector passed as
``class_labels``), ``AutoencoderKL``, a scheduler and ``SpeechT5HifiGan``. Input is a batch of
L2-normalised CLAP vectors — the one currency every foleykit method produces — and output is
16 kHz float waveforms.

Reproducibility: noise for batch item ``i`` comes from a CPU generator seeded ``seed + i``, so a
clip depends on its seed and settings only, not on the device or on what else is in the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..devices import resolve_device, resolve_dtype
from ..encoders.loading import LoadedFrom, load_pretrained, to_device
from ..errors import InputError
from ..seeding import make_generator, resolve_seed
from .presets import get_preset, make_scheduler

#: Longest clip one diffusion pass makes: AudioLDM was trained on 10.24 s (1024 mel frames).
MAX_WINDOW_S = 10.24


@dataclass
class GeneratorOutput:
    """Waveforms [B, T] float32 at ``sample_rate``; ``scores`` = CLAP cosine to the condition if ranked."""

    waveforms: np.ndarray
    sample_rate: int
    seed: int
    settings: dict = field(default_factory=dict)
    scores: np.ndarray | None = None


class AudioLDMGenerator:
    """Turns [B, 512] CLAP vectors into audio with classifier-free guidance.

    The unconditional input is the CLAP text embedding of ``""`` from the checkpoint's own text
    encoder (as AudioLDM was trained), computed once and cached.
    """

    def __init__(self, unet, vae, vocoder, scheduler, text_encoder=None, tokenizer=None, *, loaded_from=None) -> None:
        self.unet = unet
        self.vae = vae
        self.vocoder = vocoder
        self.scheduler = scheduler
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.loaded_from: LoadedFrom | None = loaded_from
        self._uncond: torch.Tensor | None = None

    @classmethod
    def from_pretrained(
        cls, ref: str, *, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None
    ) -> AudioLDMGenerator:
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
        from transformers import AutoTokenizer, ClapTextModelWithProjection, SpeechT5HifiGan

        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev) if dtype is not None else torch.float32
        unet, src = load_pretrained(UNet2DConditionModel, ref, subfolder="unet", torch_dtype=dt)
        vae, _ = load_pretrained(AutoencoderKL, ref, subfolder="vae", torch_dtype=dt)
        vocoder, _ = load_pretrained(SpeechT5HifiGan, ref, subfolder="vocoder", dtype=dt)
        scheduler, _ = load_pretrained(DDIMScheduler, ref, subfolder="scheduler")
        text_encoder, _ = load_pretrained(ClapTextModelWithProjection, ref, subfolder="text_encoder", dtype=dt)
        tokenizer, _ = load_pretrained(AutoTokenizer, ref, subfolder="tokenizer")
        return cls(
            to_device(unet, dev, dt),
            to_device(vae, dev, dt),
            to_device(vocoder, dev, dt),
            scheduler,
            to_device(text_encoder, dev, dt),
            tokenizer,
            loaded_from=LoadedFrom(ref=ref, revision=src.revision, path=str(src.path).rsplit("/unet", 1)[0]),
        )

    # -- geometry ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def sample_rate(self) -> int:
        return int(self.vocoder.config.sampling_rate)

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def seconds_per_frame(self) -> float:
        """Duration of one mel frame: the vocoder's hop divided by its sample rate (0.01 s for AudioLDM)."""
        return float(np.prod(self.vocoder.config.upsample_rates)) / self.sample_rate

    def latent_shape(self, batch: int, duration_s: float) -> tuple[int, int, int, int]:
        frames = int(math.ceil(duration_s / self.seconds_per_frame))
        frames = int(math.ceil(frames / self.vae_scale_factor) * self.vae_scale_factor)
        mel_bins = int(self.vocoder.config.model_in_dim)
        return (batch, int(self.unet.config.in_channels), frames // self.vae_scale_factor, mel_bins // self.vae_scale_factor)

    # -- conditioning -----------------------------------------------------------------------
    @torch.no_grad()
    def unconditional_embedding(self) -> torch.Tensor:
        """[512] unit CLAP text embedding of the empty string (AudioLDM's unconditional input)."""
        if self._uncond is None:
            if self.text_encoder is None or self.tokenizer is None:
                raise InputError("this generator has no text encoder, so pass negative_embeds explicitly")
            tok = self.tokenizer([""], padding="max_length", max_length=self.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt").to(self.device)
            emb = self.text_encoder(input_ids=tok.input_ids, attention_mask=tok.attention_mask).text_embeds
            self._uncond = F.normalize(emb.float(), dim=-1)[0]
        return self._uncond

    # -- sampling ---------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        clap_embeds: torch.Tensor,
        *,
        duration_s: float = 10.0,
        preset: str = "fast",
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        eta: float | None = None,
        scheduler: str | None = None,
        seed: int | None = None,
        negative_embeds: torch.Tensor | None = None,
        num_candidates: int = 1,
        ranker=None,
        progress: bool = True,
        step_callback: Callable[[int, int], None] | None = None,
    ) -> GeneratorOutput:
        """Generate one clip per row of ``clap_embeds`` (best of ``num_candidates`` when ``ranker`` is given).

        Args:
            clap_embeds: [B, 512] CLAP vectors; normalised here (AudioLDM's condition is unit-norm).
            duration_s: seconds, 0 < d <= 10.24 (use :func:`generate_long` beyond one window).
            preset: ``paper`` or ``fast``; explicit steps/guidance/eta/scheduler override it.
            num_candidates: clips drawn per condition; with a ``ranker`` (ClapEncoder) the one whose
                CLAP audio embedding is closest to the condition is kept, else the first.
        """
        p = get_preset(preset)
        steps = int(p.num_inference_steps if num_inference_steps is None else num_inference_steps)
        guidance = float(p.guidance_scale if guidance_scale is None else guidance_scale)
        eta = float(p.eta if eta is None else eta)
        sched_name = scheduler or p.scheduler
        self._check(clap_embeds, duration_s, steps, guidance, num_candidates)
        seed = resolve_seed(seed)

        cond = F.normalize(clap_embeds.float(), dim=-1).to(self.device)
        batch = cond.shape[0]
        cond = cond.repeat_interleave(num_candidates, dim=0)
        total = cond.shape[0]
        do_cfg = guidance != 1.0  # 1.0 is the conditional model alone; skip the unconditional pass
        if do_cfg:
            neg = self.unconditional_embedding() if negative_embeds is None else F.normalize(negative_embeds.float(), dim=-1)
            neg = neg.to(self.device).expand(total, -1) if neg.dim() == 1 else neg.to(self.device).repeat_interleave(num_candidates, 0)
            class_labels = torch.cat([neg, cond]).to(self.dtype)
        else:
            class_labels = cond.to(self.dtype)

        sched = make_scheduler(sched_name, self.scheduler.config)
        sched.set_timesteps(steps, device=self.device)
        generators = [make_generator(seed + i) for i in range(total)]
        from diffusers.utils.torch_utils import randn_tensor

        latents = randn_tensor(self.latent_shape(total, duration_s), generator=generators, device=self.device, dtype=self.dtype)
        latents = latents * sched.init_noise_sigma
        extra = {}
        if "eta" in _step_params(sched):
            extra["eta"] = eta
        if "generator" in _step_params(sched):
            extra["generator"] = generators

        timesteps = sched.timesteps
        for i, t in enumerate(tqdm(timesteps, desc="diffusion", disable=not progress, leave=False)):
            model_in = torch.cat([latents] * 2) if do_cfg else latents
            model_in = sched.scale_model_input(model_in, t)
            noise = self.unet(model_in, t, encoder_hidden_states=None, class_labels=class_labels).sample
            if do_cfg:
                uncond, condn = noise.chunk(2)
                noise = uncond + guidance * (condn - uncond)
            latents = sched.step(noise, t, latents, **extra).prev_sample
            if step_callback is not None:
                step_callback(i + 1, len(timesteps))

        waves = self.decode(latents, duration_s)
        scores = None
        if num_candidates > 1 or ranker is not None:
            waves, scores = self._rank(waves, cond, batch, num_candidates, ranker)
        settings = dict(
            preset=p.name, scheduler=sched_name, num_inference_steps=steps, guidance_scale=guidance, eta=eta,
            duration_s=duration_s, num_candidates=num_candidates, ranked=ranker is not None,
        )
        return GeneratorOutput(waveforms=waves, sample_rate=self.sample_rate, seed=seed, settings=settings, scores=scores)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, duration_s: float) -> np.ndarray:
        """Latents → mel (VAE) → waveform (HiFi-GAN), cut to ``duration_s``."""
        mel = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        mel = mel.squeeze(1)
        wave = self.vocoder(mel.to(self.vocoder.dtype)).float().cpu().numpy()
        return np.ascontiguousarray(wave[:, : int(round(duration_s * self.sample_rate))], dtype=np.float32)

    def _rank(self, waves, cond, batch, n, ranker):
        """Keep, per condition, the candidate whose CLAP audio embedding best matches the condition."""
        if ranker is None:
            return waves[::n], None
        emb = ranker.embed_audio(list(waves), self.sample_rate).to(cond.device)
        sims = (emb * cond).sum(-1).view(batch, n)
        best = sims.argmax(dim=1)
        idx = (torch.arange(batch, device=best.device) * n + best).cpu().numpy()
        return waves[idx], sims.max(dim=1).values.cpu().numpy()

    def _check(self, clap_embeds, duration_s, steps, guidance, n) -> None:
        if not isinstance(clap_embeds, torch.Tensor) or clap_embeds.dim() != 2:
            raise InputError(f"clap_embeds must be a [B, D] tensor, got {getattr(clap_embeds, 'shape', type(clap_embeds))}")
        want = int(self.unet.config.projection_class_embeddings_input_dim)
        if clap_embeds.shape[1] != want:
            raise InputError(f"clap_embeds have {clap_embeds.shape[1]} dims; this generator takes {want}")
        if not torch.isfinite(clap_embeds).all() or (clap_embeds.norm(dim=-1) == 0).any():
            raise InputError("clap_embeds contain NaN/inf or all-zero rows")
        if not (0 < duration_s <= MAX_WINDOW_S + 1e-9):
            raise InputError(f"one diffusion window is 0 < duration <= {MAX_WINDOW_S} s, got {duration_s}")
        if steps < 1 or steps > 1000:
            raise InputError(f"steps must be between 1 and 1000, got {steps}")
        if not math.isfinite(guidance) or guidance < 0:
            raise InputError(f"guidance scale must be a finite number >= 0, got {guidance}")
        if n < 1 or n > 64:
            raise InputError(f"candidates must be between 1 and 64, got {n}")


def _step_params(sched) -> set[str]:
    import inspect

    return set(inspect.signature(sched.step).parameters)
