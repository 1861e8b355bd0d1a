"""CLIP and CLAP encoders on the tiny stand-ins: shapes, normalisation, batching, windowing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from foleykit.encoders.clap import CLAP_SAMPLE_RATE, ClapEncoder
from foleykit.encoders.clip import ClipEncoder
from foleykit.errors import InputError


@pytest.fixture(scope="module")
def clip(tiny_models_dir):
    return ClipEncoder.from_pretrained(str(tiny_models_dir / "clip-vit-large-patch14"))


@pytest.fixture(scope="module")
def clap(tiny_models_dir):
    return ClapEncoder.from_pretrained(str(tiny_models_dir / "clap-htsat-unfused"))


def _images(n):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)) for _ in range(n)]


def test_clip_shapes_and_batch_invariance(clip):
    imgs = _images(3)
    together = clip.embed_images(imgs, batch_size=3)
    one_by_one = torch.cat([clip.embed_images([im]) for im in imgs])
    assert together.shape == (3, 768) and together.dtype == torch.float32
    torch.testing.assert_close(together, one_by_one, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(together[0], together[1])
    normed = clip.embed_images(imgs, normalize=True)
    torch.testing.assert_close(normed.norm(dim=-1), torch.ones(3))


def test_clip_patch_tokens_live_in_the_joint_space(clip):
    patches = clip.embed_patches(_images(2))
    assert clip.patch_grid == 16
    assert patches.shape == (2, 256, 768)
    # The CLS token through the same post-norm + projection is the global embedding.
    pix = clip._pixels(_images(1))
    hidden = clip.model.vision_model(pixel_values=pix).last_hidden_state
    cls = clip.model.visual_projection(clip.model.vision_model.post_layernorm(hidden[:, 0]))
    torch.testing.assert_close(cls, clip.embed_images(_images(1)), atol=1e-5, rtol=1e-4)


def test_clip_text(clip):
    e = clip.embed_texts(["a dog", "rain on a tin roof", "a dog"], normalize=True)
    assert e.shape == (3, 768)
    torch.testing.assert_close(e[0], e[2])
    assert not torch.allclose(e[0], e[1])


def test_clap_audio_is_unit_and_rate_aware(clap):
    sr = 16_000
    t = np.arange(sr * 2) / sr
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    e16 = clap.embed_audio([tone], sr)
    up = np.interp(np.arange(CLAP_SAMPLE_RATE * 2) / CLAP_SAMPLE_RATE, t, tone).astype(np.float32)
    e48 = clap.embed_audio([up], CLAP_SAMPLE_RATE)
    assert e16.shape == (1, 512)
    torch.testing.assert_close(e16.norm(dim=-1), torch.ones(1))
    # Resampled internally: the same sound at 16 kHz and at 48 kHz embeds (almost) the same.
    assert float((e16 * e48).sum()) > 0.99


def test_clap_long_audio_is_windowed(clap):
    rng = np.random.default_rng(1)
    wave = (0.1 * rng.standard_normal(CLAP_SAMPLE_RATE * 25)).astype(np.float32)
    windows = clap.embed_audio([wave], CLAP_SAMPLE_RATE, return_windows=True)[0]
    assert windows.shape == (3, 512)  # 0-10, 10-20, 20-25 s
    mean = clap.embed_audio([wave], CLAP_SAMPLE_RATE)[0]
    torch.testing.assert_close(mean, torch.nn.functional.normalize(windows.mean(0), dim=0))


def test_clap_rejects_bad_audio(clap):
    with pytest.raises(InputError):
        clap.embed_audio([np.zeros((2, 1000), np.float32)], 16000)
    with pytest.raises(InputError):
        clap.embed_audio([np.array([np.nan] * 100, np.float32)], 16000)
    with pytest.raises(InputError):
        clap.embed_audio([np.zeros(0, np.float32)], 16000)


def test_clap_text_unit_norm(clap):
    e = clap.embed_texts(["", "dog barking"])
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(2))
