"""SS2A cost at real sizes (random weights): Remixer + Cycle Mix at the released CLI settings vs our
defaults, and perception + manifold + Remixer + Cycle Mix as a fraction of a ``fast`` generation.

Everything is built at the real architecture sizes with random weights (timings depend on the
architecture, not the weights) and measured in one run, on one device:

* SS2A modules: ``ManifoldConfig()`` / ``RemixerConfig()`` defaults (512-d manifold, 1024x3 MLPs;
  Remixer 512-d, 3 layers, 8 heads, M = 64).
* **released CLI** Cycle Mix: ``its`` 64 (→ 65 rounds) × 64 samples, 64 variational samples, the
  released Remixer behaviour (all 64 slots attended, zero padding) — reference notes §2.7;
  **ours**: 4 rounds × 16 samples, 1 variational sample, padding mask (only the scene's slots).
* perception: OWLv2 base/16 at 960 px (``Owlv2Config`` with the base sizes) and CLIP ViT-L/14 on the
  global image plus the default number of detected crops (8), in one batch; the vocabulary's text
  queries are embedded once per process (reported apart, not per image).
* ``fast`` generation of 10 s: the AudioLDM-S UNet (``real_size_configs()``) × the ``fast`` preset's DPM-Solver steps
  at batch 2 (classifier-free guidance), VAE decode and HiFi-GAN, on a 10.24 s latent.

    python benchmarks/bench_sources.py [--detections 8] [--threads N] [--repeats 3] [--quick]
    python benchmarks/bench_sources.py --smoke   # the tiny model set's stand-ins: checks the script (seconds)

Prints one JSON object. Target (issue 3): with our defaults, perception + manifold + Remixer + Cycle
Mix ≤ 10 % of a ``fast`` generation.
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


def timed(fn, repeats: int, warmup: int = 1) -> dict:
    for _ in range(warmup):
        fn()
    xs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        xs.append(time.perf_counter() - t0)
    return {"median_s": round(statistics.median(xs), 4), "min_s": round(min(xs), 4), "n": len(xs)}


def real_size_clip_l14(device: str):
    """CLIP ViT-L/14 (``openai/clip-vit-large-patch14``'s architecture) with random weights."""
    from transformers import CLIPConfig, CLIPModel

    return CLIPModel(CLIPConfig(
        text_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
        vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                           patch_size=14, image_size=224),
        projection_dim=768,
    )).eval().to(device)


def build_perception(device: str, smoke: bool = False):
    if smoke:  # the tiny model set's stand-ins, through the user-facing loaders
        from foleykit.encoders.clip import ClipEncoder
        from foleykit.encoders.detector import SoundSourceDetector
        from foleykit.model_sets import resolve_model_set

        ms = resolve_model_set("tiny")
        detector = SoundSourceDetector.from_pretrained(ms.extra["detector"], device=device)
        clip = ClipEncoder.from_pretrained(ms.clip, device=device)
        return detector, clip, {"owlv2": sum(p.numel() for p in detector.model.parameters()),
                                "clip_vit_l14": sum(p.numel() for p in clip.model.parameters())}
    from transformers import (
        CLIPImageProcessorPil,
        CLIPTokenizer,
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessorPil,
        Owlv2Processor,
    )

    from foleykit.encoders.clip import ClipEncoder
    from foleykit.encoders.detector import SoundSourceDetector
    from foleykit.model_sets import clip_vocab

    torch.manual_seed(0)
    owl = Owlv2ForObjectDetection(Owlv2Config(vision_config=dict(image_size=960))).eval().to(device)
    vocab, merges = clip_vocab()
    tok = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=16, pad_token="!")
    detector = SoundSourceDetector(owl, Owlv2Processor(image_processor=Owlv2ImageProcessorPil(), tokenizer=tok))
    clip_model = real_size_clip_l14(device)
    clip = ClipEncoder(clip_model, CLIPImageProcessorPil(size={"shortest_edge": 224},
                                                         crop_size={"height": 224, "width": 224}), None)
    n = {"owlv2": sum(p.numel() for p in owl.parameters()),
         "clip_vit_l14": sum(p.numel() for p in clip_model.parameters())}
    return detector, clip, n


def build_generator(device: str, smoke: bool = False):
    if smoke:
        from foleykit.generator.pipeline import AudioLDMGenerator
        from foleykit.model_sets import resolve_model_set

        gen = AudioLDMGenerator.from_pretrained(resolve_model_set("tiny").audioldm, device=device, cpu_fast_path=False)
        n = {k: sum(p.numel() for p in m.parameters()) for k, m in (("unet", gen.unet), ("vae", gen.vae), ("vocoder", gen.vocoder))}
        return gen.unet, gen.vae, gen.vocoder, n
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    from foleykit.model_sets import real_size_configs

    cfg = real_size_configs()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**cfg["unet"]).eval().to(device)
    vae = AutoencoderKL(**cfg["vae"]).eval().to(device)
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(**cfg["vocoder"])).eval().to(device)
    n = {"unet": sum(p.numel() for p in unet.parameters()), "vae": sum(p.numel() for p in vae.parameters()),
         "vocoder": sum(p.numel() for p in vocoder.parameters())}
    return unet, vae, vocoder, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detections", type=int, default=None, help="detected crops per image (default: max_detections)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="released Cycle Mix: time 4 of its 65 rounds and scale")
    ap.add_argument("--detector-sizes", default="960,768,640", help="OWLv2 input sides to time (960 = native)")
    ap.add_argument("--smoke", action="store_true", help="tiny stand-ins, 1 repeat: checks the script, measures nothing")
    args = ap.parse_args()
    if args.smoke:
        args.quick, args.repeats, args.detections, args.detector_sizes = True, 1, 2, "64"
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    torch.set_grad_enabled(False)

    from foleykit.encoders.detector import DEFAULT_MAX_DETECTIONS

    if args.detections is None:
        args.detections = DEFAULT_MAX_DETECTIONS
    from foleykit.modules.cycle_mix import cycle_mix, pack_sources
    from foleykit.modules.manifold import CMSSManifold, ManifoldConfig
    from foleykit.modules.remixer import RemixerConfig, SoundSourceRemixer
    from foleykit.pipelines.sources import (
        DEFAULT_CYCLE_ROUNDS,
        DEFAULT_CYCLE_SAMPLES,
        DEFAULT_VAR_SAMPLES,
        _crop_box,
    )

    out: dict = {
        "device": dev, "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "machine": platform.machine(), "processor": platform.processor() or None,
        "scene": {"global": 1, "detected_crops": args.detections, "slots_ours": 1 + args.detections,
                  "slots_released": 64},
    }

    # ---------------------------------------------------------------- SS2A modules (real sizes)
    torch.manual_seed(0)
    manifold = CMSSManifold(ManifoldConfig()).eval().to(dev)
    ours_remixer = SoundSourceRemixer(RemixerConfig()).eval().to(dev)
    released_remixer = SoundSourceRemixer(RemixerConfig(key_softmax="features", attend_to_padding=True)).eval().to(dev)
    released_remixer.load_state_dict(ours_remixer.state_dict())
    out["params"] = {"manifold": sum(p.numel() for p in manifold.parameters()),
                     "remixer": sum(p.numel() for p in ours_remixer.parameters())}
    g = torch.Generator().manual_seed(0)
    crops_clip = torch.nn.functional.normalize(torch.randn(args.detections, 768, generator=g), dim=-1)
    global_clip = torch.nn.functional.normalize(torch.randn(768, generator=g), dim=-1)
    slots = pack_sources(crops_clip, None, global_clip)

    def run_cycle(remixer, rounds, samples, var_samples):
        return cycle_mix(manifold, remixer, slots, rounds=rounds, samples=samples, var_samples=var_samples,
                         generator=torch.Generator().manual_seed(1))

    ours = timed(lambda: run_cycle(ours_remixer, DEFAULT_CYCLE_ROUNDS, DEFAULT_CYCLE_SAMPLES, DEFAULT_VAR_SAMPLES),
                 args.repeats)
    released_rounds = 65
    measured_rounds = 1 if args.smoke else 4 if args.quick else released_rounds
    rel = timed(lambda: run_cycle(released_remixer, measured_rounds, 64, 64), 1 if not args.quick else args.repeats,
                warmup=0 if not args.quick else 1)
    rel_total = rel["median_s"] * released_rounds / measured_rounds
    one_pass = timed(lambda: ours_remixer.sample(manifold.fold_clips(slots.clips.to(dev)), slots.clips.to(dev),
                                                 slots.padding_mask.to(dev), num_samples=1), max(5, args.repeats))
    out["cycle_mix"] = {
        "ours": {"rounds": DEFAULT_CYCLE_ROUNDS, "samples": DEFAULT_CYCLE_SAMPLES, "var_samples": DEFAULT_VAR_SAMPLES,
                 "remixer_forwards": DEFAULT_CYCLE_ROUNDS * DEFAULT_CYCLE_SAMPLES, "tokens": 2 + slots.num_slots,
                 **ours},
        "released_cli": {"rounds": released_rounds, "samples": 64, "var_samples": 64,
                         "remixer_forwards": released_rounds * 64, "tokens": 2 + 64,
                         "measured_rounds": measured_rounds, "median_s": round(rel_total, 3)},
        "speedup": round(rel_total / ours["median_s"], 1),
        "single_remixer_pass_ours": one_pass,
    }

    # ---------------------------------------------------------------- perception (real sizes)
    detector, clip, nper = build_perception(dev, args.smoke)
    out["params"].update(nper)
    rng = np.random.default_rng(0)
    h, w = (120, 160) if args.smoke else (853, 1280)
    image = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    t0 = time.perf_counter()
    detector.query_embeddings()
    out["perception"] = {"vocabulary_queries": len(detector.vocabulary),
                         "query_embedding_once_per_process_s": round(time.perf_counter() - t0, 3)}
    sizes = [int(v) for v in args.detector_sizes.split(",") if v.strip()]
    from foleykit.encoders.detector import DEFAULT_IMAGE_SIZE

    det_times = {}
    for size in sizes:
        detector.image_size = size
        det_times[size] = timed(lambda: detector.raw_predictions(image), args.repeats)
    detector.image_size = DEFAULT_IMAGE_SIZE or int(detector.model.config.vision_config.image_size)
    out["perception"]["detector_pass_by_input_size"] = {str(k): v for k, v in det_times.items()}
    out["perception"]["detector_default_input_size"] = detector.image_size
    out["perception"]["detector_pass"] = det_times.get(detector.image_size) or timed(
        lambda: detector.raw_predictions(image), args.repeats)
    boxes = ([(10.0 + 20 * k, 10.0, 60.0 + 20 * k, 80.0) for k in range(args.detections)] if args.smoke
             else [(40.0 + 120 * k, 100.0, 200.0 + 120 * k, 400.0) for k in range(args.detections)])

    def clip_batch():
        crops = [image] + [_crop_box(image, b) for b in boxes]
        return clip.embed_images(crops, normalize=True)

    out["perception"]["clip_global_plus_crops"] = timed(clip_batch, args.repeats)
    out["perception"]["manifold_codes"] = timed(lambda: manifold.to_clap(manifold.fold_clips(slots.clips.to(dev))),
                                                args.repeats)
    detector = clip = None  # free ~2.3 GB before building the generator

    # ---------------------------------------------------------------- fast generation (real sizes)
    unet, vae, vocoder, ngen = build_generator(dev, args.smoke)
    out["params"].update(ngen)
    # 10.24 s: 1024 mel frames / 4, 64 mels / 4 (the stand-in's own geometry in a smoke run)
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    n_mels = int(vocoder.config.model_in_dim)
    latent = torch.randn(2, int(unet.config.in_channels), 1024 // scale, n_mels // scale, generator=g).to(dev)
    cond = torch.randn(2, int(unet.config.projection_class_embeddings_input_dim), generator=g).to(dev)
    step = timed(lambda: unet(latent, torch.tensor(500, device=dev), encoder_hidden_states=None, class_labels=cond),
                 args.repeats)
    vae_t = timed(lambda: vae.decode(latent[:1] / vae.config.scaling_factor).sample, max(1, args.repeats - 1))
    mel = torch.randn(1, 1024, n_mels, generator=g).to(dev)
    voc_t = timed(lambda: vocoder(mel), max(1, args.repeats - 1))
    from foleykit.generator.presets import get_preset

    steps = get_preset("fast").num_inference_steps
    gen_total = steps * step["median_s"] + vae_t["median_s"] + voc_t["median_s"]
    out["fast_generation_10s"] = {"unet_step_batch2": step, "steps": steps, "vae_decode": vae_t, "vocoder": voc_t,
                                  "total_s": round(gen_total, 3)}

    per = out["perception"]
    ss2a_s = (per["detector_pass"]["median_s"] + per["clip_global_plus_crops"]["median_s"]
              + per["manifold_codes"]["median_s"] + ours["median_s"])
    released_ss2a_s = ss2a_s - ours["median_s"] + rel_total
    out["summary"] = {
        "ss2a_with_our_defaults_s": round(ss2a_s, 3),
        "fraction_of_fast_generation": round(ss2a_s / gen_total, 4),
        "target_fraction": 0.10,
        "meets_target": ss2a_s / gen_total <= 0.10,
        "breakdown_fraction": {
            "detector": round(per["detector_pass"]["median_s"] / gen_total, 4),
            "clip": round(per["clip_global_plus_crops"]["median_s"] / gen_total, 4),
            "manifold": round(per["manifold_codes"]["median_s"] / gen_total, 4),
            "remixer_cycle_mix": round(ours["median_s"] / gen_total, 4),
        },
        "with_released_cycle_mix_fraction": round(released_ss2a_s / gen_total, 4),
    }
    # Other operating points, from the same measurements (CLIP cost is linear in the number of crops).
    clip_per_image = per["clip_global_plus_crops"]["median_s"] / (1 + args.detections)
    rest = per["manifold_codes"]["median_s"] + ours["median_s"]
    out["summary"]["alternatives_fraction"] = {
        f"owlv2_{size}px_{k}_crops": round((t["median_s"] + (1 + k) * clip_per_image + rest) / gen_total, 4)
        for size, t in det_times.items() for k in (0, 3, args.detections)
    }
    out["summary"]["no_detection_fraction"] = round((clip_per_image + rest) / gen_total, 4)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
