"""The ``clip_crops`` extraction feature: CLIP of sound-source crops from manifest boxes or the OWLv2 detector."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from foleykit.data import Manifest, read_manifest
from foleykit.data.synthetic import make_synthetic_dataset
from foleykit.errors import InputError
from foleykit.io.image import crop_box, load_image
from foleykit.io.video import read_frames
from foleykit.training.extraction import EmbeddingStore, ExtractionConfig, ShardExtractor, extract_embeddings

CROPS = dict(features=("clip", "clip_crops"), shard_size=2, batch_size=3)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("media"), n_images=3, n_videos=1, broken=True)


@pytest.fixture(scope="module")
def manifest(manifest_path) -> Manifest:
    return read_manifest(manifest_path)


@pytest.fixture(scope="module")
def base(tiny_models_dir) -> ShardExtractor:
    """CLIP ViT-L/14 stand-in and the tiny OWLv2, loaded once (other configs reuse them)."""
    return ShardExtractor.from_models(ExtractionConfig(**CROPS), str(tiny_models_dir), device="cpu")


def with_config(base: ShardExtractor, **kw) -> ShardExtractor:
    return ShardExtractor(ExtractionConfig(**{**CROPS, **kw}), base.clip, None, base.detector)


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((folder / "shards").glob("*"))}


def embed(base: ShardExtractor, images) -> torch.Tensor:
    return base.clip.embed_images(list(images), normalize=True)


def centre_frame(item):
    return read_frames(item.video, 1, max_side=448)[0]


def test_manifest_boxes_are_cropped_and_embedded(manifest, base, tmp_path):
    items = {it.id: it for it in manifest}
    boxed = Manifest([
        # img0000 is 96 x 72: the first box is exactly pixels (12, 9, 57, 54), a 45 x 45 square; the
        # second (48, 0, 96, 36) is wide, so it is letterboxed.
        replace(items["img0000"], boxes=((0.125, 0.125, 0.59375, 0.75), (0.5, 0.0, 1.0, 0.5))),
        replace(items["img0001"], boxes=((0.0, 0.0, 0.5, 0.5), (0.5, 0.5, 1.0, 1.0), (0.25, 0.25, 0.75, 0.75))),
        replace(items["vid0000"], boxes=((0.25, 0.25, 0.75, 0.75),)),
    ])
    calls = base.detector.calls
    res = extract_embeddings(boxed, tmp_path / "emb", extractor=with_config(base, max_crops=2), progress=False)
    assert base.detector.calls == calls  # boxes given: the detector never ran
    assert res.complete and res.num_extracted == 3 and res.num_noted == 1
    store = EmbeddingStore(tmp_path / "emb")
    data = store.load()
    assert data["clip_crops"].shape == (3, 2, 768) and data["crop_boxes"].shape == (3, 2, 4)
    assert data["crop_padding_mask"].dtype == torch.bool
    assert data["crop_padding_mask"].tolist() == [[False, False], [False, False], [False, True]]
    assert data["crop_boxes"][0].tolist() == [[0.125, 0.125, 0.59375, 0.75], [0.5, 0.0, 1.0, 0.5]]
    assert data["crop_boxes"][1].tolist() == [[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]  # the first M = 2
    assert not data["crop_boxes"][2, 1].any() and not data["clip_crops"][2, 1].any()  # an empty slot is zero
    assert store.notes == [{"id": "img0001", "note": "3 boxes in the manifest; the first 2 (max_crops) were kept"}]

    img = load_image(items["img0000"].image)
    by_hand = img.crop((12, 9, 57, 54))
    assert by_hand.size == (45, 45)
    torch.testing.assert_close(data["clip_crops"][0, 0], embed(base, [by_hand])[0], atol=1e-5, rtol=1e-4)
    wide = crop_box(img, (48, 0, 96, 36))
    assert wide.size == (48, 48)
    torch.testing.assert_close(data["clip_crops"][0, 1], embed(base, [wide])[0], atol=1e-5, rtol=1e-4)
    assert (data["clip_crops"][0, 0] - data["clip"][0]).abs().max() > 1e-3  # a crop, not the whole image
    assert (data["clip_crops"][0, 0] - data["clip_crops"][0, 1]).abs().max() > 1e-3
    # A video is cropped in the frame at its window centre (64 x 48: the box is pixels (16, 12, 48, 36)).
    frame = centre_frame(items["vid0000"])
    torch.testing.assert_close(data["clip_crops"][2, 0], embed(base, [crop_box(frame, (16, 12, 48, 36))])[0],
                               atol=1e-5, rtol=1e-4)
    index = json.loads((tmp_path / "emb" / "extraction.json").read_text())
    assert index["features"]["crop_padding_mask"] == {"shape": [2], "dtype": "bool"}
    assert index["features"]["clip_crops"] == {"shape": [2, 768], "dtype": "float32"}
    assert index["num_noted"] == 1 and index["models"]["detector"]["class"] == "Owlv2ForObjectDetection"


def test_detector_boxes_shapes_and_masks(manifest, base, tmp_path):
    few = manifest.select(ids=["img0000", "img0001", "img0002", "vid0000", "mute"])
    ex = with_config(base, max_crops=3)  # detector_max_detections follows max_crops
    assert ex.config.detector_max_detections == 3
    res = extract_embeddings(few, tmp_path / "emb", extractor=ex, progress=False)
    assert res.complete and res.num_extracted == 5 and not res.skipped
    store = EmbeddingStore(tmp_path / "emb")
    data = store.load()
    assert data["clip_crops"].shape == (5, 3, 768) and data["crop_padding_mask"].shape == (5, 3)
    counts = []
    for i, item in enumerate(few):
        image = load_image(item.image) if item.image else centre_frame(item)
        w, h = image.size
        dets = base.detector.detect(image, max_detections=3)  # the sources pipeline's defaults otherwise
        k = len(dets)
        counts.append(k)
        assert data["crop_padding_mask"][i].tolist() == [j >= k for j in range(3)], item.id
        if k:
            want_boxes = torch.tensor([[d.box[0] / w, d.box[1] / h, d.box[2] / w, d.box[3] / h] for d in dets])
            torch.testing.assert_close(data["crop_boxes"][i, :k], want_boxes)
            torch.testing.assert_close(data["clip_crops"][i, :k], embed(base, [crop_box(image, d.box) for d in dets]),
                                       atol=1e-5, rtol=1e-4)
        assert not data["clip_crops"][i, k:].any() and not data["crop_boxes"][i, k:].any()
        assert ((data["crop_boxes"][i] >= 0) & (data["crop_boxes"][i] <= 1)).all()
    assert max(counts) == 3 and sum(counts) > 3  # the tiny detector finds sources; M caps them
    noted = [n["id"] for n in store.notes]
    assert noted == [few[i].id for i, k in enumerate(counts) if k == 0]

    # No detection anywhere: every item is kept with zero crops (mask all True) and a note, none skipped.
    res = extract_embeddings(few, tmp_path / "none", extractor=with_config(base, detector_threshold=1.0),
                             progress=False)
    assert res.num_extracted == 5 and not res.skipped and res.num_noted == 5
    store = EmbeddingStore(tmp_path / "none")
    assert store.load(["crop_padding_mask"])["crop_padding_mask"].all()
    assert store.notes[0] == {"id": "img0000", "note": "no boxes in the manifest and no detection above 1: zero crops"}


def test_count_cap(manifest, base, tmp_path):
    """M = max_crops slots: manifest boxes are capped at M, detections at detector_max_detections <= M."""
    items = {it.id: it for it in manifest}
    many = tuple((x / 10, 0.1, x / 10 + 0.1, 0.9) for x in range(5))
    mixed = Manifest([items["img0000"], replace(items["img0001"], boxes=many), items["img0002"]])
    # Threshold 0 and no area floor: every patch box passes and NMS leaves more than 2 (checked below).
    ex = with_config(base, max_crops=3, detector_max_detections=2, detector_threshold=0.0, detector_min_area=0.0)
    extract_embeddings(mixed, tmp_path / "emb", extractor=ex, progress=False)
    data = EmbeddingStore(tmp_path / "emb").load()
    assert data["clip_crops"].shape == (3, 3, 768)
    assert data["crop_padding_mask"].tolist() == [[False, False, True], [False, False, False], [False, False, True]]
    torch.testing.assert_close(data["crop_boxes"][1], torch.tensor(many[:3]))  # the first M boxes
    for i in (0, 2):
        found = base.detector.detect(load_image(mixed[i].image), threshold=0.0, min_area=0.0, max_detections=64)
        assert len(found) > 2


def test_resume_gives_identical_shards(manifest, manifest_path, tiny_models_dir, tmp_path):
    """Stopped after 2 of 4 shards, resumed by fresh processes' worth of models (and a loader worker):
    shards and index byte-identical to one uninterrupted run. Manifest boxes and detections mixed."""
    items = list(manifest)
    items[1] = replace(items[1], boxes=((0.1, 0.2, 0.6, 0.9), (0.0, 0.0, 1.0, 0.5)))
    mixed = Manifest(items)
    cfg = ExtractionConfig(**{**CROPS, "max_crops": 4})
    ref = tmp_path / "ref"
    res = extract_embeddings(mixed, ref, cfg, models=str(tiny_models_dir), device="cpu", progress=False)
    assert res.complete and res.shards_written == 4
    out = tmp_path / "resumed"
    res = extract_embeddings(mixed, out, cfg, models=str(tiny_models_dir), device="cpu", progress=False, max_shards=2)
    assert not res.complete
    with_worker = ExtractionConfig(**{**CROPS, "max_crops": 4, "num_workers": 1})
    res = extract_embeddings(mixed, out, with_worker, models=str(tiny_models_dir), device="cpu", progress=False)
    assert res.complete and res.shards_reused == 2 and res.shards_written == 2
    assert digest(out) == digest(ref)
    assert (out / "extraction.json").read_bytes() == (ref / "extraction.json").read_bytes()
    # A changed crop setting under the folder is refused, like any run setting.
    with pytest.raises(InputError, match=r"different settings \(detector_threshold\)"):
        extract_embeddings(mixed, out, ExtractionConfig(**{**CROPS, "max_crops": 4, "detector_threshold": 0.3}),
                           models=str(tiny_models_dir), device="cpu", progress=False)


@pytest.mark.parametrize("bad, match", [
    (dict(max_crops=0), "max_crops must be an integer from 1 to 64"),
    (dict(max_crops=65), "max_crops must be an integer from 1 to 64"),
    (dict(max_crops=2.5), "max_crops must be an integer from 1 to 64"),
    (dict(max_crops=True), "max_crops must be an integer from 1 to 64"),
    (dict(max_crops=4, detector_max_detections=5), r"detector_max_detections must be an integer from 1 to max_crops \(4\)"),
    (dict(detector_threshold=1.5), r"detector_threshold must be in \[0, 1\]"),
    (dict(detector_nms_iou=0.0), r"detector_nms_iou must be in \(0, 1\]"),
    (dict(detector_size=8), "detector_size must be None or an integer"),
])
def test_bad_crop_settings_are_one_input_error(bad, match):
    with pytest.raises(InputError, match=match) as info:
        ExtractionConfig(features=("clip_crops",), **bad)
    assert "\n" not in str(info.value)


def test_crop_settings_do_not_touch_other_runs_and_no_detector_is_refused(manifest, base, tmp_path):
    plain = ExtractionConfig(features=("clip",))
    assert not {"max_crops", "detector_threshold"} & set(plain.run_fields())
    # Folders made without clip_crops keep their identity (no detector entry, same settings).
    assert set(ShardExtractor(plain, base.clip).model_identity()) == {"clip", "clap"}
    assert ExtractionConfig(features=("clip",), max_crops=3).run_fields() == plain.run_fields()
    assert ExtractionConfig(features=("clip_crops",), max_crops=3).run_fields()["max_crops"] == 3
    # Items without boxes need the detector: refused before any folder is made.
    no_detector = ShardExtractor(ExtractionConfig(**CROPS), base.clip, None, None)
    with pytest.raises(InputError, match=r"clip_crops: 8 items have no boxes in the manifest .*no 'detector' role"):
        extract_embeddings(manifest, tmp_path / "emb", extractor=no_detector, progress=False)
    assert not (tmp_path / "emb").exists()


def test_cli_extract_clip_crops(manifest_path, tiny_models_dir, tmp_path):
    from typer.testing import CliRunner

    from foleykit.cli import app
    args = ["extract", manifest_path, "-o", tmp_path / "emb", "--features", "clip_crops", "--max-crops", 3,
            "--detector-max-detections", 2, "--models", tiny_models_dir, "--device", "cpu", "-q"]
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "extracted 6 of 8 items" in res.output
    index = json.loads((tmp_path / "emb" / "extraction.json").read_text())
    assert index["config"]["max_crops"] == 3 and index["config"]["detector_max_detections"] == 2
    assert index["features"]["clip_crops"]["shape"] == [3, 768]
    data = EmbeddingStore(tmp_path / "emb").load()
    assert data["crop_padding_mask"][:, 2].all() and not data["crop_padding_mask"][:, 0].all()  # <= 2 detections
    args = ["extract", manifest_path, "-o", tmp_path / "none", "--features", "clip,clip_crops", "--detector-threshold",
            1, "--models", tiny_models_dir, "--device", "cpu", "-q"]
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "6 items kept with a note (e.g. no box and no detection: zero crops)" in res.output
    res = CliRunner().invoke(app, [str(a) for a in ["extract", manifest_path, "-o", tmp_path / "bad", "--features",
                                                    "clip_crops", "--max-crops", 0, "-q"]])
    assert isinstance(res.exception, InputError) and "max_crops must be an integer from 1 to 64" in str(res.exception)
