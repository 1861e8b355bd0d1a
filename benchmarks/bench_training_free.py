"""Training-free route cost at real sizes (random weights) against the ``fast`` generation it precedes.

What the route adds before diffusion (``pipelines/training_free.py``), each part timed through the
route's own code (``TrainingFree``) in one run:

* once per model: the bridge vocabulary (806 AudioSet + VGGSound names) through the CLIP ViT-L/14
  text tower and the generator's CLAP text tower (AudioLDM's ``text_encoder``: RoBERTa-base), written
  to the on-disk cache; and a later run's
  cost of reading that cache instead (what every run after the first pays);
* per image with ``--no-detect``: CLIP ViT-L/14 on the whole image, the bridge (cosines to 806 words,
  top 3, softmax, CLAP captions averaged), the mix (4 rounds x 16 candidate weightings), and one text
  source through the CLAP text tower;
* per extra region (a box or mask; detection adds one OWLv2 pass, measured in ``bench_sources.py``):
  one more CLIP crop in the same batch.

``fast`` generation of 10 s: the AudioLDM-S UNet (``real_size_configs()``) x the ``fast`` preset's steps
at batch 2 (classifier-free guidance), VAE decode and HiFi-GAN on a 10.24 s latent.

Tokenisers are offline stand-ins (byte-level, no merges: about 3x the tokens of the real BPE for a
prompt), so the once-per-model vocabulary cost is an upper bound; per-image costs do not tokenise the
vocabulary at all.

    python benchmarks/bench_training_free.py [--threads N] [--repeats 3] [--quick] [--smoke]

``--quick`` embeds 128 of the 806 words and scales (text-tower cost is linear in the words);
``--smoke`` runs every part once on the tiny stand-ins, ``--quick`` implied (what the tests run). Prints one JSON object.
Target (issue 16): the training-free route with ``--no-detect`` <= 10 % of a ``fast`` generation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sources import build_generator, real_size_clip_l14, timed  # noqa: E402


def build_encoders(smoke: bool, device: str):
    """(CLIP ViT-L/14, the generator's CLAP text tower): real sizes with random weights, or the tiny stand-ins."""
    from foleykit.encoders.clip import ClipEncoder
    from foleykit.encoders.generator_clap import GeneratorClap

    if smoke:
        from foleykit.model_sets import resolve_model_set

        ms = resolve_model_set("tiny")
        return (ClipEncoder.from_pretrained(ms.clip, device=device),
                GeneratorClap.from_pretrained(ms.audioldm, None, device=device))
    from transformers import (
        ClapTextConfig,
        ClapTextModelWithProjection,
        CLIPImageProcessorPil,
        CLIPTokenizer,
        RobertaTokenizer,
    )

    from foleykit.encoders.loading import LoadedFrom
    from foleykit.encoders.tiny_vocab import byte_level_vocab, clip_vocab

    torch.manual_seed(0)
    clip_model = real_size_clip_l14(device)
    vocab, merges = clip_vocab()
    clip = ClipEncoder(clip_model, CLIPImageProcessorPil(size={"shortest_edge": 224},
                                                         crop_size={"height": 224, "width": 224}),
                       CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77, pad_token="!"))
    bvocab, bmerges = byte_level_vocab()
    # AudioLDM-S's text_encoder: RoBERTa-base with a 512-d projection (ClapTextConfig defaults).
    text = ClapTextModelWithProjection(ClapTextConfig(vocab_size=len(bvocab), bos_token_id=0, pad_token_id=1,
                                                      eos_token_id=2, projection_dim=512)).eval().to(device)
    clap = GeneratorClap(text, RobertaTokenizer(vocab=bvocab, merges=bmerges, model_max_length=77),
                         text_loaded_from=LoadedFrom("bench/audioldm-text-encoder-random", "seed-0", ""))
    # Provenance, so the bridge caches their embeddings on disk as it does for loaded checkpoints.
    clip.loaded_from = LoadedFrom("bench/clip-vit-large-patch14-random", "seed-0", "")
    return clip, clap


def build_tiny_generator(device: str):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import SpeechT5HifiGan

    from foleykit.model_sets import resolve_model_set

    root = Path(resolve_model_set("tiny").audioldm)
    unet = UNet2DConditionModel.from_pretrained(root / "unet").eval().to(device)
    vae = AutoencoderKL.from_pretrained(root / "vae").eval().to(device)
    vocoder = SpeechT5HifiGan.from_pretrained(root / "vocoder").eval().to(device)
    return unet, vae, vocoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--regions", type=int, default=3, help="boxes/masks timed as extra CLIP crops")
    ap.add_argument("--quick", action="store_true", help="embed 128 of the vocabulary's words and scale")
    ap.add_argument("--smoke", action="store_true", help="tiny stand-ins, one repeat: every code path, seconds")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.repeats, args.quick = 1, True
    dev = args.device
    torch.set_grad_enabled(False)

    from foleykit.generator.presets import get_preset
    from foleykit.pipelines import zero_shot_bridge as zsb
    from foleykit.pipelines.sources import DEFAULT_CYCLE_ROUNDS, DEFAULT_CYCLE_SAMPLES
    from foleykit.pipelines.training_free import TrainingFree, mix_vectors
    from foleykit.pipelines.zero_shot_bridge import BridgeSettings
    from foleykit.vocabulary import sound_vocabulary

    out: dict = {"device": dev, "torch": torch.__version__, "threads": torch.get_num_threads(),
                 "cpu_count": os.cpu_count(), "machine": platform.machine(),
                 "processor": platform.processor() or None, "smoke": args.smoke}
    clip, clap = build_encoders(args.smoke, dev)
    out["params"] = {"clip_vit_l14": sum(p.numel() for p in clip.model.parameters()),
                     "generator_clap_text": sum(p.numel() for p in clap.text_encoder.parameters())}
    words = sound_vocabulary()
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (853, 1280, 3), dtype=np.uint8))

    with tempfile.TemporaryDirectory() as cache:
        # ------------------------------------------------------------ once per model: the vocabulary
        subset = words[:128] if args.quick else words
        t0 = time.perf_counter()
        for enc, prompt, side in ((clip, "a photo of {}", "clip"), (clap, "the sound of {}", "clap")):
            zsb.cached_text_embeddings(enc, subset, prompt, side=side, source="bench", cache_dir=cache)
        embed_s = (time.perf_counter() - t0) * len(words) / len(subset)
        if args.quick:  # the route's bridge over the words just embedded (its cosine/top-k cost is negligible)
            (Path(cache) / "subset.txt").write_text("\n".join(subset))
            settings = BridgeSettings(vocabulary=str(Path(cache) / "subset.txt"))
        else:
            settings = BridgeSettings()
        free = TrainingFree(clip, clap, cache_dir=cache)

        def cached_bridge():
            zsb._memory.clear()  # a new process: nothing in memory, everything on disk
            return TrainingFree(clip, clap, cache_dir=cache).bridge(settings)

        cached = timed(cached_bridge, args.repeats)
        assert cached_bridge().cache == {"clip": "disk", "clap": "disk"}
        out["vocabulary"] = {"words": len(words), "embedded_words_timed": len(subset),
                             "embed_both_towers_once_per_model_s": round(embed_s, 3),
                             "read_from_disk_cache_each_run": cached,
                             "bridge_vocabulary_in_route": len(subset)}

        # ------------------------------------------------------------ per image (--no-detect)
        rounds, samples = DEFAULT_CYCLE_ROUNDS, DEFAULT_CYCLE_SAMPLES
        boxes = [(40.0 + 120 * k, 100.0, 200.0 + 120 * k, 400.0) for k in range(args.regions)]
        from foleykit.io.image import crop_box

        def route(n_regions: int, text: bool):
            crops = [image] + [crop_box(image, b) for b in boxes[:n_regions]]
            emb = clip.embed_images(crops, normalize=True)
            vec, _ = free.bridge_images(emb, settings)
            if text:
                vec = torch.cat([vec, free.embed_texts(["rain on a tin roof"])])
            return mix_vectors(vec, [1.0] * vec.shape[0], rounds=rounds, samples=samples,
                               generator=torch.Generator().manual_seed(0))

        emb1 = clip.embed_images([image], normalize=True)
        per = {
            "clip_global": timed(lambda: clip.embed_images([image], normalize=True), args.repeats),
            "bridge_one_vector": timed(lambda: free.bridge_images(emb1, settings), max(5, args.repeats)),
            "clap_text_one_source": timed(lambda: free.embed_texts(["rain on a tin roof"]), args.repeats),
            "mix_4x16": timed(lambda: mix_vectors(torch.randn(4, clap.dim), [1.0] * 4, rounds=rounds,
                                                  samples=samples, generator=torch.Generator().manual_seed(0)),
                              max(5, args.repeats)),
            "route_no_detect_image_only": timed(lambda: route(0, False), args.repeats),
            "route_no_detect_image_plus_text": timed(lambda: route(0, True), args.repeats),
            f"route_no_detect_image_plus_{args.regions}_regions_plus_text": timed(lambda: route(args.regions, True),
                                                                                  args.repeats),
        }
        out["per_image"] = per
    clip = clap = free = None  # free the encoders before building the generator

    # ---------------------------------------------------------------- fast generation of 10 s
    if args.smoke:
        unet, vae, vocoder = build_tiny_generator(dev)
        latent_shape, mel_frames = (2, 8, 32, 16), 128
    else:
        unet, vae, vocoder, ngen = build_generator(dev)
        out["params"].update(ngen)
        latent_shape, mel_frames = (2, 8, 256, 16), 1024  # 10.24 s: 1024 mel frames / 4, 64 mels / 4
    g = torch.Generator().manual_seed(0)
    latent = torch.randn(*latent_shape, generator=g).to(dev)
    cond = torch.randn(2, 512, generator=g).to(dev)
    step = timed(lambda: unet(latent, torch.tensor(500, device=dev), encoder_hidden_states=None, class_labels=cond),
                 args.repeats)
    vae_t = timed(lambda: vae.decode(latent[:1] / vae.config.scaling_factor).sample, max(1, args.repeats - 1))
    mel = torch.randn(1, mel_frames, 64, generator=g).to(dev)
    voc_t = timed(lambda: vocoder(mel), max(1, args.repeats - 1))
    steps = get_preset("fast").num_inference_steps
    gen_total = steps * step["median_s"] + vae_t["median_s"] + voc_t["median_s"]
    out["fast_generation_10s"] = {"unet_step_batch2": step, "steps": steps, "vae_decode": vae_t, "vocoder": voc_t,
                                  "total_s": round(gen_total, 3)}

    def share(key: str) -> float:
        return round(per[key]["median_s"] / gen_total, 4)

    out["summary"] = {
        "fraction_of_fast_generation": {k: share(k) for k in per if k.startswith("route_")},
        "vocabulary_read_from_cache_fraction": round(out["vocabulary"]["read_from_disk_cache_each_run"]["median_s"]
                                                     / gen_total, 4),
        "vocabulary_first_run_fraction": round(out["vocabulary"]["embed_both_towers_once_per_model_s"] / gen_total, 4),
        "target_fraction_no_detect": 0.10,
        "meets_target": per["route_no_detect_image_plus_text"]["median_s"] / gen_total <= 0.10,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
