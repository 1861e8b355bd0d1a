"""Extraction and batch generation on a local 2-CPU Ray cluster (skipped when Ray is not installed)."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

ray = pytest.importorskip("ray", reason="Ray is not installed (optional extra: pip install ray)")

from foleykit.data import read_manifest  # noqa: E402
from foleykit.data.synthetic import make_synthetic_dataset  # noqa: E402
from foleykit.distributed.batch import BatchGenerateConfig, item_seed  # noqa: E402
from foleykit.distributed.ray_jobs import init_ray, ray_batch_generate, ray_extract, shutdown_ray  # noqa: E402
from foleykit.training.extraction import EmbeddingStore, ExtractionConfig, extract_embeddings  # noqa: E402


def test_ray_extraction_equals_single_process(tmp_path, tiny_models_dir):
    manifest = read_manifest(make_synthetic_dataset(tmp_path / "data", n_images=5, n_videos=2, broken=True))
    cfg = ExtractionConfig(features=("clip", "clip_frames", "clap"), num_frames=4, shard_size=2, batch_size=3,
                           audio_batch_size=2)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # Ray actors run one thread each (one CPU per actor)
    try:
        single = extract_embeddings(manifest, tmp_path / "single", cfg, models=str(tiny_models_dir), device="cpu",
                                    progress=False)
    finally:
        torch.set_num_threads(before)

    init_ray(num_cpus=2)
    try:
        assert ray.cluster_resources().get("CPU") == 2
        distributed = ray_extract(manifest, tmp_path / "ray", cfg, models=str(tiny_models_dir), num_actors=2,
                                  progress=False)
    finally:
        shutdown_ray()

    assert distributed.complete and distributed.num_extracted == single.num_extracted == 7
    a, b = EmbeddingStore(tmp_path / "single"), EmbeddingStore(tmp_path / "ray")
    assert a.ids == b.ids and a.skipped == b.skipped
    da, db = a.load(), b.load()
    for name in ("clip", "clip_frames", "clap", "index"):
        torch.testing.assert_close(db[name], da[name], rtol=0, atol=1e-6)
    # Same batching, same arithmetic: in fact the very same bytes.
    for p in sorted((tmp_path / "single" / "shards").iterdir()):
        assert hashlib.sha256(p.read_bytes()).digest() == hashlib.sha256(
            (tmp_path / "ray" / "shards" / p.name).read_bytes()).digest(), p.name
    assert (tmp_path / "ray" / "extraction.json").read_bytes() == (tmp_path / "single" / "extraction.json").read_bytes()


@pytest.mark.slow
def test_ray_batch_generation(tmp_path, tiny_models_dir):
    """Slow (a second Ray start and two generator loads): run with FOLEYKIT_SLOW=1."""
    manifest = read_manifest(make_synthetic_dataset(tmp_path / "data", n_images=2, n_videos=0, broken=True))
    images = manifest.select(ids=["img0000", "img0001", "missing"])
    gen_cfg = BatchGenerateConfig(models=str(tiny_models_dir), steps=2, duration=1.0, device="cpu", seed=11)
    init_ray(num_cpus=2)
    try:
        report = ray_batch_generate(images, tmp_path / "gen", gen_cfg, num_actors=2, chunk_size=1, progress=False)
        again = ray_batch_generate(images, tmp_path / "gen", gen_cfg, num_actors=1, progress=False)
    finally:
        shutdown_ray()
    assert (report.generated, report.failed, report.total) == (2, 1, 3)
    assert (again.generated, again.skipped, again.failed) == (0, 2, 1)
    sidecar = json.loads((tmp_path / "gen" / "img0001.wav.json").read_text())
    assert sidecar["seed"] == item_seed(11, "img0001")
    assert json.loads((tmp_path / "gen" / "batch_report.json").read_text())["failures"][0]["id"] == "missing"
    # The actors stamp the driver's run fingerprint; another run into the folder is refused before Ray starts.
    record = json.loads((tmp_path / "gen" / "batch_run.json").read_text())["fingerprint"]
    assert sidecar["batch"]["fingerprint"] == record["value"] == report.fingerprint["value"]
    from dataclasses import replace

    from foleykit.errors import InputError

    with pytest.raises(InputError, match="other settings .*steps 2 -> 3"):
        ray_batch_generate(images, tmp_path / "gen", replace(gen_cfg, steps=3), num_actors=1, progress=False)
