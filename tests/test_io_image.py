"""Image loading: formats, modes, EXIF orientation, passthrough, and every kind of bad file."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from foleykit.errors import InputError
from foleykit.io.image import load_image


def gradient(w: int = 40, h: int = 30) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    img[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    return img


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".bmp"])
def test_loads_formats_as_rgb(tmp_path, ext):
    p = tmp_path / f"pic{ext}"
    Image.fromarray(gradient()).save(p)
    img = load_image(p)
    assert img.mode == "RGB" and img.size == (40, 30)
    assert np.abs(np.asarray(img, np.int16) - gradient()).mean() < 8


def test_exif_orientation_is_applied(tmp_path):
    p = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(gradient(40, 30)).save(p, exif=exif)
    assert load_image(p).size == (30, 40)


def test_alpha_is_composited_on_white_and_16_bit_is_scaled(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)  # fully transparent black
    p = tmp_path / "clear.png"
    Image.fromarray(rgba, mode="RGBA").save(p)
    assert np.asarray(load_image(p)).min() == 255

    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(deep)
    assert np.asarray(load_image(deep))[0, 0, 0] == pytest.approx(128, abs=1)


def test_passthrough_of_pil_images_and_arrays():
    arr = gradient()
    assert np.array_equal(np.asarray(load_image(Image.fromarray(arr).convert("RGBA"))), arr)
    assert np.array_equal(np.asarray(load_image(arr)), arr)
    as_float = load_image(arr.astype(np.float32) / 255.0)
    assert np.abs(np.asarray(as_float, np.int16) - arr).max() <= 1
    assert load_image(arr[..., 0]).mode == "RGB"
    with pytest.raises(InputError, match="channels last"):
        load_image(np.zeros((3, 30, 40), np.uint8))
    with pytest.raises(InputError, match="dtype"):
        load_image(np.zeros((30, 40, 3), np.int64))
    with pytest.raises(InputError, match="NaN"):
        load_image(np.full((4, 4, 3), np.nan, np.float32))


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "not found"),
        ("empty", "empty"),
        ("text", "not a recognised image"),
        ("truncated", "corrupt or truncated"),
        ("directory", "directory"),
    ],
)
def test_bad_files_raise_one_line_input_error_naming_the_file(tmp_path, kind, message):
    p = tmp_path / "pic.png"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "text":
        p.write_text("a caption, not a picture\n")
    elif kind == "truncated":
        big = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
        Image.fromarray(big).save(p)
        p.write_bytes(p.read_bytes()[:5000])
    elif kind == "directory":
        p.mkdir()
    with pytest.raises(InputError, match=message) as err:
        load_image(p)
    assert str(p) in str(err.value) and "\n" not in str(err.value)


def test_pixel_limit_is_checked_before_decoding(tmp_path, monkeypatch):
    p = tmp_path / "big.png"
    Image.new("RGB", (400, 300)).save(p)
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded an image over the limit"))
    with pytest.raises(InputError, match="120,000 pixels") as err:
        load_image(p, max_pixels=100_000)
    assert str(p) in str(err.value)


def test_decompression_bomb_becomes_input_error(tmp_path, monkeypatch):
    p = tmp_path / "bomb.png"
    Image.new("RGB", (400, 300)).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's own hard limit is 2x this
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no DecompressionBombWarning may leak out
        with pytest.raises(InputError, match="too large to decode safely") as err:
            load_image(p, max_pixels=10**9)
    assert str(p) in str(err.value)
