"""What users expect around video: --version, an mp4 cut to the sound, the original soundtrack kept or
ducked, a still video from a picture, sidecars describing the written file, the objects warning."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from foleykit.cli import app
from foleykit.data.synthetic import write_image, write_video
from foleykit.errors import InputError
from foleykit.io.video import MUX_SAMPLE_RATE, _with_original, probe_video, read_video_audio
from foleykit.io.audio import resample

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = ["--models", "tiny", "--steps", 2, "--device", "cpu", "-q", "--seed", 3]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    return {"video": write_video(d / "clip.mp4", 1, seconds=3.0), "image": write_image(d / "scene.png", 2, (96, 72)),
            "mute": write_video(d / "mute.mp4", 3, seconds=1.0, audio=False)}


def test_version():
    from importlib.metadata import version

    res = invoke("--version")
    assert res.exit_code == 0 and res.output.strip() == f"foleykit {version('foleykit')}"


def test_duck_and_keep_mix_the_original_in_closed_form(media):
    seconds = 1.5
    track = np.zeros((2, round(seconds * MUX_SAMPLE_RATE)), np.float32)
    orig, sr = read_video_audio(media["video"], 0.0, seconds, channels=2)
    orig = resample(orig, sr, MUX_SAMPLE_RATE)[:, :track.shape[1]]
    ducked = _with_original(track, media["video"], "duck", 20.0)
    np.testing.assert_allclose(ducked[:, :orig.shape[1]], 0.1 * orig, rtol=0, atol=1e-7)  # -20 dB = x0.1
    kept = _with_original(track + 0.25, media["video"], "keep", 0.0)
    np.testing.assert_allclose(kept[:, :orig.shape[1]], 0.25 + orig, rtol=0, atol=1e-6)
    assert _with_original(track, media["video"], "replace", 12.0) is track
    with pytest.raises(InputError, match="original audio must be one of"):
        _with_original(track, media["video"], "louder", 0.0)


def test_video_mp4_is_cut_to_the_sound_and_the_sidecar_tells_the_truth(media, tmp_path, tiny_cache_env):
    out = tmp_path / "clip_foley.mp4"
    res = invoke("generate", media["video"], "-o", out, "--duration", 1, "--original-audio", "duck", *TINY)
    assert res.exit_code == 0, res.output + repr(res.exception)
    info = probe_video(out)
    assert info.duration_s == pytest.approx(1.0, abs=0.05)  # not 3 s with 2 s of silence
    side = json.loads((tmp_path / "clip_foley.mp4.json").read_text())
    assert side["output"]["sample_rate"] == MUX_SAMPLE_RATE and side["output"]["channels"] == 2
    assert side["output"]["duration_s"] == pytest.approx(1.0, abs=0.05)
    assert side["parameters"]["original_audio"] == "duck"
    assert any("cut to the sound's 1.00 s (of 3.00 s)" in n for n in side.get("notes", []))
    wav = tmp_path / "clip.wav"
    assert invoke("generate", media["video"], "-o", wav, "--duration", 1, *TINY).exit_code == 0
    side = json.loads((tmp_path / "clip.wav.json").read_text())
    assert (side["output"]["sample_rate"], side["output"]["channels"]) == (16000, 1)
    res = invoke("generate", media["mute"], "-o", tmp_path / "m.mp4", "--original-audio", "keep", *TINY)
    assert isinstance(res.exception, InputError) and "has no soundtrack to keep" in str(res.exception)
    assert not (tmp_path / "m.mp4").exists()
    res = invoke("generate", media["video"], "-o", tmp_path / "x.wav", "--original-audio", "keep", *TINY)
    assert isinstance(res.exception, InputError) and "needs a video input and an .mp4 output" in str(res.exception)


def test_still_video_from_a_picture(media, tmp_path, tiny_cache_env):
    out = tmp_path / "scene.mp4"
    res = invoke("generate", media["image"], "-o", out, "--duration", 1.5, *TINY)
    assert res.exit_code == 0, res.output + repr(res.exception)
    info = probe_video(out)
    assert (info.width, info.height, info.has_audio) == (96, 72, True)
    assert info.duration_s == pytest.approx(1.5, abs=0.51)  # whole frames at 2 fps
    side = json.loads((tmp_path / "scene.mp4.json").read_text())
    assert side["output"]["sample_rate"] == MUX_SAMPLE_RATE and side["output"]["duration_s"] == pytest.approx(1.5, abs=0.05)


def test_objects_without_grounding_warns_on_the_cli(media, tmp_path, tiny_cache_env):
    res = CliRunner().invoke(app, [str(a) for a in ("generate", media["image"], "-o", tmp_path / "o.wav",
                                                     "--click", "40,30", "--duration", 1, *TINY)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "route: training-free" in res.output  # no grounding module: the route that ran is named
    assert "warning: no trained objects module" in res.output and "foleykit train grounding" in res.output


def test_negative_prompt_is_the_generators_own_text_tower(tmp_path, tiny_cache_env):
    """negative="" is AudioLDM's unconditional input (bit-identical to no negative); a text changes the sound."""
    import soundfile as sf

    import foleykit.api as fk
    from foleykit.api import load_pipeline

    gen = load_pipeline("mapper", "tiny", None, "cpu", None).generator
    import torch

    torch.testing.assert_close(gen.text_embedding(""), gen.unconditional_embedding(), rtol=0, atol=0)
    emb = gen.text_embedding("dog barking")
    assert emb.shape == (512,) and abs(float(emb.norm()) - 1.0) < 1e-5
    kw = dict(models="tiny", duration=0.5, steps=2, seed=4, device="cpu", progress=False)
    fk.generate(MEDIA_IMAGE(tmp_path), tmp_path / "a.wav", **kw)
    fk.generate(MEDIA_IMAGE(tmp_path), tmp_path / "b.wav", negative="", **kw)
    res = fk.generate(MEDIA_IMAGE(tmp_path), tmp_path / "c.wav", negative="dog barking", **kw)
    a, b, c = (sf.read(tmp_path / f"{n}.wav")[0] for n in "abc")
    assert (a == b).all() and not (a == c).all()
    assert res.sound.record["generator"]["negative"] == "dog barking"
    side = json.loads((tmp_path / "c.wav.json").read_text())
    assert side["parameters"]["negative"] == "dog barking"


def MEDIA_IMAGE(tmp_path):
    return write_image(tmp_path / "neg.png", 4, (64, 48)) if not (tmp_path / "neg.png").exists() else tmp_path / "neg.png"


def test_keep_candidates_writes_every_candidate_with_its_score(tmp_path, tiny_cache_env):
    import soundfile as sf

    import foleykit.api as fk

    img = MEDIA_IMAGE(tmp_path)
    kw = dict(models="tiny", duration=0.5, steps=2, seed=5, device="cpu", progress=False, candidates=3)
    res = fk.generate(img, tmp_path / "best.wav", keep_candidates=True, **kw)
    side = json.loads((tmp_path / "best.wav.json").read_text())
    cands = side["candidates"]
    assert [c["file"] for c in cands] == [f"best.candidate-0{k}.wav" for k in (1, 2, 3)]
    assert sum(c["kept"] for c in cands) == 1
    kept = next(c for c in cands if c["kept"])
    assert kept["score"] == max(c["score"] for c in cands)
    # the kept candidate's file is the output's sound (both peak-normalised the same way)
    np.testing.assert_allclose(sf.read(tmp_path / kept["file"])[0], sf.read(tmp_path / "best.wav")[0], atol=1e-4)
    assert len(res.outputs) == 4 and all(p.is_file() for p in res.outputs)
    with pytest.raises(InputError, match="--keep-candidates needs"):
        fk.generate(img, tmp_path / "x.wav", keep_candidates=True, **{**kw, "candidates": 1})
    with pytest.raises(InputError, match="one diffusion window"):
        fk.generate(img, tmp_path / "y.wav", keep_candidates=True, **{**kw, "duration": 12})
