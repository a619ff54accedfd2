"""Decoding every supported format, and refusing what must be refused."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from inspector.core import images
from inspector.core.errors import ImageDecodeError, ImageTooLargeError
from tests.conftest import encode_bgr
from tests.model_factory import part_image


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height but carries almost no data (a bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tiff"])
def test_color_formats_decode_to_rgb(ext: str) -> None:
    bgr = part_image(defect=True)
    out = images.decode(encode_bgr(bgr, ext))
    assert out.rgb.shape == (96, 128, 3) and out.rgb.dtype == np.uint8
    assert (out.original_width, out.original_height) == (128, 96)
    expected = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(int)
    tolerance = 12 if ext == ".jpg" else 0
    assert np.abs(out.rgb.astype(int) - expected).mean() <= tolerance


def test_rgb_channel_order_is_rgb() -> None:
    bgr = np.zeros((8, 8, 3), np.uint8)
    bgr[..., 2] = 255  # pure red in BGR
    out = images.decode(encode_bgr(bgr, ".png"))
    assert out.rgb[0, 0].tolist() == [255, 0, 0]


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tiff"])
def test_gray_images_become_three_equal_channels(ext: str) -> None:
    gray = part_image(channels=1)
    out = images.decode(encode_bgr(gray, ext))
    assert out.rgb.shape == (96, 128, 3)
    assert np.array_equal(out.rgb[..., 0], out.rgb[..., 1])


@pytest.mark.parametrize("ext", [".png", ".tiff"])
def test_sixteen_bit_is_scaled_to_eight(ext: str) -> None:
    img16 = np.full((10, 12), 40000, np.uint16)
    out = images.decode(encode_bgr(img16, ext))
    assert out.rgb.dtype == np.uint8
    assert out.rgb[0, 0, 0] == 40000 >> 8


def test_alpha_channel_is_dropped() -> None:
    bgra = np.zeros((10, 10, 4), np.uint8)
    bgra[..., 1] = 200
    bgra[..., 3] = 7
    out = images.decode(encode_bgr(bgra, ".png"))
    assert out.rgb.shape == (10, 10, 3)
    assert out.rgb[0, 0].tolist() == [0, 200, 0]


def test_palette_png_decodes() -> None:
    im = Image.fromarray(part_image()).convert("P")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    assert images.decode(buf.getvalue()).rgb.shape == (96, 128, 3)


def test_large_jpeg_is_decoded_at_reduced_scale() -> None:
    big = np.random.default_rng(1).integers(0, 255, (800, 1000, 3), np.uint8)
    data = encode_bgr(big, ".jpg")
    out = images.decode(data, target_size=(200, 160))
    assert out.reduction == 4
    assert out.rgb.shape == (200, 250, 3)
    assert (out.original_width, out.original_height) == (1000, 800)
    # A frame under twice the target is decoded at full size.
    assert images.decode(data, target_size=(600, 500)).reduction == 1


def test_jpeg_reduction_never_goes_below_target() -> None:
    assert images.jpeg_reduction(1000, 800, (200, 160)) == 4
    assert images.jpeg_reduction(1000, 800, (501, 160)) == 1
    assert images.jpeg_reduction(4000, 4000, (256, 256)) == 8
    assert images.jpeg_reduction(1000, 800, None) == 1


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, b"\xff\xd8\xff" + b"x" * 50],
    ids=["empty", "garbage", "png-magic-only", "jpeg-magic-only"],
)
def test_undecodable_bytes_raise_clear_errors(data: bytes) -> None:
    with pytest.raises(ImageDecodeError) as err:
        images.decode(data)
    assert err.value.status_code == 400
    assert "image" in str(err.value).lower()


def test_truncated_jpeg_is_refused(good_jpeg: bytes) -> None:
    with pytest.raises(ImageDecodeError, match="truncated"):
        images.decode(good_jpeg[: len(good_jpeg) // 2])


def test_truncated_png_is_refused(defect_png: bytes) -> None:
    with pytest.raises(ImageDecodeError):
        images.decode(defect_png[: len(defect_png) // 2])


def test_absurd_dimensions_are_refused_before_decoding() -> None:
    bomb = _png_header_only(20000, 20000)
    with pytest.raises(ImageTooLargeError) as err:
        images.decode(bomb)
    assert err.value.status_code == 413
    assert "400000000 pixels" in str(err.value)


def test_pixel_limit_is_configurable(defect_png: bytes) -> None:
    with pytest.raises(ImageTooLargeError):
        images.decode(defect_png, max_pixels=100)


def test_unsupported_format_is_named() -> None:
    buf = io.BytesIO()
    Image.fromarray(part_image()).save(buf, format="GIF")
    with pytest.raises(ImageDecodeError, match="GIF"):
        images.decode(buf.getvalue())


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_encode_round_trips(fmt: str) -> None:
    ramp = np.linspace(0, 255, 96 * 128, dtype=np.float32).reshape(96, 128)
    rgb = np.stack([ramp, ramp[::-1], np.full_like(ramp, 90)], axis=-1).astype(np.uint8)
    back = images.decode(images.encode(rgb, fmt)).rgb
    assert back.shape == rgb.shape
    assert np.abs(back.astype(int) - rgb.astype(int)).mean() < (0.01 if fmt == "png" else 6)
