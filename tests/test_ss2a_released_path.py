"""Released SS2A weights reproduce the released computation through our pipeline: image, multimodal
and video paths, under each released ``guidance`` setting, empty slots included.

The reference here is written independently of our modules, from the reference notes
(shared/reference/ssv2a-reference.md beside the checkout: §1.5 key layout, §2.2 MLP encoders, §2.3 generator,
§2.6 Styler and efficient attention, §2.7 Cycle Mix, §2.8 multimodal slots, §2.10 aggregator). It
reads the tensors of a random checkpoint *by their released key names* and evaluates the released
forward functionally. It never calls our manifold, Remixer, Cycle Mix, padding or importer code.

What the released code feeds its Remixer (notes §2.7-2.8): all 64 slots, every one run through the
encoders. Image path (``image_to_audio``, and video frame by frame): an empty slot's manifold code is
the CLIP encoder's code of an all-zero CLIP. Multimodal path (``srcs_to_audio``): zero-CLIP slots take
their code from ``fixed_src``, which is zero for empty slots. Under ``guidance`` "generator" or
"manifold+generator" the code part is (or includes) the normalised χ CLAP of that code.

Variational draws cannot be matched across two implementations, so both sides use the Gaussian means
(our ``var_samples=0``; the released computation with every ``sample_normal`` replaced by its mean).
With one candidate per round, the first round's mixture is the only candidate, so both sides feed it
back identically in round 2; we compare the mixture of every round (a forward hook on our Remixer) and
the CLAP that reaches AudioLDM. Which round wins is Cycle Mix's scoring, a documented difference.

This reference was checked once (outside the suite) against the released repository's own modules
(wguo86/SSV2A at 7f01d5f, heavy imports stubbed, ``sample_normal`` replaced by its mean): cosine 1.0
for the image and multimodal Cycle Mix rounds under every guidance, and for the aggregator.
"""

from __future__ import annotations

import json
import math

import av
import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from PIL import Image

from foleykit.pipelines import sources as sources_module
from foleykit.pipelines.sources import SourcesPipeline
from foleykit.pipelines.ss2a_bundle import load_ss2a

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLIP, CLAP, SLOTS = 768, 512, 64  # the released interfaces (cycle_mix hard-codes 512; README: 64 slots)
MANIFOLD = 16
MANIFOLD_LAYERS = [32, 24, 32, 40]  # one residual block (32→24→32) + one plain layer (32→40)
GENERATOR_LAYERS = [24, 32, 24]  # one residual block
STYLER = {"arch": "transformer", "variational": True, "kl_weight": 0.0, "embed_dim": 32, "num_layers": 2,
          "nhead": 4, "dropout": 0.2, "exp_rate": 2}
GUIDANCES = ("manifold", "generator", "manifold+generator")


# ---------------------------------------------------------------------- a random released checkpoint


def _released_config(guidance: str) -> dict:
    """``ssv2a.json`` in the released schema (notes §1.4)."""
    mlp = {"arch": "mlp", "variational": True, "kl_weight": 0.0, "resnet": True, "dropout": 0.1}
    return {
        "checkpoints": "checkpoints", "clip_dim": CLIP, "clap_dim": CLAP, "manifold_dim": MANIFOLD,
        "audioldm_version": "audioldm-s-full-v2",
        "manifold": {**mlp, "layers": MANIFOLD_LAYERS},
        "generator": {**mlp, "disabled": False, "layers": GENERATOR_LAYERS},
        "remixer": {"slot": SLOTS, "guidance": guidance, "cfg": 0.1, "styler": dict(STYLER)},
    }


class _Weights:
    """Random tensors under released key names (notes §1.5)."""

    def __init__(self, seed: int) -> None:
        self.g = torch.Generator().manual_seed(seed)
        self.state: dict[str, torch.Tensor] = {}

    def linear(self, key: str, fan_in: int, fan_out: int, bias: bool = True, scale: float = 1.0) -> None:
        self.state[f"{key}.weight"] = torch.randn(fan_out, fan_in, generator=self.g) * scale / math.sqrt(fan_in)
        if bias:
            self.state[f"{key}.bias"] = torch.randn(fan_out, generator=self.g) * 0.1

    def norm(self, key: str, dim: int) -> None:
        self.state[f"{key}.weight"] = 0.5 + torch.rand(dim, generator=self.g)
        self.state[f"{key}.bias"] = torch.randn(dim, generator=self.g) * 0.2

    def mlp(self, key: str, layers: list[int]) -> None:
        """Released ``MLP(layers, resnet=True, dropout>0)``: residual blocks at Sequential indices 0, 2, …
        (``mod.{0,1,4,5}`` + ``proj``; a GELU follows each block), then plain layers at stride 4."""
        index, i = 0, 0
        while i + 2 < len(layers):
            a, b, c = layers[i : i + 3]
            self.linear(f"{key}.{index}.mod.0", a, b)
            self.norm(f"{key}.{index}.mod.1", b)
            self.linear(f"{key}.{index}.mod.4", b, c)
            self.norm(f"{key}.{index}.mod.5", c)
            self.linear(f"{key}.{index}.proj", a, c)
            index, i = index + 2, i + 2
        while i + 1 < len(layers):
            self.linear(f"{key}.{index}", layers[i], layers[i + 1])
            self.norm(f"{key}.{index + 1}", layers[i + 1])
            index, i = index + 4, i + 1

    def encoder(self, key: str, in_dim: int, layers: list[int], out_dim: int, bias: bool) -> None:
        self.linear(f"{key}model.0", in_dim, layers[0], bias=bias)
        self.mlp(f"{key}model.1.model", layers)
        self.linear(f"{key}out_mu", layers[-1], out_dim)
        self.linear(f"{key}out_sigma", layers[-1], out_dim)

    def transformer_layer(self, key: str, dim: int, ffn_dim: int) -> None:
        for name in ("query", "key", "value", "highway"):
            self.linear(f"{key}.esa.{name}", dim, dim)
        self.norm(f"{key}.esa.norm", dim)
        self.linear(f"{key}.ffn.linear1", dim, ffn_dim)
        self.linear(f"{key}.ffn.linear2", ffn_dim, dim, scale=0.5)  # zero-initialised when released; trained ≠ 0
        self.norm(f"{key}.ffn.norm", dim)

    def heads(self, key: str, dim: int, out_dim: int) -> None:
        for head, out in (("head_mu", "out_mu"), ("head_sigma", "out_sigma")):
            self.linear(f"{key}{head}.model.0", dim, dim)
            self.norm(f"{key}{head}.model.1", dim)
            self.linear(f"{key}{out}", dim, out_dim)


def _released_checkpoint(guidance: str, seed: int = 0) -> dict:
    """``ssv2a.pth``: {timestamp, manifold_state, generator_state, remixer_state}."""
    w = _Weights(seed)
    w.encoder("clip_encoder.", CLIP, MANIFOLD_LAYERS, MANIFOLD, bias=False)
    w.encoder("clap_encoder.", CLAP, MANIFOLD_LAYERS, MANIFOLD, bias=False)
    manifold_state = {**w.state, "logit_scale": torch.tensor(2.6), "self_logit_scale": torch.tensor(2.6)}
    w.state = {}
    w.encoder("", MANIFOLD, GENERATOR_LAYERS, CLAP, bias=True)
    generator_state, w.state = w.state, {}
    source_dim = {"manifold": MANIFOLD, "generator": CLAP, "manifold+generator": MANIFOLD + CLAP}[guidance]
    e = STYLER["embed_dim"]
    w.linear("styler.in_proj", source_dim + CLIP, e)
    w.state["styler.pred_token"] = torch.randn(2, e, generator=w.g)
    for i in range(STYLER["num_layers"]):
        w.transformer_layer(f"styler.style_encoder.encoder.{i}", e, e * STYLER["exp_rate"])
    w.heads("styler.", e, CLAP)
    return {"timestamp": "2024-12-10", "manifold_state": manifold_state, "generator_state": generator_state,
            "remixer_state": w.state}


def _released_aggregator(seed: int = 7) -> dict:
    """``agg.pth`` (notes §1.5, §2.10): 512-d, 1 layer, FFN 1024, sine table [1024, 1, 512] base 2048."""
    w = _Weights(seed)
    position = torch.arange(1024, dtype=torch.float32)[:, None]
    inv_freq = torch.exp(torch.arange(0, CLAP, 2, dtype=torch.float32) * (-math.log(2 * 1024) / CLAP))
    pe = torch.zeros(1024, CLAP)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(position * inv_freq), torch.cos(position * inv_freq)
    w.state["pe.pe"] = pe[:, None, :]
    w.transformer_layer("encoder.encoder.0", CLAP, 2 * CLAP)
    w.state["pred_token"] = torch.randn(2, CLAP, generator=w.g)
    w.heads("", CLAP, CLAP)
    return w.state


# ---------------------------------------------------------------------- the released forward, functionally


def _lin(sd: dict, key: str, x: torch.Tensor) -> torch.Tensor:
    bias = sd.get(f"{key}.bias")
    return F.linear(x, sd[f"{key}.weight"].double(), None if bias is None else bias.double())


def _ln(sd: dict, key: str, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[f"{key}.weight"].double(), sd[f"{key}.bias"].double(), eps=1e-5)


def _mlp(sd: dict, key: str, layers: list[int], x: torch.Tensor) -> torch.Tensor:
    index, i = 0, 0
    while i + 2 < len(layers):  # ResWrapper: proj(x) + mod(x), then GELU
        p = f"{key}.{index}"
        h = _ln(sd, f"{p}.mod.5", _lin(sd, f"{p}.mod.4", F.gelu(_ln(sd, f"{p}.mod.1", _lin(sd, f"{p}.mod.0", x)))))
        x = F.gelu(_lin(sd, f"{p}.proj", x) + h)
        index, i = index + 2, i + 2
    while i + 1 < len(layers):  # Linear, LayerNorm, Dropout, GELU
        x = F.gelu(_ln(sd, f"{key}.{index + 1}", _lin(sd, f"{key}.{index}", x)))
        index, i = index + 4, i + 1
    return x


def _encoder_mean(sd: dict, key: str, layers: list[int], x: torch.Tensor) -> torch.Tensor:
    """A released variational MLP encoder's μ (what an average of many draws converges to)."""
    return _lin(sd, f"{key}out_mu", _mlp(sd, f"{key}model.1.model", layers, _lin(sd, f"{key}model.0", x)))


class _Released:
    """The released pipeline's learnable part, evaluated from the state dicts (float64, means)."""

    def __init__(self, ckpt: dict, guidance: str) -> None:
        self.m, self.g, self.r = ckpt["manifold_state"], ckpt["generator_state"], ckpt["remixer_state"]
        self.guidance = guidance

    def fold_clips(self, x):  # Manifold.fold_clips
        return _encoder_mean(self.m, "clip_encoder.", MANIFOLD_LAYERS, x)

    def fold_claps(self, x):  # Manifold.fold_claps
        return _encoder_mean(self.m, "clap_encoder.", MANIFOLD_LAYERS, x)

    def fold2claps(self, code):  # Generator.fold2claps: average of draws, then L2-normalised
        return F.normalize(_encoder_mean(self.g, "", GENERATOR_LAYERS, code), dim=-1)

    def source_code(self, src):  # per `guidance` (notes §2.6)
        if self.guidance == "generator":
            return self.fold2claps(src)
        if self.guidance == "manifold+generator":
            return torch.cat([src, self.fold2claps(src)], dim=-1)
        return src

    def remix(self, src, clips):
        """Styler.sample with means, normalised: in_proj(concat) → 2 pred tokens → ESA layers → heads."""
        sd, heads = self.r, STYLER["nhead"]
        x = _lin(sd, "styler.in_proj", torch.cat([src, clips], dim=-1))
        tokens = sd["styler.pred_token"].double()[None].expand(x.shape[0], -1, -1)
        x = torch.cat([tokens, x], dim=1)
        for i in range(STYLER["num_layers"]):
            x = _transformer_layer(sd, f"styler.style_encoder.encoder.{i}", x, heads)
        return _readout(sd, "styler.", x[:, 0])

    def cycle_mix(self, clips, fixed_src=None, rounds=1):
        """Pipeline.cycle_mix with one candidate per round; returns every round's mixture.

        ``src`` = fold_clips over all 64 slots (empty ones: the code of a zero CLIP); with ``fixed_src``
        (multimodal) every zero-CLIP slot takes its row of fixed_src; from round 2 on, slot 0 holds
        fold_claps(best mixture so far) — with one candidate, round 1's mixture."""
        src = self.fold_clips(clips)
        mixtures = []
        for i in range(rounds):
            if fixed_src is not None:
                zero = clips.abs().sum(-1) == 0
                src[zero] = fixed_src[zero]
            if i > 0:
                src[:, 0] = self.fold_claps(mixtures[0])
            mixtures.append(self.remix(self.source_code(src), clips))
        return mixtures


def _transformer_layer(sd: dict, key: str, x: torch.Tensor, heads: int) -> torch.Tensor:
    """ESALayer = FFN(ESA(x)); ESA: pre-LN, softmax of q and of k over each head's features, context
    Σ_t k_tᵀ v_t per head, highway Linear residual; FFN: pre-LN, GELU, identity residual."""
    b, t, d = x.shape
    nx = _ln(sd, f"{key}.esa.norm", x)
    q = _lin(sd, f"{key}.esa.query", nx).view(b, t, heads, -1).softmax(-1)
    k = _lin(sd, f"{key}.esa.key", nx).view(b, t, heads, -1).softmax(-1)
    v = _lin(sd, f"{key}.esa.value", nx).view(b, t, heads, -1)
    context = torch.einsum("bnhd,bnhl->bhdl", k, v)
    x = _lin(sd, f"{key}.esa.highway", x) + torch.einsum("bnhd,bhdl->bnhl", q, context).reshape(b, t, d)
    return x + _lin(sd, f"{key}.ffn.linear2", F.gelu(_lin(sd, f"{key}.ffn.linear1", _ln(sd, f"{key}.ffn.norm", x))))


def _released_aggregate(sd: dict, frame_claps: torch.Tensor) -> torch.Tensor:
    """Aggregator.sample with means: [2 pred tokens, frames] + pe rows 0..T+1, 1 ESA layer, head_mu."""
    x = torch.cat([sd["pred_token"].double()[None].expand(frame_claps.shape[0], -1, -1), frame_claps], dim=1)
    x = x + sd["pe.pe"].double()[: x.shape[1], 0]
    x = _transformer_layer(sd, "encoder.encoder.0", x, 8)
    return _readout(sd, "", x[:, 0])


def _readout(sd: dict, key: str, token: torch.Tensor) -> torch.Tensor:
    """μ head (Linear, LayerNorm, Dropout, GELU) then out_mu; the mean of the draws, L2-normalised."""
    hidden = F.gelu(_ln(sd, f"{key}head_mu.model.1", _lin(sd, f"{key}head_mu.model.0", token)))
    return F.normalize(_lin(sd, f"{key}out_mu", hidden), dim=-1)


def _image_slots(global_clip: torch.Tensor, crops: list[torch.Tensor]) -> torch.Tensor:
    """emb2seq + global: slot 0 = the image, then its crops, zeros up to 64."""
    clips = torch.zeros(1, SLOTS, CLIP, dtype=torch.float64)
    clips[0, 0] = global_clip
    for i, c in enumerate(crops):
        clips[0, 1 + i] = c
    return clips


# ---------------------------------------------------------------------- our pipeline, instrumented


@pytest.fixture(scope="module")
def base_pipe(tiny_models_dir, tmp_path_factory):
    from foleykit.model_sets import TINY_VERSION

    cache = tmp_path_factory.mktemp("fk-cache")
    (cache / f"tiny-v{TINY_VERSION}").symlink_to(tiny_models_dir, target_is_directory=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("FOLEYKIT_CACHE", str(cache))
    try:
        yield SourcesPipeline.from_models("tiny")
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("released-in")
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (72, 120, 3), dtype=np.uint8)).save(d / "scene.png")
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(d / "second.png")
    sr = 16000
    t = np.arange(sr) / sr
    sf.write(d / "bell.wav", (0.3 * np.sin(2 * np.pi * 523 * t)).astype(np.float32), sr)
    video = d / "ten_seconds.mp4"  # a full 10 s window: frame positions 0..T-1, as released
    with av.open(str(video), "w") as out:
        vs = out.add_stream("libx264", rate=2)
        vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        for i in range(20):
            frame = np.zeros((32, 32, 3), dtype=np.uint8)
            frame[..., i % 3] = 40 + 10 * i
            frame[: 4 + i, :8] = 255
            for pkt in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
    return {"scene": d / "scene.png", "second": d / "second.png", "bell": d / "bell.wav", "video": video}


def _released_pipeline(base: SourcesPipeline, folder, guidance: str, with_aggregator: bool = False):
    ckpt = _released_checkpoint(guidance)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, folder / "ssv2a.pth")
    (folder / "ssv2a.json").write_text(json.dumps(_released_config(guidance)))
    agg = None
    if with_aggregator:
        agg = _released_aggregator()
        torch.save(agg, folder / "agg.pth")
    bundle = load_ss2a(folder / "ssv2a.pth")
    pipe = SourcesPipeline(base.clip, base.clap, base.generator, bundle, model_set=base.model_set)
    return pipe, _Released(ckpt, guidance), agg


class _Capture:
    """The Remixer's mixture per call (= per Cycle Mix round here) and the CLAPs handed to AudioLDM."""

    def __init__(self, pipe: SourcesPipeline, monkeypatch) -> None:
        self.mixtures: list[torch.Tensor] = []
        self.conditions: list[torch.Tensor] = []
        pipe.ss2a.remixer.register_forward_hook(lambda _m, _i, out: self.mixtures.append(F.normalize(out.mu, dim=-1)))
        real = sources_module.generate_long

        def generate_long(generator, cond, *args, **kwargs):
            self.conditions.append(cond.detach().clone())
            return real(generator, cond, *args, **kwargs)

        monkeypatch.setattr(sources_module, "generate_long", generate_long)


MEANS = {"cycle_samples": 1, "var_samples": 0, "num_inference_steps": 1, "progress": False, "seed": 0}


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return F.cosine_similarity(a.double().reshape(1, -1), b.double().reshape(1, -1)).item()


@pytest.mark.parametrize("guidance", GUIDANCES)
def test_image_path_gives_the_released_mixture(base_pipe, media, tmp_path, monkeypatch, guidance):
    pipe, released, _ = _released_pipeline(base_pipe, tmp_path / "w", guidance)
    cap = _Capture(pipe, monkeypatch)
    res = pipe(media["scene"], boxes=[(0, 0, 60, 72), (50, 10, 120, 60)], detect=False, cycle_rounds=2,
               duration_s=1.0, **MEANS)
    assert [s.kind for s in res.sources] == ["image", "box", "box"]
    clips = _image_slots(res.sources[0].clip.double(), [s.clip.double() for s in res.sources[1:]])
    expected = released.cycle_mix(clips, rounds=2)
    assert len(cap.mixtures) == 2
    for ours, theirs in zip(cap.mixtures, expected):
        assert _cos(ours, theirs) > 0.9999
    assert _cos(cap.conditions[0], expected[0]) > 0.9999 or _cos(cap.conditions[0], expected[1]) > 0.9999
    # The empty slots matter: zeroing their tokens (what we fed released weights before) changes the mix.
    code = released.source_code(released.fold_clips(clips))
    code[:, 3:] = 0.0
    assert _cos(released.remix(code, clips), expected[0]) < 0.999


@pytest.mark.parametrize("guidance", GUIDANCES)
def test_multimodal_path_gives_the_released_mixture(base_pipe, media, tmp_path, monkeypatch, guidance):
    """Two images, a text and an audio clip: slot 0 empty, every source in its own slot, the audio
    slot's CLIP zero and its code φ(clap), empty slots a zero code (and χ of it under generator guidance)."""
    pipe, released, _ = _released_pipeline(base_pipe, tmp_path / "w", guidance)
    cap = _Capture(pipe, monkeypatch)
    res = pipe(media["scene"], images=[media["second"]], texts=["rain on a roof"], audios=[media["bell"]],
               text_mode="clip", detect=False, cycle_rounds=2, duration_s=1.0, **MEANS)
    assert [s.kind for s in res.sources] == ["image", "image", "text", "audio"]
    assert res.record["slot_layout"].startswith("slot 0 = empty")
    clips = torch.zeros(1, SLOTS, CLIP, dtype=torch.float64)
    fixed = torch.zeros(1, SLOTS, MANIFOLD, dtype=torch.float64)  # rm_src: zero rows for empty slots
    for slot, s in enumerate(res.sources[:3], start=1):  # images then texts: code and CLIP
        clips[0, slot] = s.clip.double()
        fixed[0, slot] = released.fold_clips(s.clip.double())
    fixed[0, 4] = released.fold_claps(res.sources[3].clap.double())  # audio: code only, CLIP stays zero
    expected = released.cycle_mix(clips, fixed_src=fixed, rounds=2)
    assert len(cap.mixtures) == 2
    for ours, theirs in zip(cap.mixtures, expected):
        assert _cos(ours, theirs) > 0.9999


def test_one_image_with_a_text_takes_the_released_multimodal_layout(base_pipe, media, tmp_path, monkeypatch):
    """The released image path takes no texts or audios; with released weights such a composition is
    laid out as srcs_to_audio lays it out (slot 0 empty, the image in a slot of its own)."""
    pipe, released, _ = _released_pipeline(base_pipe, tmp_path / "w", "generator")
    cap = _Capture(pipe, monkeypatch)
    res = pipe(media["scene"], texts=["a bell"], text_mode="clip", detect=False, cycle_rounds=1, duration_s=1.0,
               **MEANS)
    clips = torch.zeros(1, SLOTS, CLIP, dtype=torch.float64)
    clips[0, 1], clips[0, 2] = res.sources[0].clip.double(), res.sources[1].clip.double()
    (expected,) = released.cycle_mix(clips, fixed_src=torch.zeros(1, SLOTS, MANIFOLD, dtype=torch.float64))
    assert _cos(cap.conditions[0], expected) > 0.9999


@pytest.mark.parametrize("guidance", GUIDANCES)
def test_video_path_gives_the_released_aggregate(base_pipe, media, tmp_path, monkeypatch, guidance):
    """Each frame through the image path (global only: detection off), then the released aggregator
    over the frame mixtures at positions 0..T-1 (a full 10 s window)."""
    pipe, released, agg = _released_pipeline(base_pipe, tmp_path / "w", guidance, with_aggregator=True)
    cap = _Capture(pipe, monkeypatch)
    frame_clips: list[torch.Tensor] = []
    real_embed = pipe.clip.embed_images

    def embed_images(images, **kwargs):
        out = real_embed(images, **kwargs)
        frame_clips.extend(out.cpu())
        return out

    monkeypatch.setattr(pipe.clip, "embed_images", embed_images)
    frames = 4
    pipe(media["video"], detect=False, cycle_rounds=1, frames=frames, **MEANS)
    assert len(frame_clips) == frames  # four distinct frames, one CLIP each
    frame_claps = torch.cat([released.cycle_mix(_image_slots(c.double(), []))[0] for c in frame_clips])
    expected = _released_aggregate(agg, frame_claps[None])
    assert len(cap.mixtures) == 1 and cap.mixtures[0].shape[0] == frames
    for ours, theirs in zip(cap.mixtures[0], frame_claps):
        assert _cos(ours, theirs) > 0.9999
    assert _cos(cap.conditions[0], expected) > 0.9999


def test_our_bundles_keep_the_padding_mask(base_pipe, media, tmp_path, monkeypatch):
    """A bundle of ours: empty slots do not reach the Remixer at all (only the filled slots are passed)."""
    seen: list[tuple] = []
    remixer = base_pipe.ss2a.remixer
    handle = remixer.register_forward_hook(lambda _m, args, _o: seen.append((args[0].shape, args[2])))
    try:
        base_pipe(media["scene"], boxes=[(0, 0, 60, 72)], detect=False, cycle_rounds=1, duration_s=1.0, **MEANS)
    finally:
        handle.remove()
    (shape, mask), = seen
    assert shape[1] == 2 and mask is not None and not base_pipe.ss2a.released_tokens
