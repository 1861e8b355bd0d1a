"""Throughput of dataset-scale work at real model sizes (random weights), against the machine's peak.

Measures, on one device:

* the machine's fp32 matmul peak (best of square ``torch.mm``; TF32 off, so it is a true fp32 peak);
* CLIP ViT-L/14 image embedding (the SS2A / grounding encoder) and CLAP HTSAT-tiny audio embedding
  (AudioLDM's): model-only items/s and the fraction of the matmul peak their FLOPs reach (FLOPs
  counted with ``torch.utils.flop_counter.FlopCounterMode``), then end-to-end ``extract_embeddings``
  over synthetic media with the time spent waiting for decoded data vs computing;
* the V2A-Mapper trainer at paper size (diffusion transformer, 12 layers, batch 448) and the CMSS
  manifold trainer (mean teacher, batch 256) through the accelerate :class:`Trainer`: pairs/s,
  fraction of peak (forward + backward FLOPs per step), data wait vs compute.

``--quick`` (CPU-friendly) uses few iterations and small end-to-end sets; the full run is for GPUs.
Results go to stdout (a table) and ``benchmarks/results/bench_training-<device>[-quick].json``.

    python benchmarks/bench_training.py --quick
    python benchmarks/bench_training.py --smoke   # tiny stand-ins, one step each, no result file (seconds)
    python benchmarks/bench_training.py --device cuda --dtype float16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, iters: int, warmup: int = 1, repeats: int = 3) -> float:
    """Seconds per call: the best of ``repeats`` means over ``iters`` calls (other work on a shared
    machine only ever adds time, so the minimum is the least disturbed figure)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        sync(device)
        best = min(best, (time.perf_counter() - t0) / iters)
    return best


def flops_of(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def matmul_peak(device: torch.device, quick: bool, smoke: bool = False) -> dict:
    """Best fp32 matmul FLOP/s over a few sizes."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    sizes = [256] if smoke else [2048, 4096] if quick else ([2048, 4096, 8192] if device.type == "cuda" else [1024, 2048, 4096])
    best = 0.0
    per = {}
    for n in sizes:
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        iters = 3 if quick else (50 if device.type == "cuda" else 5)
        dt = min(timed(lambda a=a, b=b: a @ b, device, iters) for _ in range(2 if quick else 3))
        per[n] = 2 * n**3 / dt
        best = max(best, per[n])
    return {"peak_flops": best, "by_size": {str(k): v for k, v in per.items()}}


# ------------------------------------------------------------------------------------------------
# encoders
# ------------------------------------------------------------------------------------------------


def clip_vit_l14(device, dtype, smoke: bool = False):
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    from foleykit.encoders.clip import ClipEncoder

    if smoke:  # the tiny model set's stand-in, through the user-facing loader
        from foleykit.model_sets import resolve_model_set

        return ClipEncoder.from_pretrained(resolve_model_set("tiny").clip, device=device, dtype=dtype)

    cfg = CLIPConfig(
        text_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
        vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                           image_size=224, patch_size=14),
        projection_dim=768,
    )
    torch.manual_seed(0)
    model = CLIPModel(cfg).eval().to(device=device, dtype=dtype).requires_grad_(False)
    proc = CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    return ClipEncoder(model, proc, None)


def clap_htsat(device, dtype, smoke: bool = False):
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    from foleykit.encoders.clap import ClapEncoder

    if smoke:
        from foleykit.model_sets import resolve_model_set

        return ClapEncoder.from_pretrained(resolve_model_set("tiny").clap, device=device, dtype=dtype)

    torch.manual_seed(0)
    model = ClapModel(ClapConfig()).eval().to(device=device, dtype=dtype).requires_grad_(False)
    return ClapEncoder(model, ClapFeatureExtractor(truncation="rand_trunc", padding="repeatpad"), None)


def bench_clip_model(enc, device, batch: int, iters: int, peak: float) -> dict:
    side = int(enc.model.config.vision_config.image_size)
    px = torch.randn(batch, 3, side, side, device=device, dtype=enc.dtype)

    def run():
        with torch.inference_mode():
            enc.model.get_image_features(pixel_values=px)

    flops = flops_of(run)
    dt = timed(run, device, iters)
    return {"batch": batch, "items_per_s": batch / dt, "gflops_per_item": flops / batch / 1e9,
            "achieved_flops": flops / dt, "fraction_of_peak": flops / dt / peak}


def bench_clap_model(enc, device, batch: int, iters: int, peak: float) -> dict:
    feats = {"input_features": torch.randn(batch, 1, 1001, 64, device=device, dtype=enc.dtype),
             "is_longer": torch.zeros(batch, 1, dtype=torch.bool, device=device)}

    def run():
        with torch.inference_mode():
            enc.model.get_audio_features(**feats)

    flops = flops_of(run)
    dt = timed(run, device, iters)
    return {"batch": batch, "items_per_s": batch / dt, "gflops_per_item": flops / batch / 1e9,
            "achieved_flops": flops / dt, "fraction_of_peak": flops / dt / peak}


def bench_extraction_e2e(enc_clip, enc_clap, feature: str, n_items: int, workers: int, batch: int, tmp: Path,
                         image_size: tuple[int, int] = (640, 480), audio_seconds: float = 10.0) -> dict:
    from foleykit.data import read_manifest
    from foleykit.data.synthetic import make_synthetic_dataset
    from foleykit.training.extraction import ExtractionConfig, ShardExtractor, extract_embeddings

    data = tmp / "media"
    if not (data / "manifest.csv").exists():
        make_synthetic_dataset(data, n_images=n_items, n_videos=0, image_size=image_size, audio_seconds=audio_seconds)
    manifest = read_manifest(data / "manifest.csv")
    cfg = ExtractionConfig(features=(feature,), shard_size=max(8, n_items), batch_size=batch, audio_batch_size=batch,
                           num_workers=workers, prefetch_items=4)
    ex = ShardExtractor(cfg, enc_clip if feature == "clip" else None, enc_clap if feature == "clap" else None)
    out = tmp / f"emb-{feature}"
    shutil.rmtree(out, ignore_errors=True)
    res = extract_embeddings(manifest, out, extractor=ex, progress=False)
    busy = res.load_wait_s + res.compute_s
    return {"items": res.num_extracted, "workers": workers, "items_per_s": res.num_extracted / res.seconds,
            "seconds": res.seconds, "data_wait_s": res.load_wait_s, "compute_s": res.compute_s,
            "wait_fraction": res.load_wait_s / busy if busy else 0.0}


# ------------------------------------------------------------------------------------------------
# trainers
# ------------------------------------------------------------------------------------------------


def bench_trainer(task: str, model_cfg: dict, dims: tuple[int, int], batch: int, steps: int, device, peak: float,
                  mixed_precision: str, tmp: Path) -> dict:
    from foleykit.training.accelerate_tasks import build_task
    from foleykit.training.trainer import TensorDictDataset, Trainer, TrainerConfig

    g = torch.Generator().manual_seed(0)
    n = batch * (steps + 1)  # one warm-up step, then ``steps`` timed
    data = TensorDictDataset({"clip": torch.nn.functional.normalize(torch.randn(n, dims[0], generator=g), dim=-1),
                              "clap": torch.nn.functional.normalize(torch.randn(n, dims[1], generator=g), dim=-1)})
    factory = build_task(task, model_cfg, {}, data_shapes={"clip": (dims[0],), "clap": (dims[1],)})

    # FLOPs of one optimisation step (forward + backward), counted on the module itself.
    module = factory().to(device).train()
    batch_t = {k: v[:batch].to(device) for k, v in data.tensors.items()}
    gen = torch.Generator().manual_seed(0)

    def step():
        out = module(batch_t, gen)
        out["loss"].backward()

    step_flops = flops_of(step)
    params = sum(p.numel() for p in module.parameters() if p.requires_grad)
    module.zero_grad(set_to_none=True)
    module.cpu()  # free the accelerator for the trainer's own copy

    out = tmp / f"train-{task}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = TrainerConfig(output_dir=str(out), epochs=1, batch_size=batch, val_fraction=0.0, tensorboard=False,
                        log_every_steps=10**9, keep_checkpoints=1, mixed_precision=mixed_precision,
                        cpu=device.type == "cpu", max_steps=1)
    warm = Trainer(factory, data, cfg, task_name=task, progress=False).fit()  # warm-up + checkpoint
    cfg = TrainerConfig(**{**cfg.__dict__, "max_steps": steps + 1})
    res = Trainer(factory, data, cfg, task_name=task, progress=False).fit()  # resumes: ``steps`` timed steps
    busy = res.data_wait_s + res.compute_s
    pairs_per_s = steps * batch / busy
    return {"batch": batch, "steps": steps, "params_m": params / 1e6, "gflops_per_step": step_flops / 1e9,
            "pairs_per_s": pairs_per_s, "achieved_flops": step_flops * steps / busy,
            "fraction_of_peak": step_flops * steps / busy / peak, "data_wait_s": res.data_wait_s,
            "compute_s": res.compute_s, "wait_fraction": res.data_wait_s / busy if busy else 0.0,
            "warmup_step": warm.global_step}


# ------------------------------------------------------------------------------------------------


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="float32", help="encoder dtype (float32 | float16 | bfloat16)")
    ap.add_argument("--mixed-precision", default="no", help="trainer precision (no | bf16 | fp16)")
    ap.add_argument("--quick", action="store_true", help="few iterations, small sets (CPU)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    ap.add_argument("--workers", default=None,
                    help="comma list of decoding-worker counts for the end-to-end runs (default: 0,2 with --quick, "
                         "else min(16, cores)); each count is one run")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: clip,clap,mapper,manifold,e2e")
    ap.add_argument("--out", default=None)
    ap.add_argument("--smoke", action="store_true",
                    help="tiny stand-ins, 2 items, one step per trainer, small batches: checks the script, measures nothing")
    args = ap.parse_args(argv)
    sm = args.smoke
    if sm:
        args.quick = True
        args.workers = args.workers or "0"

    from foleykit.devices import resolve_device, resolve_dtype
    from foleykit.modules.mapper import MapperConfig

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    if args.threads:
        torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    q = args.quick
    worker_counts = ([int(w) for w in args.workers.split(",")] if args.workers
                     else ([0, 2] if q else [min(16, os.cpu_count() or 1)]))
    tmp = Path(tempfile.mkdtemp(prefix="fk-bench-"))
    report: dict = {"device": str(device), "dtype": str(dtype), "quick": q, "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "platform": platform.platform(),
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                    "loadavg_start": list(os.getloadavg())}
    try:
        peak = matmul_peak(device, q, sm)
        report["matmul_fp32"] = peak
        p = peak["peak_flops"]
        print(f"fp32 matmul peak: {p / 1e9:.1f} GFLOP/s on {device} ({report['threads']} threads)", flush=True)

        if "clip" not in skip:
            enc = clip_vit_l14(device, dtype, sm)
            b = 2 if sm else 8 if q else 256
            r = report["clip_vit_l14_model"] = bench_clip_model(enc, device, b, 1 if q else 20, p)
            print(f"CLIP ViT-L/14 model: {r['items_per_s']:.2f} img/s, {r['gflops_per_item']:.1f} GFLOP/img, "
                  f"{100 * r['fraction_of_peak']:.0f}% of peak", flush=True)
            if "e2e" not in skip:
                for workers in worker_counts:  # the first count keeps the historical key
                    key = "clip_extraction_e2e" + ("" if workers == worker_counts[0] else f"_workers{workers}")
                    r = report[key] = bench_extraction_e2e(enc, None, "clip", 2 if sm else 16 if q else 2048, workers, b, tmp,
                                                           image_size=(64, 48) if sm else (640, 480))
                    # End to end (decode, preprocessing, forward, shard write) against the same peak.
                    r["fraction_of_peak"] = r["items_per_s"] * report["clip_vit_l14_model"]["gflops_per_item"] * 1e9 / p
                    print(f"  extract (clip, {r['items']} jpg/png, {workers} workers): {r['items_per_s']:.2f} items/s, "
                          f"data wait {r['data_wait_s']:.1f} s vs compute {r['compute_s']:.1f} s", flush=True)
            del enc
        if "clap" not in skip:
            enc = clap_htsat(device, dtype, sm)
            b = 2 if sm else 8 if q else 128
            r = report["clap_htsat_model"] = bench_clap_model(enc, device, b, 1 if q else 20, p)
            print(f"CLAP HTSAT-tiny model: {r['items_per_s']:.2f} clips/s (10 s), {r['gflops_per_item']:.1f} GFLOP/clip, "
                  f"{100 * r['fraction_of_peak']:.0f}% of peak", flush=True)
            if "e2e" not in skip:
                for workers in worker_counts:  # the first count keeps the historical key
                    key = "clap_extraction_e2e" + ("" if workers == worker_counts[0] else f"_workers{workers}")
                    r = report[key] = bench_extraction_e2e(None, enc, "clap", 2 if sm else 16 if q else 2048, workers, b, tmp,
                                                           audio_seconds=1.0 if sm else 10.0)
                    # End to end (decode, preprocessing, forward, shard write) against the same peak.
                    r["fraction_of_peak"] = r["items_per_s"] * report["clap_htsat_model"]["gflops_per_item"] * 1e9 / p
                    print(f"  extract (clap, {r['items']} 10-s wav, {workers} workers): {r['items_per_s']:.2f} items/s, "
                          f"data wait {r['data_wait_s']:.1f} s vs compute {r['compute_s']:.1f} s", flush=True)
            del enc
        if "mapper" not in skip:
            cfg = MapperConfig()  # the paper's best: diffusion transformer, 12 layers, width 512
            if sm:
                cfg = MapperConfig(width=64, depth=2, heads=2, head_dim=32)
            r = report["mapper_trainer"] = bench_trainer(
                "mapper", {k: getattr(cfg, k) for k in ("kind", "width", "depth", "heads", "head_dim", "mlp_ratio")},
                (512, 512), 8 if sm else 448, 1 if sm else 2 if q else 50, device, p, args.mixed_precision, tmp)
            print(f"V2A-Mapper trainer (paper size, batch 448): {r['pairs_per_s']:.0f} pairs/s, "
                  f"{100 * r['fraction_of_peak']:.0f}% of peak, data wait {r['data_wait_s']:.2f} s vs compute "
                  f"{r['compute_s']:.2f} s", flush=True)
        if "manifold" not in skip:
            r = report["manifold_trainer"] = bench_trainer("manifold", {}, (768, 512), 8 if sm else 256,
                                                           1 if sm else 2 if q else 100, device, p,
                                                           args.mixed_precision, tmp)
            print(f"CMSS manifold trainer (batch 256): {r['pairs_per_s']:.0f} pairs/s, "
                  f"{100 * r['fraction_of_peak']:.0f}% of peak, data wait {r['data_wait_s']:.2f} s vs compute "
                  f"{r['compute_s']:.2f} s", flush=True)
        # The peak again at the end: the fractions use the better of the two measurements, so a peak
        # taken while other work held the cores cannot inflate them.
        end = matmul_peak(device, q, sm)
        report["matmul_fp32_end"] = end
        best = max(p, end["peak_flops"])
        report["peak_flops_used"] = best
        for name, part in report.items():
            if isinstance(part, dict) and "fraction_of_peak" in part:
                part["fraction_of_peak"] *= p / best
        print(f"fp32 matmul peak at the end: {end['peak_flops'] / 1e9:.1f} GFLOP/s; fractions use "
              f"{best / 1e9:.1f}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report["loadavg_end"] = list(os.getloadavg())
    if sm and not args.out:
        print("smoke run (tiny stand-ins, nothing measured): no result file")
        return report
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"bench_training-{device.type}{'-quick' if q else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
