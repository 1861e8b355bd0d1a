"""Embedding extraction and batch generation on Ray (optional extra: ``pip install ray``).

Both jobs use an actor pool: each actor loads its models once (in its constructor) and then takes
work units — shards of manifest items for extraction, chunks of items for generation — until the
manifest is done. The driver owns the outputs: it writes every shard itself, durably, through the
same :class:`~foleykit.training.extraction.ExtractionRun` as the single-process path, so the result
folder, its resumability and its bytes are the same whichever path made it.

Local: ``init_ray()`` starts a private local cluster (no dashboard, loopback only, usage stats off).
Cluster: ``init_ray(address="auto")`` (or ``ray://head:10001``) connects to an existing one; the same
calls then spread actors over its nodes. Media paths in the manifest must be readable from every
node (shared storage), and every node needs foleykit installed in the Python that Ray runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..data.manifests import Manifest, ManifestItem
from ..errors import InputError


def _ray():
    try:
        import ray
    except ImportError:
        raise InputError("Ray is not installed; pip install 'ray' (the distributed extra) or run without --ray") from None
    return ray


def init_ray(address: str | None = None, *, num_cpus: int | None = None, num_gpus: int | None = None,
             **kwargs: Any) -> None:
    """Connect to a Ray cluster (``address``) or start a local one. A no-op when already connected."""
    ray = _ray()
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home
    if address:
        ray.init(address=address, log_to_driver=kwargs.pop("log_to_driver", True), **kwargs)
        return
    ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=kwargs.pop("log_to_driver", False), **kwargs)


def shutdown_ray() -> None:
    ray = _ray()
    if ray.is_initialized():
        ray.shutdown()


def _pool_size(requested: int | None, resource: str, per_actor: float) -> int:
    ray = _ray()
    if requested:
        return requested
    available = ray.cluster_resources().get(resource, 0.0)
    return max(1, int(available // per_actor)) if per_actor > 0 else 1


# ------------------------------------------------------------------------------------------------
# extraction
# ------------------------------------------------------------------------------------------------


class _ExtractActor:
    """Ray actor body: a ShardExtractor with its encoders loaded once."""

    def __init__(self, config, models, device, dtype, threads: int | None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        from ..training.extraction import ShardExtractor

        self.extractor = ShardExtractor.from_models(config, models, device=device, dtype=dtype)

    def describe(self):
        return self.extractor.model_identity(), self.extractor.feature_shapes()

    def extract(self, spec, items: Sequence[ManifestItem]):
        # ``items`` are the shard's items only; positions in the manifest come from ``spec``.
        from ..training.extraction import ShardSpec

        local = ShardSpec(spec.shard, 0, spec.stop - spec.start)
        result = self.extractor.extract_shard(list(items), local)
        offset = spec.start
        result.indices = [i + offset for i in result.indices]
        result.tensors["index"] = result.tensors["index"] + offset
        for s in result.skipped:
            s["index"] += offset
        return result


def ray_extract(
    manifest: Manifest,
    out_dir: str | os.PathLike,
    config: Any = None,
    *,
    models: Any = None,
    num_actors: int | None = None,
    num_cpus_per_actor: float = 1,
    num_gpus_per_actor: float = 0,
    device: str | None = None,
    dtype: str | None = None,
    threads_per_actor: int | None = None,
    restart: bool = False,
    progress: bool = True,
    address: str | None = None,
):
    """:func:`~foleykit.training.extraction.extract_embeddings` over a Ray actor pool.

    ``num_actors`` defaults to as many as the cluster's CPUs (or GPUs, with ``num_gpus_per_actor``)
    allow. ``device`` defaults to ``cuda`` for GPU actors, else ``cpu``. Resumable like the
    single-process path; the shards are identical to its shards (same batching, same arithmetic on
    the same hardware and thread count).
    """
    from tqdm.auto import tqdm

    from ..training.extraction import ExtractionConfig, ExtractionResult, ExtractionRun

    ray = _ray()
    from ray.util import ActorPool

    config = config or ExtractionConfig()
    init_ray(address)
    gpu = num_gpus_per_actor > 0
    n = _pool_size(num_actors, "GPU" if gpu else "CPU", num_gpus_per_actor if gpu else num_cpus_per_actor)
    dev = device or ("cuda" if gpu else "cpu")
    threads = threads_per_actor or max(1, int(num_cpus_per_actor))
    remote_cls = ray.remote(num_cpus=num_cpus_per_actor, num_gpus=num_gpus_per_actor)(_ExtractActor)
    t0 = time.perf_counter()
    actors = [remote_cls.remote(config, models, dev, dtype, threads) for _ in range(n)]
    identity, shapes = ray.get(actors[0].describe.remote())
    run = ExtractionRun(manifest, out_dir, config, identity, shapes, restart=restart)
    pending = run.pending()
    reused = len(run.specs) - len(pending)
    run.write_index()
    pool = ActorPool(actors)
    written = 0
    wait = compute = 0.0
    with tqdm(total=sum(s.stop - s.start for s in pending), desc=f"extract (ray x{n})", unit="item",
              disable=not progress, dynamic_ncols=True) as bar:
        results = pool.map_unordered(lambda a, s: a.extract.remote(s, manifest.items[s.start:s.stop]), pending)
        for result in results:
            run.write_shard(result)
            run.write_index()
            written += 1
            wait += result.load_wait_s
            compute += result.compute_s
            bar.update(len(result.ids) + len(result.skipped))
    index = run.write_index()
    for a in actors:
        ray.kill(a)
    seconds = time.perf_counter() - t0
    run.log_run({"ray_actors": n, "shards_written": written, "shards_reused": reused, "seconds": round(seconds, 3),
                 "complete": index["complete"], "time": time.time()})
    return ExtractionResult(
        out_dir=run.out_dir, num_items=len(manifest), num_extracted=index["num_extracted"], skipped=index["skipped"],
        shards_written=written, shards_reused=reused, complete=index["complete"], seconds=seconds,
        load_wait_s=wait, compute_s=compute,
    )


# ------------------------------------------------------------------------------------------------
# batch generation
# ------------------------------------------------------------------------------------------------


class _GenerateActor:
    def __init__(self, config, out_dir, threads: int | None, fingerprint: str | None = None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        from .batch import BatchWorker

        self.worker = BatchWorker(config, out_dir, fingerprint=fingerprint)

    def run(self, items):
        return self.worker.run(items)


def ray_batch_generate(
    manifest: Manifest,
    out_dir: str | os.PathLike,
    config: Any = None,
    *,
    num_actors: int | None = None,
    num_cpus_per_actor: float = 1,
    num_gpus_per_actor: float = 0,
    chunk_size: int = 8,
    threads_per_actor: int | None = None,
    progress: bool = True,
    address: str | None = None,
):
    """:func:`~foleykit.distributed.batch.batch_generate` over a Ray actor pool (outputs are written
    by the actors, so ``out_dir`` must be on storage every node sees)."""
    from dataclasses import replace

    from tqdm.auto import tqdm

    from .batch import BatchGenerateConfig, prepare_batch_run, write_report

    ray = _ray()
    from ray.util import ActorPool

    config = config or BatchGenerateConfig()
    if num_gpus_per_actor > 0 and config.device == "auto":
        config = replace(config, device="cuda")
    out = Path(out_dir).expanduser()
    fp = prepare_batch_run(manifest, out, config)  # refuses a folder of another run before Ray starts
    init_ray(address)
    gpu = num_gpus_per_actor > 0
    n = _pool_size(num_actors, "GPU" if gpu else "CPU", num_gpus_per_actor if gpu else num_cpus_per_actor)
    threads = threads_per_actor or config.threads or max(1, int(num_cpus_per_actor))
    remote_cls = ray.remote(num_cpus=num_cpus_per_actor, num_gpus=num_gpus_per_actor)(_GenerateActor)
    t0 = time.perf_counter()
    actors = [remote_cls.remote(config, str(out), threads, fp["value"]) for _ in range(n)]
    chunks = [manifest.items[i:i + chunk_size] for i in range(0, len(manifest), chunk_size)]
    statuses = []
    with tqdm(total=len(manifest), desc=f"generate (ray x{n})", unit="item", disable=not progress) as bar:
        for part in ActorPool(actors).map_unordered(lambda a, c: a.run.remote(c), chunks):
            statuses.extend(part)
            bar.update(len(part))
    for a in actors:
        ray.kill(a)
    return write_report(out, manifest, statuses, config, time.perf_counter() - t0, fingerprint=fp)
