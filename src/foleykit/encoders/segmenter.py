"""SAM (Segment Anything) behind clicks and boxes: one image embedding per image, one decoder pass per prompt.

SAM splits into a heavy ViT image encoder and a light prompt encoder + mask decoder. The image
embedding is computed once per image (:meth:`Segmenter.set_image`, cached by a hash of the pixels) and
every click or box only runs the prompt encoder and the mask decoder on that cached embedding, which
is what makes click-to-select interactive on a CPU.

Coordinates are pixels of the image as given (x to the right, y down, origin at the top-left
corner). A click is one object; SAM proposes three masks per prompt and the one with the highest
predicted IoU is kept.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import InputError
from ..io.image import ImageInput, load_image
from .loading import FrozenModel, LoadedFrom, load_frozen

__all__ = ["Segmenter", "SegmentResult", "image_key", "mask_overlay", "write_tiny_sam", "TINY_SAM_CONFIG"]

Point = tuple[float, float]
Box = tuple[float, float, float, float]

#: Colours for successive objects in overlays (RGB).
PALETTE = (
    (255, 64, 64),
    (64, 160, 255),
    (80, 220, 100),
    (255, 190, 40),
    (200, 90, 255),
    (40, 220, 220),
    (255, 120, 200),
    (160, 160, 160),
)


def image_key(image: Image.Image) -> str:
    """Identity of an image's content: SHA-1 of its size, mode and pixels (same pixels → same key)."""
    h = hashlib.sha1()
    h.update(f"{image.size}|{image.mode}|".encode())
    h.update(image.tobytes())
    return h.hexdigest()


class SegmentResult:
    """Masks (bool H×W numpy arrays, one per object) with SAM's predicted IoU for each."""

    def __init__(self, masks: list[np.ndarray], scores: list[float]) -> None:
        self.masks = masks
        self.scores = scores

    def __len__(self) -> int:
        return len(self.masks)


class Segmenter(FrozenModel):
    """Frozen SAM (transformers ``SamModel`` + ``SamProcessor``) with a per-image embedding cache.

    ``image_embedding_calls`` counts how often the image encoder ran (each costs a full ViT pass;
    each click costs only the decoder). Thread-safe: one lock around the model.
    """

    def __init__(self, model, processor, *, loaded_from: LoadedFrom | None = None, cache_size: int = 4) -> None:
        self.model = model
        self.processor = processor
        self.loaded_from = loaded_from
        self.cache_size = max(1, int(cache_size))
        self._cache: OrderedDict[str, dict] = OrderedDict()
        self._current: str | None = None
        self._lock = threading.RLock()
        self.image_embedding_calls = 0

    @classmethod
    def from_pretrained(
        cls, ref: str, *, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None, cache_size: int = 4
    ) -> Segmenter:
        from transformers import SamModel, SamProcessor

        model, (processor,), src = load_frozen(SamModel, ref, SamProcessor, device=device, dtype=dtype)
        return cls(model, processor, loaded_from=src, cache_size=cache_size)

    # ------------------------------------------------------------------ image

    @torch.no_grad()
    def set_image(self, image: ImageInput) -> str:
        """Make ``image`` the current one; compute its SAM embedding unless cached. Returns its key."""
        img = load_image(image)
        key = image_key(img)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
            else:
                enc = self.processor.image_processor(images=[img], return_tensors="pt")
                pixels = enc["pixel_values"].to(device=self.device, dtype=self.dtype)
                embedding = self.model.get_image_embeddings(pixels)
                self.image_embedding_calls += 1
                self._cache[key] = {
                    "embedding": embedding,
                    "original_size": tuple(int(v) for v in enc["original_sizes"][0].tolist()),  # (H, W)
                    "reshaped_size": tuple(int(v) for v in enc["reshaped_input_sizes"][0].tolist()),
                }
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            self._current = key
        return key

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the current image."""
        h, w = self._entry()["original_size"]
        return w, h

    def _entry(self) -> dict:
        if self._current is None or self._current not in self._cache:
            raise InputError("no image set: call set_image(image) before asking for masks")
        return self._cache[self._current]

    # ------------------------------------------------------------------ prompts

    @staticmethod
    def _check_point(p, w: int, h: int, what: str) -> Point:
        try:
            x, y = float(p[0]), float(p[1])
        except (TypeError, ValueError, IndexError):
            raise InputError(f"{what} must be two numbers x,y, got {p!r}") from None
        if not (np.isfinite(x) and np.isfinite(y)):
            raise InputError(f"{what} ({x:g}, {y:g}) is not a finite point")
        if not (0 <= x < w and 0 <= y < h):
            raise InputError(f"{what} ({x:g}, {y:g}) lies outside the {w}x{h} image (x in [0, {w}), y in [0, {h}))")
        return x, y

    @staticmethod
    def _check_box(b, w: int, h: int, what: str) -> Box:
        try:
            x0, y0, x1, y1 = (float(v) for v in b)
        except (TypeError, ValueError):
            raise InputError(f"{what} must be four numbers x0,y0,x1,y1, got {b!r}") from None
        if not all(np.isfinite(v) for v in (x0, y0, x1, y1)):
            raise InputError(f"{what} has non-finite coordinates")
        x0, x1 = sorted((x0, x1))
        y0, y1 = sorted((y0, y1))
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            raise InputError(f"{what} ({x0:g},{y0:g},{x1:g},{y1:g}) has zero area")
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            raise InputError(f"{what} ({x0:g},{y0:g},{x1:g},{y1:g}) reaches outside the {w}x{h} image")
        return x0, y0, x1, y1

    def segment_image(
        self,
        image: ImageInput,
        points: Sequence | None = None,
        labels: Sequence | None = None,
        boxes: Sequence[Box] | None = None,
    ) -> SegmentResult:
        """:meth:`set_image` then :meth:`segment`, as one step: safe when threads share this segmenter
        (another thread's ``set_image`` cannot slip in between)."""
        with self._lock:
            self.set_image(image)
            return self.segment(points, labels, boxes)

    def masks(
        self,
        points: Sequence | None = None,
        labels: Sequence | None = None,
        boxes: Sequence[Box] | None = None,
    ) -> list[np.ndarray]:
        """One bool H×W mask per object of the current image (see :meth:`segment`)."""
        return self.segment(points, labels, boxes).masks

    @torch.no_grad()
    def segment(
        self,
        points: Sequence | None = None,
        labels: Sequence | None = None,
        boxes: Sequence[Box] | None = None,
    ) -> SegmentResult:
        """Masks for objects on the current image, using its cached embedding.

        Args:
            points: one entry per object: a click ``(x, y)``, or a list of clicks ``[(x, y), ...]``
                that together describe one object (with ``labels``).
            labels: per object, 1 (include) / 0 (exclude) for each of its clicks; default all 1.
            boxes: one object per box ``(x0, y0, x1, y1)``.

        Objects from ``points`` come first, then those from ``boxes``. Only the prompt encoder and
        the mask decoder run here.
        """
        points = list(points or [])
        boxes = list(boxes or [])
        if not points and not boxes:
            return SegmentResult([], [])
        with self._lock:
            entry = self._entry()
            h, w = entry["original_size"]
            rh, rw = entry["reshaped_size"]
            sx, sy = rw / w, rh / h  # original pixels → model input pixels (as SamProcessor scales them)
            logits, scores = [], []
            if points:
                groups = self._point_groups(points, labels, w, h)
                n_max = max(len(g) for g, _ in groups)
                pts = torch.full((1, len(groups), n_max, 2), 0.0)
                lab = torch.full((1, len(groups), n_max), -10, dtype=torch.long)  # -10 = padding
                for i, (g, lb) in enumerate(groups):
                    for j, ((x, y), l) in enumerate(zip(g, lb)):
                        pts[0, i, j] = torch.tensor([x * sx, y * sy])
                        lab[0, i, j] = l
                out = self.model(
                    image_embeddings=entry["embedding"],
                    input_points=pts.to(self.device, self.dtype),
                    input_labels=lab.to(self.device),
                    multimask_output=True,
                )
                logits.append(out.pred_masks[0])
                scores.append(out.iou_scores[0])
            if boxes:
                bx = [self._check_box(b, w, h, f"box {i + 1}") for i, b in enumerate(boxes)]
                t = torch.tensor([[[x0 * sx, y0 * sy, x1 * sx, y1 * sy] for x0, y0, x1, y1 in bx]])
                out = self.model(
                    image_embeddings=entry["embedding"], input_boxes=t.to(self.device, self.dtype), multimask_output=True
                )
                logits.append(out.pred_masks[0])
                scores.append(out.iou_scores[0])
            low = torch.cat(logits).float()  # (objects, 3, h', w')
            iou = torch.cat(scores).float()  # (objects, 3)
            best, best_scores = self._pick(low, iou)
            full = self.processor.post_process_masks(
                [best[None]], [[h, w]], [[rh, rw]], binarize=True,
                pad_size={"height": int(self.processor.image_processor.pad_size["height"]),
                          "width": int(self.processor.image_processor.pad_size["width"])},
            )[0][0]
        return SegmentResult([m.cpu().numpy().astype(bool) for m in full], [float(s) for s in best_scores])

    def _point_groups(self, points, labels, w, h) -> list[tuple[list[Point], list[int]]]:
        if labels is not None and len(labels) != len(points):
            raise InputError(f"{len(labels)} label entries for {len(points)} objects")
        groups = []
        for i, obj in enumerate(points):
            is_single = len(obj) == 2 and all(isinstance(v, (int, float, np.integer, np.floating)) for v in obj)
            clicks = [obj] if is_single else list(obj)
            if not clicks:
                raise InputError(f"object {i + 1} has no clicks")
            pts = [self._check_point(p, w, h, f"click {i + 1}") for p in clicks]
            if labels is None:
                lab = [1] * len(pts)
            else:
                lab = [labels[i]] if is_single and not isinstance(labels[i], (list, tuple)) else list(labels[i])
                if len(lab) != len(pts) or any(int(v) not in (0, 1) for v in lab):
                    raise InputError(f"object {i + 1}: give one label (1 include, 0 exclude) per click")
                if not any(int(v) == 1 for v in lab):
                    raise InputError(f"object {i + 1}: at least one click must include (label 1)")
            groups.append((pts, [int(v) for v in lab]))
        return groups

    @staticmethod
    def _pick(low: torch.Tensor, iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per object, the proposal with the highest predicted IoU among those that are not empty."""
        nonempty = (low > 0).flatten(2).any(-1)  # (objects, 3)
        ranked = torch.where(nonempty, iou, torch.full_like(iou, -torch.inf))
        idx = ranked.argmax(dim=1)
        # An object whose three proposals are all empty keeps its best-IoU (empty) mask; callers decide.
        idx = torch.where(nonempty.any(1), idx, iou.argmax(dim=1))
        ar = torch.arange(low.shape[0], device=low.device)
        return low[ar, idx], iou[ar, idx]


# ---------------------------------------------------------------------- overlays


def mask_overlay(
    image: ImageInput,
    masks: Sequence[np.ndarray],
    *,
    points: Sequence[Point | None] | None = None,
    alpha: float = 0.5,
    outline: bool = True,
) -> Image.Image:
    """The image with each mask tinted in its own colour (outlined), and the clicks marked."""
    base = np.asarray(load_image(image), dtype=np.float32)
    h, w = base.shape[:2]
    out = base.copy()
    for i, m in enumerate(masks):
        m = np.asarray(m, dtype=bool)
        if m.shape != (h, w):
            raise InputError(f"mask {i + 1} is {m.shape[1]}x{m.shape[0]}, the image is {w}x{h}")
        color = np.asarray(PALETTE[i % len(PALETTE)], dtype=np.float32)
        out[m] = out[m] * (1 - alpha) + color * alpha
        if outline:
            edge = m & ~(
                np.pad(m, 1, mode="edge")[:-2, 1:-1]
                & np.pad(m, 1, mode="edge")[2:, 1:-1]
                & np.pad(m, 1, mode="edge")[1:-1, :-2]
                & np.pad(m, 1, mode="edge")[1:-1, 2:]
            )
            out[edge] = color
    img = Image.fromarray(np.clip(out.round(), 0, 255).astype(np.uint8))
    if points:
        from PIL import ImageDraw

        draw = ImageDraw.Draw(img)
        r = max(3, round(min(w, h) / 80))
        for i, p in enumerate(points):
            if p is None:
                continue
            x, y = float(p[0]), float(p[1])
            draw.ellipse([x - r, y - r, x + r, y + r], fill=PALETTE[i % len(PALETTE)], outline=(255, 255, 255), width=2)
    return img


# ---------------------------------------------------------------------- tiny stand-in

#: A SAM with the real topology (ViT with windowed + global attention, prompt encoder, two-way
#: transformer mask decoder) at toy widths and a 256-px input; processor configured to match.
TINY_SAM_CONFIG = dict(
    vision_config=dict(
        hidden_size=32, output_channels=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64,
        image_size=256, patch_size=16, window_size=4, global_attn_indexes=[1], num_pos_feats=16,
    ),
    prompt_encoder_config=dict(hidden_size=32, image_size=256, patch_size=16, image_embedding_size=16, mask_input_channels=4),
    mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, num_hidden_layers=2, iou_head_hidden_dim=32),
)


def write_tiny_sam(path: str | Path, *, seed: int = 0) -> Path:
    """Write a deterministic tiny ``SamModel`` + ``SamProcessor`` (hub layout) into ``path``."""
    from transformers import SamConfig, SamModel, SamProcessor

    try:
        from transformers import SamImageProcessorPil as ImageProcessor
    except ImportError:  # pragma: no cover - older transformers
        from transformers import SamImageProcessor as ImageProcessor

    path = Path(path)
    torch.manual_seed(seed)
    model = SamModel(SamConfig(**TINY_SAM_CONFIG)).eval()
    side = TINY_SAM_CONFIG["vision_config"]["image_size"]
    low = 4 * TINY_SAM_CONFIG["prompt_encoder_config"]["image_embedding_size"]
    processor = SamProcessor(
        ImageProcessor(
            size={"longest_edge": side},
            pad_size={"height": side, "width": side},
            mask_size={"longest_edge": low},
            mask_pad_size={"height": low, "width": low},
        )
    )
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
