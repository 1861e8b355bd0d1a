"""`--method sources` (SS2A) end to end on the tiny stand-ins: composition, stems, stereo, perception
once per image, the global-source fallback, video temporal aggregation and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from foleykit.cli import main
from foleykit.errors import InputError
from foleykit.pipelines.sources import (
    AudioClip,
    pan_gains,
    parse_source_box,
    parse_weighted,
    stereo_from_stems,
)

FAST = ["--models", "tiny", "--steps", "2", "--duration", "1", "--quiet", "--seed", "1"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models on a loaded 2-core machine: OpenMP threads contending with other processes make
    small ops 10-40x slower than one thread (measured), so this module runs single-threaded."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", autouse=True)
def tiny_cache(tiny_models_dir, tmp_path_factory):
    from foleykit.model_sets import TINY_VERSION

    cache = tmp_path_factory.mktemp("fk-cache")
    (cache / f"tiny-v{TINY_VERSION}").symlink_to(tiny_models_dir, target_is_directory=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("FOLEYKIT_CACHE", str(cache))
    yield cache
    mp.undo()


@pytest.fixture(scope="module")
def pipe(tiny_cache):
    """The same cached pipeline the CLI uses in this process."""
    from foleykit.api import load_pipeline

    return load_pipeline("sources", "tiny", None, "auto", None, None, None)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("in")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (96, 160, 3), dtype=np.uint8)).save(d / "scene.jpg")
    sr = 22050  # not CLAP's 48 kHz: resampled
    t = np.arange(int(1.2 * sr)) / sr
    sf.write(d / "dog.wav", np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 660 * t)], 1), sr)
    sf.write(d / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
    sf.write(d / "short.wav", 0.3 * np.sin(np.arange(1600) / 5.0).astype(np.float32), 16000)
    (d / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    video = d / "clip.mp4"
    with av.open(str(video), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        for i in range(50):
            frame = np.full((48, 64, 3), (i * 5) % 255, dtype=np.uint8)
            for pkt in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
    return {"scene": d / "scene.jpg", "dog": d / "dog.wav", "silent": d / "silent.wav", "short": d / "short.wav",
            "corrupt": d / "corrupt.wav", "video": video}


def run_cli(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


# ---------------------------------------------------------------------- CLI end to end


def test_image_text_audio_writes_mix_and_one_stem_per_source(inputs, tmp_path, capsys):
    out, stems = tmp_path / "mix.wav", tmp_path / "stems"
    code = run_cli("generate", str(inputs["scene"]), "--method", "sources", "--text", "rain", "--audio",
                   str(inputs["dog"]), "--stems", str(stems), "-o", str(out), *FAST)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    wave, sr = sf.read(out)
    assert sr == 16000 and wave.shape == (16000,) and np.isfinite(wave).all() and wave.std() > 1e-4
    side = json.loads((tmp_path / "mix.wav.json").read_text())
    sources = side["sources"]
    kinds = [s["kind"] for s in sources]
    assert kinds[0] == "image" and kinds[-2:] == ["text", "audio"]  # global, detections..., text, audio
    assert set(kinds[1:-2]) <= {"detected"}
    files = sorted(p.name for p in stems.glob("*.wav"))
    assert len(files) == len(sources) and files[0] == "00-image.wav"
    assert files[-2].endswith("-text-rain.wav") and files[-1].endswith("-audio-dog.wav")
    for f in files:
        w, s = sf.read(stems / f)
        assert s == 16000 and w.shape == (16000,)
        assert json.loads((stems / (f + ".json")).read_text())["source"]["kind"] in kinds
    assert side["output"]["channels"] == 1
    # The two-channel 22.05 kHz dog.wav was downmixed (and said so) and resampled by CLAP.
    assert "downmixed to mono" in captured.err
    assert sources[-1]["channels"] == 2 and sources[-1]["sample_rate"] == 22050
    assert not list(tmp_path.glob(".foleykit-*")) and not list(stems.glob(".foleykit-*"))


def test_stereo_pans_a_left_box_to_the_left(inputs, tmp_path):
    out = tmp_path / "stereo.wav"
    assert run_cli("generate", str(inputs["scene"]), "--method", "sources", "--box", "0,0,24,96", "--stereo",
                   "-o", str(out), *FAST) == 0
    wave, _ = sf.read(out)
    assert wave.ndim == 2 and wave.shape[1] == 2
    rms_left, rms_right = np.sqrt((wave**2).mean(axis=0))
    assert rms_left > 1.2 * rms_right
    side = json.loads((tmp_path / "stereo.wav.json").read_text())
    assert [s["kind"] for s in side["sources"]] == ["image", "box"]  # a box turns detection off by default
    assert side["sources"][1]["pan_position"] == pytest.approx(12 / 160)
    assert side["output"]["channels"] == 2 and "equal-power" in side["stereo"]


def test_pan_law_and_stereo_from_stems_by_hand():
    assert pan_gains(0.5) == pytest.approx((2**-0.5, 2**-0.5))
    assert pan_gains(0.0) == pytest.approx((1.0, 0.0)) and pan_gains(1.0) == pytest.approx((0.0, 1.0), abs=1e-12)
    t = np.arange(1000)
    a, b = np.sin(t / 7.0).astype(np.float32), 3 * np.sin(t / 3.0).astype(np.float32)
    st = stereo_from_stems([a, b], [1.0, 0.5], [2.0, 1.0])
    rms = lambda x: np.sqrt(np.mean(x**2))
    # a: hard right at weight 2 (unit RMS) -> R only; b: centred at weight 1 -> both at 1/sqrt(2).
    assert np.allclose(st[0], 2**-0.5 * b / rms(b), atol=1e-5)
    assert np.allclose(st[1], 2 * a / rms(a) + 2**-0.5 * b / rms(b), atol=1e-4)


# ---------------------------------------------------------------------- perception runs once per image


def test_detection_and_clip_run_once_per_image_across_cycle_rounds(pipe):
    img = Image.fromarray(np.random.default_rng(7).integers(0, 255, (80, 120, 3), dtype=np.uint8))
    det = pipe.detector
    calls = {"clip": 0}
    real = pipe.clip.embed_images

    def counting(images, **kw):
        calls["clip"] += 1
        return real(images, **kw)

    pipe.clip.embed_images = counting
    try:
        before = det.calls
        res = pipe(img, texts=["wind"], text_mode="clip", cycle_rounds=5, cycle_samples=4, duration_s=0.5,
                   num_inference_steps=1, seed=3, progress=False)
        assert det.calls == before + 1 and calls["clip"] == 1  # one OWLv2 pass, one CLIP batch (global + crops)
        assert res.record["cycle_mix"]["rounds"] == 5
        again = pipe(img, texts=["wind"], text_mode="clip", cycle_rounds=2, duration_s=0.5, num_inference_steps=1,
                     seed=4, progress=False)
        assert det.calls == before + 1 and calls["clip"] == 1  # the same picture again: perception is cached
        assert [s["kind"] for s in again.record["sources"]] == [s["kind"] for s in res.record["sources"]]
    finally:
        pipe.clip.embed_images = real


def test_no_detection_falls_back_to_the_global_source(inputs, tmp_path, capsys):
    out = tmp_path / "fallback.wav"
    assert run_cli("generate", str(inputs["scene"]), "--method", "sources", "--threshold", "1", "-o", str(out),
                   *FAST) == 0
    err = capsys.readouterr().err
    assert "no sound source detected" in err and "whole image" in err
    side = json.loads((tmp_path / "fallback.wav.json").read_text())
    assert [s["kind"] for s in side["sources"]] == ["image"]
    assert any("no sound source detected" in n for n in side["notes"])


def test_weights_and_parsing(pipe):
    assert parse_weighted("rain@0.5") == ("rain", 0.5)
    assert parse_weighted("user@example.com") == ("user@example.com", 1.0)
    assert parse_source_box("1,2,30,40@2") == ((1.0, 2.0, 30.0, 40.0), 2.0)
    img = Image.fromarray(np.full((64, 64, 3), 90, dtype=np.uint8))
    tone = AudioClip((0.3 * np.sin(np.arange(24000) / 4.0)).astype(np.float32), 48000, "tone")
    res = pipe(img, texts=[("rain", 3.0)], audios=[(tone, 0.5)], detect=False, text_mode="clip", duration_s=0.5,
               num_inference_steps=1, seed=0, progress=False)
    assert [s["weight"] for s in res.record["sources"]] == [1.0, 3.0, 0.5]
    with pytest.raises(InputError, match="weight must be a positive number"):
        pipe(img, texts=[("rain", 0.0)], detect=False, progress=False)


def test_video_goes_through_temporal_aggregation(pipe, inputs):
    before = pipe.detector.calls
    res = pipe(inputs["video"], texts=["engine"], text_mode="clip", frames=4, duration_s=1.0, num_inference_steps=1,
               seed=2, progress=False)
    rec = res.record
    assert rec["input_kind"] == "video" and rec["video"]["frames_per_window"] == 4
    assert "temporal aggregator" in rec["video"]["aggregation"]
    assert pipe.detector.calls - before == 4  # each of the 4 (distinct) frames detected once
    assert res.mix.waveform.shape == (16000,)
    with pytest.raises(InputError, match="stems and stereo are for image inputs"):
        pipe(inputs["video"], stereo=True, progress=False)


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--audio", "{silent}"], "is silent"),
        (["--audio", "{short}"], "must be at least 0.5 s"),
        (["--audio", "{corrupt}"], "not readable audio"),
        (["--audio", "{missing}"], "audio file not found"),
        (["--box", "100,10,200,50"], "reaches outside the 160x96 image"),
        (["--box", "10,10,10,50"], "zero area"),
        (["--text", "  "], "text source is empty"),
        (["--text", "a", "--text", "b", "--text", "c", "--max-sources", "3"], "at most 2 sound sources"),
        (["--text", "rain@-1"], "weight must be a positive number"),
        (["--criterion", "loudest"], "criterion must be one of"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(inputs, tmp_path, capsys, extra, message):
    out, stems = tmp_path / "out.wav", tmp_path / "stems"
    paths = {k: str(v) for k, v in inputs.items()} | {"missing": str(tmp_path / "nope.wav")}
    args = [a.format(**paths) for a in extra]
    assert run_cli("generate", str(inputs["scene"]), "--method", "sources", *args, "--stems", str(stems),
                   "-o", str(out), *FAST) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("foleykit: error:") and message in err and len(err.splitlines()) == 1
    assert not out.exists() and not stems.exists() and list(tmp_path.iterdir()) == []


def test_stem_clash_leaves_no_partial_output(inputs, tmp_path, capsys):
    out, stems = tmp_path / "mix.wav", tmp_path / "stems"
    stems.mkdir()
    (stems / "00-image.wav").write_bytes(b"keep me")
    assert run_cli("generate", str(inputs["scene"]), "--method", "sources", "--no-detect", "--stems", str(stems),
                   "-o", str(out), *FAST) == 1
    assert "already holds 00-image.wav" in capsys.readouterr().err
    assert not out.exists() and sorted(p.name for p in stems.iterdir()) == ["00-image.wav"]
    assert (stems / "00-image.wav").read_bytes() == b"keep me"


# ---------------------------------------------------------------------- SS2A bundles and training


def test_train_commands_build_a_bundle_that_generates(inputs, tmp_path, capsys):
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    n, m = 24, 4
    save_file({"clip": torch.randn(n, 768, generator=g), "clap": torch.randn(n, 512, generator=g)}, tmp_path / "pairs.safetensors")
    pad = torch.zeros(n, m, dtype=torch.bool)
    pad[:, 3] = True
    save_file({"clips": torch.randn(n, m, 768, generator=g), "target_clap": torch.randn(n, 512, generator=g),
               "padding_mask": pad}, tmp_path / "scenes.safetensors")
    save_file({"frame_claps": torch.randn(n, 8, 512, generator=g), "target_clap": torch.randn(n, 512, generator=g)},
              tmp_path / "windows.safetensors")
    bundle = tmp_path / "bundle"
    common = ["--epochs", "1", "--seed", "0", "--device", "cpu", "-q"]
    assert run_cli("train", "manifold", str(tmp_path / "pairs.safetensors"), "-o", str(bundle / "manifold"),
                   "--manifold-dim", "16", "--widths", "32,32", "--batch-size", "8", *common) == 0
    assert run_cli("train", "remixer", str(tmp_path / "scenes.safetensors"), "-o", str(bundle / "remixer"),
                   "--manifold", str(bundle / "manifold"), "--embed-dim", "32", "--layers", "1", "--heads", "2",
                   *common) == 0
    assert run_cli("train", "temporal", str(tmp_path / "windows.safetensors"), "-o", str(bundle / "temporal"),
                   "--heads", "2", *common) == 0
    out = tmp_path / "mix.wav"
    assert run_cli("generate", str(inputs["scene"]), "--ss2a", str(bundle), "--no-detect", "-o", str(out), *FAST) == 0
    side = json.loads((tmp_path / "mix.wav.json").read_text())
    assert side["method"] == "sources" and side["ss2a"]["source"] == str(bundle) and side["ss2a"]["manifold_dim"] == 16

    # Bad training files: one clear line each.
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 40)
    capsys.readouterr()
    assert run_cli("train", "manifold", str(tmp_path / "junk.safetensors"), "-o", str(tmp_path / "m2"), *common) == 1
    assert "cannot read embedding pairs" in capsys.readouterr().err
    assert run_cli("train", "temporal", str(tmp_path / "pairs.safetensors"), "-o", str(tmp_path / "t2"), *common) == 1
    assert "missing tensor 'frame_claps'" in capsys.readouterr().err
    assert run_cli("train", "remixer", str(tmp_path / "scenes.safetensors"), "-o", str(tmp_path / "r2"), *common) == 1
    assert "pass --manifold" in capsys.readouterr().err
    assert not (tmp_path / "m2").exists() and not (tmp_path / "t2").exists()


def test_released_checkpoint_and_bad_bundles_load_or_fail_clearly(tmp_path):
    from foleykit.modules.manifold import CMSSManifold, ManifoldConfig
    from foleykit.modules.remixer import RemixerConfig, SoundSourceRemixer
    from foleykit.modules.ss2a_checkpoint import released_config_from_configs, released_state_from_modules
    from foleykit.pipelines.ss2a_bundle import load_ss2a

    man = CMSSManifold(ManifoldConfig(manifold_dim=16, projector_widths=(32, 32), reconstructor_widths=(32, 32)))
    rem = SoundSourceRemixer(RemixerConfig(manifold_dim=16, embed_dim=32, num_layers=1, num_heads=2))
    torch.save(released_state_from_modules(man, rem), tmp_path / "ssv2a.pth")
    (tmp_path / "ssv2a.json").write_text(json.dumps(released_config_from_configs(man.config, rem.config)))
    bundle = load_ss2a(tmp_path / "ssv2a.pth")
    assert bundle.trained and bundle.remixer.config.attend_to_padding and bundle.temporal is None
    assert any("averaged" in n for n in bundle.notes)
    x = torch.randn(3, 768)
    assert torch.allclose(bundle.manifold.fold_clips(x), man.eval().fold_clips(x), atol=1e-5)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "manifold").mkdir()
    with pytest.raises(InputError, match="no remixer sub-folder"):
        load_ss2a(tmp_path / "half")
    with pytest.raises(InputError, match="do not exist"):
        load_ss2a(tmp_path / "nowhere")
    untrained = load_ss2a(None)  # no weights anywhere: runs, and says the sound is not meaningful
    assert not untrained.trained and "untrained" in untrained.notes[0]
    assert untrained.remixer.config.max_sources == 64 and untrained.temporal is not None


def test_cycle_mix_slot_weights_by_hand():
    from foleykit.modules.cycle_mix import cycle_mix, pack_sources, score_candidates
    from foleykit.modules.manifold import CMSSManifold, ManifoldConfig
    from foleykit.modules.remixer import RemixerConfig, SoundSourceRemixer

    sim = torch.tensor([[[0.2, 0.4, 0.9, 0.0]]])  # one candidate, 4 slots
    scored = torch.tensor([[False, True, True, False]])  # feedback slot and a padding slot are not scored
    w = torch.tensor([[5.0, 1.0, 3.0, 7.0]])  # over the scored slots: [1, 3] -> mean-1 weights [0.5, 1.5]
    assert score_candidates(sim, scored, "relevance", w).item() == pytest.approx((0.5 * 0.4 + 1.5 * 0.9) / 2)
    var = (0.5 * (0.4 - 0.775) ** 2 + 1.5 * (0.9 - 0.775) ** 2) / 2
    assert score_candidates(sim, scored, "spread", w).item() == pytest.approx(var**0.5)
    assert score_candidates(sim, scored, "spread", torch.ones(1, 4)).item() == pytest.approx(
        score_candidates(sim, scored, "spread").item())

    torch.manual_seed(0)
    man = CMSSManifold(ManifoldConfig(manifold_dim=16, projector_widths=(32,), reconstructor_widths=(32,)))
    rem = SoundSourceRemixer(RemixerConfig(manifold_dim=16, embed_dim=16, num_layers=1, num_heads=2))
    slots = pack_sources(torch.randn(3, 768), torch.randn(1, 512), torch.randn(768))
    runs = [cycle_mix(man, rem, slots, rounds=2, samples=8, generator=torch.Generator().manual_seed(1), slot_weights=sw)
            for sw in (None, torch.full((1, 5), 2.0))]
    assert torch.equal(runs[0].clap, runs[1].clap)  # equal weights = no weights
    with pytest.raises(InputError, match="slot_weights"):
        cycle_mix(man, rem, slots, slot_weights=torch.ones(1, 3))
