"""Peak RSS of the web app after generating with all three methods, at real model sizes: shared parts vs one copy per method.

A fresh process builds the app's handlers (``foleykit.app.main._App``, the code behind every page
button; no HTTP server, whose memory is the same in both modes), uploads a picture, clicks one object
(SAM), and generates with ``mapper``, ``objects`` (the click plus a text) and ``sources`` (the click
cleared, so SS2A detects the sources: OWLv2).
Two modes, each in its own process:

* ``share``: what the app does now: the three pipelines take their frozen parts from
  ``foleykit.pipelines.components`` (one CLIP ViT-L/14, one AudioLDM-S, one AudioLDM CLAP per process);
* ``own``: the behaviour before the shared cache: every pipeline loads its own copies
  (``components.clear()`` before each method's pipeline is loaded).

For each mode: peak RSS (VmHWM) after the loads and after each generation, and the bytes of every
distinct weight tensor alive at the end (parameters and buffers of all live ``nn.Module``\\s, each
storage once). "One set of models" is the ``share`` process's weight bytes: every model once. The
issue's target: ``share`` peak ≤ 1.2 × one set. Also the RSS of the same imports without any model
(the interpreter, torch, transformers, diffusers, gradio), for scale.

Real-size models with random weights (memory depends on the architectures, not the values), written
once into ``$FOLEYKIT_CACHE/bench-app-real-size-v1`` (plus the generate benchmark's cache): CLIP
ViT-L/14 and ViT-B/32, AudioLDM-S (UNet, VAE, HiFi-GAN, RoBERTa text tower), AudioLDM's CLAP (HTSAT-tiny
+ the same text tower), the paper-size V2A-Mapper, SAM ViT-B, OWLv2 base/16 at 960 px, and an SS2A
bundle at its default sizes. The prior (Karlo) is not loaded: it serves text sources of ``sources``.

    python benchmarks/bench_app_memory.py [--duration 10] [--steps 2] [--out benchmarks/results/app-memory-<host>.json]
    python benchmarks/bench_app_memory.py --smoke      # the tiny set: seconds, what the tests run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_generate as B  # noqa: E402  (shared helpers: machine facts, memory figures, command lines)

BUILD_VERSION = "1"
MARK = "@@RESULT@@ "
MODES = ("share", "own")
METHODS = ("mapper", "objects", "sources")


# ----------------------------------------------------------------------------------------------
# the real-size model set (random weights), written once
# ----------------------------------------------------------------------------------------------


def default_root() -> Path:
    from foleykit.model_sets import default_cache_dir

    return default_cache_dir() / f"bench-app-real-size-v{BUILD_VERSION}"


def build_real_size_set(root: Path) -> Path:
    """Every role the three methods load, at real sizes, as a model-set folder (``model_set.json``)."""
    if (root / "model_set.json").is_file():
        return root
    import torch
    from transformers import (
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapTextModelWithProjection,
        CLIPImageProcessorPil,
        CLIPTokenizer,
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessorPil,
        Owlv2Processor,
        RobertaTokenizer,
        SamConfig,
        SamModel,
        SamProcessor,
    )

    from bench_sources import real_size_clip_l14
    from foleykit.encoders.loading import quiet_loading
    from foleykit.encoders.tiny_vocab import byte_level_vocab, clip_vocab
    from foleykit.modules.manifold import CMSSManifold, ManifoldConfig
    from foleykit.modules.remixer import RemixerConfig, SoundSourceRemixer
    from foleykit.modules.temporal import TemporalAggregator, TemporalConfig

    try:
        from transformers import SamImageProcessorPil as SamImageProcessor
    except ImportError:  # pragma: no cover - older transformers
        from transformers import SamImageProcessor

    quiet_loading()
    gen_root = B.default_models_dir()
    B.build_models(gen_root)  # AudioLDM-S, CLIP ViT-B/32, the paper-size mapper
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    vocab, merges = clip_vocab()
    torch.manual_seed(10)
    clip = real_size_clip_l14("cpu")
    clip.save_pretrained(tmp / "clip-l14")
    CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77, pad_token="!").save_pretrained(tmp / "clip-l14")
    CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(
        tmp / "clip-l14")
    del clip
    # AudioLDM's own CLAP: HTSAT-tiny + the generator's text tower (same weights: the same space).
    bvocab, bmerges = byte_level_vocab()
    torch.manual_seed(11)
    clap = ClapModel(ClapConfig()).eval()
    tower = ClapTextModelWithProjection.from_pretrained(str(gen_root / "audioldm" / "text_encoder")).state_dict()
    missing, unexpected = clap.load_state_dict(tower, strict=False)
    if unexpected or any(k.startswith(("text_model.", "text_projection.")) for k in missing):
        raise RuntimeError(f"the text tower does not fit the CLAP: {unexpected or missing}")
    clap.save_pretrained(tmp / "audioldm-clap")
    RobertaTokenizer(vocab=bvocab, merges=bmerges, model_max_length=77).save_pretrained(tmp / "audioldm-clap")
    ClapFeatureExtractor(truncation="rand_trunc", padding="repeatpad").save_pretrained(tmp / "audioldm-clap")
    del clap, tower
    torch.manual_seed(12)
    SamModel(SamConfig()).eval().save_pretrained(tmp / "sam")  # ViT-B image encoder at 1024 px
    SamProcessor(SamImageProcessor()).save_pretrained(tmp / "sam")
    torch.manual_seed(13)
    owl = Owlv2ForObjectDetection(Owlv2Config(vision_config=dict(image_size=960, patch_size=16))).eval()
    owl.save_pretrained(tmp / "detector")
    tok = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=16, pad_token="!")
    Owlv2Processor(image_processor=Owlv2ImageProcessorPil(), tokenizer=tok).save_pretrained(tmp / "detector")
    del owl
    torch.manual_seed(14)
    CMSSManifold(ManifoldConfig()).eval().save_pretrained(tmp / "ss2a" / "manifold")
    SoundSourceRemixer(RemixerConfig()).eval().save_pretrained(tmp / "ss2a" / "remixer")
    TemporalAggregator(TemporalConfig()).eval().save_pretrained(tmp / "ss2a" / "temporal")
    roles = {"clip": "clip-l14", "clip_mapper": str(gen_root / "clip"), "clap": "audioldm-clap",
             "audioldm": str(gen_root / "audioldm"), "mapper": str(gen_root / "mapper"), "sam": "sam",
             "detector": "detector", "ss2a": "ss2a"}
    (tmp / "model_set.json").write_text(json.dumps(roles, indent=2))
    try:
        os.replace(tmp, root)
    except OSError:
        if not (root / "model_set.json").is_file():
            raise
    return root


# ----------------------------------------------------------------------------------------------
# one mode in a fresh process
# ----------------------------------------------------------------------------------------------


class _Click:
    def __init__(self, x: int, y: int) -> None:
        self.index = [x, y]


def weight_bytes() -> int:
    """Bytes of every distinct parameter/buffer storage of the live modules (each storage once)."""
    import gc

    import torch

    seen: dict[int, int] = {}
    for obj in gc.get_objects():
        if isinstance(obj, torch.nn.Module):
            for t in (*obj.parameters(recurse=False), *obj.buffers(recurse=False)):
                if t is None or t.device.type == "meta":
                    continue
                st = t.untyped_storage()
                seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


def worker(args) -> dict:
    """Load and generate with the three methods in this process (``args.mode``); returns the figures."""
    t0 = time.perf_counter()
    import torch

    from foleykit.app.main import AppConfig, _App
    from foleykit.encoders.loading import quiet_loading
    from foleykit.pipelines import components

    quiet_loading()
    torch.set_num_threads(args.threads or torch.get_num_threads())
    work = Path(tempfile.mkdtemp(prefix="bench-app-memory-"))
    rec: dict = {"mode": args.mode, "rss_after_imports_mib": B.vm_rss_mib()}
    app = _App(AppConfig(models=args.models, device="cpu", dtype=args.dtype, workdir=work / "app"))
    image = str((HERE.parent / "examples" / "scene.jpg").resolve())
    out = app.on_upload(image, None)
    state = out[4]
    if not state:
        raise SystemExit(f"upload failed: {out[5]}")
    stages = []
    for method in METHODS:
        if args.mode == "own":
            components.clear()  # the old behaviour: this method's pipeline loads its own copies
        a = time.perf_counter()
        app.pipeline(method)
        load_s = time.perf_counter() - a
        if method == "objects":
            from PIL import Image

            with Image.open(image) as im:
                w, h = im.size
            state = app.on_click(state, _Click(w // 2, h // 2))[2]
        if method == "sources":
            state = app.on_clear(state)[2]  # no clicked regions: SS2A detects the sources (OWLv2 loads)
        texts = "a dog barking" if method == "objects" else ""
        a = time.perf_counter()
        result = app.on_generate(state, method, texts, None, args.duration, args.steps, 7, 2.5, 0.0,
                                 lambda *a, **k: None)
        if not str(result[2]).startswith("Done"):
            raise SystemExit(f"{method} failed: {result[2]}")
        stages.append({"method": method, "load_s": round(load_s, 1), "generate_s": round(time.perf_counter() - a, 1),
                       "peak_rss_mib": B.vm_hwm_mib(), "rss_mib": B.vm_rss_mib()})
    rec["stages"] = stages
    rec["peak_rss_mib"] = B.vm_hwm_mib()
    rec["weights_mib"] = round(weight_bytes() / 2**20, 1)
    rec["components"] = [f"{role}:{Path(ref).name}" for role, ref, *_ in components.loaded()]
    rec["wall_s"] = round(time.perf_counter() - t0, 1)
    return rec


_BASELINE = r"""
import json, sys
import torch, transformers, diffusers, gradio  # noqa: F401
import foleykit.app.main  # noqa: F401
hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))
print(json.dumps({"rss_imports_only_mib": round(hwm / 1024, 1)}))
"""


def _env() -> dict:
    """The children import this checkout's foleykit (as the parent does), offline."""
    import foleykit

    src = str(Path(foleykit.__file__).resolve().parents[1])
    return dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))


def run_mode(mode: str, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", mode, "--models", str(args.models),
           "--duration", str(args.duration), "--steps", str(args.steps)] + (
        ["--dtype", args.dtype] if args.dtype else []) + (["--threads", str(args.threads)] if args.threads else [])
    print(f"[bench] {mode} ...", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False, env=_env())
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"mode {mode} failed (exit {proc.returncode})")
    return json.loads(lines[-1][len(MARK):])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=None, help="model-set folder (default: build the real-size set once)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of audio per generation")
    ap.add_argument("--steps", type=int, default=2, help="UNet steps (memory does not depend on them)")
    ap.add_argument("--dtype", default=None, help="auto (default) | fp32 | bf16")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--smoke", action="store_true", help="the tiny model set, 1 s, 1 step: checks the script")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        args.mode = args.worker
        print(MARK + json.dumps(worker(args)), flush=True)
        return {}
    if args.smoke:
        from foleykit.model_sets import resolve_model_set

        args.duration, args.steps = 1.0, 1
        args.models = args.models or str(Path(resolve_model_set("tiny").audioldm).parent)
    elif args.models is None:
        t = time.perf_counter()
        args.models = str(build_real_size_set(default_root()))
        print(f"[bench] model set ready in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    result = {
        "benchmark": "app_memory",
        "machine": {**B.machine(), "loadavg_before": [round(x, 2) for x in os.getloadavg()]},
        "settings": {"models": "tiny" if args.smoke else "real-size random", "duration_s": args.duration,
                     "steps": args.steps, "dtype": args.dtype or "auto", "smoke": args.smoke,
                     "command": B.portable_command("bench_app_memory.py", argv if argv is not None else sys.argv[1:])},
    }
    base = subprocess.run([sys.executable, "-c", _BASELINE], capture_output=True, text=True, timeout=600, check=True,
                          env=_env())
    result["baseline"] = json.loads(base.stdout.strip().splitlines()[-1])
    for mode in MODES:
        result[mode] = run_mode(mode, args)
    one_set = result["share"]["weights_mib"]
    result["summary"] = {
        "one_set_of_models_mib": one_set,
        "peak_share_mib": result["share"]["peak_rss_mib"],
        "peak_own_mib": result["own"]["peak_rss_mib"],
        "saved_mib": round(result["own"]["peak_rss_mib"] - result["share"]["peak_rss_mib"], 1),
        "share_over_one_set": round(result["share"]["peak_rss_mib"] / one_set, 3),
        "own_over_one_set": round(result["own"]["peak_rss_mib"] / one_set, 3),
        "target_share_le_1_2_one_set": result["share"]["peak_rss_mib"] <= 1.2 * one_set,
    }
    result["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
