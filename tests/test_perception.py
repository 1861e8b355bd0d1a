"""SS2A perception: OWLv2 sound-source detection (box math, NMS, caching) and the text→image prior."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from foleykit.encoders.detector import SoundSourceDetector, box_iou, check_box, nms
from foleykit.encoders.prior import TextToImagePrior
from foleykit.errors import InputError


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def detector(tiny_models_dir) -> SoundSourceDetector:
    return SoundSourceDetector.from_pretrained(str(tiny_models_dir / "owlv2-base-patch16"))


@pytest.fixture(scope="module")
def prior(tiny_models_dir) -> TextToImagePrior:
    return TextToImagePrior.from_pretrained(str(tiny_models_dir / "karlo-prior"))


def _image(w: int = 160, h: int = 96, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def test_box_iou_and_nms_by_hand():
    boxes = torch.tensor([[0.0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    iou = box_iou(boxes, boxes)
    # Boxes 0 and 1 overlap in a 5x10 strip: 50 / (100 + 100 - 50) = 1/3.
    assert iou[0, 1].item() == pytest.approx(1 / 3)
    assert iou[0, 2].item() == 0.0 and iou[2, 2].item() == pytest.approx(1.0)
    scores = torch.tensor([0.5, 0.9, 0.7])
    assert nms(boxes, scores, 0.3).tolist() == [1, 2]  # 0 is suppressed by the better 1 (IoU 1/3 > 0.3)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2, 0]  # IoU 1/3 <= 0.5 keeps all, best first


def test_check_box_refuses_outside_and_zero_area():
    assert check_box((30, 40, 10, 20), 100, 80) == (10.0, 20.0, 30.0, 40.0)  # corners are reordered
    with pytest.raises(InputError, match="outside the 100x80 image"):
        check_box((50, 10, 120, 40), 100, 80)
    with pytest.raises(InputError, match="zero area"):
        check_box((10, 10, 10, 40), 100, 80)
    with pytest.raises(InputError, match="four numbers"):
        check_box(("a", 1, 2, 3), 100, 80)


def test_detections_match_the_reference_post_processing(detector):
    """Our cached-query path gives the same boxes, scores and labels as transformers' full forward and
    its post-processing (OWLv2 boxes are relative to the padded square, scaled by max(h, w))."""
    img = _image()
    queries = list(detector.vocabulary[:6])
    detector.set_vocabulary(queries)
    try:
        xyxy, scores, labels = detector.raw_predictions(img)
        tok = detector.processor.tokenizer([detector.prompt_template.format(q) for q in queries],
                                           padding="max_length", max_length=16, return_tensors="pt")
        with torch.no_grad():
            out = detector.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"],
                                 pixel_values=detector._pixels(img))
        ref = detector.processor.post_process_grounded_object_detection(
            out, threshold=0.0, target_sizes=[(img.height, img.width)], text_labels=[queries]
        )[0]
    finally:
        detector.set_vocabulary(None)
    ref_boxes = ref["boxes"].clone()
    ref_boxes[:, 0::2] = ref_boxes[:, 0::2].clamp(0, img.width)
    ref_boxes[:, 1::2] = ref_boxes[:, 1::2].clamp(0, img.height)
    assert len(ref["scores"]) == len(scores) == 16  # 64 px / 16 px patches = 4 x 4 predictions
    assert torch.allclose(scores, ref["scores"], atol=1e-5)
    assert torch.allclose(xyxy, ref_boxes, atol=1e-3)
    assert [queries[i] for i in labels] == ref["text_labels"]


def test_detect_respects_threshold_limits_and_counts_passes(detector):
    img = _image(seed=1)
    before = detector.calls
    many = detector.detect(img, threshold=0.0, max_detections=64, min_area=0.0)
    assert detector.calls == before + 1
    assert many and all(0 <= d.box[0] < d.box[2] <= img.width and 0 <= d.box[1] < d.box[3] <= img.height for d in many)
    assert [d.score for d in many] == sorted((d.score for d in many), reverse=True)
    assert len(detector.detect(img, threshold=0.0, max_detections=1, min_area=0.0)) == 1
    assert detector.detect(img, threshold=1.0) == []  # sigmoid scores never exceed 1
    coarse = detector.detect(img, threshold=0.0, max_detections=64, min_area=0.0, nms_iou=1.0, image_size=32)
    assert 1 <= len(coarse) <= 4  # a 32-px input: 2 x 2 patches (interpolated position embeddings)
    with pytest.raises(InputError, match="multiple of the 16-px patch"):
        detector.detect(img, image_size=40)
    queries = detector.query_embeddings()
    assert detector.query_embeddings() is queries  # the vocabulary is embedded once
    with pytest.raises(InputError, match="threshold"):
        detector.detect(img, threshold=1.5)


def test_prior_gives_seeded_unit_image_embeddings(prior):
    a = prior.embed_texts(["rain", "dog barking"], seed=5, num_inference_steps=4)
    assert a.shape == (2, 768) and torch.allclose(a.norm(dim=-1), torch.ones(2), atol=1e-5)
    b = prior.embed_texts(["rain"], seed=5, num_inference_steps=4)
    assert torch.allclose(a[0], b[0], atol=1e-5)  # text i uses seed + i, whatever else is in the batch
    c = prior.embed_texts(["rain"], seed=6, num_inference_steps=4)
    assert not torch.equal(b, c)  # the sampling noise comes from the seed
    with pytest.raises(InputError, match="empty"):
        prior.embed_texts(["  "], seed=0)
