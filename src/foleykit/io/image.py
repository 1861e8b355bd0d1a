"""Image loading: any Pillow-readable file, a PIL image or a numpy array, to an upright RGB image;
and box crops (:func:`crop_box`) and masked cut-outs (:func:`cut_out`) letterboxed for CLIP."""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError
from ._checks import check_input_file, one_line

ImageInput = str | os.PathLike | Image.Image | np.ndarray


def _check_pixels(size: tuple[int, int], max_pixels: int, what: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise InputError(f"{what} has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise InputError(
            f"{what} is {width}x{height} = {width * height:,} pixels, "
            f"more than the {max_pixels:,} pixel limit"
        )


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any mode to RGB: alpha is composited on white, 16/32-bit images are scaled, not clipped."""
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        # Integer images are taken as 16-bit (0..65535), float ones as 0..1, unless the data exceed that.
        full = max(1.0 if img.mode == "F" else 65535.0, float(arr.max()))
        grey = (np.clip(arr / full, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _from_array(arr: np.ndarray, max_pixels: int) -> Image.Image:
    """HxW, HxWx1, HxWx3 or HxWx4 array, uint8 (0..255) or float (0..1), to an RGB image."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InputError(f"image array must be HxW, HxWx3 or HxWx4 (channels last), got shape {arr.shape}")
    _check_pixels((arr.shape[1], arr.shape[0]), max_pixels, "image array")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InputError("image array contains NaN or infinite values")
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise InputError(f"image array must be uint8 (0..255) or float (0..1), got dtype {arr.dtype}")
    return _to_rgb(Image.fromarray(np.ascontiguousarray(arr)))


def load_image(image: ImageInput, *, max_pixels: int = 50_000_000) -> Image.Image:
    """Load an image as an upright (EXIF-rotated) RGB :class:`PIL.Image.Image`.

    Accepts a path, a PIL image or a numpy array. The pixel count is checked from the header
    before any decoding, so a decompression bomb is refused without allocating it.
    """
    if isinstance(image, np.ndarray):
        return _from_array(image, max_pixels)
    if isinstance(image, Image.Image):
        _check_pixels(image.size, max_pixels, "image")
        return _to_rgb(ImageOps.exif_transpose(image))

    p = check_input_file(image, "image")
    try:
        with warnings.catch_warnings():
            # Our own limit (checked below, before load) replaces Pillow's warning threshold;
            # Pillow's hard DecompressionBombError still applies above twice its limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as img:
                _check_pixels(img.size, max_pixels, f"image file {p}")
                img.load()
                return _to_rgb(ImageOps.exif_transpose(img))
    except Image.DecompressionBombError as exc:
        raise InputError(f"image file {p} is too large to decode safely ({one_line(exc)})") from exc
    except UnidentifiedImageError as exc:
        raise InputError(f"image file {p} is not a recognised image format") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"image file {p} is corrupt or truncated ({one_line(exc)})") from exc


def letterbox(img: Image.Image) -> Image.Image:
    """Pad to a square with the image's mean colour, so CLIP's centre crop keeps the whole region."""
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    mean = tuple(int(v) for v in np.asarray(img, dtype=np.float32).reshape(-1, 3).mean(0).round())
    canvas = Image.new("RGB", (side, side), mean)
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas


def crop_box(img: Image.Image, box) -> Image.Image:
    """The region ``box`` = (x0, y0, x1, y1) in pixels of an RGB ``img``, letterboxed to a square.

    The crop covers every pixel the box touches (floor/ceil, at least one pixel). SS2A's sources
    pipeline and the ``clip_crops`` extraction feature both crop detected and given boxes this way.
    """
    x0, y0, x1, y1 = box
    left, top = math.floor(x0), math.floor(y0)
    right, bottom = max(left + 1, math.ceil(x1)), max(top + 1, math.ceil(y1))
    return letterbox(img.crop((left, top, right, bottom)))


def cut_out(img: Image.Image, mask: np.ndarray, background: tuple[int, int, int] = (0, 0, 0)
            ) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """The pixels of ``mask`` (bool HxW, at least one True) on ``background``, cropped to the mask's
    bounding box and letterboxed; and that box (x0, y0, x1, y1) in pixels.

    SS2A's mask sources use black (the released code multiplies the image by the mask); the
    training-free route's clicked objects use neutral grey."""
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    arr = np.asarray(img.convert("RGB")).copy()
    arr[~np.asarray(mask, dtype=bool)] = background
    return letterbox(Image.fromarray(arr[y0:y1, x0:x1])), (float(x0), float(y0), float(x1), float(y1))
