"""`--method sources` composition paths on the tiny stand-ins: mask regions (0/1, 0/255, bool, palette),
several images each with its own slot, and the lone-global-source Cycle Mix case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from foleykit.errors import InputError
from foleykit.io.image import crop_box, letterbox

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUICK = dict(text_mode="clip", duration_s=0.5, num_inference_steps=1, cycle_rounds=2, cycle_samples=4, seed=0,
             progress=False)
H, W = 64, 96


@pytest.fixture(scope="module")
def pipe(tiny_models_dir, tmp_path_factory):
    from foleykit.api import load_pipeline
    from foleykit.model_sets import TINY_VERSION

    cache = tmp_path_factory.mktemp("fk-cache")
    (cache / f"tiny-v{TINY_VERSION}").symlink_to(tiny_models_dir, target_is_directory=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("FOLEYKIT_CACHE", str(cache))
    try:
        yield load_pipeline("sources", "tiny", None, "auto", None, None, None)
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def scene() -> Image.Image:
    return Image.fromarray(np.random.default_rng(3).integers(0, 255, (H, W, 3), dtype=np.uint8))


def _l_shape() -> np.ndarray:
    """An L-shaped region: bounding box x 10..40, y 8..48; the top-right part of the box is outside."""
    m = np.zeros((H, W), dtype=bool)
    m[8:48, 10:20] = True
    m[38:48, 10:40] = True
    return m


def _expected_mask_crop(img: Image.Image, mask: np.ndarray) -> Image.Image:
    arr = np.asarray(img).copy()
    arr[~mask] = 0
    return letterbox(Image.fromarray(arr[8:48, 10:40]))


def test_mask_files_and_arrays_are_nonzero_inside_and_become_a_mask_source(pipe, scene, tmp_path):
    inside = _l_shape()
    paths = {}
    for name, values, mode in (("01", inside.astype(np.uint8), "L"), ("0255", inside.astype(np.uint8) * 255, "L"),
                               ("bits", inside, "1")):
        paths[name] = tmp_path / f"mask-{name}.png"
        Image.fromarray(values).convert(mode).save(paths[name])
    pal = Image.fromarray(inside.astype(np.uint8), mode="P")  # palette index 1 = inside, even if its colour is dark
    pal.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    pal.save(tmp_path / "mask-pal.png")
    paths["pal"] = tmp_path / "mask-pal.png"
    rgba = np.zeros((H, W, 4), dtype=np.uint8)
    rgba[..., 3] = 255  # opaque everywhere: alpha must not count
    rgba[inside, 1] = 200
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "mask-rgba.png")
    paths["rgba"] = tmp_path / "mask-rgba.png"

    det = pipe.detector
    before = det.calls
    res = pipe(scene, masks=[paths["01"]], stems=True, **QUICK)
    assert det.calls == before  # a mask turns detection off by default
    kinds = [s.kind for s in res.sources]
    assert kinds == ["image", "mask"]
    mask_src = res.sources[1]
    assert mask_src.box == (10.0, 8.0, 40.0, 48.0) and mask_src.position == pytest.approx(25 / W)
    rec = res.record["sources"][1]
    assert rec["mask_area"] == pytest.approx(inside.mean(), abs=1e-5) and rec["pan_position"] == pytest.approx(25 / W, abs=1e-4)
    expected = pipe.clip.embed_images([_expected_mask_crop(scene, inside)], normalize=True).cpu()[0]
    assert torch.allclose(mask_src.clip, expected, atol=1e-5)
    # Blacking out the pixels outside the mask matters: the plain box crop embeds differently.
    box_clip = pipe.clip.embed_images([crop_box(scene, (10, 8, 40, 48))], normalize=True).cpu()[0]
    assert not torch.allclose(mask_src.clip, box_clip, atol=1e-3)
    assert [name for name, _ in res.stems] == ["00-image", "01-mask-1"]
    assert all(r.waveform.shape == (8000,) for _, r in res.stems)
    assert res.record["cycle_mix"]["slots"] == 2

    # 0/255, mode "1", palette and RGBA files and bool / 0-1 arrays select the same pixels.
    for other in [paths["0255"], paths["bits"], paths["pal"], paths["rgba"], inside, inside.astype(np.uint8),
                  inside.astype(np.float32)]:
        again = pipe(scene, masks=[other], **QUICK)
        assert again.sources[1].box == mask_src.box
        assert torch.allclose(again.sources[1].clip, mask_src.clip, atol=1e-6)


def test_masks_and_boxes_compose_in_slot_order(pipe, scene):
    inside = _l_shape()
    right = np.zeros((H, W), dtype=bool)
    right[10:30, 70:90] = True
    res = pipe(scene, boxes=[((0, 0, 30, 30), 2.0)], masks=[inside, right], texts=["rain"], stems=True, **QUICK)
    assert [s.kind for s in res.sources] == ["image", "box", "mask", "mask", "text"]
    assert [s.weight for s in res.sources] == [1.0, 2.0, 1.0, 1.0, 1.0]
    assert [n for n, _ in res.stems] == ["00-image", "01-box-0-0-30-30", "02-mask-1", "03-mask-2", "04-text-rain"]
    assert res.sources[3].box == (70.0, 10.0, 90.0, 30.0) and res.sources[3].position == pytest.approx(80 / W)
    assert res.record["cycle_mix"]["slots"] == 5  # the image in slot 0 (feedback) + 4 more
    sims = [s["track_similarity"] for s in res.record["sources"]]
    assert sims[0] is None and all(isinstance(x, float) for x in sims[1:])  # slot 0 is the unscored feedback


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: np.zeros((H, W), dtype=np.uint8), "selects no pixels"),
        (lambda d: np.ones((H + 1, W), dtype=bool), f"the image is {W}x{H}"),
        (lambda d: np.full((H, W), np.nan, dtype=np.float32), "NaN"),
        (lambda d: _save(d / "m.jpg", np.full((H, W), 255, dtype=np.uint8)), "lossy"),
        (lambda d: _write(d / "m.png", b"not a png"), "not a readable image"),
    ],
)
def test_bad_masks_are_one_clear_error(pipe, scene, tmp_path, make, message):
    with pytest.raises(InputError, match=message) as err:
        pipe(scene, masks=[make(tmp_path)], **QUICK)
    assert "mask 1" in str(err.value)


def _save(path: Path, arr: np.ndarray) -> Path:
    Image.fromarray(arr).save(path)
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_several_images_each_get_their_own_slot(pipe, scene):
    other = Image.fromarray(np.random.default_rng(4).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    res = pipe(scene, images=[(other, 2.0)], texts=["rain"], detect=False, stems=True, **QUICK)
    rec = res.record
    assert [s.kind for s in res.sources] == ["image", "image", "text"]
    assert [s.name for s in res.sources] == ["image 1", "image 2", "text 'rain'"]
    assert [s.weight for s in res.sources] == [1.0, 2.0, 1.0]
    assert [s.image_index for s in res.sources] == [0, 1, None]
    assert [n for n, _ in res.stems] == ["00-image-1", "01-image-2", "02-text-rain"]
    assert rec["slot_layout"].startswith("slot 0 = empty feedback slot")
    assert rec["cycle_mix"]["slots"] == 4  # empty feedback slot + 3 sources
    assert rec["cycle_mix"]["criterion_used"] == "spread"
    assert all(isinstance(s["track_similarity"], float) for s in rec["sources"])  # every image is scored
    assert [d["size"] for d in rec["detections"]] == [[W, H], [50, 40]]
    expected = pipe.clip.embed_images([scene, other], normalize=True).cpu()
    assert torch.allclose(torch.stack([s.clip for s in res.sources[:2]]), expected, atol=1e-5)
    # Stems are conditioned on different tracks, so they differ.
    assert not np.allclose(res.stems[0][1].waveform, res.stems[1][1].waveform)


def test_only_the_global_source_is_scored_and_noted(pipe, scene):
    """``--no-detect`` with nothing else: the image is the feedback slot and the only source."""
    res = pipe(scene, detect=False, **QUICK)
    assert [s.kind for s in res.sources] == ["image"]
    sim = res.record["sources"][0]["track_similarity"]
    assert isinstance(sim, float)  # scored against its own track (it used to be unscored: every score 0)
    cm = res.record["cycle_mix"]
    assert cm["criterion"] == "spread" and cm["criterion_used"] == "relevance"
    assert cm["score"] == pytest.approx(sim, abs=1e-4)
    assert any("only sound source" in n for n in res.record["notes"])
    # One more source: the image (slot 0) is feedback again; the text alone is scored, by relevance.
    two = pipe(scene, detect=False, texts=["wind"], **QUICK)
    assert two.record["sources"][0]["track_similarity"] is None
    assert two.record["cycle_mix"]["criterion_used"] == "relevance"
    assert any("one source to score" in n for n in two.record["notes"])
