"""Embedding extraction: features equal the encoders', skips with reasons, resume, refusals, disk full."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from foleykit.data import read_manifest
from foleykit.data.synthetic import make_synthetic_dataset
from foleykit.errors import InputError, OutputError
from foleykit.training import extraction as ex
from foleykit.training.extraction import (
    EmbeddingStore,
    ExtractionConfig,
    ShardExtractor,
    StoreDataset,
    extract_embeddings,
    read_video_audio,
)

ALL = ("clip", "clip_frames", "clip_mean", "clip_patches", "clap")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    return read_manifest(make_synthetic_dataset(root, n_images=4, n_videos=2, broken=True))


@pytest.fixture(scope="module")
def base(tiny_models_dir) -> ShardExtractor:
    cfg = ExtractionConfig(features=ALL, num_frames=8, shard_size=3, batch_size=4, audio_batch_size=2)
    return ShardExtractor.from_models(cfg, str(tiny_models_dir), device="cpu")


def with_config(base: ShardExtractor, **kw) -> ShardExtractor:
    fields = dict(features=ALL, num_frames=8, shard_size=3, batch_size=4, audio_batch_size=2)
    fields.update(kw)
    return ShardExtractor(ExtractionConfig(**fields), base.clip, base.clap)


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((folder / "shards").glob("*"))}


@pytest.fixture(scope="module")
def reference(manifest, base, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "emb"
    res = extract_embeddings(manifest, out, extractor=base, progress=False)
    assert res.complete and res.shards_written == 4 and res.num_extracted == 6
    return out


def test_features_match_the_encoders(manifest, reference, base):
    from foleykit.io.audio import load_audio
    from foleykit.io.image import load_image
    from foleykit.io.video import read_frames

    store = EmbeddingStore(reference)
    data = store.load()
    assert store.ids == ["img0000", "img0001", "img0002", "img0003", "vid0000", "vid0001"]
    assert data["index"].tolist() == [0, 1, 2, 3, 4, 5]
    assert data["clip"].shape == (6, 768) and data["clip_frames"].shape == (6, 8, 768)
    assert data["clip_mean"].shape == (6, 768) and data["clip_patches"].shape == (6, 256, 768)
    assert data["clap"].shape == (6, 512)

    img = manifest[1]
    want_clip = base.clip.embed_images([load_image(img.image)], normalize=True)[0]
    torch.testing.assert_close(data["clip"][1], want_clip, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(data["clip_patches"][1], base.clip.embed_patches([load_image(img.image)], normalize=True)[0],
                               atol=1e-5, rtol=1e-4)
    wave, sr = load_audio(img.audio)
    torch.testing.assert_close(data["clap"][1], base.clap.embed_audio([wave], sr)[0], atol=1e-5, rtol=1e-4)
    # A still image: every "frame" is the image, and the mean is the image's embedding.
    torch.testing.assert_close(data["clip_frames"][1], want_clip.expand(8, -1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(data["clip_mean"][1], want_clip, atol=1e-5, rtol=1e-4)

    vid = manifest[4]
    frames = read_frames(vid.video, 8, max_side=448)
    per_frame = base.clip.embed_images(frames, normalize=True)
    torch.testing.assert_close(data["clip_frames"][4], per_frame, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(data["clip_mean"][4], per_frame.mean(0), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(data["clip_frames"][4][0], data["clip_frames"][4][-1])  # frames differ
    torch.testing.assert_close(data["clip"][4], base.clip.embed_images(read_frames(vid.video, 1, max_side=448),
                                                                        normalize=True)[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(data["clap"].norm(dim=-1), torch.ones(6))
    # Per-item access through the memory maps equals the bulk load.
    one = store.get(4, ["clap", "clip_frames"])
    assert torch.equal(one["clap"], data["clap"][4]) and torch.equal(one["clip_frames"], data["clip_frames"][4])
    item = StoreDataset(store, {"x": "clip_mean", "y": "clap"})[5]
    assert set(item) == {"x", "y"} and torch.equal(item["y"], data["clap"][5])


def test_unreadable_items_skipped_with_reasons(reference):
    index = json.loads((reference / "extraction.json").read_text())
    reasons = {s["id"]: s["reason"] for s in index["skipped"]}
    assert set(reasons) == {"missing", "corrupt", "silent", "mute"}
    assert "image file not found" in reasons["missing"] and "nope.png" in reasons["missing"]
    assert "not a recognised image format" in reasons["corrupt"]
    assert "is silent" in reasons["silent"]
    assert "has no audio track" in reasons["mute"]
    assert index["complete"] and index["num_extracted"] == 6 and index["num_skipped"] == 4
    assert [s["items"] + s["skipped"] for s in index["shards"]] == [3, 3, 3, 1]


def test_rerun_is_a_no_op(manifest, base, reference):
    before = digest(reference)
    index_before = (reference / "extraction.json").read_bytes()
    res = extract_embeddings(manifest, reference, extractor=base, progress=False)
    assert res.shards_written == 0 and res.shards_reused == 4 and res.complete
    assert digest(reference) == before and (reference / "extraction.json").read_bytes() == index_before


def test_changed_manifest_or_settings_refused(manifest, base, tmp_path):
    out = tmp_path / "emb"
    res = extract_embeddings(manifest, out, extractor=base, progress=False, max_shards=1)
    assert not res.complete and res.shards_written == 1
    with pytest.raises(InputError, match="incomplete"):
        EmbeddingStore(out)
    changed = manifest.select(ids=manifest.ids[1:])
    with pytest.raises(InputError, match="manifest changed under a half-done extraction"):
        extract_embeddings(changed, out, extractor=base, progress=False)
    with pytest.raises(InputError, match=r"different settings \(num_frames\)"):
        extract_embeddings(manifest, out, extractor=with_config(base, num_frames=4), progress=False)
    # Speed-only settings may change between runs.
    res = extract_embeddings(manifest, out, extractor=with_config(base, batch_size=8, num_workers=0), progress=False,
                             max_shards=1)
    assert res.shards_reused == 1 and res.shards_written == 1
    res = extract_embeddings(changed, out, extractor=base, progress=False, restart=True)
    assert res.complete and res.num_items == len(changed)


def test_disk_full_mid_run_loses_nothing(manifest, base, reference, tmp_path, monkeypatch):
    out = tmp_path / "emb"
    real_fsync = os.fsync
    calls = {"shards": 0}

    def fsync(fd):
        name = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
        if ".shard-" in name:
            calls["shards"] += 1
            if calls["shards"] == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(ex.os, "fsync", fsync)
    with pytest.raises(OutputError, match="disk is full.*nothing already written was changed"):
        extract_embeddings(manifest, out, extractor=base, progress=False)
    monkeypatch.undo()
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["shard-000000.safetensors", "shard-000001.safetensors"]
    assert not list(out.rglob("*.part"))
    res = extract_embeddings(manifest, out, extractor=base, progress=False)
    assert res.shards_reused == 2 and res.shards_written == 2
    assert digest(out) == digest(reference)
    assert (out / "extraction.json").read_bytes() == (reference / "extraction.json").read_bytes()


def test_video_shorter_than_frame_count_is_skipped(manifest, base, tmp_path):
    videos = manifest.select(ids=["vid0000", "vid0001"])
    res = extract_embeddings(videos, tmp_path / "emb", extractor=with_config(base, features=("clip_frames",), num_frames=100),
                             progress=False)
    assert res.num_extracted == 0 and len(res.skipped) == 2
    assert "has about 75 frames in its window, fewer than the 100 asked for" in res.skipped[0]["reason"]
    store = EmbeddingStore(tmp_path / "emb")
    assert len(store) == 0 and store.load()["clip_frames"].shape == (0, 100, 768)


def test_read_video_audio_window(manifest):
    wave, sr = read_video_audio(manifest[4].video, 0.5, 2.0)
    assert sr == 44_100 and abs(wave.size - 1.5 * sr) <= 0.01 * sr
    assert np.abs(wave).max() > 0.1
    with pytest.raises(InputError, match="no audio track"):
        read_video_audio(manifest.items[manifest.index_of("mute")].video)


def test_config_validation():
    with pytest.raises(InputError, match="unknown feature"):
        ExtractionConfig(features=("clip", "dino"))
    with pytest.raises(InputError, match="clip_role"):
        ExtractionConfig(clip_role="vit")
    with pytest.raises(InputError, match="shard_size"):
        ExtractionConfig(shard_size=0)
    assert "num_frames" not in ExtractionConfig(features=("clip", "clap")).run_fields()
