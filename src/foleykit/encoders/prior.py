"""Text sources → CLIP *image* space, through a DALL·E 2-style diffusion prior (paper: "we translate
the CLIP text embeddings of text prompts to CLIP image space with a pretrained DALL·E-2 Prior").

SS2A's manifold projector v was trained on CLIP *image* embeddings; a CLIP *text* embedding of the
same concept lies elsewhere (the modality gap), so a text source is first translated by a prior.
The released code used the LAION dalle2-pytorch prior; foleykit uses the equivalent public
diffusers parts of Karlo (``kakaobrain/karlo-v1-alpha``, a DALL·E 2 reproduction on CLIP
ViT-L/14, the same 768-d image space as SS2A's CLIP):

* ``text_encoder``: ``CLIPTextModelWithProjection`` (ViT-L/14 text tower), giving the projected
  text embedding and the per-token hidden states;
* ``prior``: ``PriorTransformer`` predicting the (standardised) image embedding x₀ from the noisy one,
  the time step, the text embedding and the text tokens;
* ``prior_scheduler``: ``UnCLIPScheduler`` (Karlo's DDPM variant, "sample" prediction).

Sampling (:meth:`TextToImagePrior.embed_texts`) follows Karlo's defaults: 25 steps, classifier-free
guidance 4.0 against the empty prompt, then ``post_process_latents`` (× clip_std + clip_mean) and
L2 normalisation. All noise comes from a CPU generator seeded by the caller, so a seed fixes the
result on any device. (The released code sampled 2 embeddings without guidance and kept the one
closer to the text; Karlo's prior was trained for guided sampling, so we use its own recipe.)

Fallback: ``text_mode="clip"`` in the sources pipeline uses the plain CLIP text embedding (no prior),
which is cheap but suffers from the modality gap; it is also what happens when a model set has no
``prior`` role (the output record says so).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from ..devices import resolve_device, resolve_dtype
from ..errors import InputError
from ..seeding import make_generator
from .loading import LoadedFrom, load_pretrained, to_device

__all__ = ["DEFAULT_PRIOR_GUIDANCE", "DEFAULT_PRIOR_STEPS", "TextToImagePrior", "write_tiny_prior"]

#: Karlo's UnCLIPPipeline defaults.
DEFAULT_PRIOR_STEPS = 25
DEFAULT_PRIOR_GUIDANCE = 4.0


class TextToImagePrior:
    """Frozen CLIP text encoder + diffusion prior: texts → unit CLIP image embeddings [N, 768]."""

    def __init__(self, text_encoder, tokenizer, prior, scheduler, *, loaded_from: LoadedFrom | None = None) -> None:
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.prior = prior
        self.scheduler = scheduler
        self.loaded_from = loaded_from
        self.calls = 0  # texts sampled (each costs steps x 2 prior passes)
        self._lock = threading.RLock()

    @classmethod
    def from_pretrained(
        cls, ref: str, *, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None
    ) -> TextToImagePrior:
        from diffusers import PriorTransformer, UnCLIPScheduler
        from transformers import CLIPTextModelWithProjection, CLIPTokenizer

        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev) if dtype is not None else torch.float32
        text_encoder, src = load_pretrained(CLIPTextModelWithProjection, ref, subfolder="text_encoder", dtype=dt)
        tokenizer, _ = load_pretrained(CLIPTokenizer, ref, subfolder="tokenizer")
        prior, _ = load_pretrained(PriorTransformer, ref, subfolder="prior", torch_dtype=dt)
        scheduler, _ = load_pretrained(UnCLIPScheduler, ref, subfolder="prior_scheduler")
        return cls(
            to_device(text_encoder, dev, dt), tokenizer, to_device(prior, dev, dt), scheduler,
            loaded_from=LoadedFrom(ref=ref, revision=src.revision, path=str(Path(src.path).parent)),
        )

    @property
    def device(self) -> torch.device:
        return next(self.prior.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.prior.parameters()).dtype

    @property
    def dim(self) -> int:
        return int(self.prior.config.clip_embed_dim or self.prior.config.embedding_dim)

    @torch.no_grad()
    def _encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tok = self.tokenizer(
            list(texts), padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True,
            return_tensors="pt",
        ).to(self.device)
        out = self.text_encoder(input_ids=tok.input_ids, attention_mask=tok.attention_mask)
        return out.text_embeds, out.last_hidden_state, tok.attention_mask.bool()

    @torch.no_grad()
    def embed_texts(
        self,
        texts: Sequence[str],
        *,
        seed: int,
        num_inference_steps: int = DEFAULT_PRIOR_STEPS,
        guidance_scale: float = DEFAULT_PRIOR_GUIDANCE,
    ) -> torch.Tensor:
        """[N, dim] unit CLIP image embeddings sampled for ``texts`` (text i uses seed ``seed + i``)."""
        texts = list(texts)
        if not texts:
            return torch.empty(0, self.dim)
        if any(not isinstance(t, str) or not t.strip() for t in texts):
            raise InputError("a text source is empty; give some words, e.g. --text 'rain on a tin roof'")
        if num_inference_steps < 1 or num_inference_steps > 1000:
            raise InputError(f"prior steps must be between 1 and 1000, got {num_inference_steps}")
        if guidance_scale < 0:
            raise InputError(f"prior guidance must be >= 0, got {guidance_scale}")
        from diffusers.utils.torch_utils import randn_tensor

        with self._lock:
            n = len(texts)
            emb, hidden, mask = self._encode(texts)
            guided = guidance_scale > 1.0
            if guided:
                u_emb, u_hidden, u_mask = self._encode([""])
                emb = torch.cat([u_emb.expand(n, -1), emb])
                hidden = torch.cat([u_hidden.expand(n, -1, -1), hidden])
                mask = torch.cat([u_mask.expand(n, -1), mask])
            generators = [make_generator(seed + i) for i in range(n)]
            dim = int(self.prior.config.embedding_dim)
            latents = randn_tensor((n, dim), generator=generators, device=self.device, dtype=self.dtype)
            sched = self.scheduler
            sched.set_timesteps(num_inference_steps, device=self.device)
            latents = latents * sched.init_noise_sigma
            timesteps = sched.timesteps
            for i, t in enumerate(timesteps):
                model_in = torch.cat([latents] * 2) if guided else latents
                pred = self.prior(
                    model_in, timestep=t, proj_embedding=emb.to(self.dtype),
                    encoder_hidden_states=hidden.to(self.dtype), attention_mask=mask,
                ).predicted_image_embedding
                if guided:
                    uncond, cond = pred.chunk(2)
                    pred = uncond + guidance_scale * (cond - uncond)
                prev = None if i + 1 == len(timesteps) else timesteps[i + 1]
                latents = sched.step(pred, timestep=t, sample=latents, prev_timestep=prev, generator=generators).prev_sample
            image_emb = self.prior.post_process_latents(latents).float()
            self.calls += n
        if not torch.isfinite(image_emb).all() or (image_emb.norm(dim=-1) == 0).any():
            raise InputError("the text prior produced an invalid embedding (NaN or zero); try --text-mode clip")
        return F.normalize(image_emb, dim=-1)


# ---------------------------------------------------------------------- tiny stand-in


def write_tiny_prior(path: str | Path, *, seed: int = 0) -> Path:
    """Write a deterministic tiny Karlo-layout prior (text_encoder, tokenizer, prior, prior_scheduler).

    Same classes as Karlo; the text tower is 32 wide and feeds the prior's 32-wide tokens directly
    (``encoder_hid_proj_type=None``), the image side is the real 768-d CLIP ViT-L/14 space.
    ``clip_std`` is 1 and ``clip_mean`` small, so the stand-in's outputs are usable unit vectors.
    """
    from diffusers import PriorTransformer, UnCLIPScheduler
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    from .tiny_vocab import clip_vocab

    path = Path(path)
    vocab, merges = clip_vocab()
    torch.manual_seed(seed)
    text_encoder = CLIPTextModelWithProjection(
        CLIPTextConfig(
            vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=77, projection_dim=768, bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"],
        )
    ).eval()
    text_encoder.save_pretrained(path / "text_encoder")
    CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77).save_pretrained(path / "tokenizer")
    torch.manual_seed(seed + 1)
    prior = PriorTransformer(
        num_attention_heads=2, attention_head_dim=16, num_layers=2, embedding_dim=768, num_embeddings=77,
        additional_embeddings=4, encoder_hid_proj_type=None,
    ).eval()
    with torch.no_grad():
        prior.clip_std.fill_(1.0)
        prior.clip_mean.normal_(0.0, 0.02)
        prior.positional_embedding.normal_(0.0, 0.02)
        prior.prd_embedding.normal_(0.0, 0.02)
    prior.save_pretrained(path / "prior")
    UnCLIPScheduler(
        num_train_timesteps=1000, variance_type="fixed_small_log", clip_sample=True, clip_sample_range=5.0,
        prediction_type="sample",
    ).save_pretrained(path / "prior_scheduler")
    (path / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "UnCLIPPipeline",
                "_diffusers_version": "0.42.1",
                "prior": ["diffusers", "PriorTransformer"],
                "prior_scheduler": ["diffusers", "UnCLIPScheduler"],
                "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
            },
            indent=2,
        )
    )
    return path
