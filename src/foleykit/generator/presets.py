"""Sampling presets for the AudioLDM generator, and the schedulers they name.

``paper``: what AudioLDM, V2A-Mapper and SS2A report — DDIM, 200 steps, eta 1.0 (stochastic),
guidance 2.5; a diffusion mapper runs its own default (the paper's 200 DDIM steps). Use it to
reproduce published numbers; it costs 200 guided UNet evaluations (about 5 min for 10 s of audio
on a 2-core CPU).

``fast``: DPM-Solver++ (2nd-order multistep, deterministic) with 10 steps and the same guidance,
and a diffusion mapper sampled with 25 DDIM steps instead of 200 (Karlo's default for its
DALL·E-2-style prior). 20x fewer UNet evaluations than ``paper``. It trades some fine texture and
diversity (no injected noise, coarser integration of the ODE; the mapper's one-to-many spread is
integrated more coarsely) for speed; the result is a draft-quality clip that keeps the semantics
of the conditioning.

Why 10 and 25 (BENCHMARKS.md has the figures and the commands): on a 2-core CPU at real
AudioLDM-S size a guided UNet step on a 10 s latent costs ~1.45 s, the VAE decode ~4 s and HiFi-GAN
~6.5 s (about 11 s that no step count changes, already near the machine's fp32 peak), and the
paper-size mapper ~30 ms per step. An image → 10 s clip took 29.7 s with 12 UNet steps and a
25-step mapper (~35 s with the mapper's 200), and 26.8 s with 10 + 25: inside the 30 s budget with
some margin. DPM-Solver++(2M) changes little between 10 and 12 steps, far less than what the first
cut from 200 steps costs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError


@dataclass(frozen=True)
class Preset:
    """``mapper_steps``: DDIM steps for a diffusion V2A-Mapper (None = the mapper's own default)."""

    name: str
    scheduler: str
    num_inference_steps: int
    guidance_scale: float
    eta: float
    mapper_steps: int | None = None


PRESETS: dict[str, Preset] = {
    "paper": Preset("paper", scheduler="ddim", num_inference_steps=200, guidance_scale=2.5, eta=1.0),
    "fast": Preset("fast", scheduler="dpmsolver++", num_inference_steps=10, guidance_scale=2.5, eta=0.0, mapper_steps=25),
}

SCHEDULERS = ("ddim", "dpmsolver++", "unipc", "euler", "pndm")


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def make_scheduler(name: str, base_config: dict):
    """A scheduler of kind ``name`` sharing the checkpoint's training noise schedule."""
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        EulerDiscreteScheduler,
        PNDMScheduler,
        UniPCMultistepScheduler,
    )

    if name == "ddim":
        return DDIMScheduler.from_config(base_config)
    if name == "dpmsolver++":
        return DPMSolverMultistepScheduler.from_config(
            base_config, algorithm_type="dpmsolver++", solver_order=2, lower_order_final=True
        )
    if name == "unipc":
        return UniPCMultistepScheduler.from_config(base_config)
    if name == "euler":
        return EulerDiscreteScheduler.from_config(base_config)
    if name == "pndm":
        return PNDMScheduler.from_config(base_config, skip_prk_steps=True)
    raise InputError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
