"""The AudioLDM-CLAP converter against the original implementation's forward pass.

``laion_clap`` cannot be a test dependency here: it pins numpy<2 and imports torchvision and
torchaudio (checked with ``pip download --no-deps laion_clap`` 1.1.7 and its requirements). So the
reference below is an independent re-derivation of the original computation from the LAION-CLAP /
AudioLDM source, working directly on a random checkpoint in the ORIGINAL key layout
(``cond_stage_model.model.{text_branch, text_projection, audio_branch, audio_projection}``):

* text: LAION-CLAP's text branch *is* transformers' ``RobertaModel`` (its ``pooler_output``), then
  ``text_projection`` = Sequential(Linear, ReLU, Linear), then L2 normalisation;
* audio: the unfused HTSAT path (``HTSAT_Swin_Transformer.forward`` with ``enable_fusion=False``):
  log-mel of the 10-s repeat-padded 48 kHz waveform (periodic Hann 1024, hop 480, centred reflect
  padding, power 2, 64 Slaney mels 50-14000 Hz, 10*log10 with amin 1e-10, ref 1, no top_db),
  ``bn0`` over mel bins, ``reshape_wav2img`` (bicubic to 1024 frames, fold 4 time chunks into a
  256x256 image), patch embedding + LayerNorm, Swin stages (window attention with relative position
  bias, shifted windows with the -100 mask on odd blocks, GELU MLP, patch merging x0,x1,x2,x3),
  final LayerNorm, the grouped (freq_ratio 4) average that gives ``embedding``, then
  ``audio_projection`` and L2 normalisation. All written here with plain torch/numpy ops.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from foleykit.errors import InputError, OutputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

P = "cond_stage_model.model."
EMBED, DEPTHS, HEADS, WINDOW, MELS = 24, (2, 2), (1, 2), 8, 64  # a tiny HTSAT (24-d heads, as HTSAT)
TEXT_HIDDEN, JOINT = 64, 512  # a tiny RoBERTa (64-d heads, as roberta-base)


# -- a random checkpoint in the original layout ---------------------------------------------------------


def _rel_index(w):
    coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    rel[:, :, 0] += w - 1
    rel[:, :, 1] += w - 1
    rel[:, :, 0] *= 2 * w - 1
    return rel.sum(-1)


def original_state(seed=0, vocab_size=261, embed=EMBED, depths=DEPTHS, heads_per_stage=HEADS, text_hidden=TEXT_HIDDEN,
                   text_layers=2, max_positions=80, device="cpu"):
    """{original key: tensor} of LAION-CLAP as AudioLDM stores it (plus parts the converter drops)."""
    from transformers import RobertaConfig, RobertaModel

    g = torch.Generator().manual_seed(seed) if device == "cpu" else None

    def r(*shape, s=0.2):
        return torch.randn(*shape, generator=g, device=device) * s

    sd = {}
    torch.manual_seed(seed)
    with torch.device(device):
        roberta = RobertaModel(RobertaConfig(
            vocab_size=vocab_size, hidden_size=text_hidden, num_hidden_layers=text_layers,
            num_attention_heads=max(1, text_hidden // 64), intermediate_size=4 * text_hidden // (2 if text_hidden < 128 else 1),
            max_position_embeddings=max_positions, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1,
            bos_token_id=0, eos_token_id=2)).eval()
    sd.update({f"text_branch.{k}": v for k, v in roberta.state_dict().items()})
    sd.update({"text_projection.0.weight": r(JOINT, text_hidden), "text_projection.0.bias": r(JOINT),
               "text_projection.2.weight": r(JOINT, JOINT, s=0.05), "text_projection.2.bias": r(JOINT),
               "text_transform.sequential.0.weight": r(JOINT, JOINT)})
    a = "audio_branch."
    sd.update({a + "bn0.weight": 1 + r(MELS), a + "bn0.bias": r(MELS), a + "bn0.running_mean": r(MELS, s=5) - 20,
               a + "bn0.running_var": 10 + r(MELS).abs() * 10, a + "bn0.num_batches_tracked": torch.tensor(7, device=device),
               a + "patch_embed.proj.weight": r(embed, 1, 4, 4, s=0.1), a + "patch_embed.proj.bias": r(embed),
               a + "patch_embed.norm.weight": 1 + r(embed), a + "patch_embed.norm.bias": r(embed),
               a + "spectrogram_extractor.stft.conv_real.weight": r(513, 1, 1024),
               a + "logmel_extractor.melW": r(513, MELS), a + "tscam_conv.weight": r(527, embed * 2, 2, 3),
               a + "head.weight": r(527, 527)})
    for i, (depth, heads) in enumerate(zip(depths, heads_per_stage)):
        c = embed * 2**i
        for j in range(depth):
            b = f"{a}layers.{i}.blocks.{j}."
            sd.update({b + "norm1.weight": 1 + r(c), b + "norm1.bias": r(c),
                       b + "attn.qkv.weight": r(3 * c, c), b + "attn.qkv.bias": r(3 * c),
                       b + "attn.proj.weight": r(c, c), b + "attn.proj.bias": r(c),
                       b + "attn.relative_position_bias_table": r((2 * WINDOW - 1) ** 2, heads),
                       b + "attn.relative_position_index": _rel_index(WINDOW).to(device),
                       b + "norm2.weight": 1 + r(c), b + "norm2.bias": r(c),
                       b + "mlp.fc1.weight": r(4 * c, c), b + "mlp.fc1.bias": r(4 * c),
                       b + "mlp.fc2.weight": r(c, 4 * c), b + "mlp.fc2.bias": r(c)})
            if j % 2:
                sd[b + "attn_mask"] = torch.zeros(64, WINDOW**2, WINDOW**2, device=device)
        if i < len(depths) - 1:
            d = f"{a}layers.{i}.downsample."
            sd.update({d + "reduction.weight": r(2 * c, 4 * c), d + "norm.weight": 1 + r(4 * c),
                       d + "norm.bias": r(4 * c)})
    top = embed * 2 ** (len(depths) - 1)
    sd.update({a + "norm.weight": 1 + r(top), a + "norm.bias": r(top),
               "audio_projection.0.weight": r(JOINT, top), "audio_projection.0.bias": r(JOINT),
               "audio_projection.2.weight": r(JOINT, JOINT, s=0.05), "audio_projection.2.bias": r(JOINT),
               "logit_scale_a": torch.tensor(math.log(10.0), device=device),
               "logit_scale_t": torch.tensor(math.log(10.0), device=device)})
    return sd, roberta


def write_ckpt(path, sd, prefix=P):
    full = {prefix + k: v for k, v in sd.items()}
    full["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(4, 8, 3, 3)  # the rest of AudioLDM
    torch.save({"state_dict": full}, path)
    return path


# -- the original forward, re-derived ---------------------------------------------------------------------


def original_text(sd, roberta, ids, mask):
    with torch.no_grad():
        x = roberta(input_ids=ids, attention_mask=mask).pooler_output
        x = F.linear(F.relu(F.linear(x, sd["text_projection.0.weight"], sd["text_projection.0.bias"])),
                     sd["text_projection.2.weight"], sd["text_projection.2.bias"])
    return F.normalize(x, dim=-1)


def _slaney_mel(sr=48_000, n_fft=1024, n_mels=64, fmin=50.0, fmax=14_000.0):
    def hz_to_mel(f):
        f = np.asarray(f, float)
        lin = f / (200.0 / 3)
        return np.where(f >= 1000, 15.0 + np.log(np.maximum(f, 1e-12) / 1000.0) / (np.log(6.4) / 27.0), lin)

    def mel_to_hz(m):
        m = np.asarray(m, float)
        return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * 200.0 / 3)

    hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    fdiff, ramps = np.diff(hz), hz[:, None] - freqs[None, :]
    w = np.maximum(0, np.minimum(-ramps[:-2] / fdiff[:-1, None], ramps[2:] / fdiff[1:, None]))
    return w * (2.0 / (hz[2:] - hz[:-2]))[:, None]


def original_logmel(wave48):
    n = 480_000
    wave = np.tile(wave48, n // wave48.size)
    wave = np.pad(wave, (0, n - wave.size))
    padded = np.pad(wave.astype(np.float64), 512, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, 1024)[::480]
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)
    power = np.abs(np.fft.rfft(frames * hann, axis=-1)) ** 2
    mel = power @ _slaney_mel().T
    return torch.tensor(10 * np.log10(np.maximum(mel, 1e-10)), dtype=torch.float32)  # [1001, 64]


def _windows(x, w):
    B, H, W, C = x.shape
    return x.view(B, H // w, w, W // w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, C)


def _unwindows(x, w, B, H, W):
    return x.view(B, H // w, W // w, w, w, -1).permute(0, 1, 3, 2, 4, 5).reshape(B, H, W, -1)


def _shift_mask(H, W, w, s):
    img = torch.zeros(1, H, W, 1)
    cnt = 0
    for hs in (slice(0, -w), slice(-w, -s), slice(-s, None)):
        for ws in (slice(0, -w), slice(-w, -s), slice(-s, None)):
            img[:, hs, ws, :] = cnt
            cnt += 1
    mw = _windows(img, w).squeeze(-1)
    m = mw[:, None, :] - mw[:, :, None]
    return m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0)


def _block(sd, b, x, H, W, heads, shift):
    B, L, C = x.shape
    short = x
    x = F.layer_norm(x, (C,), sd[b + "norm1.weight"], sd[b + "norm1.bias"], 1e-5).view(B, H, W, C)
    if shift:
        x = torch.roll(x, (-shift, -shift), (1, 2))
    xw = _windows(x, WINDOW)
    n = WINDOW * WINDOW
    qkv = F.linear(xw, sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"]).reshape(-1, n, 3, heads, C // heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    attn = (q * (C // heads) ** -0.5) @ k.transpose(-2, -1)
    bias = sd[b + "attn.relative_position_bias_table"][_rel_index(WINDOW).view(-1)].view(n, n, heads)
    attn = attn + bias.permute(2, 0, 1)[None]
    if shift:
        mask = _shift_mask(H, W, WINDOW, shift)
        attn = attn.view(-1, mask.shape[0], heads, n, n) + mask[None, :, None]
        attn = attn.view(-1, heads, n, n)
    out = (attn.softmax(-1) @ v).transpose(1, 2).reshape(-1, n, C)
    out = F.linear(out, sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"])
    x = _unwindows(out, WINDOW, B, H, W)
    if shift:
        x = torch.roll(x, (shift, shift), (1, 2))
    x = short + x.reshape(B, L, C)
    h = F.layer_norm(x, (C,), sd[b + "norm2.weight"], sd[b + "norm2.bias"], 1e-5)
    h = F.linear(F.gelu(F.linear(h, sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"])),
                 sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"])
    return x + h


def original_audio(sd, wave48):
    a = "audio_branch."
    with torch.no_grad():
        x = original_logmel(wave48)[None, None]  # [1, 1, T, F]
        x = (x - sd[a + "bn0.running_mean"]) / torch.sqrt(sd[a + "bn0.running_var"] + 1e-5)
        x = x * sd[a + "bn0.weight"] + sd[a + "bn0.bias"]  # bn0 over the mel axis
        x = F.interpolate(x, (1024, x.shape[3]), mode="bicubic", align_corners=True)  # reshape_wav2img
        x = x.permute(0, 1, 3, 2).reshape(1, 1, 64, 4, 256).permute(0, 1, 3, 2, 4).reshape(1, 1, 256, 256)
        frames = x.shape[2]
        x = F.conv2d(x, sd[a + "patch_embed.proj.weight"], sd[a + "patch_embed.proj.bias"], stride=4)
        x = x.flatten(2).transpose(1, 2)
        x = F.layer_norm(x, (x.shape[-1],), sd[a + "patch_embed.norm.weight"], sd[a + "patch_embed.norm.bias"], 1e-5)
        H = W = 64
        for i, (depth, heads) in enumerate(zip(DEPTHS, HEADS)):
            for j in range(depth):
                x = _block(sd, f"{a}layers.{i}.blocks.{j}.", x, H, W, heads, WINDOW // 2 if j % 2 else 0)
            if i < len(DEPTHS) - 1:
                d = f"{a}layers.{i}.downsample."
                v = x.view(1, H, W, -1)
                x = torch.cat([v[:, 0::2, 0::2], v[:, 1::2, 0::2], v[:, 0::2, 1::2], v[:, 1::2, 1::2]], -1)
                x = x.view(1, -1, x.shape[-1])
                x = F.layer_norm(x, (x.shape[-1],), sd[d + "norm.weight"], sd[d + "norm.bias"], 1e-5)
                x = F.linear(x, sd[d + "reduction.weight"])
                H, W = H // 2, W // 2
        C = x.shape[-1]
        x = F.layer_norm(x, (C,), sd[a + "norm.weight"], sd[a + "norm.bias"], 1e-5)
        sf = frames // 2 ** (len(DEPTHS) - 1) // 4
        x = x.permute(0, 2, 1).reshape(1, C, sf, sf)
        c_freq = sf // 4
        x = x.reshape(1, C, sf // c_freq, c_freq, sf).permute(0, 1, 3, 2, 4).reshape(1, C, c_freq, -1)
        emb = x.flatten(2).mean(-1)
        emb = F.linear(F.relu(F.linear(emb, sd["audio_projection.0.weight"], sd["audio_projection.0.bias"])),
                       sd["audio_projection.2.weight"], sd["audio_projection.2.bias"])
    return F.normalize(emb, dim=-1)[0]


# -- tests ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def converted(tmp_path_factory, tiny_models_dir):
    from foleykit.encoders.audioldm_clap import convert_audioldm_clap

    root = tmp_path_factory.mktemp("conv")
    sd, roberta = original_state()
    ckpt = write_ckpt(root / "audioldm-s-full-v2.ckpt", sd)
    out = convert_audioldm_clap(ckpt, root / "audioldm-clap", tokenizer=str(tiny_models_dir / "audioldm-s-full-v2"))
    return out, sd, roberta


def test_text_tower_matches_the_original(converted):
    from transformers import AutoTokenizer, ClapModel

    out, sd, roberta = converted
    tok = AutoTokenizer.from_pretrained(out)
    texts = ["a dog barking", "rain on a tin roof, far away", ""]
    ids = tok(texts, padding=True, return_tensors="pt")
    model = ClapModel.from_pretrained(out).eval()
    with torch.no_grad():
        ours = model.get_text_features(**ids).pooler_output
    ref = original_text(sd, roberta, ids.input_ids, ids.attention_mask)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("seconds", [1.0, 0.7])  # exact repeats, and repeats + zero padding
def test_audio_tower_and_front_end_match_the_original(converted, seconds):
    from foleykit.encoders.clap import ClapEncoder

    out, sd, _ = converted
    rng = np.random.default_rng(1)
    t = np.arange(int(48_000 * seconds)) / 48_000
    wave = (0.4 * np.sin(2 * np.pi * 330 * t) * np.exp(-2 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    ours = ClapEncoder.from_pretrained(str(out)).embed_audio([wave], 48_000)[0]
    ref = original_audio(sd, wave)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)  # measured: 3e-8 (a 0-Hz fmin is off by 3e-2)


def test_real_size_audioldm_s_layout_maps_one_to_one():
    """At AudioLDM-S's real sizes (HTSAT-tiny: embed 96, depths 2/2/6/2, heads 4/8/16/32, window 8;
    roberta-base: 50265 x 768, 12 layers, 12 heads, 514 positions), shapes only (meta tensors): the
    derived config is HTSAT-tiny + RoBERTa-base and every tensor lands on a ClapModel tensor of its shape."""
    from transformers import ClapModel

    from foleykit.encoders.audioldm_clap import check_layout, clap_config, rename_state_dict

    sd, _ = original_state(vocab_size=50265, embed=96, depths=(2, 2, 6, 2), heads_per_stage=(4, 8, 16, 32),
                           text_hidden=768, text_layers=12, max_positions=514, device="meta")
    config = clap_config(sd, "real-size")
    a, t = config.audio_config, config.text_config
    assert (a.patch_embeds_hidden_size, a.hidden_size, a.depths, a.num_attention_heads, a.window_size) == (
        96, 768, [2, 2, 6, 2], [4, 8, 16, 32], 8)
    assert (t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.intermediate_size, t.vocab_size) == (
        768, 12, 12, 3072, 50265)
    assert config.projection_dim == 512
    with torch.device("meta"):
        model = ClapModel(config)
    check_layout(rename_state_dict(sd), model.state_dict(), "real-size")


def test_converted_folder_is_a_complete_clap_model_folder(converted):
    from transformers import ClapFeatureExtractor

    out, _, _ = converted
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer_config.json"):
        assert (out / name).is_file()
    fe = ClapFeatureExtractor.from_pretrained(out)
    assert (fe.sampling_rate, fe.hop_length, fe.feature_size, fe.frequency_min, fe.frequency_max) == (48_000, 480, 64, 50, 14_000)


def run_cli(*args: str) -> int:
    from foleykit.cli import main

    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_converts_and_refuses_a_non_empty_output(tmp_path, tiny_models_dir, capsys):
    sd, _ = original_state(seed=3)
    ckpt = write_ckpt(tmp_path / "a.ckpt", sd)
    args = ["models", "import-audioldm-clap", str(ckpt), "-o", str(tmp_path / "out"),
            "--tokenizer", str(tiny_models_dir / "audioldm-s-full-v2")]
    assert run_cli(*args) == 0
    assert (tmp_path / "out" / "model.safetensors").is_file()
    capsys.readouterr()
    assert run_cli(*args) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not empty" in err[0]
    torch.save({"state_dict": {"model.x": torch.zeros(1)}}, tmp_path / "plain.ckpt")
    assert run_cli("models", "import-audioldm-clap", str(tmp_path / "plain.ckpt"), "-o", str(tmp_path / "o2")) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cond_stage_model" in err[0] and not (tmp_path / "o2").exists()


# -- bad input: one line, nothing written ---------------------------------------------------------------


def _convert(tmp_path, ckpt, tiny):
    from foleykit.encoders.audioldm_clap import convert_audioldm_clap

    return convert_audioldm_clap(ckpt, tmp_path / "out", tokenizer=str(tiny / "audioldm-s-full-v2"))


def _assert_nothing_written(tmp_path):
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_checkpoint_without_cond_stage_model_is_refused(tmp_path, tiny_models_dir):
    torch.save({"state_dict": {"model.diffusion_model.x": torch.zeros(2)}}, tmp_path / "x.ckpt")
    with pytest.raises(InputError, match="no 'cond_stage_model.' keys") as err:
        _convert(tmp_path, tmp_path / "x.ckpt", tiny_models_dir)
    assert "\n" not in str(err.value) and "x.ckpt" in str(err.value)
    _assert_nothing_written(tmp_path)


def test_truncated_and_foreign_checkpoints_are_refused(tmp_path, tiny_models_dir):
    sd, _ = original_state(seed=1)
    good = write_ckpt(tmp_path / "good.ckpt", sd)
    data = good.read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.ckpt").write_text("not a checkpoint\n")
    torch.save([1, 2, 3], tmp_path / "list.ckpt")
    for name in ("cut.ckpt", "text.ckpt", "list.ckpt"):
        with pytest.raises(InputError) as err:
            _convert(tmp_path, tmp_path / name, tiny_models_dir)
        assert "\n" not in str(err.value) and name in str(err.value)
    _assert_nothing_written(tmp_path)


def test_audioldm_m_htsat_base_is_refused(tmp_path, tiny_models_dir):
    sd, _ = original_state(seed=2, embed=128)  # HTSAT-base width (AudioLDM-M's CLAP: another space)
    ckpt = write_ckpt(tmp_path / "audioldm-m-full.ckpt", sd)
    with pytest.raises(InputError, match="HTSAT-base") as err:
        _convert(tmp_path, ckpt, tiny_models_dir)
    assert "\n" not in str(err.value)
    _assert_nothing_written(tmp_path)


def test_a_layout_mismatch_is_refused(tmp_path, tiny_models_dir):
    sd, _ = original_state(seed=4)
    del sd["audio_branch.layers.1.blocks.0.mlp.fc2.weight"]
    with pytest.raises(InputError, match="not the LAION-CLAP layout"):
        _convert(tmp_path, write_ckpt(tmp_path / "odd.ckpt", sd), tiny_models_dir)
    _assert_nothing_written(tmp_path)


def test_output_must_be_empty_or_new(tmp_path, tiny_models_dir):
    sd, _ = original_state(seed=5)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty"):
        _convert(tmp_path, write_ckpt(tmp_path / "a.ckpt", sd), tiny_models_dir)
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
