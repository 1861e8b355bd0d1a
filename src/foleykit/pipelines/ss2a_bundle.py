"""The learnable SS2A modules as one bundle: CMSS manifold (v, φ, χ), Remixer ψ and, for video,
the temporal aggregator ω.

Where a bundle comes from (:func:`load_ss2a`):

* a folder with ``manifold/`` and ``remixer/`` sub-folders (and optionally ``temporal/``), each as
  written by ``save_pretrained`` / ``foleykit train manifold|remixer|temporal -o DIR/<name>``;
* the released artefacts: a ``ssv2a.pth`` file (its ``ssv2a.json`` beside it, ``agg.pth`` beside
  it for video), or a folder holding them — imported by :mod:`foleykit.modules.ss2a_checkpoint`;
* nothing: freshly initialised modules with a fixed seed, so every code path runs. Their output is
  not meaningful and the record says so (no SS2A weights are published on the hub).

The model set's ``ss2a`` role (the ``tiny`` set has one) is used when no bundle is passed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import InputError
from ..modules.manifold import CMSSManifold, ManifoldConfig
from ..modules.remixer import RemixerConfig, SoundSourceRemixer
from ..modules.temporal import TemporalAggregator, TemporalConfig

__all__ = ["UNTRAINED_NOTE", "SS2ABundle", "load_ss2a", "write_tiny_ss2a"]

UNTRAINED_NOTE = (
    "no trained SS2A weights were given (--ss2a DIR or the released ssv2a.pth): the manifold and Remixer are "
    "untrained, so the sounds do not reflect the scene"
)


@dataclass
class SS2ABundle:
    """Manifold, Remixer and optional temporal aggregator, in eval mode, with their provenance."""

    manifold: CMSSManifold
    remixer: SoundSourceRemixer
    temporal: TemporalAggregator | None = None
    source: str = "untrained"
    trained: bool = False
    notes: list[str] = field(default_factory=list)

    def to(self, device: torch.device) -> SS2ABundle:
        self.manifold.to(device)
        self.remixer.to(device)
        if self.temporal is not None:
            self.temporal.to(device)
        return self

    @property
    def released_tokens(self) -> bool:
        """True for released weights: the Remixer sees all of its slots with the released empty-slot
        contents and the released slot layouts (see :mod:`foleykit.modules.cycle_mix`)."""
        return bool(self.remixer.config.attend_to_padding)

    def check(self, clip_dim: int, clap_dim: int) -> None:
        """Refuse modules whose sizes do not fit the encoders (or each other)."""
        m, r = self.manifold.config, self.remixer.config
        if m.clip_dim != clip_dim or r.clip_dim != clip_dim:
            raise InputError(f"SS2A modules take {m.clip_dim}-d CLIP, the image encoder gives {clip_dim}-d")
        if m.clap_dim != clap_dim or r.clap_dim != clap_dim:
            raise InputError(f"SS2A modules take {m.clap_dim}-d CLAP, the audio encoder gives {clap_dim}-d")
        if m.manifold_dim != r.manifold_dim:
            raise InputError(f"SS2A manifold is {m.manifold_dim}-d but the Remixer expects {r.manifold_dim}-d codes")
        if self.temporal is not None and self.temporal.config.clap_dim != clap_dim:
            raise InputError(f"SS2A temporal aggregator takes {self.temporal.config.clap_dim}-d CLAP, not {clap_dim}-d")

    def record(self) -> dict:
        m, r = self.manifold.config, self.remixer.config
        rec = {
            "source": self.source,
            "trained": self.trained,
            "manifold_dim": m.manifold_dim,
            "remixer": {"embed_dim": r.embed_dim, "layers": r.num_layers, "heads": r.num_heads,
                        "max_sources": r.max_sources, "key_softmax": r.key_softmax,
                        "attend_to_padding": r.attend_to_padding, "source_code": r.source_code},
            "temporal": None if self.temporal is None else {"layers": self.temporal.config.num_layers,
                                                            "frames": self.temporal.config.num_frames},
        }
        if self.notes:
            rec["notes"] = list(self.notes)
        return rec


def _load_module(cls, folder: Path, what: str):
    return cls.from_folder(folder, what=f"SS2A {what}").eval()


def _load_released(pth: Path) -> SS2ABundle:
    from ..modules.ss2a_checkpoint import load_released_ss2a, load_released_temporal

    config = next((c for c in (pth.with_suffix(".json"), pth.parent / "ssv2a.json") if c.is_file()), None)
    if config is None:
        raise InputError(f"released SS2A checkpoint {pth}: its config ssv2a.json must sit beside it")
    released = load_released_ss2a(pth, config)
    agg = pth.parent / "agg.pth"
    temporal = load_released_temporal(agg) if agg.is_file() else None
    notes = [] if temporal is not None else ["no agg.pth beside the checkpoint: video frames are averaged"]
    return SS2ABundle(released.manifold, released.remixer, temporal, source=f"released:{pth}", trained=True,
                      notes=notes)


def load_ss2a(ref: str | os.PathLike | None, *, seed: int = 0) -> SS2ABundle:
    """A bundle from a folder, a released ``.pth``, or (``None``) untrained modules seeded with ``seed``."""
    if ref is None:
        torch.manual_seed(seed)
        manifold = CMSSManifold(ManifoldConfig()).eval()
        remixer = SoundSourceRemixer(RemixerConfig()).eval()
        temporal = TemporalAggregator(TemporalConfig()).eval()
        return SS2ABundle(manifold, remixer, temporal, source="untrained", trained=False, notes=[UNTRAINED_NOTE])
    path = Path(ref).expanduser()
    if path.is_file():
        if path.suffix.lower() not in (".pth", ".pt"):
            raise InputError(f"SS2A weights {path}: expected a folder (manifold/, remixer/) or the released ssv2a.pth")
        return _load_released(path)
    if not path.is_dir():
        raise InputError(f"SS2A weights {path} do not exist")
    if (path / "ssv2a.pth").is_file() and not (path / "manifold").is_dir():
        return _load_released(path / "ssv2a.pth")
    missing = [s for s in ("manifold", "remixer") if not (path / s).is_dir()]
    if missing:
        raise InputError(
            f"SS2A folder {path} has no {' or '.join(missing)} sub-folder (expected manifold/, remixer/ and optionally "
            "temporal/, or the released ssv2a.pth + ssv2a.json)"
        )
    manifold = _load_module(CMSSManifold, path / "manifold", "manifold")
    remixer = _load_module(SoundSourceRemixer, path / "remixer", "remixer")
    temporal = _load_module(TemporalAggregator, path / "temporal", "temporal aggregator") if (path / "temporal").is_dir() else None
    notes = [] if temporal is not None else [f"{path} has no temporal/ aggregator: video frames are averaged"]
    return SS2ABundle(manifold, remixer, temporal, source=str(path), trained=True, notes=notes)


def write_tiny_ss2a(path: str | os.PathLike, *, seed: int = 0) -> Path:
    """Write a tiny SS2A bundle (``manifold/``, ``remixer/``, ``temporal/``) in the trained layout.

    Real interfaces (768-d CLIP ViT-L/14, 512-d CLAP, M = 64 slots, 64 frames) with toy widths, so
    the ``tiny`` model set runs the sources method offline exactly like a trained bundle would.
    """
    path = Path(path)
    torch.manual_seed(seed)
    CMSSManifold(ManifoldConfig(manifold_dim=32, projector_widths=(64, 64), reconstructor_widths=(64, 64))).eval() \
        .save_pretrained(path / "manifold")
    torch.manual_seed(seed + 1)
    SoundSourceRemixer(RemixerConfig(manifold_dim=32, embed_dim=32, num_layers=1, num_heads=2)).eval() \
        .save_pretrained(path / "remixer")
    torch.manual_seed(seed + 2)
    TemporalAggregator(TemporalConfig(num_layers=1, num_heads=2, ffn_multiplier=1, position_resolution=128)).eval() \
        .save_pretrained(path / "temporal")
    return path
