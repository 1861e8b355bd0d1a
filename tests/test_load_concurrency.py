"""Model loading under concurrency (issue 12): parallel first loads of all three methods in threads
all succeed and share their frozen parts, a failed load leaves torch unpatched and the process able to
load again, and the process loads models afterwards.

Before the fix, ``api.load_pipeline`` was an ``lru_cache(maxsize=2)`` and loads ran unlocked: parallel
first loads failed with ``NotImplementedError: Cannot copy out of meta tensor`` and left
``torch.nn.Module.register_parameter`` patched by accelerate's ``init_empty_weights``."""

from __future__ import annotations

import shutil
import threading

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ORIGINAL_REGISTER_PARAMETER = torch.nn.Module.register_parameter


@pytest.fixture()
def fresh_process_caches():
    from foleykit import api

    api.clear_pipelines()
    yield
    api.clear_pipelines()


def _load_all_in_threads(models: str, per_method: int = 2) -> tuple[dict, list]:
    """Every method ``per_method`` times, all threads released at once; returns results and errors."""
    from foleykit import api

    methods = [m for m in ("mapper", "objects", "sources") for _ in range(per_method)]
    barrier = threading.Barrier(len(methods))
    results: dict[int, tuple[str, object]] = {}
    errors: list[BaseException] = []

    def work(i: int, method: str) -> None:
        barrier.wait()
        try:
            results[i] = (method, api.load_pipeline(method, models, None, "cpu", None, None, None))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, m)) for i, m in enumerate(methods)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a load did not finish (deadlock?)"
    return results, errors


def test_parallel_first_loads_of_all_methods_succeed_and_share_components(tiny_models_dir, fresh_process_caches):
    from foleykit import api
    from foleykit.pipelines import components

    results, errors = _load_all_in_threads(str(tiny_models_dir))
    assert errors == [], errors
    assert len(results) == 6
    assert torch.nn.Module.register_parameter is ORIGINAL_REGISTER_PARAMETER

    by_method: dict[str, set[int]] = {}
    for method, pipe in results.values():
        by_method.setdefault(method, set()).add(id(pipe))
    assert {m: len(ids) for m, ids in by_method.items()} == {"mapper": 1, "objects": 1, "sources": 1}

    # All three held at once (no eviction), built on one CLAP and one generator; objects and sources
    # share CLIP ViT-L/14 (the mapper uses the model set's ViT-B/32 role).
    mapper, objects, sources = (api.load_pipeline(m, str(tiny_models_dir), None, "cpu", None, None, None)
                                for m in ("mapper", "objects", "sources"))
    assert mapper.generator is objects.generator is sources.generator
    assert mapper.clap is objects.clap is sources.clap
    assert objects.clip is sources.clip and mapper.clip is not objects.clip
    roles = sorted(k[0] for k in components.loaded())
    assert roles == ["audioldm", "clip", "clip", "generator_clap"]

    # ... and they generate: a request on each method works after the parallel loads.
    from PIL import Image

    img = Image.new("RGB", (64, 48), (120, 160, 90))
    out = mapper(img, duration_s=0.3, num_inference_steps=2, seed=1, progress=False)
    assert out.waveform.shape[-1] == int(round(0.3 * out.sample_rate)) and out.seed == 1

    # The process still loads models afterwards (a fresh load, not a cache hit).
    api.clear_pipelines()
    again = api.load_pipeline("mapper", str(tiny_models_dir), None, "cpu", None, None, None)
    assert again is not mapper and again.generator is not mapper.generator


def test_a_failed_load_leaves_torch_unpatched_and_the_process_able_to_load(tiny_models_dir, tmp_path,
                                                                           fresh_process_caches):
    from foleykit import api
    from foleykit.errors import FoleykitError
    from foleykit.pipelines import components

    broken = tmp_path / "broken-set"
    shutil.copytree(tiny_models_dir, broken, symlinks=True)
    for weights in (broken / "audioldm-s-full-v2" / "unet").glob("*.safetensors"):
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a half-downloaded file

    results, errors = _load_all_in_threads(str(broken), per_method=1)
    assert len(errors) == 3 and not results  # every method needs the generator
    assert all(isinstance(e, (FoleykitError, OSError, RuntimeError, ValueError)) for e in errors), errors
    assert torch.nn.Module.register_parameter is ORIGINAL_REGISTER_PARAMETER
    assert not any(k[0] == "audioldm" for k in components.loaded())  # nothing half-loaded is cached

    results, errors = _load_all_in_threads(str(tiny_models_dir), per_method=1)
    assert errors == [] and len(results) == 3


def test_a_grounding_unet_swap_does_not_change_the_shared_generator(tiny_models_dir, fresh_process_caches):
    from foleykit.pipelines import components

    gen = components.generator(str(tiny_models_dir / "audioldm-s-full-v2"), "cpu", None)
    unet = gen.unet
    copy = gen.with_unet(torch.nn.Identity())
    assert gen.unet is unet and isinstance(copy.unet, torch.nn.Identity)
    assert copy.vae is gen.vae and copy.vocoder is gen.vocoder
    assert components.generator(str(tiny_models_dir / "audioldm-s-full-v2"), "cpu", None) is gen
