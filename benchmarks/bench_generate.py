"""Image → 10 s of audio at real model sizes (random weights) on CPU: foleykit vs diffusers, per dtype.

What is built (random weights: timings depend on the architecture, not on the weights), once, into
a model cache in the hub layout and then loaded by every measurement through the same
``from_pretrained`` path real checkpoints take:

* AudioLDM-S: UNet / VAE / HiFi-GAN from ``foleykit.model_sets.real_size_configs()``, AudioLDM's
  DDIM noise schedule, a CLAP text encoder (``ClapTextConfig()`` defaults, RoBERTa-base size) with a
  RoBERTa byte-level tokenizer built in memory (it makes the unconditional embedding of "").
* CLIP ViT-B/32 (``CLIPConfig()`` defaults) and the V2A-Mapper at paper size (``MapperConfig()``:
  12-layer diffusion transformer, 200 DDIM steps, guidance 0.9).

What is measured, in one run:

1. ``stages`` (one process): image encode; mapper at its default 200 steps and at fewer; one
   classifier-free-guided UNet step on the 10 s latent (batch 2) for **ours** (``AudioLDMGenerator``'s
   CPU fast path) and **diffusers** (the stock modules, as ``AudioLDMPipeline`` runs them),
   interleaved so both see the same machine load; VAE decode and vocoder, ours vs stock,
   interleaved; the UNet FLOPs per guided step (``torch.utils.flop_counter.FlopCounterMode``) and the
   machine's fp32 matmul peak (best of several large square ``torch.matmul``) → UNet efficiency.
2. ``e2e`` (one process per preset × implementation, so peak memory does not mix): image → 10 s
   waveform through ``MapperPipeline`` (ours) and through CLIP + mapper + diffusers'
   ``AudioLDMPipeline`` built from the same components (same scheduler, steps, eta, guidance,
   initial latents and step noise). Peak memory = ``VmHWM`` of that process. The two waveforms are
   compared (max abs difference) to show the settings really are identical. ``paper`` (200 DDIM
   steps) is run with ``--paper-steps`` steps and **estimated** as measured e2e + (200 − K) × median
   step time, unless ``--paper-full``.

3. ``fidelity`` (``--fidelity``; one process): the full ``fast`` schedule in bfloat16 and in float32,
   same seed, same condition, same noise (the generator's latents are float32 in every dtype):
   relative error of the final latents and log-mel distance of the waveforms, with a float32 run of
   another seed as the scale of "a different clip"; then each module alone (one guided UNet step,
   VAE decode, HiFi-GAN) on identical float32 inputs, to find where an error comes from.
4. ``cold start`` (``--cold-start``; needs a real-size CLAP too, built once): ``foleykit generate
   scene.jpg -o out.wav`` as a fresh process (process start → file written), against the warm time of
   the same ``foleykit.generate`` call with the models loaded (second call in one process).
5. ``profile`` (``--profile``): our guided UNet step, VAE decode and vocoder under ``torch.profiler``,
   self time per kind of op (convolution, matmul, attention, other) with its GFLOP/s as a fraction of
   the matmul peak: which ops a faster CPU path would have to beat.

``--dtype auto`` (default) is what ``foleykit generate`` picks on this CPU (bfloat16 with native bf16,
else float32); ours and diffusers always run at the same dtype. The machine is shared: every timing
is repeated; we report min and median and the load average.

    python benchmarks/bench_generate.py            # full run (~8 min on 2 idle cores)
    python benchmarks/bench_generate.py --quick    # ~6 min: fewer repeats, paper estimated from 3 steps
    python benchmarks/bench_generate.py --quick --fidelity --cold-start   # the issue-15 figures, one run
    python benchmarks/bench_generate.py --smoke    # tiny stand-ins, in process: checks the script (seconds)

Writes ``benchmarks/results/generate-<host>-<date>.json`` and prints a Markdown table.
Targets (issue 2, item 9): fast ≤ 30 s end to end; paper ≤ 1.05× diffusers; UNet step ≥ 60 % of the
measured fp32 matmul peak. Issue 15: on a 2-core CPU with native bf16, fast ≤ 10 s and ≤ 0.95×
diffusers at the same dtype; paper ≤ 1.0×; cold start ≤ 1.5× the warm time.
"""

from __future__ import annotations

import argparse
import copy
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
IMAGE = ROOT / "examples" / "scene.jpg"
BUILD_VERSION = "1"
DURATION_S = 10.0
SEED = 1234
MARK = "@@RESULT@@ "


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def load() -> float:
    return round(os.getloadavg()[0], 2)


def vm_hwm_mib() -> float:
    """Peak resident set size of this process (``VmHWM``), MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM in /proc/self/status")


def rss_split_mib() -> dict:
    """Current RSS split into anonymous and file-backed (memory-mapped checkpoint) pages, MiB."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key = line.split(":")[0]
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = round(int(line.split()[1]) / 1024, 1)
    return out


def vm_rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def summary(xs: list[float]) -> dict:
    return {"min_s": round(min(xs), 4), "median_s": round(statistics.median(xs), 4),
            "mean_s": round(statistics.fmean(xs), 4), "n": len(xs), "all_s": [round(x, 4) for x in xs]}


def interleaved(fns: dict, repeats: int, warmup: int = 1) -> dict:
    """Time each callable ``repeats`` times, alternating between them so they share the load."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    loads = [load()]
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
        loads.append(load())
    out = {k: summary(v) for k, v in times.items()}
    out["load"] = {"min": min(loads), "max": max(loads)}
    return out


#: The /proc/cpuinfo flags that decide our speed paths (AVX-512 layouts, native bf16, AMX).
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")


def cpu_flags() -> list[str]:
    """The speed-relevant CPU flags of this machine (recorded with every result)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = set(next(ln for ln in fh if ln.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        return []
    return [f for f in SPEED_FLAGS if f in flags]


def machine() -> dict:
    import diffusers
    import torch
    import transformers

    model = platform.processor() or ""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in lscpu.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=False).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "src"], capture_output=True,
                                    text=True, check=False).stdout.strip())
    except OSError:
        commit, dirty = "", False
    return {
        "cpu": model, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__,
        "python": platform.python_version(), "date_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M"),
        "git_commit": commit + ("+dirty-src" if dirty else ""), "host": platform.node(),
    }


# ----------------------------------------------------------------------------------------------
# real-size random models, written once in the hub layout
# ----------------------------------------------------------------------------------------------


def default_models_dir() -> Path:
    from foleykit.model_sets import default_cache_dir

    return default_cache_dir() / f"bench-real-size-v{BUILD_VERSION}"


def build_models(root: Path, *, tiny: bool = False) -> dict:
    """Write real-size (``tiny``: the test stand-ins') random components under ``root`` (once)."""
    if (root / "DONE").is_file():
        return json.loads((root / "DONE").read_text())
    if tiny:
        return _build_tiny(root)
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import (
        ClapTextConfig,
        ClapTextModelWithProjection,
        CLIPConfig,
        CLIPImageProcessorPil,
        CLIPModel,
        CLIPTokenizer,
        RobertaTokenizer,
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
    )

    from foleykit.encoders.loading import quiet_loading
    from foleykit.model_sets import _audioldm_scheduler, byte_level_vocab, clip_vocab, real_size_configs
    from foleykit.modules.mapper import MapperConfig, V2AMapper

    quiet_loading()
    t0 = time.perf_counter()
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    cfg = real_size_configs()
    a = tmp / "audioldm"
    torch.manual_seed(0)
    UNet2DConditionModel(**cfg["unet"]).save_pretrained(a / "unet")
    torch.manual_seed(1)
    AutoencoderKL(**cfg["vae"]).save_pretrained(a / "vae")
    torch.manual_seed(2)
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(**cfg["vocoder"])).eval()
    with torch.no_grad():  # as the tiny stand-in: He init keeps activations at trained-model scale
        for mod in vocoder.modules():
            if isinstance(mod, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
                torch.nn.init.kaiming_normal_(mod.weight, a=0.1, nonlinearity="leaky_relu")
    vocoder.save_pretrained(a / "vocoder")
    _audioldm_scheduler().save_pretrained(a / "scheduler")
    vocab, merges = byte_level_vocab()
    torch.manual_seed(3)
    ClapTextModelWithProjection(ClapTextConfig()).eval().save_pretrained(a / "text_encoder")
    RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=77).save_pretrained(a / "tokenizer")
    cvocab, cmerges = clip_vocab()
    torch.manual_seed(4)
    CLIPModel(CLIPConfig()).eval().save_pretrained(tmp / "clip")
    CLIPTokenizer(vocab=cvocab, merges=cmerges, model_max_length=77).save_pretrained(tmp / "clip")
    CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(tmp / "clip")
    torch.manual_seed(5)
    V2AMapper(MapperConfig()).save_pretrained(tmp / "mapper")
    info = {"built_s": round(time.perf_counter() - t0, 1), "version": BUILD_VERSION}
    (tmp / "DONE").write_text(json.dumps(info))
    try:
        os.replace(tmp, root)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (root / "DONE").is_file():
            raise
    return info


def _build_tiny(root: Path) -> dict:
    """The test suite's tiny stand-ins in this benchmark's layout (``--smoke``): seconds, not minutes."""
    from foleykit.model_sets import _write_tiny_audioldm, _write_tiny_clap, _write_tiny_clip, _write_tiny_mapper

    root.mkdir(parents=True, exist_ok=True)
    _write_tiny_audioldm(root / "audioldm", seed=3)
    _write_tiny_clip(root / "clip", projection_dim=512, patch_size=32, seed=1)
    _write_tiny_mapper(root / "mapper", seed=4)
    _write_tiny_clap(root / "clap", seed=2)
    _write_model_set(root)
    info = {"built_s": 0.0, "version": "tiny"}
    (root / "DONE").write_text(json.dumps(info))
    return info


def _write_model_set(root: Path) -> None:
    """``model_set.json``: the cache as a model set ``foleykit generate --models DIR`` takes."""
    roles = {"clip": "clip", "clip_mapper": "clip", "clap": "clap", "audioldm": "audioldm", "mapper": "mapper"}
    (root / "model_set.json").write_text(json.dumps(roles, indent=2))


def ensure_clap(root: Path) -> None:
    """A real-size CLAP (``ClapConfig()``: HTSAT-tiny + RoBERTa-base; the pipeline loads it) and the
    model-set manifest, added once to a cache built before the cold-start measurement existed."""
    if (root / "model_set.json").is_file():
        return
    import torch
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, RobertaTokenizer

    from foleykit.model_sets import byte_level_vocab

    tmp = Path(tempfile.mkdtemp(prefix=".clap.", dir=root))
    vocab, merges = byte_level_vocab()
    torch.manual_seed(6)
    ClapModel(ClapConfig()).eval().save_pretrained(tmp)
    RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=77).save_pretrained(tmp)
    ClapFeatureExtractor(truncation="rand_trunc", padding="repeatpad").save_pretrained(tmp)
    os.replace(tmp, root / "clap")
    _write_model_set(root)


def torch_dtype(name: str):
    """``--dtype`` → the torch dtype (``auto``: what foleykit picks on this CPU)."""
    import torch

    from foleykit.devices import resolve_dtype

    return resolve_dtype(name, torch.device("cpu"))


def load_parts(root: Path, *, fast_path: bool, dtype: str = "fp32"):
    """CLIP encoder, mapper and AudioLDM generator from the cache (the user-facing loaders), the
    encoders and the generator in ``dtype`` (the mapper stays float32, as ``MapperPipeline`` keeps it)."""
    from foleykit.encoders.clip import ClipEncoder
    from foleykit.encoders.loading import quiet_loading
    from foleykit.generator.pipeline import AudioLDMGenerator
    from foleykit.modules.mapper import V2AMapper

    quiet_loading()
    dt = torch_dtype(dtype)
    clip = ClipEncoder.from_pretrained(str(root / "clip"), dtype=dt)
    mapper = V2AMapper.from_pretrained(str(root / "mapper")).eval()
    gen = AudioLDMGenerator.from_pretrained(str(root / "audioldm"), cpu_fast_path=fast_path, dtype=dt)
    return clip, mapper, gen


def diffusers_pipeline(gen, scheduler_name: str):
    """diffusers' own (deprecated) AudioLDMPipeline over the generator's (stock) modules."""
    import warnings

    from diffusers import AudioLDMPipeline

    from foleykit.generator.presets import make_scheduler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = AudioLDMPipeline(vae=gen.vae, text_encoder=gen.text_encoder, tokenizer=gen.tokenizer, unet=gen.unet,
                                scheduler=make_scheduler(scheduler_name, gen.scheduler.config), vocoder=gen.vocoder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ----------------------------------------------------------------------------------------------
# worker: per-stage figures
# ----------------------------------------------------------------------------------------------


def matmul_peak(repeats: int, dtype=None, sizes=(2048, 4096)) -> dict:
    import torch

    dtype = dtype or torch.float32
    best: dict[str, float] = {}
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        c = torch.empty(n, n, dtype=dtype)
        torch.matmul(a, b, out=c)
        xs = []
        for _ in range(repeats if n == 4096 else 2 * repeats):
            t0 = time.perf_counter()
            torch.matmul(a, b, out=c)
            xs.append(time.perf_counter() - t0)
        best[str(n)] = round(2 * n**3 / min(xs) / 1e9, 1)
    return {"gflops_by_size": best, "gflops": max(best.values()), "dtype": str(dtype).removeprefix("torch.")}


def unet_flops(unet, model_in, t, labels) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    aten = torch.ops.aten

    def cpu_sdpa(query_shape, key_shape, value_shape, *_, out_shape=None, **__):
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    with torch.inference_mode():
        with FlopCounterMode(display=False) as fc:
            unet(model_in, t, encoder_hidden_states=None, class_labels=labels)
        default = fc.get_total_flops()
        by_op = {str(k): v for k, v in fc.get_flop_counts()["Global"].items()}
        # FlopCounterMode has no formula for the CPU SDPA kernel: count the attention matmuls too.
        with FlopCounterMode(display=False, custom_mapping={aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa}) as fc2:
            unet(model_in, t, encoder_hidden_states=None, class_labels=labels)
    return {"gflop": round(default / 1e9, 2), "gflop_with_attention": round(fc2.get_total_flops() / 1e9, 2),
            "by_op_gflop": {k: round(v / 1e9, 2) for k, v in by_op.items()}}


def module_flops(fn) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        fn()
    return round(fc.get_total_flops() / 1e9, 1)


def worker_stages(args) -> dict:
    import torch

    from foleykit.io.image import load_image

    from foleykit.generator.pipeline import unet_channels_last_pays

    root = Path(args.models_dir)
    dt = torch_dtype(args.dtype)
    res: dict = {"load_start": load(), "dtype": str(dt).removeprefix("torch.")}
    clip, mapper, stock = load_parts(root, fast_path=False, dtype=args.dtype)
    ours = copy.copy(stock)
    # Ours runs on deep copies so the stock modules stay exactly as diffusers builds them.
    ours.unet, ours.vae, ours.vocoder = (copy.deepcopy(m) for m in (stock.unet, stock.vae, stock.vocoder))
    ours.cpu_fast_path, ours._prepared_for, ours._uncond = True, None, None
    with torch.no_grad():
        ours._prepare()
    # The layouts follow the runtime choice (CPU capability and dtype), whatever this CPU is.
    assert ours._channels_last == unet_channels_last_pays(dt) and ours._decoder_channels_last
    res["ours_layout"] = {"unet_channels_last": ours._channels_last, "vae_decoder_channels_last": True,
                          "vocoder_2d_convs": True, "cpu_capability": torch.backends.cpu.get_cpu_capability()}

    # image encode (incl. decode + preprocessing of the JPEG)
    res["image_encode"] = interleaved({"clip": lambda: clip.embed_images([load_image(IMAGE)])}, args.repeats)["clip"]
    clip_emb = clip.embed_images([load_image(IMAGE)])

    # mapper at its default steps and fewer
    res["mapper"] = {}
    for steps in args.mapper_steps:
        gen = torch.Generator().manual_seed(SEED)
        r = interleaved({"m": lambda steps=steps, gen=gen: mapper.map(clip_emb, steps=steps, generator=gen)},
                        max(2, args.repeats // 2))
        res["mapper"][str(steps)] = r["m"]
    cond = mapper.map(clip_emb, generator=torch.Generator().manual_seed(SEED))

    # unconditional embedding (CLAP text encoder on "")
    def uncond():
        stock._uncond = None
        return stock.unconditional_embedding()
    res["uncond_embedding"] = interleaved({"u": uncond}, args.repeats)["u"]

    # one guided UNet step on the 10 s latent, ours vs stock (= diffusers' loop body), interleaved
    shape = stock.latent_shape(1, args.duration)
    latents = torch.randn(shape, generator=torch.Generator().manual_seed(SEED)).to(dt)
    labels = torch.cat([stock.unconditional_embedding()[None], torch.nn.functional.normalize(cond, dim=-1)]).to(dt)
    t = torch.tensor(500)
    guidance = 2.5

    def step(unet, lat):
        with torch.inference_mode():
            noise = unet(torch.cat([lat] * 2), t, encoder_hidden_states=None, class_labels=labels).sample
            u, c = noise.chunk(2)
            return u + guidance * (c - u)

    lat_cl = latents.contiguous(memory_format=torch.channels_last) if ours._channels_last else latents
    diff = (step(ours.unet, lat_cl) - step(stock.unet, latents)).abs().max().item()
    res["unet_flops"] = unet_flops(stock.unet, torch.cat([latents] * 2), t, labels)
    res["matmul_peak_before"] = matmul_peak(args.peak_repeats, dt, args.peak_sizes)
    res["unet_step"] = interleaved({"ours": lambda: step(ours.unet, lat_cl), "diffusers": lambda: step(stock.unet, latents)},
                                   args.step_repeats)
    res["unet_step"]["max_abs_diff"] = float(diff)
    res["unet_step"]["latent_shape"] = [2, *shape[1:]]
    res["matmul_peak_after"] = matmul_peak(args.peak_repeats, dt, args.peak_sizes)
    res["matmul_peak"] = {"gflops": max(res["matmul_peak_before"]["gflops"], res["matmul_peak_after"]["gflops"])}

    # VAE decode and vocoder, ours vs stock, interleaved
    z = latents / stock.vae.config.scaling_factor
    z_cl = z.contiguous(memory_format=torch.channels_last)

    def vae(m, x):
        with torch.inference_mode():
            return m.decode(x).sample

    mel = vae(stock.vae, z).squeeze(1)
    res["vae_decode"] = interleaved({"ours": lambda: vae(ours.vae, z_cl), "diffusers": lambda: vae(stock.vae, z)}, args.decode_repeats)
    res["vae_decode"]["max_abs_diff"] = (vae(ours.vae, z_cl) - vae(stock.vae, z)).abs().max().float().item()
    res["vae_decode"]["gflop"] = module_flops(lambda: vae(stock.vae, z))

    def voc(m):
        with torch.inference_mode():
            return m(mel)

    res["vocoder"] = interleaved({"ours": lambda: voc(ours.vocoder), "diffusers": lambda: voc(stock.vocoder)}, args.decode_repeats)
    w_ours, w_stock = voc(ours.vocoder), voc(stock.vocoder)
    res["vocoder"]["max_abs_diff"] = (w_ours - w_stock).abs().max().float().item()
    res["vocoder"]["max_abs"] = w_stock.abs().max().float().item()
    res["vocoder"]["gflop"] = module_flops(lambda: voc(stock.vocoder))
    res["vm_hwm_mib"] = vm_hwm_mib()
    res["load_end"] = load()
    return res


# ----------------------------------------------------------------------------------------------
# worker: where the time goes, per kind of op
# ----------------------------------------------------------------------------------------------

OP_KINDS = ("convolution", "matmul", "attention", "other")


def op_kind(name: str) -> str:
    """A profiler row or FLOP-counter op → convolution | matmul | attention | other."""
    name = name.replace("aten::", "").replace("aten.", "").split(".")[0]
    if "conv" in name:
        return "convolution"
    if name in ("addmm", "mm", "bmm", "baddbmm", "matmul", "linear"):
        return "matmul"
    if "scaled_dot_product" in name:
        return "attention"
    return "other"


def worker_profile(args) -> dict:
    """Our guided UNet step, VAE decode and vocoder under ``torch.profiler``: self time per kind of op,
    with FLOPs from ``FlopCounterMode`` (the CPU attention kernel counted as its matmuls), as GFLOP/s
    and as a fraction of this run's matmul peak. Says which ops a faster CPU path would have to beat."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    aten = torch.ops.aten
    dt = torch_dtype(args.dtype)
    _clip, _mapper, gen = load_parts(Path(args.models_dir), fast_path=True, dtype=args.dtype)
    with torch.no_grad():
        gen._prepare()
    shape = gen.latent_shape(1, args.duration)
    lat = torch.randn(shape, generator=torch.Generator().manual_seed(SEED))
    x = torch.cat([lat] * 2).to(dt)
    if gen._channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    cond = torch.nn.functional.normalize(torch.randn(1, gen.unconditional_embedding().shape[-1]), dim=-1)
    labels = torch.cat([gen.unconditional_embedding()[None], cond]).to(dt)
    z = (lat / gen.vae.config.scaling_factor).to(dt)
    if gen._decoder_channels_last:
        z = z.contiguous(memory_format=torch.channels_last)
    t = torch.tensor(500)
    with torch.inference_mode():
        mel = gen.vae.decode(z).sample.squeeze(1)
    parts = {"unet_step": lambda: gen.unet(x, t, encoder_hidden_states=None, class_labels=labels),
             "vae_decode": lambda: gen.vae.decode(z), "vocoder": lambda: gen.vocoder(mel)}

    def cpu_sdpa(query_shape, key_shape, value_shape, *_, out_shape=None, **__):
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    peak = matmul_peak(args.peak_repeats, dt, args.peak_sizes)["gflops"]
    out: dict = {"load_start": load(), "dtype": str(dt).removeprefix("torch."), "matmul_peak_gflops": peak,
                 "unet_channels_last": gen._channels_last, "parts": {}}
    for name, fn in parts.items():
        with torch.inference_mode():
            with FlopCounterMode(display=False,
                                 custom_mapping={aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa}) as fc:
                fn()
            fn()  # warm-up
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                fn()
        flops = dict.fromkeys(OP_KINDS, 0)
        for op, n in fc.get_flop_counts()["Global"].items():
            flops[op_kind(str(op))] += n
        self_us = dict.fromkeys(OP_KINDS, 0.0)
        for e in prof.key_averages():
            self_us[op_kind(e.key)] += e.self_cpu_time_total
        total = sum(self_us.values())
        kinds = {}
        for k in OP_KINDS:
            sec = self_us[k] / 1e6
            rate = flops[k] / 1e9 / sec if flops[k] and sec > 0 else None
            kinds[k] = {"self_s": round(sec, 4), "share": round(self_us[k] / total, 3) if total else 0.0,
                        "gflop": round(flops[k] / 1e9, 2), "gflops_per_s": round(rate, 1) if rate else None,
                        "fraction_of_peak": round(rate / peak, 3) if rate else None}
        out["parts"][name] = {"total_s": round(total / 1e6, 3), "kinds": kinds}
    out["load_end"] = load()
    return out


def worker_compile(args) -> dict:
    """``compile=True``: compile time and guided step, vs the eager fast path, interleaved."""
    import torch

    root = Path(args.models_dir)
    _, _, gen = load_parts(root, fast_path=True, dtype=args.dtype)
    eager = copy.copy(gen)
    gen.compile = True
    with torch.no_grad():
        gen._prepare()
    shape = gen.latent_shape(2, args.duration)
    lat = torch.randn(shape, generator=torch.Generator().manual_seed(SEED)).to(gen.dtype)
    if gen._channels_last:
        lat = lat.contiguous(memory_format=torch.channels_last)
    labels = torch.nn.functional.normalize(torch.randn(2, 512, generator=torch.Generator().manual_seed(1)), dim=-1).to(gen.dtype)
    t = torch.tensor(500)
    compiled = gen._unet_callable()

    def step(unet):
        with torch.inference_mode():
            return unet(lat, t, encoder_hidden_states=None, class_labels=labels).sample

    t0 = time.perf_counter()
    out_c = step(compiled)
    compile_s = time.perf_counter() - t0
    res = interleaved({"compiled": lambda: step(compiled), "eager": lambda: step(eager.unet)}, args.step_repeats, warmup=0)
    res["compile_s"] = round(compile_s, 1)
    res["max_abs_diff"] = (out_c - step(eager.unet)).abs().max().float().item()
    return res


# ----------------------------------------------------------------------------------------------
# worker: end to end, one preset × implementation per process
# ----------------------------------------------------------------------------------------------


def worker_e2e(args) -> dict:
    import numpy as np
    import torch

    from foleykit.generator.presets import get_preset
    from foleykit.io.image import load_image
    from foleykit.pipelines.mapper import MapperPipeline
    from foleykit.seeding import make_generator

    root = Path(args.models_dir)
    impl, preset = args.impl, get_preset(args.preset)
    steps = args.steps or preset.num_inference_steps
    # The preset's mapper steps are passed explicitly (MapperPipeline's public ``mapper_steps``),
    # identically for both implementations; None = the mapper's default (200).
    mapper_steps = preset.mapper_steps
    res: dict = {"impl": impl, "preset": preset.name, "steps_run": steps, "mapper_steps": mapper_steps or 200,
                 "load_start": load()}
    t0 = time.perf_counter()
    clip, mapper, gen = load_parts(root, fast_path=(impl == "ours"), dtype=args.dtype)
    res["dtype"] = str(gen.dtype).removeprefix("torch.")
    res["model_load_s"] = round(time.perf_counter() - t0, 2)
    res["rss_after_load_mib"] = vm_rss_mib()
    stamps: list[float] = []
    gen.unet.register_forward_pre_hook(lambda *_: stamps.append(time.perf_counter()))
    dec: dict = {}
    orig_decode = gen.vae.decode

    def timed_decode(*a, **k):
        dec["vae_start"] = time.perf_counter()
        return orig_decode(*a, **k)

    gen.vae.decode = timed_decode
    gen.vocoder.register_forward_pre_hook(lambda *_: dec.__setitem__("voc_start", time.perf_counter()))

    t0 = time.perf_counter()
    if impl == "ours":
        out = MapperPipeline(clip, mapper, gen)(IMAGE, duration_s=args.duration, preset=preset.name,
                                                num_inference_steps=steps, seed=SEED, progress=False,
                                                mapper_steps=mapper_steps)
        wave = out.waveform
    else:
        emb = clip.embed_images([load_image(IMAGE)])
        cond = mapper.map(emb, steps=mapper_steps, generator=make_generator(SEED))  # as MapperPipeline._map
        with torch.no_grad():
            cond = torch.nn.functional.normalize(cond.float(), dim=-1).to(gen.dtype)
            uncond = gen.unconditional_embedding()[None].to(gen.dtype)
        pipe = diffusers_pipeline(gen, preset.scheduler)
        gens = [make_generator(SEED)]
        from diffusers.utils.torch_utils import randn_tensor

        # float32 noise cast to the dtype: the same noise as ours (diffusers then keeps it in the dtype)
        latents = randn_tensor(gen.latent_shape(1, args.duration), generator=gens, dtype=torch.float32).to(gen.dtype)
        audio = pipe(prompt_embeds=cond, negative_prompt_embeds=uncond, audio_length_in_s=args.duration,
                     num_inference_steps=steps, guidance_scale=preset.guidance_scale, eta=preset.eta,
                     generator=gens, latents=latents, output_type="np").audios
        wave = np.asarray(audio[0], dtype=np.float32)
    t_end = time.perf_counter()
    res["e2e_s"] = round(t_end - t0, 3)
    res["vm_hwm_mib"] = vm_hwm_mib()
    res["rss_end_mib"] = rss_split_mib()
    steps_t = [b - a for a, b in zip(stamps, stamps[1:] + [dec["vae_start"]])]
    res["step"] = summary(steps_t)
    res["before_diffusion_s"] = round(stamps[0] - t0, 3)  # image + CLIP + mapper + uncond + setup
    res["vae_decode_s"] = round(dec["voc_start"] - dec["vae_start"], 3)
    res["vocoder_and_rest_s"] = round(t_end - dec["voc_start"], 3)
    res["samples"] = int(wave.shape[-1])
    res["finite"] = bool(np.isfinite(wave).all())
    res["load_end"] = load()
    if args.save_wave:
        np.save(args.save_wave, wave)
    return res


# ----------------------------------------------------------------------------------------------
# worker: bf16 vs fp32 fidelity
# ----------------------------------------------------------------------------------------------


def log_mel_db(wave, sample_rate: int):
    """[frames, 64] log-mel power in dB (1024-point STFT, hop 160: AudioLDM's mel geometry)."""
    import numpy as np
    from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

    mel = mel_filter_bank(num_frequency_bins=513, num_mel_filters=64, min_frequency=0.0,
                          max_frequency=sample_rate / 2, sampling_rate=sample_rate, norm="slaney", mel_scale="slaney")
    spec = spectrogram(np.asarray(wave, dtype=np.float64), window_function(1024, "hann"), frame_length=1024,
                       hop_length=160, power=2.0, mel_filters=mel, log_mel=None)
    return 10 * np.log10(np.maximum(spec, 1e-10)).T


def mel_distance_db(a, b, sample_rate: int) -> dict:
    """Log-mel spectral distance of two waveforms: mean and RMS |dB difference| over time × mel bins,
    with each spectrogram floored at 80 dB below its own peak (silence does not count)."""
    import numpy as np

    ma, mb = log_mel_db(a, sample_rate), log_mel_db(b, sample_rate)
    floor = max(ma.max(), mb.max()) - 80.0
    d = np.maximum(ma, floor) - np.maximum(mb, floor)
    return {"mean_abs_db": round(float(np.abs(d).mean()), 3), "rms_db": round(float(np.sqrt((d ** 2).mean())), 3)}


def rel_err(x, ref) -> float:
    x, ref = x.float(), ref.float()
    return float((x - ref).norm() / ref.norm())


def worker_fidelity(args) -> dict:
    """The ``fast`` schedule in bf16 vs fp32 (ours, each with its CPU fast path), same seed / noise."""
    import torch

    from foleykit.generator.pipeline import AudioLDMGenerator
    from foleykit.generator.presets import get_preset

    root = Path(args.models_dir)
    preset = get_preset("fast")
    steps = args.fast_steps or preset.num_inference_steps
    cond = torch.nn.functional.normalize(torch.randn(1, 512, generator=torch.Generator().manual_seed(SEED)), dim=-1)
    gens, runs = {}, {}
    for name in ("fp32", "bf16"):
        gen = gens[name] = AudioLDMGenerator.from_pretrained(str(root / "audioldm"), dtype=name)
        captured = {}
        orig = gen.decode

        def decode(latents, duration_s, orig=orig, captured=captured):
            captured["latents"] = latents.detach().clone()
            return orig(latents, duration_s)

        gen.decode = decode
        t0 = time.perf_counter()
        out = gen(cond, duration_s=args.duration, preset="fast", num_inference_steps=steps, seed=SEED, progress=False)
        runs[name] = {"latents": captured["latents"], "wave": out.waveforms[0], "s": time.perf_counter() - t0}
        del gen.decode
    other = gens["fp32"](cond, duration_s=args.duration, preset="fast", num_inference_steps=steps, seed=SEED + 1,
                         progress=False).waveforms[0]
    sr = gens["fp32"].sample_rate
    res: dict = {
        "steps": steps, "scheduler": preset.scheduler, "load": load(),
        "seconds": {k: round(v["s"], 2) for k, v in runs.items()},
        "final_latents_rel_err": round(rel_err(runs["bf16"]["latents"], runs["fp32"]["latents"]), 5),
        "wave_rel_err": round(rel_err(torch.from_numpy(runs["bf16"]["wave"]), torch.from_numpy(runs["fp32"]["wave"])), 5),
        "log_mel_distance_bf16_vs_fp32": mel_distance_db(runs["bf16"]["wave"], runs["fp32"]["wave"], sr),
        "log_mel_distance_fp32_other_seed": mel_distance_db(other, runs["fp32"]["wave"], sr),
    }
    # Where an error comes from: each module alone on identical float32 inputs (its output in bf16
    # vs fp32), inputs taken from the fp32 run so they have the scale the real schedule gives them.
    g32, g16 = gens["fp32"], gens["bf16"]
    lat = runs["fp32"]["latents"]
    labels = torch.cat([g32.unconditional_embedding()[None], cond])
    t = torch.tensor(500)
    per: dict = {}
    with torch.inference_mode():
        def unet_out(g):
            x = torch.cat([lat] * 2).to(g.dtype)
            if g._channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return g.unet(x, t, encoder_hidden_states=None, class_labels=labels.to(g.dtype)).sample.float()
        per["unet_step"] = rel_err(unet_out(g16), unet_out(g32))

        def vae_out(g):
            z = (lat / g.vae.config.scaling_factor).to(g.dtype)
            if g._decoder_channels_last:
                z = z.contiguous(memory_format=torch.channels_last)
            return g.vae.decode(z).sample.float()
        mel32 = vae_out(g32)
        per["vae_decode"] = rel_err(vae_out(g16), mel32)
        mel = mel32.squeeze(1)
        per["vocoder"] = rel_err(g16.vocoder(mel.to(torch.bfloat16)).float(), g32.vocoder(mel).float())
    res["per_module_rel_err"] = {k: round(v, 5) for k, v in per.items()}
    return res


def warm_calls(image, out_dir, models, seed, dtype, steps, duration) -> dict:
    """``foleykit.generate`` twice in this process (the second with the models loaded); prints and returns times."""
    t0 = time.perf_counter()
    import foleykit

    t1 = time.perf_counter()
    times = []
    for i in range(2):
        a = time.perf_counter()
        foleykit.generate(image, f"{out_dir}/warm-{i}.wav", models=models, seed=int(seed), dtype=dtype,
                          steps=json.loads(steps), duration=json.loads(duration), progress=False, overwrite=True)
        times.append(time.perf_counter() - a)
    out = {"import_s": t1 - t0, "first_call_s": times[0], "warm_s": times[1]}
    print(MARK + json.dumps(out), flush=True)
    return out


def worker_cold_start(args) -> dict:
    """``foleykit generate`` as a fresh process (cold) vs the same call with the models loaded (warm)."""
    import foleykit

    root = Path(args.models_dir)
    ensure_clap(root)
    out_dir = Path(tempfile.mkdtemp(prefix="bench-cold-"))
    cli = Path(sys.executable).with_name("foleykit")
    base = [str(cli)] if cli.is_file() else [sys.executable, "-c", "from foleykit.cli import main; main()"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join(
        [str(Path(foleykit.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    common = ["--models", str(root), "--seed", str(SEED), "--dtype", args.dtype, "--quiet", "--overwrite"]
    if args.fast_steps:
        common += ["--steps", str(args.fast_steps)]
    if args.duration != DURATION_S:
        common += ["--duration", str(args.duration)]
    cold = []
    for i in range(args.cold_repeats):
        out = out_dir / f"cold-{i}.wav"
        t0 = time.perf_counter()
        proc = subprocess.run([*base, "generate", str(IMAGE), "-o", str(out), *common], env=env, capture_output=True,
                              text=True, check=False)
        cold.append(time.perf_counter() - t0)
        if proc.returncode != 0 or not out.is_file():
            raise SystemExit(f"foleykit generate failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    # warm: the same call through the Python API, twice in one process; the second has the models loaded
    warm_args = [str(IMAGE), str(out_dir), str(root), str(SEED), args.dtype, json.dumps(args.fast_steps),
                 json.dumps(None if args.duration == DURATION_S else args.duration)]
    t0 = time.perf_counter()
    if args.smoke:
        warm = warm_calls(*warm_args)
    else:
        code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import bench_generate as B; B.warm_calls(*sys.argv[1:])"
        proc = subprocess.run([sys.executable, "-c", code, *warm_args], env=env, capture_output=True, text=True,
                              check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"warm run failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        warm = json.loads(lines[-1][len(MARK):])
    total = time.perf_counter() - t0
    shutil.rmtree(out_dir, ignore_errors=True)
    return {"cold_s": [round(x, 2) for x in cold], "cold_min_s": round(min(cold), 2),
            "warm_s": round(warm["warm_s"], 2), "first_call_in_process_s": round(warm["first_call_s"], 2),
            "import_foleykit_s": round(warm["import_s"], 2), "warm_process_total_s": round(total, 2),
            "ratio_cold_over_warm": ratio(min(cold), warm["warm_s"]), "load": load(),
            "command": " ".join(["foleykit", "generate", "examples/scene.jpg", "-o", "out.wav", *common[:1],
                                 "<models-dir>", *common[2:]])}


# ----------------------------------------------------------------------------------------------
# orchestration
# ----------------------------------------------------------------------------------------------


def run_worker(job: str, args, extra: list[str] | None = None, timeout: float = 3600) -> dict:
    wargs = ["--worker", job, "--models-dir", str(args.models_dir),
             "--repeats", str(args.repeats), "--step-repeats", str(args.step_repeats),
             "--decode-repeats", str(args.decode_repeats), "--peak-repeats", str(args.peak_repeats),
             "--peak-sizes", *map(str, args.peak_sizes), "--dtype", args.dtype, "--duration", str(args.duration),
             "--cold-repeats", str(args.cold_repeats),
             "--mapper-steps", *map(str, args.mapper_steps)] + (["--fast-steps", str(args.fast_steps)] if args.fast_steps else []) \
        + (["--smoke"] if args.smoke else []) + (extra or [])
    t0 = time.perf_counter()
    print(f"[bench] {job} {' '.join(extra or [])} (load {load()}) ...", file=sys.stderr, flush=True)
    if args.smoke:  # in process: the same worker code, without paying the imports once per worker
        wa = build_parser().parse_args(wargs)
        return json.loads(json.dumps(WORKERS[job](wa)))
    cmd = [sys.executable, str(Path(__file__).resolve()), *wargs]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"worker {job} failed (exit {proc.returncode})")
    out = json.loads(lines[-1][len(MARK):])
    print(f"[bench]   done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return out


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def analyse(r: dict, paper_total: int) -> dict:
    a: dict = {"unet_step": {}}
    st = r.get("stages")
    if st is None:  # a run of other parts only (--only; the e2e analysis needs the stages)
        a["e2e"] = {}
        return a
    flops = st["unet_flops"]["gflop"]
    peak = st["matmul_peak"]["gflops"]
    for impl in ("ours", "diffusers"):
        s = st["unet_step"][impl]
        a["unet_step"][impl] = {
            "min_s": s["min_s"], "median_s": s["median_s"],
            "gflops_at_min": round(flops / s["min_s"], 1),
            "efficiency_at_min": round(flops / s["min_s"] / peak, 3),
            "efficiency_at_median": round(flops / s["median_s"] / peak, 3),
        }
    a["unet_step"]["ratio_ours_over_diffusers_min"] = ratio(st["unet_step"]["ours"]["min_s"], st["unet_step"]["diffusers"]["min_s"])
    a["unet_step"]["ratio_ours_over_diffusers_median"] = ratio(st["unet_step"]["ours"]["median_s"], st["unet_step"]["diffusers"]["median_s"])
    # each stage's fraction of the measured matmul peak (at the run's dtype), at its min time
    a["fraction_of_peak"] = {"dtype": st.get("dtype", "float32"), "peak_gflops": peak, "unet_step_ours": a["unet_step"]["ours"]["efficiency_at_min"]}
    for key in ("vae_decode", "vocoder"):
        for impl in ("ours", "diffusers"):
            a["fraction_of_peak"][f"{key}_{impl}"] = round(st[key]["gflop"] / st[key][impl]["min_s"] / peak, 3)
    e2e: dict = {}
    for key, runs in r.get("e2e", {}).items():
        preset, impl = key.split("/")
        best = min(runs, key=lambda x: x["e2e_s"])
        item = {"e2e_min_s": best["e2e_s"], "e2e_all_s": [x["e2e_s"] for x in runs], "mapper_steps": best["mapper_steps"],
                "steps_run": best["steps_run"], "step_median_s": best["step"]["median_s"],
                "vm_hwm_mib": max(x["vm_hwm_mib"] for x in runs), "model_load_s": best["model_load_s"],
                "before_diffusion_s": best["before_diffusion_s"], "vae_decode_s": best["vae_decode_s"],
                "vocoder_and_rest_s": best["vocoder_and_rest_s"]}
        if preset == "paper" and best["steps_run"] < paper_total:
            est = [x["e2e_s"] + (paper_total - x["steps_run"]) * x["step"]["median_s"] for x in runs]
            item["e2e_estimated_200_steps_s"] = round(min(est), 1)
            # Same, with the per-step cost from the interleaved stage measurement (robust to a noisy
            # few-step e2e run): e2e(K) - K x its own step median + 200 x interleaved step median.
            stage_step = st["unet_step"][impl]["median_s"]
            est2 = [x["e2e_s"] - x["steps_run"] * x["step"]["median_s"] + paper_total * stage_step for x in runs]
            item["e2e_estimated_200_steps_interleaved_s"] = round(min(est2), 1)
            item["estimated"] = True
        e2e.setdefault(preset, {})[impl] = item
    for preset, d in e2e.items():
        if "ours" in d and "diffusers" in d:
            key = "e2e_estimated_200_steps_s" if "e2e_estimated_200_steps_s" in d["ours"] else "e2e_min_s"
            d["ratio_ours_over_diffusers_e2e"] = ratio(d["ours"][key], d["diffusers"][key])
            d["ratio_ours_over_diffusers_step"] = ratio(d["ours"]["step_median_s"], d["diffusers"]["step_median_s"])
            if "e2e_estimated_200_steps_interleaved_s" in d["ours"]:
                d["ratio_ours_over_diffusers_e2e_interleaved"] = ratio(d["ours"]["e2e_estimated_200_steps_interleaved_s"],
                                                                        d["diffusers"]["e2e_estimated_200_steps_interleaved_s"])
    a["e2e"] = e2e
    return a


def _markdown_stages(r: dict) -> list[str]:
    st, a = r["stages"], r["analysis"]
    dt = st.get("dtype", "float32")
    L = [f"| stage (10 s of audio, CPU {dt}, real sizes) | ours min / median | diffusers min / median | ours/diffusers (min) |",
         "|---|---|---|---|"]
    L.append(f"| image encode (CLIP ViT-B/32, incl. JPEG decode) | {st['image_encode']['min_s']:.3f} / {st['image_encode']['median_s']:.3f} s | same code | – |")
    for k, v in st["mapper"].items():
        L.append(f"| mapper, {k} DDIM steps (guided) | {v['min_s']:.3f} / {v['median_s']:.3f} s | same code | – |")
    L.append(f"| unconditional CLAP text embedding | {st['uncond_embedding']['min_s']:.3f} / {st['uncond_embedding']['median_s']:.3f} s | same code | – |")
    for name, key in (("guided UNet step (batch 2)", "unet_step"), ("VAE decode", "vae_decode"), ("vocoder (HiFi-GAN)", "vocoder")):
        o, d = st[key]["ours"], st[key]["diffusers"]
        L.append(f"| {name} | {o['min_s']:.3f} / {o['median_s']:.3f} s | {d['min_s']:.3f} / {d['median_s']:.3f} s | "
                 f"{ratio(o['min_s'], d['min_s']):.3f} |")
    u = a["unet_step"]
    L += ["", (f"UNet: {st['unet_flops']['gflop']} GFLOP per guided step (FlopCounterMode; "
          f"{st['unet_flops']['gflop_with_attention']} with the attention matmuls it does not count on CPU); "
          f"{dt} matmul peak {st['matmul_peak']['gflops']} GFLOP/s (best of 2048² and 4096² matmuls). "
          f"Efficiency at min step: ours {100 * u['ours']['efficiency_at_min']:.0f} %, diffusers "
          f"{100 * u['diffusers']['efficiency_at_min']:.0f} % (at median: {100 * u['ours']['efficiency_at_median']:.0f} % / "
          f"{100 * u['diffusers']['efficiency_at_median']:.0f} %). VAE decode {st['vae_decode']['gflop']} GFLOP, vocoder "
          f"{st['vocoder']['gflop']} GFLOP. Load average during stages: {st['load_start']} → {st['load_end']}."), ""]
    return L


def markdown(r: dict) -> str:
    st, a, m = r.get("stages"), r["analysis"], r["machine"]
    L = [(f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, torch {m['torch']} ({m['torch_threads']} threads), "
          f"diffusers {m['diffusers']}, {m['date_utc']} UTC, commit {m['git_commit']}"), "",
         f"Command: `{r['command']}`", ""]
    if st:
        L += _markdown_stages(r)
    if a.get("e2e"):
        L += ["| end to end, image → 10 s | ours | diffusers | ours/diffusers | peak RSS ours / diffusers |", "|---|---|---|---|---|"]
    for preset, d in a.get("e2e", {}).items():
        o, df = d.get("ours"), d.get("diffusers")
        if o is None:
            continue
        key = "e2e_estimated_200_steps_s" if "e2e_estimated_200_steps_s" in o else "e2e_min_s"
        what = (f"estimated: {o['steps_run']} steps run + {200 - o['steps_run']} × median step" if key != "e2e_min_s"
                else f"{o['steps_run']} steps")
        label = f"{preset} ({what}; mapper {o['mapper_steps']} steps)"
        dv = f"{df[key]:.1f} s" if df else "–"
        L.append(f"| {label} | {o[key]:.1f} s | {dv} | {d.get('ratio_ours_over_diffusers_e2e', float('nan')):.3f} | "
                 f"{o['vm_hwm_mib']:.0f} / {df['vm_hwm_mib'] if df else float('nan'):.0f} MiB |")
    pp = a.get("e2e", {}).get("paper", {})
    if "ratio_ours_over_diffusers_e2e_interleaved" in pp:
        L += ["", (f"paper estimated with the interleaved stage step median instead of the e2e run's own: ours "
                   f"{pp['ours']['e2e_estimated_200_steps_interleaved_s']:.1f} s, diffusers "
                   f"{pp['diffusers']['e2e_estimated_200_steps_interleaved_s']:.1f} s, "
                   f"ratio {pp['ratio_ours_over_diffusers_e2e_interleaved']:.3f}.")]
    if a.get("e2e"):
        L += ["", "| end-to-end breakdown (best run) | model load | before diffusion | step median | VAE | vocoder + rest |",
              "|---|---|---|---|---|---|"]
    for preset, d in a.get("e2e", {}).items():
        for impl in ("ours", "diffusers"):
            if impl in d:
                x = d[impl]
                L.append(f"| {preset} / {impl} | {x['model_load_s']:.1f} s | {x['before_diffusion_s']:.2f} s | "
                         f"{x['step_median_s']:.3f} s | {x['vae_decode_s']:.2f} s | {x['vocoder_and_rest_s']:.2f} s |")
    if r.get("equivalence") and st:
        L += ["", "Same settings check (max |ours − diffusers| over the waveform): " + ", ".join(
            f"{k}: {v:.2e}" for k, v in r["equivalence"].items()) + f"; UNet step {st['unet_step']['max_abs_diff']:.1e}, "
            f"VAE {st['vae_decode']['max_abs_diff']:.1e}, vocoder {st['vocoder']['max_abs_diff']:.1e} (|wave| ≤ {st['vocoder']['max_abs']:.2f})."]
    fp = a.get("fraction_of_peak")
    if fp:
        L += ["", (f"Fraction of the measured {fp['dtype']} matmul peak ({fp['peak_gflops']} GFLOP/s) at min time: UNet step ours "
                   f"{100 * fp['unet_step_ours']:.0f} %, VAE decode ours {100 * fp['vae_decode_ours']:.0f} % / diffusers "
                   f"{100 * fp['vae_decode_diffusers']:.0f} %, vocoder ours {100 * fp['vocoder_ours']:.0f} % / diffusers "
                   f"{100 * fp['vocoder_diffusers']:.0f} %.")]
    if r.get("fidelity"):
        f = r["fidelity"]
        pm = f["per_module_rel_err"]
        L += ["", "| bf16 vs fp32, `fast` schedule, same seed and noise (random weights) | value |", "|---|---|",
              f"| relative error of the final latents ({f['steps']} {f['scheduler']} steps) | {f['final_latents_rel_err']:.4f} |",
              f"| relative error of the waveform | {f['wave_rel_err']:.4f} |",
              f"| log-mel distance bf16 vs fp32 (mean / RMS abs dB) | {f['log_mel_distance_bf16_vs_fp32']['mean_abs_db']:.2f} / "
              f"{f['log_mel_distance_bf16_vs_fp32']['rms_db']:.2f} dB |",
              f"| scale: log-mel distance fp32 seed vs fp32 seed+1 | {f['log_mel_distance_fp32_other_seed']['mean_abs_db']:.2f} / "
              f"{f['log_mel_distance_fp32_other_seed']['rms_db']:.2f} dB |",
              f"| per module on identical inputs: UNet step / VAE decode / HiFi-GAN | {pm['unet_step']:.4f} / "
              f"{pm['vae_decode']:.4f} / {pm['vocoder']:.4f} |",
              f"| seconds (fp32 / bf16, this CPU) | {f['seconds']['fp32']} / {f['seconds']['bf16']} |"]
    if r.get("cold_start"):
        c = r["cold_start"]
        L += ["", (f"Cold start: `{c['command']}` {c['cold_min_s']:.1f} s (process start → file written; runs "
                   f"{c['cold_s']}); warm (same call, models loaded) {c['warm_s']:.1f} s; cold/warm "
                   f"**{c['ratio_cold_over_warm']:.2f}**. In the warm process: `import foleykit` {c['import_foleykit_s']:.1f} s, "
                   f"first call (loads the models) {c['first_call_in_process_s']:.1f} s.")]
    if r.get("profile"):
        pr = r["profile"]
        L += ["", (f"Where the time goes (ours, {pr['dtype']}, torch.profiler self time; FLOPs from FlopCounterMode; "
                   f"matmul peak {pr['matmul_peak_gflops']} GFLOP/s):"), "",
              "| part | total | " + " | ".join(OP_KINDS) + " |", "|---|---|" + "---|" * len(OP_KINDS)]
        for name, d in pr["parts"].items():
            cells = []
            for k in OP_KINDS:
                c = d["kinds"][k]
                frac = f", {100 * c['fraction_of_peak']:.0f} % of peak" if c["fraction_of_peak"] else ""
                cells.append(f"{c['self_s']:.3f} s ({100 * c['share']:.0f} %{frac})")
            L.append(f"| {name} | {d['total_s']:.3f} s | " + " | ".join(cells) + " |")
    if r.get("compile"):
        c = r["compile"]
        L += ["", (f"compile=True: first call (compilation) {c['compile_s']} s; guided step compiled "
                   f"{c['compiled']['min_s']:.3f} / {c['compiled']['median_s']:.3f} s vs eager fast path "
                   f"{c['eager']['min_s']:.3f} / {c['eager']['median_s']:.3f} s (min / median).")]
    return "\n".join(L)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats; paper estimated from 3 steps; mapper at 200/25 steps")
    p.add_argument("--smoke", action="store_true",
                   help="tiny stand-in models, 1 s of audio, 2 steps, in process: checks the script in seconds, measures nothing")
    p.add_argument("--dtype", default="auto", help="auto (foleykit's choice on this CPU) | fp32 | bf16; ours and diffusers alike")
    p.add_argument("--fidelity", action="store_true", help="also bf16 vs fp32: the full fast schedule, same seed and noise")
    p.add_argument("--profile", action="store_true",
                   help="also where our UNet step, VAE and vocoder spend their time, per kind of op (torch.profiler)")
    p.add_argument("--cold-start", action="store_true",
                   help="also `foleykit generate` cold (fresh process) vs warm (models loaded); builds a real-size CLAP once")
    p.add_argument("--only", default=None,
                   help="comma list of parts to run: stages,fidelity,cold_start,profile,e2e,compile (default: stages,e2e + the flags)")
    p.add_argument("--cold-repeats", type=int, default=2, help="cold CLI runs (best counts: the page cache is warm after the first)")
    p.add_argument("--duration", type=float, default=DURATION_S, help=argparse.SUPPRESS)
    p.add_argument("--peak-sizes", type=int, nargs="+", default=[2048, 4096], help=argparse.SUPPRESS)
    p.add_argument("--models-dir", type=Path, default=None, help="cache of the real-size random models (built once)")
    p.add_argument("--out", type=Path, default=None, help="JSON result path (default benchmarks/results/generate-<host>-<date>.json)")
    p.add_argument("--repeats", type=int, default=None, help="repeats of the small stages (image encode, uncond)")
    p.add_argument("--step-repeats", type=int, default=None, help="guided UNet steps timed per implementation")
    p.add_argument("--decode-repeats", type=int, default=None, help="VAE decode / vocoder repeats per implementation")
    p.add_argument("--peak-repeats", type=int, default=None, help="4096² matmuls per peak measurement")
    p.add_argument("--e2e-repeats", type=int, default=None, help="end-to-end runs per preset × implementation (fast)")
    p.add_argument("--mapper-steps", type=int, nargs="+", default=None)
    p.add_argument("--paper-steps", type=int, default=None, help="DDIM steps actually run for the paper estimate")
    p.add_argument("--fast-steps", type=int, default=None, help="override the fast preset's UNet steps (trade-off runs)")
    p.add_argument("--paper-full", action="store_true", help="run all 200 paper steps (about 2 × 5 min on 2 cores)")
    p.add_argument("--paper-ab", type=int, default=None, metavar="STEPS",
                   help="only an A/B of the paper preset: STEPS DDIM steps end to end, ours and diffusers "
                        "alternated for --ab-rounds rounds (per-step times immune to slow load drift)")
    p.add_argument("--ab-rounds", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="also time AudioLDMGenerator(compile=True) (minutes of compilation)")
    p.add_argument("--skip-diffusers-e2e", action="store_true")
    p.add_argument("--report", type=Path, default=None, help="re-print the Markdown tables of a saved result JSON")
    # worker-only
    p.add_argument("--worker", choices=["build", "stages", "e2e", "compile", "fidelity", "cold_start", "profile"],
                   help=argparse.SUPPRESS)
    p.add_argument("--impl", choices=["ours", "diffusers"], help=argparse.SUPPRESS)
    p.add_argument("--preset", help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--save-wave", default=None, help=argparse.SUPPRESS)
    return p


WORKERS = {"build": lambda a: build_models(a.models_dir, tiny=a.smoke), "stages": worker_stages, "e2e": worker_e2e,
           "compile": worker_compile, "fidelity": worker_fidelity, "cold_start": worker_cold_start,
           "profile": worker_profile}


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    q = args.quick
    defaults = {"repeats": 3 if q else 5, "step_repeats": 3 if q else 8, "decode_repeats": 1 if q else 3,
                "peak_repeats": 4 if q else 8, "e2e_repeats": 1 if q else 2,
                "mapper_steps": [200, 25] if q else [200, 50, 25, 10], "paper_steps": 3 if q else 10}
    if args.smoke:
        defaults = {"repeats": 1, "step_repeats": 1, "decode_repeats": 1, "peak_repeats": 1, "e2e_repeats": 1,
                    "mapper_steps": [3], "paper_steps": 2, "fast_steps": 2}
        args.duration, args.peak_sizes, args.cold_repeats = 1.0, [256], 1
        args.fidelity = args.cold_start = args.profile = True
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.smoke and args.models_dir is None:
        args.models_dir = Path(tempfile.mkdtemp(prefix="bench-gen-smoke-")) / "models"
    args.models_dir = Path(args.models_dir) if args.models_dir else default_models_dir()

    if args.report:
        saved = json.loads(args.report.read_text())
        saved["analysis"] = analyse(saved, 200)
        print(markdown(saved))
        return

    if args.worker:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        print(MARK + json.dumps(WORKERS[args.worker](args)), flush=True)
        return

    if args.paper_ab:
        paper_ab(args, argv)
        return

    t_start = time.perf_counter()
    result: dict = {"command": portable_command("bench_generate.py", argv if argv is not None else sys.argv[1:]),
                    "machine": machine(), "settings": {k: (_portable(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    parts = set(args.only.split(",")) if args.only else (
        {"stages", "e2e"} | {k for k, on in (("compile", args.compile), ("fidelity", args.fidelity),
                                             ("cold_start", args.cold_start), ("profile", args.profile)) if on})
    result["build"] = run_worker("build", args)
    for part in ("stages", "compile", "fidelity", "cold_start", "profile"):
        if part in parts:
            result[part] = run_worker(part, args)
    if "e2e" in parts:
        run_e2e(args, result)
    result["analysis"] = analyse(result, 200)
    result["total_runtime_s"] = round(time.perf_counter() - t_start, 1)
    if args.smoke:
        shutil.rmtree(args.models_dir.parent, ignore_errors=True)
        print(markdown(result))
        print(f"\nsmoke run (tiny models, nothing measured); total {result['total_runtime_s']:.0f} s")
        return
    out = args.out or HERE / "results" / f"generate-{platform.node() or 'host'}-{_dt.datetime.now().strftime('%Y%m%d-%H%M')}{'-quick' if q else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out)
    print(markdown(result))
    print(f"\nJSON: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}; total {result['total_runtime_s']:.0f} s")


def run_e2e(args, result: dict) -> None:
    """End to end, one process per preset × implementation; the waveforms compared (same settings)."""
    e2e: dict[str, list] = {}
    impls = ["ours"] + ([] if args.skip_diffusers_e2e else ["diffusers"])
    waves: dict[str, str] = {}
    tmpdir = Path(tempfile.mkdtemp(prefix="bench-gen-"))
    plan = [("fast", args.fast_steps)] * args.e2e_repeats + [("paper", None if args.paper_full else args.paper_steps)]
    for preset, steps in plan:
        for impl in impls:
            wave = tmpdir / f"{preset}-{impl}.npy"
            extra = ["--impl", impl, "--preset", preset, "--save-wave", str(wave)] + (["--steps", str(steps)] if steps else [])
            e2e.setdefault(f"{preset}/{impl}", []).append(run_worker("e2e", args, extra))
            waves[f"{preset}/{impl}"] = str(wave)
    result["e2e"] = e2e
    if len(impls) == 2:
        import numpy as np

        result["equivalence"] = {}
        for preset in ("fast", "paper"):
            a, b = np.load(waves[f"{preset}/ours"]), np.load(waves[f"{preset}/diffusers"])
            result["equivalence"][preset] = float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
    shutil.rmtree(tmpdir, ignore_errors=True)


def portable_command(script: str, argv: list[str]) -> str:
    """The command line for the saved result, with paths inside the repository made relative."""
    def arg(a: str) -> str:
        return _portable(Path(a)) if a.startswith("/") and Path(a).resolve().is_relative_to(ROOT) else a

    return " ".join(["python", f"benchmarks/{script}", *(arg(a) for a in argv)])


def _portable(path: Path) -> str:
    """A path for the saved result: relative to the repository when inside it, ``~/...`` when under the
    home folder (no machine's prefix)."""
    path = path.resolve()
    if path.is_relative_to(ROOT):
        return str(path.relative_to(ROOT))
    home = Path.home().resolve()
    return "~/" + str(path.relative_to(home)) if path.is_relative_to(home) else str(path)


def paper_ab(args, argv) -> None:
    """Paper preset, ours and diffusers alternated (ABBA...): each run's median guided step and
    before-diffusion time, and the ratio of the per-implementation best medians."""
    import statistics

    run_worker("build", args)  # a fresh machine has no model cache yet
    runs: dict[str, list] = {"ours": [], "diffusers": []}
    order = [("ours", "diffusers") if r % 2 == 0 else ("diffusers", "ours") for r in range(args.ab_rounds)]
    for pair in order:
        for impl in pair:
            runs[impl].append(run_worker("e2e", args, ["--impl", impl, "--preset", "paper",
                                                       "--steps", str(args.paper_ab)]))
    best = {impl: min(r["step"]["median_s"] for r in rs) for impl, rs in runs.items()}
    result = {
        "command": portable_command("bench_generate.py", argv if argv is not None else sys.argv[1:]),
        "machine": machine(), "runs": runs, "dtype": sorted({r["dtype"] for rs in runs.values() for r in rs}),
        "step_median_s": {impl: [r["step"]["median_s"] for r in rs] for impl, rs in runs.items()},
        "before_diffusion_s": {impl: [r["before_diffusion_s"] for r in rs] for impl, rs in runs.items()},
        "best_step_median_s": best, "step_ratio_ours_over_diffusers": best["ours"] / best["diffusers"],
        "median_of_medians_ratio": statistics.median(r["step"]["median_s"] for r in runs["ours"])
        / statistics.median(r["step"]["median_s"] for r in runs["diffusers"]),
    }
    keys = ("dtype", "step_median_s", "before_diffusion_s", "best_step_median_s", "step_ratio_ours_over_diffusers",
            "median_of_medians_ratio")
    summary = json.dumps({k: result[k] for k in keys}, indent=1)
    if args.smoke:
        shutil.rmtree(args.models_dir.parent, ignore_errors=True)
        print(summary)
        print("\nsmoke run of the paper A/B (tiny models, nothing measured)")
        return
    out = args.out or HERE / "results" / f"generate-paper-ab-{platform.node() or 'host'}-{_dt.datetime.now().strftime('%Y%m%d-%H%M')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(summary)
    print(f"JSON: {out}")


if __name__ == "__main__":
    main()
