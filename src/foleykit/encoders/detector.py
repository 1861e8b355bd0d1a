"""Open-vocabulary sound-source detection with OWLv2 (transformers ``Owlv2ForObjectDetection``).

SS2A perceives the visual sound sources of a scene by detecting objects and cropping them. The
released code used YOLOv8 (AGPL weights, a closed class list); foleykit uses OWLv2
(``google/owlv2-base-patch16-ensemble``, Apache-2.0), which scores every image region against free
text queries, so the vocabulary is the list of sounding objects in
:data:`foleykit.vocabulary.SOUNDING_OBJECTS` (or any list the caller passes).

What happens per image (:meth:`SoundSourceDetector.detect`):

1. The vocabulary's text queries (``"a photo of a {label}"``) are embedded **once per vocabulary**
   and cached; an image costs only the vision tower and the light box/class heads.
2. The image is padded to a square at the bottom/right (OWLv2's convention) and resized to the
   model's input size; each of the (size/patch)² patch tokens predicts one box and a score per query.
3. Per box, the best query gives its label and score (sigmoid of the logit); boxes under
   ``threshold`` are dropped, boxes are mapped back to pixels of the original image and clipped
   to it, boxes smaller than ``min_area`` (fraction of the image) are dropped, then class-agnostic
   non-maximum suppression (IoU ``nms_iou``) keeps the best of overlapping boxes — two labels for
   one object would otherwise count as two sound sources — and the ``max_detections`` best remain.

``calls`` counts vision passes, so callers (and tests) can check that detection runs once per image.

Coordinates are pixels of the image as given: x to the right, y down, origin top-left,
boxes ``(x0, y0, x1, y1)``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import InputError
from ..io.image import ImageInput, load_image
from ..vocabulary import SOUNDING_OBJECTS
from .loading import FrozenModel, LoadedFrom, load_frozen, pooled

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "DEFAULT_MAX_DETECTIONS",
    "DEFAULT_MIN_AREA",
    "DEFAULT_NMS_IOU",
    "DEFAULT_THRESHOLD",
    "PROMPT_TEMPLATE",
    "Detection",
    "SoundSourceDetector",
    "box_iou",
    "check_box",
    "nms",
    "write_tiny_detector",
]

Box = tuple[float, float, float, float]

#: OWLv2 scores are calibrated lower than closed-set detectors'; 0.2 keeps confident objects only
#: (transformers' example uses 0.1, the released SS2A YOLO setting was 0.5 on a different scale).
DEFAULT_THRESHOLD = 0.2
#: Released SS2A: YOLO NMS IoU 0.5.
DEFAULT_NMS_IOU = 0.5
#: Detected sources kept per image. Each costs one CLIP ViT-L/14 pass; the slot limit is 63.
DEFAULT_MAX_DETECTIONS = 8
#: OWLv2 input side; None = the checkpoint's native size (960 for OWLv2 base).
DEFAULT_IMAGE_SIZE: int | None = None
#: Boxes smaller than this fraction of the image are too small to crop meaningfully for CLIP.
DEFAULT_MIN_AREA = 0.002
#: OWL-ViT/OWLv2 were trained with this prompt form for object names.
PROMPT_TEMPLATE = "a photo of a {}"


@dataclass(frozen=True)
class Detection:
    """One detected object: pixel box, score in [0, 1] and the vocabulary label that won."""

    box: Box
    score: float
    label: str

    def to_record(self) -> dict:
        return {"box": [round(v, 2) for v in self.box], "score": round(self.score, 4), "label": self.label}


def check_box(box, width: int, height: int, what: str = "box") -> Box:
    """Validate a pixel box against a ``width`` x ``height`` image; returns it ordered (x0 < x1, y0 < y1)."""
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be four numbers x0,y0,x1,y1 (pixels), got {box!r}") from None
    if not all(np.isfinite(v) for v in (x0, y0, x1, y1)):
        raise InputError(f"{what} has non-finite coordinates")
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise InputError(f"{what} ({x0:g},{y0:g},{x1:g},{y1:g}) has zero area (less than one pixel wide or high)")
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise InputError(
            f"{what} ({x0:g},{y0:g},{x1:g},{y1:g}) reaches outside the {width}x{height} image "
            f"(x in [0, {width}], y in [0, {height}])"
        )
    return x0, y0, x1, y1


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[N, 4] x [M, 4] xyxy boxes → [N, M] intersection over union."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / union.clamp(min=1e-9)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> torch.Tensor:
    """Greedy non-maximum suppression: indices of kept boxes, best score first."""
    order = scores.argsort(descending=True)
    keep: list[int] = []
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    ious = box_iou(boxes[order], boxes[order])
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(int(order[i]))
        suppressed |= ious[i] > iou
    return torch.tensor(keep, dtype=torch.long)


class SoundSourceDetector(FrozenModel):
    """Frozen OWLv2 with a cached vocabulary: image → sound-source boxes. Thread-safe (one lock)."""

    def __init__(self, model, processor, *, vocabulary: Sequence[str] | None = None,
                 prompt_template: str = PROMPT_TEMPLATE, loaded_from: LoadedFrom | None = None,
                 image_size: int | None = None) -> None:
        self.model = model
        native = int(model.config.vision_config.image_size)
        patch = int(model.config.vision_config.patch_size)
        if image_size is not None and (image_size < patch or image_size % patch):
            raise InputError(f"detector image size must be a positive multiple of the {patch}-px patch, got {image_size}")
        #: Input side in pixels; below the native size the position embeddings are interpolated
        #: (cheaper, coarser: small objects are missed first).
        self.image_size = int(image_size or native)
        self.processor = processor
        self.loaded_from = loaded_from
        self.prompt_template = prompt_template
        self._lock = threading.RLock()
        self._vocab: tuple[str, ...] = ()
        self._queries: torch.Tensor | None = None
        self.calls = 0
        self.set_vocabulary(vocabulary)

    @classmethod
    def from_pretrained(
        cls,
        ref: str,
        *,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype | None = None,
        vocabulary: Sequence[str] | None = None,
        image_size: int | None = DEFAULT_IMAGE_SIZE,
    ) -> SoundSourceDetector:
        from transformers import Owlv2ForObjectDetection, Owlv2Processor

        model, (processor,), src = load_frozen(Owlv2ForObjectDetection, ref, Owlv2Processor, device=device,
                                               dtype=dtype)
        return cls(model, processor, vocabulary=vocabulary, loaded_from=src, image_size=image_size)

    # ------------------------------------------------------------------ properties (device, dtype: FrozenModel)

    @property
    def input_size(self) -> int:
        """Side of the square the image is resized to (OWLv2 base: 960 native)."""
        return self.image_size

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return self._vocab

    def set_vocabulary(self, vocabulary: Sequence[str] | None) -> None:
        """Use ``vocabulary`` (default: the shared list of sounding objects); queries are re-embedded lazily."""
        if vocabulary is None:
            vocabulary = SOUNDING_OBJECTS
        vocab = tuple(str(v).strip() for v in vocabulary)
        if not vocab or any(not v for v in vocab):
            raise InputError("the detection vocabulary must be a non-empty list of non-empty labels")
        with self._lock:
            if vocab != self._vocab:
                self._vocab = vocab
                self._queries = None

    # ------------------------------------------------------------------ queries

    @torch.no_grad()
    def query_embeddings(self) -> torch.Tensor:
        """[Q, D] text-query embeddings of the vocabulary (computed once, then cached)."""
        with self._lock:
            if self._queries is None:
                prompts = [self.prompt_template.format(v) for v in self._vocab]
                tok = self.processor.tokenizer(
                    prompts, padding="max_length", truncation=True,
                    max_length=int(self.model.config.text_config.max_position_embeddings), return_tensors="pt",
                ).to(self.device)
                outs = []
                for i in range(0, len(prompts), 64):
                    feats = self.model.owlv2.get_text_features(
                        input_ids=tok["input_ids"][i : i + 64], attention_mask=tok["attention_mask"][i : i + 64]
                    )
                    outs.append(pooled(feats))
                self._queries = torch.cat(outs)
            return self._queries

    # ------------------------------------------------------------------ images

    def _pixels(self, image: Image.Image, size: int | None = None) -> torch.Tensor:
        """Pad to a square (bottom/right, black) and resize to the model's input, normalised as OWLv2 expects.

        Equivalent to ``Owlv2ImageProcessor`` (pad, then an anti-aliased bilinear resize) but done
        with Pillow's resampler, which is an order of magnitude faster than the scipy path on CPU.
        """
        w, h = image.size
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), (0, 0, 0))
        canvas.paste(image, (0, 0))
        size = self.input_size if size is None else size
        resized = canvas.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
        ip = self.processor.image_processor
        arr = np.asarray(resized, dtype=np.float32) / 255.0
        arr = (arr - np.asarray(ip.image_mean, dtype=np.float32)) / np.asarray(ip.image_std, dtype=np.float32)
        return torch.from_numpy(arr.transpose(2, 0, 1).copy())[None].to(device=self.device, dtype=self.dtype)

    @torch.no_grad()
    def raw_predictions(self, image: Image.Image, image_size: int | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One vision pass: per patch token its box (pixels, clipped to the image), best score and label index.

        ``image_size`` overrides the input side for this call (a multiple of the patch size)."""
        w, h = image.size
        size = self.image_size if image_size is None else int(image_size)
        patch = int(self.model.config.vision_config.patch_size)
        if size < patch or size % patch:
            raise InputError(f"detector image size must be a positive multiple of the {patch}-px patch, got {size}")
        with self._lock:
            queries = self.query_embeddings()
            pixels = self._pixels(image, size)
            interpolate = size != int(self.model.config.vision_config.image_size)
            feature_map, _ = self.model.image_embedder(pixel_values=pixels, interpolate_pos_encoding=interpolate)
            self.calls += 1
            b, gh, gw, d = feature_map.shape
            feats = feature_map.reshape(b, gh * gw, d)
            logits, _ = self.model.class_predictor(feats, queries[None].to(feats.dtype), None)
            boxes = self.model.box_predictor(feats, feature_map, interpolate_pos_encoding=interpolate)
        logits, boxes = logits[0].float().cpu(), boxes[0].float().cpu()
        best = logits.max(dim=-1)
        scores, labels = torch.sigmoid(best.values), best.indices
        cx, cy, bw, bh = boxes.unbind(-1)
        side = float(max(w, h))  # boxes are relative to the padded square
        xyxy = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=-1) * side
        xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, w)
        xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, h)
        return xyxy, scores, labels

    @torch.no_grad()
    def detect(
        self,
        image: ImageInput,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        nms_iou: float = DEFAULT_NMS_IOU,
        max_detections: int = DEFAULT_MAX_DETECTIONS,
        min_area: float = DEFAULT_MIN_AREA,
        image_size: int | None = None,
    ) -> list[Detection]:
        """Sound-source boxes of ``image``, best first (see the module docstring)."""
        if not 0.0 <= threshold <= 1.0:
            raise InputError(f"detection threshold must be in [0, 1], got {threshold}")
        if not 0.0 < nms_iou <= 1.0:
            raise InputError(f"NMS IoU must be in (0, 1], got {nms_iou}")
        if max_detections < 0:
            raise InputError(f"max detections must be >= 0, got {max_detections}")
        img = load_image(image)
        w, h = img.size
        xyxy, scores, labels = self.raw_predictions(img, image_size)
        area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1]) / float(w * h)
        keep = (scores > threshold) & (area >= max(min_area, 1e-9))
        if max_detections == 0 or not keep.any():
            return []
        idx = keep.nonzero()[:, 0]
        kept = idx[nms(xyxy[idx], scores[idx], nms_iou)][:max_detections]
        return [
            Detection(tuple(float(v) for v in xyxy[i].tolist()), float(scores[i]), self._vocab[int(labels[i])])
            for i in kept
        ]


# ---------------------------------------------------------------------- tiny stand-in


def write_tiny_detector(path: str | Path, *, seed: int = 0) -> Path:
    """Write a deterministic tiny ``Owlv2ForObjectDetection`` + ``Owlv2Processor`` (hub layout).

    Real topology (CLIP-style text and vision towers, class/box/objectness heads) at toy widths and a
    64-px input (4x4 patches), with a CLIP BPE tokenizer built in memory.
    """
    from transformers import (
        CLIPTokenizer,
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessorPil,
        Owlv2Processor,
    )

    from .tiny_vocab import clip_vocab

    path = Path(path)
    vocab, merges = clip_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=16, pad_token="!")
    config = Owlv2Config(
        text_config=dict(
            vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=16, bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["!"],
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=64, patch_size=16,
        ),
        projection_dim=32,
    )
    torch.manual_seed(seed)
    model = Owlv2ForObjectDetection(config).eval()
    with torch.no_grad():  # tame the random heads: boxes near their patch cell, a few scores above 0.2
        model.box_head.dense2.weight.mul_(0.002)
        model.box_head.dense2.bias.zero_()
        model.class_head.logit_scale.weight.mul_(0.01)
        model.class_head.logit_scale.bias.fill_(3.0)
        model.class_head.logit_shift.weight.mul_(0.01)
        model.class_head.logit_shift.bias.fill_(-0.4)
    processor = Owlv2Processor(
        image_processor=Owlv2ImageProcessorPil(size={"height": 64, "width": 64}), tokenizer=tokenizer
    )
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
