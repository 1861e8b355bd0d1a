"""Time per click at real SAM size: mask decoder (+ mask upscaling and overlay) vs the one-time image embedding.

The model is the facebook/sam-vit-base architecture (transformers ``SamConfig()`` defaults: ViT-B,
1024-px input, 64x64x256 embedding) with random weights — the timings depend on the architecture,
not on the weights. The picture is a 1280x853 photo-sized image (the web app's largest side).

    python benchmarks/bench_click.py [--clicks 20] [--threads N] [--device cpu]
    python benchmarks/bench_click.py --smoke     # tiny SAM, small picture: checks the script (seconds)

Prints one JSON object. Budget from issue 5: a click answers with its mask overlay in <= 1 s on CPU
after the image is loaded.

Wall-clock times depend on what else the machine runs, so each timing also records the CPU seconds
this process used (``*_cpu``: summed over its threads) and the load average before and after. On a
shared machine, ``--threads 1`` and the CPU seconds give the work per click independent of contention.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch
from PIL import Image


def _stats(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {
        "median_s": round(statistics.median(xs), 4),
        "p90_s": round(xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))], 4),
        "max_s": round(xs[-1], 4),
        "min_s": round(xs[0], 4),
        "n": len(xs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clicks", type=int, default=20)
    ap.add_argument("--embeds", type=int, default=3, help="image embeddings to time (each on a fresh cache)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=853)
    ap.add_argument("--smoke", action="store_true", help="tiny SAM stand-in, 160x120 picture, 2 clicks: measures nothing")
    args = ap.parse_args()
    if args.smoke:
        args.clicks, args.embeds, args.width, args.height = 2, 1, 160, 120
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import SamConfig, SamModel, SamProcessor

    try:
        from transformers import SamImageProcessorPil as ImageProcessor
    except ImportError:  # pragma: no cover
        from transformers import SamImageProcessor as ImageProcessor

    from foleykit.encoders.segmenter import Segmenter, mask_overlay

    torch.manual_seed(0)
    t0 = time.perf_counter()
    if args.smoke:  # the tiny model set's SAM, through the user-facing loader
        from foleykit.model_sets import resolve_model_set

        seg = Segmenter.from_pretrained(resolve_model_set("tiny").extra["sam"], device=args.device, cache_size=1)
        model = seg.model
    else:
        model = SamModel(SamConfig()).eval().to(args.device)
        seg = Segmenter(model, SamProcessor(ImageProcessor()), cache_size=1)
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())

    rng = np.random.default_rng(0)
    w, h = args.width, args.height
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    base[h // 4 : h // 2, w // 4 : w // 2] = (200, 40, 40)
    image = Image.fromarray(base)

    # One-time cost: image embedding (preprocess + ViT-B), each time on a cleared cache.
    load_before = os.getloadavg()
    embed_times, embed_cpu = [], []
    for _ in range(max(1, args.embeds)):
        seg._cache.clear()
        c0 = time.process_time()
        t0 = time.perf_counter()
        seg.set_image(image)
        embed_times.append(time.perf_counter() - t0)
        embed_cpu.append(time.process_time() - c0)

    # Per click: set_image on the cached image (hash), prompt encoder + mask decoder, mask upscaling, overlay.
    points = [(float(x), float(y)) for x, y in zip(rng.integers(0, w, args.clicks), rng.integers(0, h, args.clicks))]
    seg.masks(points=[points[0]])  # warm-up
    click_total, click_decoder, click_overlay, click_cpu = [], [], [], []
    for p in points:
        c0 = time.process_time()
        t0 = time.perf_counter()
        seg.set_image(image)  # cached: hashes the pixels only
        t1 = time.perf_counter()
        mask = seg.masks(points=[p])[0]
        t2 = time.perf_counter()
        mask_overlay(image, [mask], points=[p])
        t3 = time.perf_counter()
        click_cpu.append(time.process_time() - c0)
        click_total.append(t3 - t0)
        click_decoder.append(t2 - t1)
        click_overlay.append(t3 - t2)
    assert seg.image_embedding_calls == max(1, args.embeds)

    result = {
        "benchmark": "bench_click",
        "model": ("tiny SAM stand-in (smoke run: nothing measured)" if args.smoke
                  else "SamModel(SamConfig()) = facebook/sam-vit-base architecture, random weights"),
        "parameters": n_params,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "image_size": [w, h],
        "model_build_s": round(build_s, 3),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "image_embedding_once": _stats(embed_times),
        "image_embedding_once_cpu": _stats(embed_cpu),
        "click_total": _stats(click_total),
        "click_total_cpu": _stats(click_cpu),
        "click_decoder_and_upscale": _stats(click_decoder),
        "click_overlay": _stats(click_overlay),
        "click_budget_s": 1.0,
        "click_within_budget": max(click_total) <= 1.0,
        "embedding_to_click_ratio": round(statistics.median(embed_times) / statistics.median(click_total), 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
