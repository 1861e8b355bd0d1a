"""Evaluation throughput at real embedder sizes (random weights): clips/s per embedder and per metric.

Issue 6: each embedding is computed once per clip and cached, so a metric that shares an embedder
with another costs nothing beyond the metric's own arithmetic. This measures that claim.

What is built (seeded random weights, offline; timings depend on the architecture, not on the
weights), through the embedder classes' own constructors, in memory:

* ``panns``: CNN14 with ``Cnn14Config()`` (the 16 kHz release: 64 mels, 64…2048 channels, 527 classes);
* ``vggish``: ``VGGishConfig()`` (the released VGGish, 128-d frames);
* ``clap``: transformers ``ClapModel(ClapConfig())`` (HTSAT-tiny audio tower, RoBERTa-base text tower,
  512-d; the sizes of ``laion/clap-htsat-unfused``), with a byte-level RoBERTa tokenizer built in
  memory (no merges: a caption becomes one token per byte, more tokens than the real BPE gives);
* ``ast``: ``ASTForAudioClassification(ASTConfig(num_labels=527))`` = the AudioSet AST's sizes;
* ``beats``: ``BEATs(BEATsConfig(finetuned_model=True))`` = BEATs_iter3+ AS2M fine-tuned (SS2A's SSMS tagger);
* ``wav2clip``: ``Wav2ClipConfig()`` (ResNet-18 + 512-d MLP);
* ``clip_image``: ``CLIPModel(CLIPConfig())`` = ViT-B/32, with CLIP's image preprocessing.

Data: ``--clips`` N synthetic 10 s clips (tones + noise, 16 kHz mono WAV) on the generated and on
the reference side, N images (JPEG 320×240), one caption and one label per clip, in a temp dir.

What is measured, in one process (models built once, outside every timing):

1. ``embedders``: per embedder, N clips through decode → front end (``prepare``: DC, soxr resample,
   fit to 10 s) → ``embed`` (feature extraction + network forward), after one warm-up clip;
   clips/s, and the split into decode / front end / features / forward (forward hooks time the
   network itself). ``clip_image``: N images through ``embed_image``.
2. ``runs``: ``evaluate(...)`` (``plots=False``) with one metric at a time, with metric groups
   (the PANNs-tagger metrics, the CLAP metrics), and with all ten, each with a fresh in-memory
   cache, repeated ``--repeats`` times (interleaved rounds); plus all ten with the default tagger
   (AST) instead of PANNs. Each run records its wall time, the runner's embedding / metrics split,
   cache hits / misses and how many times each network's forward ran.
3. ``cached``: all ten metrics with ``cache_dir`` set, twice over the same directory: the second run
   reads every embedding from disk (no forward runs at all).

    python benchmarks/bench_evaluate.py                 # 16 clips a side, 2 rounds (~10 min on 2 cores)
    python benchmarks/bench_evaluate.py --quick         # 4 clips a side, 1 round, real sizes
    python benchmarks/bench_evaluate.py --tiny --quick  # tiny stand-ins: checks the script, measures nothing
    python benchmarks/bench_evaluate.py --smoke         # = --tiny --quick --clips 2, no result file (seconds)

Prints one JSON object (``--out FILE`` writes it too; default
``benchmarks/results/evaluate-<host>-<UTC date-time>.json``). ``--report FILE`` prints the Markdown
tables of a saved result.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SEED = 1234
SAMPLE_RATE = 16_000
SECONDS = 10.0
PANNS_TAGGER = ("fd", "kl_softmax", "kl_sigmoid", "is", "ssms", "acc")
CLAP_METRICS = ("c_fad", "clap_score")


# ----------------------------------------------------------------------------------------------
# machine
# ----------------------------------------------------------------------------------------------


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    """What the numbers depend on: CPU, threads, versions, commit."""
    import torch
    import transformers

    model = platform.processor() or ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        git = ["git", "-C", str(ROOT)]
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "src"], capture_output=True, text=True).stdout.strip()
        commit += "+dirty-src" if dirty else ""
    except OSError:
        commit = ""
    return {
        "cpu": model,
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": platform.node(),
        "git_commit": commit,
    }


# ----------------------------------------------------------------------------------------------
# embedders
# ----------------------------------------------------------------------------------------------


def _params(module: Any) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def build_real(seed: int) -> dict[str, Any]:
    """The seven evaluation embedders at their real architecture sizes, seeded random weights, offline."""
    import torch
    from transformers import (
        ASTConfig,
        ASTFeatureExtractor,
        ASTForAudioClassification,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        CLIPConfig,
        CLIPImageProcessorPil,
        CLIPModel,
        CLIPTokenizer,
        RobertaTokenizer,
    )

    from foleykit.encoders.clap import ClapEncoder
    from foleykit.encoders.clip import ClipEncoder
    from foleykit.encoders.loading import quiet_loading, to_device
    from foleykit.evaluation.embedders import (
        AstEmbedder,
        ClapEmbedder,
        ClipImageEmbedder,
        PannsEmbedder,
        VGGishEmbedder,
        Wav2ClipEmbedder,
    )
    from foleykit.evaluation.embedders.base import config_digest, seeded_init
    from foleykit.evaluation.embedders.beats import BEATs, BEATsConfig, BeatsEmbedder
    from foleykit.evaluation.embedders.panns import Cnn14, Cnn14Config
    from foleykit.evaluation.embedders.vggish import VGGish, VGGishConfig
    from foleykit.evaluation.embedders.wav2clip import Wav2Clip, Wav2ClipConfig
    from foleykit.model_sets import byte_level_vocab, clip_vocab

    quiet_loading()
    cpu, f32 = torch.device("cpu"), torch.float32

    def panns() -> Any:
        cfg = Cnn14Config()
        return PannsEmbedder(
            seeded_init(seed, lambda: Cnn14(cfg)), id=f"panns-cnn14-random:seed{seed}:{config_digest(cfg)}", device=cpu
        )

    def vggish() -> Any:
        cfg = VGGishConfig()
        return VGGishEmbedder(
            seeded_init(seed, lambda: VGGish(cfg)), id=f"vggish-random:seed{seed}:{config_digest(cfg)}", device=cpu
        )

    def wav2clip() -> Any:
        cfg = Wav2ClipConfig()
        return Wav2ClipEmbedder(
            seeded_init(seed, lambda: Wav2Clip(cfg)), id=f"wav2clip-random:seed{seed}:{config_digest(cfg)}", device=cpu
        )

    def clap() -> Any:
        vocab, merges = byte_level_vocab()
        tokenizer = RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=77)
        model = to_device(seeded_init(seed, lambda: ClapModel(ClapConfig())), cpu, f32)
        fe = ClapFeatureExtractor(truncation="rand_trunc", padding="repeatpad")
        return ClapEmbedder(ClapEncoder(model, fe, tokenizer), id=f"clap-random:seed{seed}:ClapConfig()")

    def ast() -> Any:
        model = seeded_init(seed, lambda: ASTForAudioClassification(ASTConfig(num_labels=527)))
        return AstEmbedder(model, ASTFeatureExtractor(), id=f"ast-random:seed{seed}:ASTConfig(num_labels=527)")

    def beats() -> Any:
        cfg = BEATsConfig(finetuned_model=True, predictor_class=527)
        return BeatsEmbedder(
            seeded_init(seed, lambda: BEATs(cfg)), id=f"beats-random:seed{seed}:{config_digest(cfg)}", device=cpu
        )

    def clip_image() -> Any:
        vocab, merges = clip_vocab()
        tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
        processor = CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
        model = to_device(seeded_init(seed, lambda: CLIPModel(CLIPConfig())), cpu, f32)
        return ClipImageEmbedder(ClipEncoder(model, processor, tokenizer), id=f"clip-image-random:seed{seed}:CLIPConfig()")

    return {"panns": panns, "vggish": vggish, "clap": clap, "ast": ast, "beats": beats, "wav2clip": wav2clip,
            "clip_image": clip_image}


def build_tiny(seed: int) -> dict[str, Any]:
    """The tiny stand-ins (``embedders="tiny"``): to check this script quickly, not to measure."""
    from foleykit.evaluation.embedders import (
        AstEmbedder,
        BeatsEmbedder,
        ClapEmbedder,
        ClipImageEmbedder,
        PannsEmbedder,
        VGGishEmbedder,
        Wav2ClipEmbedder,
    )

    return {
        "panns": lambda: PannsEmbedder.tiny(seed=seed),
        "vggish": lambda: VGGishEmbedder.tiny(seed=seed),
        "clap": lambda: ClapEmbedder.tiny(),
        "ast": lambda: AstEmbedder.tiny(seed=seed),
        "beats": lambda: BeatsEmbedder.tiny(seed=seed),
        "wav2clip": lambda: Wav2ClipEmbedder.tiny(seed=seed),
        "clip_image": lambda: ClipImageEmbedder.tiny(),
    }


def networks(role: str, emb: Any) -> dict[str, Any]:
    """The network modules whose forward calls are counted and timed (one entry per tower)."""
    if role in ("panns", "vggish", "wav2clip", "beats"):
        return {role: emb.module}
    if role == "ast":
        return {role: emb.model.audio_spectrogram_transformer}
    if role == "clap":
        return {"clap_audio": emb.encoder.model.audio_model, "clap_text": emb.encoder.model.text_model}
    if role == "clip_image":
        return {role: emb.encoder.model.vision_model}
    raise ValueError(role)


class ForwardMeter:
    """Counts and times every forward of the hooked modules (pre-hook to hook, wall clock)."""

    def __init__(self, modules: dict[str, Any]) -> None:
        self.calls = {k: 0 for k in modules}
        self.seconds = {k: 0.0 for k in modules}
        self._start: dict[str, float] = {}
        for name, mod in modules.items():
            mod.register_forward_pre_hook(self._pre(name))
            mod.register_forward_hook(self._post(name))

    def _pre(self, name: str) -> Callable[..., None]:
        def hook(module: Any, args: Any) -> None:
            self._start[name] = time.perf_counter()

        return hook

    def _post(self, name: str) -> Callable[..., None]:
        def hook(module: Any, args: Any, output: Any) -> None:
            self.calls[name] += 1
            self.seconds[name] += time.perf_counter() - self._start.pop(name)

        return hook

    def snapshot(self) -> tuple[dict[str, int], dict[str, float]]:
        return dict(self.calls), dict(self.seconds)

    def since(self, before: tuple[dict[str, int], dict[str, float]]) -> tuple[dict[str, int], dict[str, float]]:
        calls, secs = before
        return (
            {k: v - calls[k] for k, v in self.calls.items() if v - calls[k]},
            {k: round(v - secs[k], 3) for k, v in self.seconds.items() if self.calls[k] - calls[k]},
        )


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------


def _clip(rng: np.random.Generator, i: int, shift: float) -> np.ndarray:
    """10 s of two drifting tones, a pulsed tone and coloured noise: broadband, non-silent, distinct per clip."""
    t = np.arange(int(SAMPLE_RATE * SECONDS)) / SAMPLE_RATE
    f1, f2 = 180.0 * (1 + 0.37 * i) * shift, 1100.0 + 230.0 * i
    tones = 0.25 * np.sin(2 * np.pi * (f1 * t + 20 * t**2)) + 0.15 * np.sin(2 * np.pi * f2 * t)
    pulse = 0.2 * np.sin(2 * np.pi * 3000 * t) * (np.sin(2 * np.pi * (0.5 + 0.2 * i) * t) > 0.6)
    noise = np.cumsum(rng.standard_normal(t.size)) * 0.002
    noise = noise - np.convolve(noise, np.ones(400) / 400, mode="same") + 0.03 * rng.standard_normal(t.size)
    return np.clip(tones + pulse + noise, -0.99, 0.99).astype(np.float32)


def write_dataset(root: Path, n: int, seed: int) -> dict[str, Path]:
    """N generated + N reference 10 s WAVs, N JPEG images, captions.csv and labels.csv under ``root``."""
    import soundfile as sf
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = {k: root / k for k in ("generated", "reference", "images")}
    for p in paths.values():
        p.mkdir(parents=True)
    captions, labels = ["name,caption"], ["name,labels"]
    for i in range(n):
        name = f"clip{i:03d}"
        sf.write(paths["generated"] / f"{name}.wav", _clip(rng, i, 1.0), SAMPLE_RATE)
        sf.write(paths["reference"] / f"{name}.wav", _clip(rng, i, 1.07), SAMPLE_RATE)
        gy, gx = np.mgrid[0:240, 0:320]
        img = np.stack([(gx + 17 * i) % 256, (gy * 2 + 31 * i) % 256, (gx + gy) % 256], -1).astype(np.float64)
        img = np.clip(img + 40 * rng.standard_normal(img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(paths["images"] / f"{name}.jpg", quality=90)
        captions.append(f"{name},a dog barks while a car passes by on a wet road number {i}")
        labels.append(f"{name},{(37 * i) % 527};{(101 * i + 5) % 527}")
    paths["captions_csv"] = root / "captions.csv"
    paths["labels_csv"] = root / "labels.csv"
    paths["captions_csv"].write_text("\n".join(captions) + "\n")
    paths["labels_csv"].write_text("\n".join(labels) + "\n")
    return paths


# ----------------------------------------------------------------------------------------------
# measurements
# ----------------------------------------------------------------------------------------------


def embedder_throughput(role: str, emb: Any, meter: ForwardMeter, data: dict[str, Path], passes: int) -> dict:
    """N clips (or images) through one embedder, ``passes`` times after one warm-up; best and median pass."""
    from foleykit.evaluation.audio_frontend import frontend_spec, get_protocol, prepare
    from foleykit.io.audio import load_audio

    if role == "clip_image":
        files = sorted(data["images"].glob("*.jpg"))
        emb.embed_image(files[0])
        rows = []
        for _ in range(passes):
            before = meter.snapshot()
            t0 = time.perf_counter()
            for f in files:
                emb.embed_image(f)
            total = time.perf_counter() - t0
            calls, fwd = meter.since(before)
            rows.append({"total_s": total, "forward_s": sum(fwd.values()), "forward_calls": calls})
        return _summarise(rows, len(files), unit="images")

    spec = frontend_spec(get_protocol("v2a-mapper"), emb.sample_rate, emb.pad_mode, emb.max_seconds)
    files = sorted(data["generated"].glob("*.wav"))
    emb.embed(prepare(*load_audio(files[0], mono=True), spec))
    audio_net = [k for k in networks(role, emb) if k != "clap_text"]
    rows = []
    for _ in range(passes):
        before = meter.snapshot()
        decode = front = embed = 0.0
        for f in files:
            t0 = time.perf_counter()
            wave, sr = load_audio(f, mono=True)
            t1 = time.perf_counter()
            x = prepare(wave, sr, spec)
            t2 = time.perf_counter()
            emb.embed(x)
            t3 = time.perf_counter()
            decode, front, embed = decode + t1 - t0, front + t2 - t1, embed + t3 - t2
        calls, fwd = meter.since(before)
        forward = sum(fwd.get(k, 0.0) for k in audio_net)
        rows.append(
            {
                "total_s": decode + front + embed,
                "decode_s": decode,
                "frontend_s": front,
                "features_s": embed - forward,
                "forward_s": forward,
                "forward_calls": calls,
            }
        )
    out = _summarise(rows, len(files), unit="clips")
    out["frontend"] = spec.key
    return out


def _summarise(rows: list[dict], n: int, *, unit: str) -> dict:
    best = min(rows, key=lambda r: r["total_s"])
    totals = [r["total_s"] for r in rows]
    out: dict[str, Any] = {
        unit: n,
        "passes": len(rows),
        f"{unit}_per_s_best": round(n / best["total_s"], 3),
        f"{unit}_per_s_median": round(n / statistics.median(totals), 3),
        "s_per_item_best": round(best["total_s"] / n, 4),
        "best_pass_split_s": {k: round(v, 3) for k, v in best.items() if k.endswith("_s")},
        "forward_calls_per_pass": best["forward_calls"],
        "all_totals_s": [round(x, 3) for x in totals],
    }
    return out


def run_evaluate(
    name: str,
    metrics: list[str],
    embedders: dict[str, Any],
    meter: ForwardMeter,
    data: dict[str, Path],
    out_root: Path,
    *,
    clips: int,
    cache_dir: Path | None = None,
) -> dict:
    """One ``evaluate`` call (models already built): wall time, runner timings, cache and forward counts."""
    from foleykit.evaluation import evaluate
    from foleykit.evaluation.kl_is import IS_SPLITS

    out_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=out_root))
    before = meter.snapshot()
    load0 = loadavg()[0]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = evaluate(
            data["generated"],
            data["reference"],
            out_dir=out_dir,
            images_dir=data["images"],
            captions_csv=data["captions_csv"],
            labels_csv=data["labels_csv"],
            metrics=metrics,
            embedders=embedders,
            device="cpu",
            cache_dir=cache_dir,
            is_splits=min(IS_SPLITS, clips),
            plots=False,
        )
    wall = time.perf_counter() - t0
    calls, fwd = meter.since(before)
    shutil.rmtree(out_dir, ignore_errors=True)
    timing = report["timing_s"]
    return {
        "run": name,
        "metrics": metrics,
        "wall_s": round(wall, 3),
        "embedding_s": timing["embedding"],
        "metrics_s": timing["metrics"],
        "runner_total_s": timing["total"],
        "audio_files": 2 * clips,
        "audio_files_per_s": round(2 * clips / wall, 3),
        "cache": {k: report["cache"][k] for k in ("hits", "misses")},
        "forward_calls": calls,
        "forward_s": fwd,
        "skipped": report["skipped"],
        "values": {m: r.get("value") for m, r in report["metrics"].items()},
        "load_1m_before": load0,
        "load_1m_after": loadavg()[0],
    }


def summarise_runs(rows: list[dict]) -> dict:
    """Min / median wall and embedding time per run name, the forward counts of the first repeat."""
    out: dict[str, Any] = {}
    for name in dict.fromkeys(r["run"] for r in rows):
        mine = [r for r in rows if r["run"] == name]
        walls = [r["wall_s"] for r in mine]
        out[name] = {
            "metrics": mine[0]["metrics"],
            "repeats": len(mine),
            "wall_min_s": min(walls),
            "wall_median_s": round(statistics.median(walls), 3),
            "embedding_min_s": min(r["embedding_s"] for r in mine),
            "metrics_min_s": min(r["metrics_s"] for r in mine),
            "audio_files_per_s_best": round(mine[0]["audio_files"] / min(walls), 3),
            "forward_calls": mine[0]["forward_calls"],
            "cache": mine[0]["cache"],
            "skipped": mine[0]["skipped"],
        }
    return out


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------


def markdown(res: dict) -> str:
    """The tables BENCHMARKS.md shows, from a result object."""
    lines = ["| embedder (real size, random weights) | params | clips/s best (median) | s/clip | split of the best pass: decode / front end / features / forward (s) | forwards per pass |", "|---|---|---|---|---|---|"]
    for role, r in res["embedders"].items():
        unit = "images" if role == "clip_image" else "clips"
        split = r["best_pass_split_s"]
        parts = " / ".join(str(split.get(k, "–")) for k in ("decode_s", "frontend_s", "features_s", "forward_s"))
        lines.append(
            f"| {role} | {res['build'][role]['params'] / 1e6:.1f} M | {r[f'{unit}_per_s_best']} ({r[f'{unit}_per_s_median']}) "
            f"| {r['s_per_item_best']} | {parts} | {r['forward_calls_per_pass']} |"
        )
    lines += ["", "| evaluate(...) with | wall min (median) s | embedding s | metrics s | audio files/s | forwards (all 2N files) | cache hits / misses |", "|---|---|---|---|---|---|---|"]
    for name, r in res["runs"].items():
        fwd = ", ".join(f"{k} {v}" for k, v in r["forward_calls"].items()) or "none"
        lines.append(
            f"| {name} | {r['wall_min_s']} ({r['wall_median_s']}) | {r['embedding_min_s']} | {r['metrics_min_s']} "
            f"| {r['audio_files_per_s_best']} | {fwd} | {r['cache']['hits']} / {r['cache']['misses']} |"
        )
    for name, r in res["cached"].items():
        fwd = ", ".join(f"{k} {v}" for k, v in r["forward_calls"].items()) or "none"
        lines.append(
            f"| {name} | {r['wall_s']} | {r['embedding_s']} | {r['metrics_s']} | {r['audio_files_per_s']} | {fwd} "
            f"| {r['cache']['hits']} / {r['cache']['misses']} |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clips", type=int, default=None, help="clips per side (default 16; 4 with --quick)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=None, help="rounds of evaluate runs and embedder passes (default 2; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="4 clips a side, one round")
    p.add_argument("--tiny", action="store_true", help="tiny stand-in embedders: checks the script, measures nothing")
    p.add_argument("--smoke", action="store_true", help="--tiny --quick with 2 clips a side; writes no result file")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/evaluate-<host>-<UTC>.json)")
    p.add_argument("--report", type=Path, default=None, help="print the Markdown tables of a saved result JSON")
    args = p.parse_args(argv)
    if args.report:
        print(markdown(json.loads(args.report.read_text())))
        return
    if args.smoke:
        args.tiny, args.quick, args.clips = True, True, args.clips or 2

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    clips = args.clips or (4 if args.quick else 16)
    repeats = args.repeats or (1 if args.quick else 2)
    started = _dt.datetime.now(_dt.UTC)
    res: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "date_utc": started.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "loadavg_before": loadavg(),
        "settings": {
            "clips_per_side": clips,
            "seconds": SECONDS,
            "sample_rate": SAMPLE_RATE,
            "repeats": repeats,
            "protocol": "v2a-mapper",
            "sizes": "tiny stand-ins (not a measurement)" if args.tiny else "real architecture sizes, random weights",
            "seed": SEED,
            "plots": False,
        },
    }
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as tmp:
        root = Path(tmp)
        data = write_dataset(root / "data", clips, SEED)
        builders = (build_tiny if args.tiny else build_real)(0)
        embedders: dict[str, Any] = {}
        res["build"] = {}
        for role, build in builders.items():
            t0 = time.perf_counter()
            embedders[role] = build()
            nets = networks(role, embedders[role])
            res["build"][role] = {
                "id": embedders[role].id,
                "build_s": round(time.perf_counter() - t0, 2),
                "params": sum(_params(m) for m in nets.values()),
                "params_by_tower": {k: _params(m) for k, m in nets.items()},
            }
            print(f"built {role}: {res['build'][role]}", file=sys.stderr)
        meter = ForwardMeter({k: m for role, e in embedders.items() for k, m in networks(role, e).items()})

        res["embedders"] = {}
        for role, emb in embedders.items():
            res["embedders"][role] = embedder_throughput(role, emb, meter, data, repeats)
            print(f"{role}: {res['embedders'][role]}", file=sys.stderr)

        panns_set = {k: embedders[k] for k in ("panns", "vggish", "clap", "wav2clip", "clip_image")} | {"tagger": "panns"}
        ast_set = panns_set | {"ast": embedders["ast"], "tagger": "ast"}
        beats_set = panns_set | {"beats": embedders["beats"], "tagger": "beats"}
        plan: list[tuple[str, list[str], dict[str, Any]]] = [
            (m, [m], panns_set)
            for m in ("fd", "kl_softmax", "kl_sigmoid", "is", "ssms", "acc", "fad", "c_fad", "clap_score", "clip_score")
        ]
        plan += [
            ("fd+kl_softmax+kl_sigmoid+is+ssms+acc (PANNs tagger)", list(PANNS_TAGGER), panns_set),
            ("c_fad+clap_score", list(CLAP_METRICS), panns_set),
            ("all 10 metrics (tagger = PANNs)", None, panns_set),
            ("all 10 metrics (tagger = AST, the default)", None, ast_set),
            ("ssms (tagger = BEATs, as SS2A)", ["ssms"], beats_set),
            ("all 10 metrics (tagger = BEATs)", None, beats_set),
        ]
        from foleykit.evaluation import DEFAULT_METRICS

        outs = root / "out"
        outs.mkdir()
        rows = []
        for r in range(repeats):
            for name, metrics, emb_set in plan:
                row = run_evaluate(name, list(metrics or DEFAULT_METRICS), emb_set, meter, data, outs, clips=clips)
                row["round"] = r
                rows.append(row)
                print(f"round {r} {name}: wall {row['wall_s']} s, forwards {row['forward_calls']}", file=sys.stderr)
        res["run_rows"] = rows
        res["runs"] = summarise_runs(rows)

        cache_dir = root / "cache"
        res["cached"] = {}
        for label in ("all 10 (PANNs tagger), cache_dir, first run (fills it)", "all 10 (PANNs tagger), same cache_dir again (all cached)"):
            res["cached"][label] = run_evaluate(
                "cached", list(DEFAULT_METRICS), panns_set, meter, data, outs, clips=clips, cache_dir=cache_dir
            )
            print(f"{label}: {res['cached'][label]['wall_s']} s", file=sys.stderr)
        res["cache_dir_mib"] = round(sum(f.stat().st_size for f in cache_dir.glob("*.npz")) / 2**20, 2)
        res["forward_calls_total"] = meter.calls

    res["loadavg_after"] = loadavg()
    res["wall_s"] = round(time.perf_counter() - t_start, 1)
    out = args.out or HERE / "results" / (
        f"evaluate-{platform.node() or 'host'}-{started.strftime('%Y%m%d-%H%M')}"
        f"{'-tiny' if args.tiny else ''}{'-quick' if args.quick else ''}.json"
    )
    text = json.dumps(res, indent=1)
    if not args.smoke or args.out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        print(f"wrote {out}", file=sys.stderr)
    print(text)
    print(markdown(res), file=sys.stderr)


if __name__ == "__main__":
    main()
