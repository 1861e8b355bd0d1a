"""What we tried for the generator's CPU speed: interleaved A/B of UNet / VAE / vocoder variants.

Same real-size random models as ``bench_generate.py`` (built once into its cache). Every variant runs
on its own copy of the weights; all variants of a group are timed in turn, ``--repeats`` rounds, so
they share the machine's load. Reports min and median seconds and the max abs difference to stock.

    python benchmarks/bench_generate_variants.py [--repeats 6] [--groups unet,vae,vocoder] [--compile] [--dtype bf16]
    python benchmarks/bench_generate_variants.py --smoke   # tiny stand-ins, one round: checks the script (seconds)

``--dtype`` (default ``auto``: what foleykit picks on this CPU) runs every variant in that dtype: on a
CPU with native bf16, ``--dtype bf16`` re-measures each layout trick of the float32 fast path for bf16.

UNet variants (one guided step, batch 2, 10 s latent):
  stock            diffusers' modules as loaded (NCHW, AttnProcessor2_0 = SDPA)
  channels_last    weights and latents channels-last (what AudioLDMGenerator does on CPU)
  cl+fused_qkv     + Q/K/V of each self-attention from one matmul (custom attention processor)
  cl+packed_conv   + oneDNN weights pre-packed once (mkldnn._convolution_pointwise), +~0.5 GB RSS
  cl+packed_linear + oneDNN pre-packed linear weights (mkldnn._linear_pointwise)
  cl@1thread       channels_last with torch.set_num_threads(1)
  cl+int8_linear   + every nn.Linear int8 dynamically quantised (torch.ao quantize_dynamic; float32 only)
  int8_linear      stock layout + int8 Linear (float32 only)
  compiled         channels_last + torch.compile(inductor, freezing)   (only with --compile)
Each variant also reports its relative error against stock (||out - stock|| / ||stock||).
VAE decode: stock vs channels_last. Vocoder: stock (NCL conv1d) vs 1-d convs as channels-last 2-d.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_generate as B

from foleykit.devices import cpu_has_native_bf16
from foleykit.generator import pipeline as P

MK = torch.ops.mkldnn


def _packed_conv(conv, state, x):
    if "w" not in state:
        state["w"] = MK._reorder_convolution_weight(conv.weight, list(conv.padding), list(conv.stride),
                                                    list(conv.dilation), conv.groups, list(x.shape))
    return MK._convolution_pointwise(x, state["w"], conv.bias, list(conv.padding), list(conv.stride),
                                     list(conv.dilation), conv.groups, "none", [], "")


def _packed_linear(lin, state, x):
    if "w" not in state:
        state["w"] = MK._reorder_linear_weight(lin.weight, x.numel() // x.shape[-1])
    return MK._linear_pointwise(x, state["w"], lin.bias, "none", [], "")


class _FusedQKV:
    """Self-attention with one [3·inner, dim] projection (diffusers' own fuse_qkv_projections() picks
    the wrong fused layer for AudioLDM's attn2, which is self-attention here)."""

    def __init__(self, attn):
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.stock = AttnProcessor2_0()
        self.w = torch.cat([attn.to_q.weight, attn.to_k.weight, attn.to_v.weight]).detach()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        if encoder_hidden_states is not None or hidden_states.ndim != 3:
            return self.stock(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kw)
        b, n, _ = hidden_states.shape
        inner = self.w.shape[0] // 3
        q, k, v = F.linear(hidden_states, self.w).view(b, n, 3, attn.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, inner)
        return attn.to_out[0](out)


def _int8_linear(module):
    """A copy of ``module`` whose ``nn.Linear`` layers are int8 dynamically quantised (fbgemm/x86)."""
    import warnings

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        return quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8, inplace=False)


def unet_variants(stock, with_compile: bool) -> dict:
    from diffusers.models.attention_processor import Attention

    def cl():
        u = copy.deepcopy(stock)
        P._channels_last_inplace(u)
        return u

    out = {"stock": (stock, False, None), "channels_last": (cl(), True, None)}
    u = cl()
    for m in u.modules():
        if isinstance(m, Attention):
            m.set_processor(_FusedQKV(m))
    out["cl+fused_qkv"] = (u, True, None)
    # oneDNN's bf16 weight pre-packing needs AVX-512 BW/VL/DQ or AVX-NE-CONVERT: every native-bf16 CPU
    # has them; on other CPUs (bf16 emulated) these two variants cannot run and are left out.
    if next(stock.parameters()).dtype != torch.bfloat16 or cpu_has_native_bf16():
        u = cl()
        for m in u.modules():
            if type(m) is torch.nn.Conv2d:
                m.forward = functools.partial(_packed_conv, m, {})
        out["cl+packed_conv"] = (u, True, None)
        u = cl()
        for m in u.modules():
            if type(m) is torch.nn.Linear:
                m.forward = functools.partial(_packed_linear, m, {})
        out["cl+packed_linear"] = (u, True, None)
    out["cl@1thread"] = (out["channels_last"][0], True, 1)
    if next(stock.parameters()).dtype == torch.float32:
        out["cl+int8_linear"] = (_int8_linear(out["channels_last"][0]), True, None)
        out["int8_linear"] = (_int8_linear(stock), False, None)
    if with_compile:
        out["compiled"] = (torch.compile(out["channels_last"][0], dynamic=False, options={"freezing": True}), True, None)
    return out


def run_group(fns: dict, ref_key: str, repeats: int) -> dict:
    with torch.inference_mode():
        ref = fns[ref_key]().float()
        diffs, rel, t0 = {}, {}, {}
        for k, f in fns.items():
            s = time.perf_counter()
            y = f().float()
            t0[k] = round(time.perf_counter() - s, 2)
            diffs[k] = float((y - ref).abs().max())
            rel[k] = float((y - ref).norm() / ref.norm())
        res = B.interleaved(fns, repeats, warmup=0)
    for k in fns:
        res[k]["max_abs_diff_vs_stock"] = diffs[k]
        res[k]["rel_err_vs_stock"] = rel[k]
        res[k]["first_call_s"] = t0[k]
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--groups", default="unet,vae,vocoder")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--models-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--dtype", default="auto", help="auto | fp32 | bf16: the dtype every variant runs in")
    p.add_argument("--smoke", action="store_true", help="tiny stand-ins, one round, 1 s latent: checks the script, measures nothing")
    args = p.parse_args()
    duration = B.DURATION_S
    if args.smoke:
        import shutil
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix="bench-variants-smoke-"))
        root, args.repeats, duration = tmp / "models", 1, 1.0
        B.build_models(root, tiny=True)
    else:
        root = args.models_dir or B.default_models_dir()
        B.build_models(root)
    _, _, gen = B.load_parts(root, fast_path=False, dtype=args.dtype)
    dt = gen.dtype
    threads = torch.get_num_threads()
    result = {"command": B.portable_command("bench_generate_variants.py", sys.argv[1:]), "machine": B.machine(),
              "load_start": B.load(), "dtype": str(dt).removeprefix("torch."),
              "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "generator_choice": {"unet_channels_last": P.unet_channels_last_pays(dt), "vae_decoder_channels_last": True,
                                   "vocoder_2d_convs": True}}
    groups = args.groups.split(",")
    lat = torch.randn(gen.latent_shape(1, duration), generator=torch.Generator().manual_seed(B.SEED)).to(dt)
    if "unet" in groups:
        x = torch.cat([lat] * 2)
        labels = F.normalize(torch.randn(2, 512, generator=torch.Generator().manual_seed(1)), dim=-1).to(dt)
        t = torch.tensor(500)

        def step(u, cl, nthreads):
            torch.set_num_threads(nthreads or threads)
            try:
                xin = x.contiguous(memory_format=torch.channels_last) if cl else x
                return u(xin, t, encoder_hidden_states=None, class_labels=labels).sample
            finally:
                torch.set_num_threads(threads)

        fns = {k: functools.partial(step, *v) for k, v in unet_variants(gen.unet, args.compile).items()}
        result["unet_step"] = run_group(fns, "stock", args.repeats)
    if "vae" in groups:
        vae_cl = copy.deepcopy(gen.vae)
        P._channels_last_inplace(vae_cl)
        z = lat / gen.vae.config.scaling_factor
        result["vae_decode"] = run_group({"stock": lambda: gen.vae.decode(z).sample,
                                          "channels_last": lambda: vae_cl.decode(z.contiguous(memory_format=torch.channels_last)).sample},
                                         "stock", max(2, args.repeats // 2))
    if "vocoder" in groups:
        with torch.inference_mode():
            mel = gen.vae.decode(lat / gen.vae.config.scaling_factor).sample.squeeze(1).clone()
        voc2d = copy.deepcopy(gen.vocoder)
        P._vocoder_convs_as_2d(voc2d)
        result["vocoder"] = run_group({"stock": lambda: gen.vocoder(mel), "conv1d_as_cl_2d": lambda: voc2d(mel)},
                                      "stock", max(2, args.repeats // 2))
    result["load_end"] = B.load()
    if args.smoke:
        shutil.rmtree(tmp, ignore_errors=True)
        out = None
    else:
        out = args.out or B.HERE / "results" / f"generate-variants-{B.machine()['host']}-{time.strftime('%Y%m%d-%H%M')}.json"
        out.write_text(json.dumps(result, indent=2))
    m = result["machine"]
    print(f"{m['cpu']}, {m['logical_cpus']} CPUs ({result['cpu_capability']}), torch {m['torch']}, {result['dtype']}, "
          f"{m['date_utc']} UTC; load {result['load_start']} → {result['load_end']}")
    print(f"Command: `{result['command']}`\n")
    print("| group | variant | min s | median s | vs stock (min) | max abs diff | rel. error | first call s |\n"
          "|---|---|---|---|---|---|---|---|")
    for g in ("unet_step", "vae_decode", "vocoder"):
        if g not in result:
            continue
        r = result[g]
        for k, v in r.items():
            if k == "load":
                continue
            print(f"| {g} | {k} | {v['min_s']:.3f} | {v['median_s']:.3f} | {v['min_s'] / r['stock']['min_s']:.3f} | "
                  f"{v['max_abs_diff_vs_stock']:.1e} | {v['rel_err_vs_stock']:.1e} | {v['first_call_s']} |")
    print(f"\nJSON: {out}" if out else "\nsmoke run (tiny models, nothing measured): no result file")


if __name__ == "__main__":
    main()
