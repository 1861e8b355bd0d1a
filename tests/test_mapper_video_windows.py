"""MapperPipeline on a video longer than one diffusion window: one condition per window, each made
from the frames of that window's own stretch of the video (tiny stand-ins, no diffusion)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

av = pytest.importorskip("av")

from foleykit.generator.long_audio import plan_windows  # noqa: E402
from foleykit.io.video import read_frames  # noqa: E402
from foleykit.modules.mapper import MapperConfig, V2AMapper  # noqa: E402
from foleykit.pipelines.mapper import MapperPipeline  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

W, H, FPS, SECONDS = 64, 48, 10, 12.0
N_BITS = 8  # frame k shows k as 8 black/white vertical stripes, which survive h264 at this size
FRAMES = 8


def index_image(k: int) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    stripe = W // N_BITS
    for b in range(N_BITS):
        if k >> b & 1:
            img[:, b * stripe:(b + 1) * stripe] = 255
    return img


def decode_index(img) -> int:
    arr = np.asarray(img.convert("L"), dtype=np.float32)
    stripe = arr.shape[1] // N_BITS
    return sum(1 << b for b in range(N_BITS) if arr[:, b * stripe + 2:(b + 1) * stripe - 2].mean() > 128)


def make_video(path: Path, picture) -> Path:
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        tb = Fraction(1, FPS)
        vs.time_base = vs.codec_context.time_base = tb
        for k in range(round(FPS * SECONDS)):
            frame = av.VideoFrame.from_ndarray(picture(k), format="rgb24")
            frame.pts, frame.time_base = k, tb
            for p in vs.encode(frame):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
    return path


@pytest.fixture(scope="module")
def indexed_video(tmp_path_factory) -> Path:
    """12 s whose every frame shows its own index: the windows' frames differ."""
    return make_video(tmp_path_factory.mktemp("v") / "indexed.mp4", index_image)


@pytest.fixture(scope="module")
def still_video(tmp_path_factory) -> Path:
    """12 s of one picture: the windows' frames are the same."""
    return make_video(tmp_path_factory.mktemp("v") / "still.mp4", lambda k: index_image(77))


@pytest.fixture(scope="module")
def tiny_pipe(tiny_models_dir) -> MapperPipeline:
    return MapperPipeline.from_models(str(tiny_models_dir), device="cpu")


@pytest.fixture(scope="module")
def regression_pipe(tiny_pipe) -> MapperPipeline:
    """The same encoders with a deterministic regression mapper: a row depends on its input only."""
    torch.manual_seed(0)
    mapper = V2AMapper(MapperConfig(kind="regression_mlp", clip_dim=tiny_pipe.clip.dim, width=64)).eval()
    return MapperPipeline(tiny_pipe.clip, mapper, tiny_pipe.generator, tiny_pipe.clap)


def test_twelve_seconds_is_two_windows():
    assert plan_windows(SECONDS) == [(0.0, 10.0), (9.5, 19.5)]


def test_each_window_is_conditioned_on_its_own_frames(regression_pipe, indexed_video, monkeypatch):
    pipe = regression_pipe
    windows = plan_windows(SECONDS)
    seen: list[list[int]] = []
    real_embed = pipe.clip.embed_images

    def spy(images, *args, **kwargs):
        seen.append([decode_index(im) for im in images])
        return real_embed(images, *args, **kwargs)

    monkeypatch.setattr(pipe.clip, "embed_images", spy)
    cond = pipe.video_conditions(indexed_video, windows, frames_per_window=FRAMES, seed=0)
    monkeypatch.undo()

    assert cond.shape == (2, 512) and torch.isfinite(cond).all()
    assert len(seen) == 2 and all(len(s) == FRAMES for s in seen)
    for (start, end), indices in zip(windows, seen):
        end = min(end, SECONDS)
        times = [k / FPS for k in indices]
        assert all(start - 1 / FPS <= t < end for t in times), (start, end, indices)
        assert indices == sorted(indices) and len(set(indices)) == FRAMES  # evenly spread, none repeated
    assert max(seen[0]) < 100 and max(seen[1]) >= 100  # the second window reaches past the first's end

    # Row i is exactly the mapping of window i's mean CLIP embedding, computed on its own.
    for i, (start, end) in enumerate(windows):
        frames = read_frames(indexed_video, FRAMES, start_s=start, end_s=min(end, SECONDS), max_side=448)
        alone = pipe.mapper.map(pipe.clip.embed_images(frames).mean(0, keepdim=True))
        torch.testing.assert_close(cond[i:i + 1], alone, atol=1e-5, rtol=1e-5)
    # Different frames -> different conditions.
    assert F.cosine_similarity(cond[0], cond[1], dim=0) < 0.999
    assert (cond[0] - cond[1]).abs().max() > 1e-3


def test_windows_over_the_same_picture_get_the_same_condition(regression_pipe, still_video):
    """The control: what separates the windows' conditions is their frames, not their position."""
    cond = regression_pipe.video_conditions(still_video, plan_windows(SECONDS), frames_per_window=FRAMES, seed=0)
    assert cond.shape == (2, 512)
    torch.testing.assert_close(cond[0], cond[1], atol=2e-4, rtol=0)  # h264 noise only


def test_model_sets_own_mapper_gets_one_row_per_window(tiny_pipe, indexed_video, monkeypatch):
    """With the tiny set's diffusion mapper: the mapper is handed one mean CLIP embedding per window."""
    pipe = tiny_pipe
    windows = plan_windows(SECONDS)
    handed = []
    real_map = pipe._map

    def spy(clip_embeds, *args, **kwargs):
        handed.append(clip_embeds.detach().clone())
        return real_map(clip_embeds, *args, **kwargs)

    monkeypatch.setattr(pipe, "_map", spy)
    cond = pipe.video_conditions(indexed_video, windows, frames_per_window=FRAMES, seed=1)
    assert cond.shape == (2, 512)
    torch.testing.assert_close(cond.norm(dim=-1), torch.ones(2), atol=1e-4, rtol=0)
    assert len(handed) == 1 and handed[0].shape == (2, pipe.clip.dim)
    for i, (start, end) in enumerate(windows):
        frames = read_frames(indexed_video, FRAMES, start_s=start, end_s=min(end, SECONDS), max_side=448)
        torch.testing.assert_close(handed[0][i], pipe.clip.embed_images(frames).mean(0), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(handed[0][0], handed[0][1], atol=1e-4)
