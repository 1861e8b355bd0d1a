"""Evaluation: the metrics of the V2A-Mapper, SS2A and Sounding-that-Object papers, and a runner.

Metrics (each in its own module, pure functions over embeddings/logits): Fréchet distance
(FD / FAD / C-FAD), KL and IS, CLAP score, CLIP score, SSMS, ACC. Embedders (PANNs CNN14, VGGish,
Wav2CLIP, AST, CLAP, CLIP) live in :mod:`.embedders`; :func:`evaluate` ties them together.
Benchmark protocols (test set, front end, metrics) and their manifest builders are in :mod:`.protocols`.
"""

from .acc import acc
from .audio_frontend import PROTOCOLS, FrontendSpec, Protocol
from .cache import EmbeddingCache
from .clap_score import clap_score
from .clip_score import clip_score
from .embedders import build_embedders
from .frechet import FrechetResult, FrechetWarning, frechet_distance, frechet_distance_from_stats, pool_frames
from .kl_is import inception_score, kl_divergence
from .protocols import BENCHMARKS, BenchmarkProtocol, build_manifest
from .runner import DEFAULT_METRICS, METRICS, evaluate
from .ssms import ssms

__all__ = [
    "BENCHMARKS",
    "DEFAULT_METRICS",
    "METRICS",
    "PROTOCOLS",
    "BenchmarkProtocol",
    "EmbeddingCache",
    "FrechetResult",
    "FrechetWarning",
    "FrontendSpec",
    "Protocol",
    "acc",
    "build_embedders",
    "build_manifest",
    "clap_score",
    "clip_score",
    "evaluate",
    "frechet_distance",
    "frechet_distance_from_stats",
    "inception_score",
    "kl_divergence",
    "pool_frames",
    "ssms",
]
