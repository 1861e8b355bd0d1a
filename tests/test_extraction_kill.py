"""SIGKILL an extraction at random points, rerun it: the shards equal an uninterrupted run's, byte for byte."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from foleykit.data import read_manifest
from foleykit.data.synthetic import make_synthetic_dataset
from foleykit.training.extraction import EmbeddingStore, ExtractionConfig, extract_embeddings

# clip_crops: the synthetic items have no boxes, so the OWLv2 detector finds the crops.
CONFIG = dict(features=("clip", "clip_frames", "clap", "clip_crops"), num_frames=4, shard_size=2, batch_size=3,
              audio_batch_size=2, max_crops=4)

SCRIPT = f"""
import sys
import torch
torch.set_num_threads(1)
from foleykit.data import read_manifest
from foleykit.training.extraction import ExtractionConfig, extract_embeddings
cfg = ExtractionConfig(**{CONFIG!r})
extract_embeddings(read_manifest(sys.argv[1]), sys.argv[3], cfg, models=sys.argv[2], device="cpu", progress=False)
"""


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((folder / "shards").iterdir())}


def mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def test_sigkill_at_random_points_then_resume_is_byte_identical(tmp_path, tiny_models_dir):
    manifest_path = make_synthetic_dataset(tmp_path / "data", n_images=8, n_videos=2, broken=True)
    manifest = read_manifest(manifest_path)
    assert len(manifest) == 14  # 7 shards of 2

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic as the single-threaded subprocesses
    try:
        ref = tmp_path / "reference"
        extract_embeddings(manifest, ref, ExtractionConfig(**CONFIG), models=str(tiny_models_dir), device="cpu",
                           progress=False)
    finally:
        torch.set_num_threads(before)

    out = tmp_path / "killed"
    index = out / "extraction.json"
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", SCRIPT, str(manifest_path), str(tiny_models_dir), str(out)]
    killed_while_running = 0
    progress_seen = []
    for _attempt in range(2):
        last = mtime(index)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while proc.poll() is None and mtime(index) == last and time.monotonic() < deadline:
            time.sleep(0.01)  # until the run has loaded its models and (re)written its index
        time.sleep(rng.uniform(0.0, 0.8))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed_while_running += 1
        proc.wait(timeout=60)
        progress_seen.append(len(list((out / "shards").glob("shard-*.safetensors"))))
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, proc.stdout.read().decode()[-2000:]
    assert killed_while_running >= 1, f"no kill landed during a run (seed {seed})"

    # A temporary file as a kill in the middle of a write leaves it: never renamed, so never trusted.
    (out / "shards" / ".shard-000006.safetensors.99999.part").write_bytes(b"half a shard")
    # Rerun (here, in this already-warm process, with the same single thread) to completion.
    torch.set_num_threads(1)
    try:
        res = extract_embeddings(manifest, out, ExtractionConfig(**CONFIG), models=str(tiny_models_dir), device="cpu",
                                 progress=False)
    finally:
        torch.set_num_threads(before)
    assert res.complete and res.shards_reused == progress_seen[-1]

    assert digest(out) == digest(ref), f"shards differ after kills at {progress_seen} shards (seed {seed})"
    assert index.read_bytes() == (ref / "extraction.json").read_bytes()
    assert not list(out.rglob("*.part"))
    store = EmbeddingStore(out)
    assert len(store.ids) == len(set(store.ids)) == 10  # nothing lost, nothing twice
    assert [s["id"] for s in store.skipped] == ["missing", "corrupt", "silent", "mute"]
    runs = (out / "runs.jsonl").read_text().splitlines()
    assert len(runs) >= 1  # only finished invocations log a line
    assert sum(json.loads(r)["shards_written"] for r in runs) <= 7


@pytest.mark.parametrize("kill_after_shards", [1])
def test_killed_run_keeps_complete_shards_only(tmp_path, tiny_models_dir, kill_after_shards):
    """A run stopped after k shards (as a kill between shards would) leaves exactly k valid shards."""
    manifest = read_manifest(make_synthetic_dataset(tmp_path / "data", n_images=4, n_videos=0))
    out = tmp_path / "emb"
    cfg = ExtractionConfig(features=("clip",), shard_size=2)
    res = extract_embeddings(manifest, out, cfg, models=str(tiny_models_dir), device="cpu", progress=False,
                             max_shards=kill_after_shards)
    assert not res.complete
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["shard-000000.safetensors"]
    res = extract_embeddings(manifest, out, cfg, models=str(tiny_models_dir), device="cpu", progress=False)
    assert res.complete and res.shards_reused == 1 and res.shards_written == 1
