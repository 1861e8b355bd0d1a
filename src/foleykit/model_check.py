"""``foleykit models check [SET]``: load every role of a model set and check it against published facts.

Checks (each one row of the table and of the JSON report):

* every role loads (a failure is a row naming the role and the reason; the other roles still run);
* embedding sizes: CLAP 512-d (generator text tower, AudioLDM's audio and text towers, the judge),
  the generator's FiLM condition input 512, CLIP ViT-L/14 768-d (``clip``) and ViT-B/32 512-d
  (``clip_mapper``), the V2A-Mapper's and SS2A bundle's input/output sizes fitting those encoders;
* rates: CLAP front ends at 48 kHz, the vocoder at 16 kHz, 1024 mel frames per 10.24 s (a 10-ms hop);
* the CLAP space: AudioLDM's own CLAP agrees with the generator's text tower on the probe captions
  (:data:`~foleykit.encoders.generator_clap.SAME_SPACE_THRESHOLD`), and the judge is an
  *independent* space (below the threshold), so the CLAP score does not grade the generator in its own space;
* a one-step generation from the generator's unconditional vector is finite.

Real sets (``default`` or a folder) also get the published size facts: AudioLDM-S UNet 185.04 M
parameters (``cvssp/audioldm-s-full-v2``; a random model of ``real_size_configs()`` counts the same),
HTSAT-tiny audio width 768 and RoBERTa-base text width 768 in AudioLDM's CLAP. The ``tiny`` set is
checked against its own expected facts (no size facts: its networks are deliberately small).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import FoleykitError, InputError

#: Published / hub-config facts of the default set's checkpoints.
AUDIOLDM_S_UNET_PARAMS_M = 185.04
CLAP_DIM = 512
CLAP_SAMPLE_RATE = 48_000
VOCODER_SAMPLE_RATE = 16_000
FRAMES_PER_WINDOW = 1024  # mel frames per 10.24 s
WINDOW_S = 10.24
CLIP_DIMS = {"clip": 768, "clip_mapper": 512}
HTSAT_TINY_WIDTH = 768
ROBERTA_BASE_WIDTH = 768


@dataclass
class Check:
    role: str
    what: str
    expected: Any
    actual: Any
    ok: bool
    note: str = ""


@dataclass
class CheckReport:
    model_set: str
    facts: str  # "real" | "tiny"
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        return {"model_set": self.model_set, "facts": self.facts, "ok": self.ok,
                "checks": [asdict(c) for c in self.checks]}

    def table(self) -> str:
        rows = [("role", "check", "expected", "actual", "")]
        rows += [(c.role, c.what, _fmt(c.expected), _fmt(c.actual), "ok" if c.ok else "FAIL") for c in self.checks]
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        notes = [f"{c.role}: {c.note}" for c in self.checks if c.note and not c.ok]
        return "\n".join(lines + notes)

    def write_json(self, path: str | os.PathLike) -> Path:
        from .io.atomic import atomic_path

        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        return Path(path)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


class _Checker:
    def __init__(self, report: CheckReport) -> None:
        self.report = report

    def add(self, role: str, what: str, expected: Any, actual: Any, ok: bool | None = None, note: str = "") -> bool:
        ok = (expected == actual) if ok is None else bool(ok)
        self.report.checks.append(Check(role, what, expected, actual, ok, note))
        return ok

    def load(self, role: str, fn: Callable[[], Any]) -> Any:
        try:
            obj = fn()
        except (FoleykitError, OSError, ValueError, RuntimeError) as exc:
            self.add(role, "loads", "yes", "no", False, note=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return None
        self.add(role, "loads", "yes", "yes")
        return obj


def check_model_set(models: str | os.PathLike | None = None, *, facts: str = "auto", device: str = "cpu",
                    seed: int = 0, generate: bool = True) -> CheckReport:
    """Load each role of ``models`` and check the facts listed in the module notes.

    ``facts``: ``real`` (published facts, size facts included), ``tiny`` (the tiny set's own), or
    ``auto`` (``tiny`` for the tiny set, else ``real``). ``seed`` drives the one-step generation.
    """
    import numpy as np

    from .encoders.clap import ClapEncoder
    from .encoders.clip import ClipEncoder
    from .encoders.generator_clap import PROBE_CAPTIONS, SAME_SPACE_THRESHOLD, GeneratorClap, compare_spaces
    from .generator.pipeline import AudioLDMGenerator
    from .model_sets import resolve_model_set

    ms = resolve_model_set(models)
    kind = ("tiny" if ms.name == "tiny" else "real") if facts == "auto" else facts
    if kind not in ("real", "tiny"):
        raise InputError(f"facts must be auto, real or tiny, got {facts!r}")
    report = CheckReport(model_set=ms.name, facts=kind)
    c = _Checker(report)
    real = kind == "real"

    clips = {}
    for role in ("clip", "clip_mapper"):
        enc = c.load(role, lambda r=role: ClipEncoder.from_pretrained(getattr(ms, r), device=device))
        if enc is not None:
            clips[role] = enc
            c.add(role, "embedding size", CLIP_DIMS[role], enc.dim)

    gen = c.load("audioldm", lambda: AudioLDMGenerator.from_pretrained(ms.audioldm, device=device, dtype="float32"))
    own = None
    if gen is not None:
        c.add("audioldm", "FiLM condition size", CLAP_DIM, int(gen.unet.config.projection_class_embeddings_input_dim))
        c.add("audioldm", "vocoder sample rate (Hz)", VOCODER_SAMPLE_RATE, gen.sample_rate)
        frames = round(WINDOW_S / gen.seconds_per_frame)
        c.add("audioldm", "mel frames per 10.24 s", FRAMES_PER_WINDOW, frames)
        c.add("audioldm", "text tower size", CLAP_DIM, int(gen.text_encoder.config.projection_dim))
        if real:
            n = sum(p.numel() for p in gen.unet.parameters()) / 1e6
            c.add("audioldm", "UNet parameters (M)", AUDIOLDM_S_UNET_PARAMS_M, round(n, 2),
                  abs(n - AUDIOLDM_S_UNET_PARAMS_M) < 0.01)
        if generate:
            out = gen(gen.unconditional_embedding()[None], duration_s=0.32, num_inference_steps=1, seed=seed,
                      progress=False)
            finite = bool(np.isfinite(out.waveforms).all())
            c.add("audioldm", f"one-step generation finite (seed {seed})", True, finite)
        if ms.clap is None:
            c.add("clap", "present", "AudioLDM's own CLAP", "absent", False,
                  note="convert it: foleykit models import-audioldm-clap audioldm-s-full-v2.ckpt -o "
                       "$FOLEYKIT_CACHE/audioldm-clap (audio sources, re-ranking and extraction need it)")
        else:
            own = c.load("clap", lambda: GeneratorClap.for_generator(gen, ms.clap).load_audio())
    if own is not None:
        audio = own.audio
        c.add("clap", "audio embedding size", CLAP_DIM, audio.dim)
        c.add("clap", "front-end sample rate (Hz)", CLAP_SAMPLE_RATE, int(audio.feature_extractor.sampling_rate))
        if real:
            c.add("clap", "HTSAT-tiny audio width", HTSAT_TINY_WIDTH, int(audio.model.config.audio_config.hidden_size))
            c.add("clap", "RoBERTa-base text width", ROBERTA_BASE_WIDTH, int(audio.model.config.text_config.hidden_size))
        space = own.space
        c.add("clap", "space agreement with the generator", f">= {SAME_SPACE_THRESHOLD:g}",
              round(space.agreement, 4) if math.isfinite(space.agreement) else space.reason, space.same_space,
              note="" if space.same_space else space.error())

    judge = c.load("clap_judge", lambda: ClapEncoder.from_pretrained(ms.clap_judge, device=device))
    if judge is not None:
        c.add("clap_judge", "audio embedding size", CLAP_DIM, judge.dim)
        c.add("clap_judge", "front-end sample rate (Hz)", CLAP_SAMPLE_RATE, int(judge.feature_extractor.sampling_rate))
        if gen is not None:
            gen_clap = own if own is not None else GeneratorClap.for_generator(gen)
            check = compare_spaces(gen_clap.probe_embeddings(), judge.embed_texts(PROBE_CAPTIONS).cpu(),
                                   clap_ref=ms.clap_judge, generator_ref=ms.audioldm)
            c.add("clap_judge", "independent of the generator's space", f"< {SAME_SPACE_THRESHOLD:g}",
                  round(check.agreement, 4) if math.isfinite(check.agreement) else check.reason, not check.same_space,
                  note="the judge shares the generator's CLAP space: the CLAP score would not be independent")

    if ms.mapper:
        from .modules.mapper import V2AMapper

        mp = c.load("mapper", lambda: V2AMapper.from_pretrained(str(Path(ms.mapper).expanduser())))
        if mp is not None:
            c.add("mapper", "CLIP input size", CLIP_DIMS["clip_mapper"], int(mp.config.clip_dim))
            c.add("mapper", "CLAP output size", CLAP_DIM, int(mp.config.clap_dim))
    if ms.extra.get("ss2a"):
        from .pipelines.ss2a_bundle import load_ss2a

        bundle = c.load("ss2a", lambda: load_ss2a(ms.extra["ss2a"]))
        if bundle is not None:
            try:
                bundle.check(CLIP_DIMS["clip"], CLAP_DIM)
                c.add("ss2a", "fits CLIP 768 / CLAP 512", True, True)
            except FoleykitError as exc:
                c.add("ss2a", "fits CLIP 768 / CLAP 512", True, False, note=str(exc))
    if ms.extra.get("prior"):
        from .encoders.prior import TextToImagePrior

        prior = c.load("prior", lambda: TextToImagePrior.from_pretrained(ms.extra["prior"], device=device))
        if prior is not None:
            c.add("prior", "CLIP image embedding size", CLIP_DIMS["clip"], prior.dim)
    if ms.extra.get("detector"):
        from .encoders.detector import SoundSourceDetector

        c.load("detector", lambda: SoundSourceDetector.from_pretrained(ms.extra["detector"], device=device))
    if ms.extra.get("sam"):
        from .encoders.segmenter import Segmenter

        c.load("sam", lambda: Segmenter.from_pretrained(ms.extra["sam"], device=device))
    return report
