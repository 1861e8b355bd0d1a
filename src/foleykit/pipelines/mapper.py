"""V2A-Mapper: image or video → CLIP (ViT-B/32) → mapper → CLAP → AudioLDM.

Video follows the paper's best aggregation: the CLIP embeddings of N evenly spaced frames are
averaged. Audio longer than one diffusion window gets one conditioning vector per window, each
from the frames of its own stretch of the video.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..encoders.generator_clap import GeneratorClap
from ..encoders.clip import ClipEncoder
from ..errors import InputError
from ..generator.long_audio import MAX_DURATION_S, generate_long, plan_windows
from ..generator.pipeline import AudioLDMGenerator
from ..generator.presets import get_preset
from ..io._checks import VIDEO_SUFFIXES  # noqa: F401 - re-exported (the suffixes are io's)
from ..io.image import load_image
from ..model_sets import ModelSet, resolve_model_set
from ..seeding import make_generator, resolve_seed
from .zero_shot_bridge import ZeroShotBridge

DEFAULT_IMAGE_DURATION_S = 10.0


@dataclass
class SoundResult:
    """A generated soundtrack: ``waveform`` is (frames,) mono or (channels, frames)."""

    waveform: np.ndarray
    sample_rate: int
    seed: int
    record: dict = field(default_factory=dict)
    #: Every candidate drawn and its CLAP cosine to the condition (several candidates, one window).
    candidates: list[tuple[np.ndarray, float]] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.waveform.shape[-1] / self.sample_rate


def is_video_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class CheckedInput:
    """An input that has passed :func:`check_input`: the decoded image, or the probed video's path."""

    source: Path | Image.Image
    video: bool
    duration_s: float  # the soundtrack's length: asked for, else the video's, else 10 s for an image


def check_duration(duration_s: float | None) -> None:
    """The one check of a requested soundtrack length (None: the input's own, checked elsewhere)."""
    if duration_s is not None and not (isinstance(duration_s, (int, float)) and 0 < duration_s <= MAX_DURATION_S):
        raise InputError(f"duration must be > 0 and <= {MAX_DURATION_S:g} s, got {duration_s}")


def check_input(source: str | Path | Image.Image, duration_s: float | None = None) -> CheckedInput:
    """Decode the image, or probe the video (a video stream, a first decodable frame, a duration),
    and check the soundtrack's length against the limits, all without any model.

    Callers run it before loading models, so a bad file is reported as itself, in seconds, and never
    as a model that happens to be missing.
    """
    check_duration(duration_s)
    if not isinstance(source, Image.Image) and is_video_path(source):
        from ..io.video import probe_video

        path = Path(source).expanduser()
        info = probe_video(path)  # no video stream, zero frames, zero duration: InputError
        if duration_s is None:
            if info.duration_s > MAX_DURATION_S:
                raise InputError(f"video {path} is {info.duration_s:.1f} s long; foleykit makes at most "
                                 f"{MAX_DURATION_S:g} s of audio (pass --duration to cover its start)")
            duration_s = info.duration_s
        return CheckedInput(path, True, float(duration_s))
    image = load_image(source if isinstance(source, Image.Image) else Path(source).expanduser())
    return CheckedInput(image, False, float(DEFAULT_IMAGE_DURATION_S if duration_s is None else duration_s))


class MapperPipeline:
    """Image/video to audio with V2A-Mapper (or the zero-shot bridge when no mapper is trained)."""

    def __init__(self, clip: ClipEncoder, mapper, generator: AudioLDMGenerator, clap: GeneratorClap | None = None,
                 *, model_set: ModelSet | None = None, mapper_ref: str | None = None) -> None:
        self.mapper_ref = mapper_ref
        self.clip = clip
        self.mapper = mapper
        self.generator = generator
        self.clap = clap
        self.model_set = model_set

    @classmethod
    def from_models(
        cls,
        models: str | None = None,
        *,
        mapper: str | None = None,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype | None = None,
    ) -> MapperPipeline:
        """Load the encoders, mapper and generator of a model set (``default``, ``tiny`` or a dir).

        ``mapper``: a directory saved by ``foleykit train mapper``; else the model set's mapper; else
        the zero-shot bridge (no trained V2A-Mapper weights are published).
        """
        ms = resolve_model_set(models)
        from . import components  # one CLIP, CLAP and generator per process, shared by every method

        core = components.core_parts(ms, device, dtype, clip_ref=ms.clip_mapper)
        clip, gen, clap, dev = core.clip, core.generator, core.clap, core.device
        mapper_ref = mapper or ms.mapper
        if mapper_ref:
            from ..modules.mapper import V2AMapper

            mp = V2AMapper.from_folder(mapper_ref, what="mapper")
            if mp.config.clip_dim != clip.dim:
                raise InputError(f"mapper {mapper_ref} takes {mp.config.clip_dim}-d CLIP, the image encoder gives {clip.dim}")
            mp = mp.to(device=dev).eval()
        else:
            mp = ZeroShotBridge(clip, clap)
        return cls(clip, mp, gen, clap, model_set=ms, mapper_ref=str(mapper_ref) if mapper_ref else None)

    # -- conditioning -----------------------------------------------------------------------
    def _map(self, clip_embeds: torch.Tensor, seed: int, mapper_steps: int | None, mapper_guidance: float | None,
             record: dict | None = None) -> torch.Tensor:
        if isinstance(self.mapper, ZeroShotBridge):
            if record is not None:  # the words that made each window's sound, for the sidecar
                record["bridge_words"] = [[[w, round(float(x), 4)] for w, x in ws]
                                          for ws in self.mapper.labels(clip_embeds)]
            return self.mapper.map(clip_embeds)
        return self.mapper.map(
            clip_embeds.to(next(self.mapper.parameters()).dtype),
            steps=mapper_steps,
            guidance_scale=mapper_guidance,
            generator=make_generator(seed),
        )

    def image_condition(self, image, *, seed: int, mapper_steps=None, mapper_guidance=None,
                        record: dict | None = None) -> torch.Tensor:
        """[1, 512] CLAP vector for one image (``record`` receives the bridge's words, if it runs)."""
        emb = self.clip.embed_images([load_image(image)])
        return self._map(emb, seed, mapper_steps, mapper_guidance, record)

    def video_conditions(
        self, path, windows: list[tuple[float, float]], *, frames_per_window: int, seed: int,
        mapper_steps=None, mapper_guidance=None, record: dict | None = None,
    ) -> torch.Tensor:
        """[W, 512]: per window, the mean CLIP embedding of its frames, mapped to CLAP."""
        from ..io.video import probe_video, read_frames

        info = probe_video(path)
        embs = []
        for start, end in windows:
            end = min(end, info.duration_s)
            start = min(start, max(0.0, end - 1e-3))
            frames = read_frames(path, frames_per_window, start_s=start, end_s=end, max_side=448)
            embs.append(self.clip.embed_images(frames).mean(0))
        return self._map(torch.stack(embs), seed, mapper_steps, mapper_guidance, record)

    # -- generation -------------------------------------------------------------------------
    def __call__(
        self,
        source: str | Path | Image.Image | CheckedInput,
        *,
        duration_s: float | None = None,
        preset: str = "fast",
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        num_candidates: int = 1,
        seed: int | None = None,
        frames_per_window: int = 16,
        mapper_steps: int | None = None,
        mapper_guidance: float | None = None,
        progress: bool | Callable[[float, str], None] = True,
        negative: str | None = None,
    ) -> SoundResult:
        """Generate the sound of an image (default 10 s) or a video (its own length).

        ``source`` may be the :class:`CheckedInput` of :func:`check_input` (then ``duration_s`` is its own).
        ``progress``: True/False for a terminal bar, or ``fn(fraction, message)`` called at each stage
        (encoding, every diffusion step, decoding). ``negative``: a negative prompt for classifier-free
        guidance, embedded by the generator's own CLAP text tower (default: ``""``, AudioLDM's).
        """
        report = progress if callable(progress) else None
        if report:
            report(0.0, "encoding the picture")
        seed = resolve_seed(seed)
        checked = source if isinstance(source, CheckedInput) else check_input(source, duration_s)
        video, source, duration_s = checked.video, checked.source, checked.duration_s
        if frames_per_window < 1 or frames_per_window > 256:
            raise InputError(f"frames per window must be between 1 and 256, got {frames_per_window}")
        windows = plan_windows(duration_s)
        if mapper_steps is None:
            mapper_steps = get_preset(preset).mapper_steps  # None: the mapper's own default
        elif not (isinstance(mapper_steps, int) and 1 <= mapper_steps <= 1000):
            raise InputError(f"mapper steps must be an integer between 1 and 1000, got {mapper_steps}")
        words: dict = {}
        if video:
            cond = self.video_conditions(source, windows, frames_per_window=frames_per_window, seed=seed,
                                         mapper_steps=mapper_steps, mapper_guidance=mapper_guidance, record=words)
        else:
            cond = self.image_condition(source, seed=seed, mapper_steps=mapper_steps, mapper_guidance=mapper_guidance,
                                        record=words)
        step_cb = None
        if report:
            def step_cb(i: int, n: int) -> None:
                report(0.1 + 0.85 * i / n, f"diffusion step {i}/{n}" + (", decoding" if i == n else ""))

            report(0.1, "generating")
        out = generate_long(
            self.generator, cond, duration_s, seed=seed, preset=preset, num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale, num_candidates=num_candidates,
            ranker=self.clap if num_candidates > 1 else None, progress=bool(progress) and report is None,
            step_callback=step_cb, negative_embeds=self.generator.text_embedding(negative) if negative else None,
        )
        if report:
            report(1.0, "done")
        record = {
            "method": "mapper",
            "mapper": {**self._mapper_record(cond, mapper_steps), **words},
            "generator": {**out.settings, "negative": negative or ""},
            "models": self.models_record(),
            "input_kind": "video" if video else "image",
        }
        if video:
            record["frames_per_window"] = frames_per_window
        candidates = [] if out.candidates is None else [
            (out.candidates[0][k], float(out.candidate_scores[0][k])) for k in range(out.candidates.shape[1])]
        return SoundResult(waveform=out.waveforms[0], sample_rate=out.sample_rate, seed=seed, record=record,
                           candidates=candidates)

    def _mapper_record(self, cond: torch.Tensor, mapper_steps: int | None) -> dict:
        if isinstance(self.mapper, ZeroShotBridge):
            return {**self.mapper.record(), "note": "no trained mapper given; see foleykit train mapper"}
        c = self.mapper.config
        rec = {"kind": c.kind, "depth": c.depth, "width": c.width, "ref": self.mapper_ref}
        if c.is_diffusion:
            rec["steps"] = mapper_steps if mapper_steps is not None else c.default_inference_steps
        return rec

    def models_record(self) -> dict:
        from .components import models_record

        return models_record((("clip", self.clip), ("audioldm", self.generator)), self.clap, self.model_set)
