"""CLAP-conditioned latent diffusion (AudioLDM) on maintained diffusers/transformers parts.

diffusers' ``AudioLDMPipeline`` is deprecated and untested upstream, so this owns the denoise
loop over ``UNet2DConditionModel`` (FiLM condition = 512-d CLAP vector passed as
``class_labels``), ``AutoencoderKL``, a scheduler and ``SpeechT5HifiGan``. Input is a batch of
L2-normalised CLAP vectors — the one currency every foleykit method produces — and output is
16 kHz float waveforms.

Reproducibility: noise for batch item ``i`` comes from a CPU generator seeded ``seed + i``, so a
clip depends on its seed and settings only, not on the device or on what else is in the batch.

Precision: the modules run in the generator's dtype (float32, or bfloat16 where ``--dtype auto``
picks it: CPUs with native bf16, see :mod:`foleykit.devices`); the latents and the scheduler's
arithmetic stay float32 whatever the dtype (only the UNet's input is cast), so the noise, and the
sampler state, are the same in every dtype for a seed.

Speed on CPU (float32 and bfloat16): the generator re-lays the weights of its VAE decoder (and its
UNet where that pays: :func:`unet_channels_last_pays`) out channels-last *in place* (oneDNN's NHWC
convolutions are faster than NCHW there; in place, so the memory-mapped checkpoint is not duplicated
in RAM) and runs HiFi-GAN's 1-d convolutions as channels-last 2-d ones (much faster at its long,
narrow activations). Results equal the plain modules' within float tolerance (~1e-5 in float32).
``cpu_fast_path=False`` leaves the modules untouched.

Per-process, not per-call: :meth:`AudioLDMGenerator.prepare` (run by ``from_pretrained``) does the
re-layout, the unconditional embedding and the preset schedulers' set-up (including their imports:
diffusers' multistep schedulers import SciPy, ~1.3 s) once per loaded generator; a call only copies
a ready scheduler.
``compile=True`` additionally runs the UNet through ``torch.compile`` (inductor, frozen weights):
only 2-4 % faster per step than the eager fast path on a 2-core CPU, after seconds (warm inductor
cache) to minutes (cold) of compilation for every new shape, hence off by default.
BENCHMARKS.md has the figures behind each choice, and what was tried and dropped.
"""

from __future__ import annotations

import copy
import functools
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..devices import dtype_name, resolve_device, resolve_dtype
from ..encoders.loading import LoadedFrom, load_pretrained, to_device
from ..errors import InputError
from ..memory import release_freed_memory
from ..seeding import make_generator, resolve_seed
from .presets import PRESETS, get_preset, make_scheduler

#: Longest clip one diffusion pass makes: AudioLDM was trained on 10.24 s (1024 mel frames).
MAX_WINDOW_S = 10.24


@dataclass
class GeneratorOutput:
    """Waveforms [B, T] float32 at ``sample_rate``; ``scores`` = CLAP cosine to the condition if ranked."""

    waveforms: np.ndarray
    sample_rate: int
    seed: int
    #: With a ranker and several candidates: every candidate [B, n, T] and its CLAP cosine [B, n].
    candidates: np.ndarray | None = None
    candidate_scores: np.ndarray | None = None
    settings: dict = field(default_factory=dict)
    scores: np.ndarray | None = None


class AudioLDMGenerator:
    """Turns [B, 512] CLAP vectors into audio with classifier-free guidance.

    The unconditional input is the CLAP text embedding of ``""`` from the checkpoint's own text
    encoder (as AudioLDM was trained), computed once and cached.
    """

    def __init__(
        self, unet, vae, vocoder, scheduler, text_encoder=None, tokenizer=None, *, loaded_from=None,
        cpu_fast_path: bool = True, compile: bool = False,
    ) -> None:
        """``cpu_fast_path``: on CPU in float32, convert the modules in place to the faster layouts
        described in the module docstring (the first time the generator runs). ``compile``: run the
        UNet through ``torch.compile`` (off by default: minutes of compilation per new shape)."""
        self.unet = unet
        self.vae = vae
        self.vocoder = vocoder
        self.scheduler = scheduler
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.loaded_from: LoadedFrom | None = loaded_from
        self.cpu_fast_path = cpu_fast_path
        self.compile = compile
        self._uncond: torch.Tensor | None = None
        self._prepared_for: tuple | None = None
        self._compiled_unet = None
        self._schedulers: dict[str, object] = {}  # name -> a set-up template, copied per call
        self._lock = threading.RLock()  # lazy state (unconditional vector, fast-path layouts) is set once

    def with_unet(self, unet) -> AudioLDMGenerator:
        """A copy that runs ``unet`` and shares everything else (VAE, vocoder, text encoder) with this one:
        a shared generator is never changed in place. Its UNet gets the fast path on first use."""
        other = copy.copy(self)
        other.unet = unet
        other._prepared_for = None
        other._compiled_unet = None  # the lock stays shared: preparing converts the shared VAE and vocoder
        return other

    @classmethod
    def from_pretrained(
        cls, ref: str, *, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None,
        cpu_fast_path: bool = True, compile: bool = False,
    ) -> AudioLDMGenerator:
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
        from transformers import AutoTokenizer, ClapTextModelWithProjection, SpeechT5HifiGan

        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev) if dtype is not None else torch.float32  # "auto": devices.auto_dtype
        unet, src = load_pretrained(UNet2DConditionModel, ref, subfolder="unet", torch_dtype=dt)
        vae, _ = load_pretrained(AutoencoderKL, ref, subfolder="vae", torch_dtype=dt)
        vocoder, _ = load_pretrained(SpeechT5HifiGan, ref, subfolder="vocoder", dtype=dt)
        scheduler, _ = load_pretrained(DDIMScheduler, ref, subfolder="scheduler")
        text_encoder, _ = load_pretrained(ClapTextModelWithProjection, ref, subfolder="text_encoder", dtype=dt)
        tokenizer, _ = load_pretrained(AutoTokenizer, ref, subfolder="tokenizer")
        gen = cls(
            to_device(unet, dev, dt),
            to_device(vae, dev, dt),
            to_device(vocoder, dev, dt),
            scheduler,
            to_device(text_encoder, dev, dt),
            tokenizer,
            loaded_from=LoadedFrom(ref=ref, revision=src.revision, path=str(src.path).rsplit("/unet", 1)[0]),
            cpu_fast_path=cpu_fast_path,
            compile=compile,
        )
        gen.prepare()
        return gen

    def prepare(self) -> AudioLDMGenerator:
        """Do now, once, the per-process work a first call would otherwise do: the CPU fast path's
        weight re-layout, the unconditional embedding (if there is a text encoder) and the presets'
        schedulers. Idempotent and thread-safe; calls do it lazily when it was not done."""
        with torch.no_grad():
            self._prepare()
        if self.text_encoder is not None and self.tokenizer is not None:
            self.unconditional_embedding()
        for name in sorted({p.scheduler for p in PRESETS.values()}):
            self._scheduler_template(name)
        return self

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
            with self._lock:
                if self._uncond is None:
                    tok = self.tokenizer([""], padding="max_length", max_length=self.tokenizer.model_max_length,
                                         truncation=True, return_tensors="pt").to(self.device)
                    emb = self.text_encoder(input_ids=tok.input_ids, attention_mask=tok.attention_mask).text_embeds
                    self._uncond = F.normalize(emb.float(), dim=-1)[0]
        return self._uncond

    @torch.no_grad()
    def text_embedding(self, text: str) -> torch.Tensor:
        """[512] unit CLAP text embedding of ``text`` by the generator's own text tower (a negative
        prompt: classifier-free guidance then steers away from it instead of from ``""``)."""
        if not text:
            return self.unconditional_embedding()
        if self.text_encoder is None or self.tokenizer is None:
            raise InputError("this generator has no text encoder, so a negative prompt cannot be embedded")
        tok = self.tokenizer([text], padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").to(self.device)
        emb = self.text_encoder(input_ids=tok.input_ids, attention_mask=tok.attention_mask).text_embeds
        return F.normalize(emb.float(), dim=-1)[0]

    def _scheduler_template(self, name: str):
        """A scheduler of kind ``name`` on the checkpoint's noise schedule, built once per generator."""
        sched = self._schedulers.get(name)
        if sched is None:
            with self._lock:
                sched = self._schedulers.get(name)
                if sched is None:
                    sched = self._schedulers[name] = make_scheduler(name, self.scheduler.config)
        return sched

    def scheduler_for(self, name: str, steps: int):
        """A fresh scheduler (its own step state, so concurrent calls do not share one) set to ``steps``."""
        sched = copy.deepcopy(self._scheduler_template(name))
        sched.set_timesteps(steps, device=self.device)
        return sched

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

        sched = self.scheduler_for(sched_name, steps)
        generators = [make_generator(seed + i) for i in range(total)]
        from diffusers.utils.torch_utils import randn_tensor

        # float32 latents and sampler arithmetic in every dtype: the same noise for a seed, and no
        # bf16 rounding accumulated over the steps; only the UNet's input is cast to its dtype.
        latents = randn_tensor(self.latent_shape(total, duration_s), generator=generators, device=self.device,
                               dtype=torch.float32)
        latents = latents * sched.init_noise_sigma
        extra = {}
        if "eta" in _step_params(sched):
            extra["eta"] = eta
        if "generator" in _step_params(sched):
            extra["generator"] = generators

        self._prepare()
        unet = self._unet_callable()
        if self._channels_last:
            latents = latents.contiguous(memory_format=torch.channels_last)
        timesteps = sched.timesteps
        with torch.inference_mode():
            for i, t in enumerate(tqdm(timesteps, desc="diffusion", disable=not progress, leave=False)):
                model_in = torch.cat([latents] * 2) if do_cfg else latents
                model_in = sched.scale_model_input(model_in, t).to(self.dtype)
                noise = unet(model_in, t, encoder_hidden_states=None, class_labels=class_labels).sample.float()
                if do_cfg:
                    uncond, condn = noise.chunk(2)
                    noise = uncond + guidance * (condn - uncond)
                latents = sched.step(noise, t, latents, **extra).prev_sample
                if step_callback is not None:
                    step_callback(i + 1, len(timesteps))

            waves = self.decode(latents, duration_s)
        scores = all_waves = all_scores = None
        if num_candidates > 1 or ranker is not None:
            all_waves = waves
            waves, scores, all_scores = self._rank(waves, cond, batch, num_candidates, ranker)
        settings = dict(
            preset=p.name, scheduler=sched_name, num_inference_steps=steps, guidance_scale=guidance, eta=eta,
            duration_s=duration_s, num_candidates=num_candidates, ranked=ranker is not None,
            device=str(self.device), dtype=dtype_name(self.dtype),
        )
        out = GeneratorOutput(waveforms=waves, sample_rate=self.sample_rate, seed=seed, settings=settings, scores=scores)
        if all_scores is not None and num_candidates > 1:
            out.candidates = all_waves.reshape(batch, num_candidates, -1)
            out.candidate_scores = all_scores
        return out

    def decode(self, latents: torch.Tensor, duration_s: float) -> np.ndarray:
        """Latents → mel (VAE) → waveform (HiFi-GAN), cut to ``duration_s``.

        On CPU one clip at a time: decoding runs near the matmul peak there, so a batch buys no speed,
        and one clip's activations at a time keep the peak memory of a many-source generation (stems,
        candidates) at that of one clip. Freed decoder buffers are handed back to the OS afterwards
        (:func:`foleykit.memory.release_freed_memory`), so a long-running process does not carry them."""
        with torch.no_grad():  # module conversions happen outside inference mode (weights stay ordinary tensors)
            self._prepare()
        per_clip = self.device.type == "cpu"
        with torch.inference_mode():
            latents = (latents / self.vae.config.scaling_factor).to(next(self.vae.parameters()).dtype)
            waves = []
            for part in (latents.split(1) if per_clip else (latents,)):
                if self._decoder_channels_last:
                    part = part.contiguous(memory_format=torch.channels_last)
                mel = self.vae.decode(part).sample.squeeze(1)
                waves.append(self.vocoder(mel.to(self.vocoder.dtype)).float().cpu().numpy())
                del mel
            wave = np.concatenate(waves) if len(waves) > 1 else waves[0]
        release_freed_memory()
        return np.ascontiguousarray(wave[:, : int(round(duration_s * self.sample_rate))], dtype=np.float32)

    # -- speed ------------------------------------------------------------------------------
    @property
    def _channels_last(self) -> bool:
        """The UNet (and so its latents) is channels-last."""
        return self._prepared_for is not None and self._prepared_for[3]

    @property
    def _decoder_channels_last(self) -> bool:
        return self._prepared_for is not None and self._prepared_for[2]

    def _prepare(self) -> None:
        """Apply the CPU fast path once per (device, dtype); a no-op elsewhere or when switched off.
        Locked: the first threads to generate wait for the one that converts the modules."""
        with self._lock:
            self._prepare_unlocked()

    def _prepare_unlocked(self) -> None:
        key = (self.device, self.dtype)
        if self._prepared_for is not None and self._prepared_for[:2] == key:
            return
        with self._lock:
            if self._prepared_for is not None and self._prepared_for[:2] == key:
                return
            fast = (bool(self.cpu_fast_path) and self.device.type == "cpu"
                    and self.dtype in (torch.float32, torch.bfloat16))
            unet_cl = fast and unet_channels_last_pays(self.dtype)
            if unet_cl:
                _channels_last_inplace(self.unet)
            if fast:
                # Only the decode path: the encoder is never run here, so its weights stay untouched.
                for part in (getattr(self.vae, "post_quant_conv", None), getattr(self.vae, "decoder", None)):
                    if part is not None:
                        _channels_last_inplace(part)
                _vocoder_convs_as_2d(self.vocoder)
            self._compiled_unet = None
            self._prepared_for = (*key, fast, unet_cl)

    def _unet_callable(self):
        if not self.compile:
            return self.unet
        with self._lock:
            return self._compiled_unet_locked()

    def _compiled_unet_locked(self):
        if self._compiled_unet is None:
            # Frozen weights let inductor pre-pack them for oneDNN/MKL and fold constants; the
            # generator is inference-only, so nothing updates the weights behind its back.
            self._compiled_unet = torch.compile(self.unet, dynamic=False, options={"freezing": True})
        return self._compiled_unet

    def _rank(self, waves, cond, batch, n, ranker):
        """Keep, per condition, the candidate whose CLAP audio embedding best matches the condition."""
        if ranker is None:
            return waves[::n], None, None
        emb = ranker.embed_audio(list(waves), self.sample_rate).to(cond.device)
        sims = (emb * cond).sum(-1).view(batch, n)
        best = sims.argmax(dim=1)
        idx = (torch.arange(batch, device=best.device) * n + best).cpu().numpy()
        return waves[idx], sims.max(dim=1).values.cpu().numpy(), sims.float().cpu().numpy()

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


def _relayout_inplace(param: torch.Tensor, strides: tuple[int, ...], done: dict) -> None:
    """Give ``param`` the dense layout ``strides`` *in its own storage* (same values, same shape).

    ``module.to(memory_format=...)`` would allocate new tensors while the checkpoint's memory-mapped
    pages stay resident: a second copy of the weights in RSS. Writing the permuted values back into
    the same (private, copy-on-write) storage keeps one copy, with one parameter's worth of scratch
    memory at a time. ``done`` makes tensors that share storage get the same view.
    """
    key = (param.data_ptr(), tuple(param.shape), tuple(param.stride()))
    if key not in done:
        scratch = torch.empty_strided(param.shape, strides, dtype=param.dtype, device=param.device)
        scratch.copy_(param.detach())
        view = torch.empty(0, dtype=param.dtype, device=param.device).set_(
            param.untyped_storage(), param.storage_offset(), param.shape, strides
        )
        view.copy_(scratch)
        done[key] = view
    param.data = done[key]


def unet_channels_last_pays(dtype: torch.dtype = torch.float32) -> bool:
    """Whether the UNet runs faster channels-last on this CPU in ``dtype`` (the VAE decoder does on
    every CPU we measured, so it is always converted).

    float32 (BENCHMARKS.md): 0.94x the stock step on an AVX2 Zen 3, but 1.00x per step in isolation
    and 1.06-1.11x inside the paper-preset loop on an AVX-512 Zen 4, where oneDNN's NCHW kernels are
    as good; so only CPUs without AVX-512 get it. bfloat16: oneDNN's bf16 convolutions are NHWC-native
    (NCHW inputs are reordered around every convolution), so channels-last everywhere until the
    bf16 machine's ``bench_generate_variants.py --dtype bf16`` run says otherwise (BENCHMARKS.md).
    """
    if dtype == torch.bfloat16:
        return True
    return not torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def _channels_last_inplace(module: torch.nn.Module) -> None:
    """Every 4-d parameter of ``module`` channels-last, in place (see :func:`_relayout_inplace`)."""
    done: dict = {}
    with torch.no_grad():
        for param in module.parameters():
            if param.dim() == 4 and not param.is_contiguous(memory_format=torch.channels_last):
                strides = torch.empty(param.shape, device="meta").contiguous(memory_format=torch.channels_last).stride()
                _relayout_inplace(param, strides, done)


def _conv1d_as_2d(conv: torch.nn.Module, x: torch.Tensor, output_size=None) -> torch.Tensor:
    """A ``Conv1d``/``ConvTranspose1d`` on [B, C, L] run as a channels-last 2-d conv on [B, C, 1, L].

    oneDNN's NHWC kernels are much faster than its 1-d NCL ones at HiFi-GAN's long, narrow
    activations. The output is a [B, C, L] view with channels innermost, which the next conv takes
    as is (pointwise ops keep the layout).
    """
    if output_size is not None or x.dim() != 3:
        return type(conv).forward(conv, x, output_size) if output_size is not None else type(conv).forward(conv, x)
    x4 = x.unsqueeze(2)
    if not x4.is_contiguous(memory_format=torch.channels_last):
        x4 = x4.contiguous(memory_format=torch.channels_last)
    weight = conv.weight.unsqueeze(2)
    if isinstance(conv, torch.nn.ConvTranspose1d):
        y = F.conv_transpose2d(x4, weight, conv.bias, (1, conv.stride[0]), (0, conv.padding[0]),
                               (0, conv.output_padding[0]), conv.groups, (1, conv.dilation[0]))
    else:
        y = F.conv2d(x4, weight, conv.bias, (1, conv.stride[0]), (0, conv.padding[0]), (1, conv.dilation[0]), conv.groups)
    return y.squeeze(2)


def _vocoder_convs_as_2d(vocoder) -> None:
    """Route the vocoder's 1-d convolutions through :func:`_conv1d_as_2d`.

    Their [A, B, K] weights are re-laid out in place with the channel axis B innermost, so the
    [A, B, 1, K] view the 2-d conv takes is already channels-last (no per-call weight copy).
    """
    done: dict = {}
    with torch.no_grad():
        for module in vocoder.modules():
            if (
                type(module) in (torch.nn.Conv1d, torch.nn.ConvTranspose1d)
                and module.padding_mode == "zeros" and not isinstance(module.padding, str)
                and "forward" not in module.__dict__
            ):
                _, b, k = module.weight.shape
                if module.weight.stride() != (k * b, 1, b):
                    _relayout_inplace(module.weight, (k * b, 1, b), done)
                module.forward = functools.partial(_conv1d_as_2d, module)


def _step_params(sched) -> set[str]:
    import inspect

    return set(inspect.signature(sched.step).parameters)
