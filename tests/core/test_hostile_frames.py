"""Hostile frames at the decoder: sizes refused from the header, corrupt data refused in strict
mode, OpenCV errors turned into domain errors, and the memory estimate made before decoding."""

from __future__ import annotations

import numpy as np
import pytest
import simplejpeg

from inspector.core import images
from inspector.core.errors import ImageDecodeError, ImageTooLargeError
from tests.hostile_corpus import (
    bit_flipped_jpegs,
    good_jpeg,
    hostile_corpus,
    png_ancillary_crc_broken,
    png_bytes,
    textured,
    truncated_jpeg_with_eoi,
    wide_tiff,
)

SERVER = {"max_pixels": 50_000_000, "max_side": 16_384}
SMALL = [f for f in hostile_corpus() if f.name != "png-grey-7000x7000"]  # that one: server test


@pytest.mark.parametrize("frame", SMALL, ids=lambda f: f.name)
def test_corpus_strict(frame) -> None:  # type: ignore[no-untyped-def]
    try:
        out = images.decode(frame.data, target_size=(64, 48), strict=True, **SERVER)
    except ImageDecodeError as exc:
        assert frame.expected in ("4xx", "any"), f"{frame.name}: {exc}"
        assert frame.status in (None, exc.status_code), f"{frame.name}: {exc}"
        assert exc.hint, frame.name
        return
    assert frame.expected in ("2xx", "any"), frame.name
    assert out.rgb.dtype == np.uint8 and out.rgb.ndim == 3 and out.rgb.shape[2] == 3


def test_sides_over_the_limit_are_refused_from_the_header() -> None:
    tall = png_bytes(1, 70_000)
    assert len(tall) < 300
    with pytest.raises(ImageTooLargeError, match="side is over the limit of 65500") as info:
        images.decode(tall)
    assert "max_side" in (info.value.hint or "")
    with pytest.raises(ImageTooLargeError, match="16384"):
        images.probe(png_bytes(16_385, 1), max_side=16_384)
    assert images.probe(png_bytes(16_384, 1), max_side=16_384).width == 16_384


def test_opencv_assertions_become_decode_errors() -> None:
    """A 1,048,577 px wide TIFF makes OpenCV assert; decoding past the header check must still
    end in a domain error, not cv2.error."""
    data = wide_tiff()
    header = images.ImageHeader("TIFF", 1_048_577, 1)
    with pytest.raises(ImageDecodeError) as info:
        images.decode(data, header=header)
    assert info.value.status_code == 400 and info.value.hint


def test_bit_flipped_jpegs_strict_and_lenient() -> None:
    flipped = bit_flipped_jpegs(30)
    refused = 0
    for data in flipped:
        images.decode(data, target_size=(64, 48))  # lenient: today's behaviour, a verdict
        try:
            images.decode(data, target_size=(64, 48), strict=True)
        except ImageDecodeError as exc:
            assert exc.message.startswith("JPEG data is corrupt: "), exc.message
            assert "strict_decode=false" in (exc.hint or "")
            refused += 1
    # Flips where libjpeg notices anything are refused; the rest are bit-valid entropy data.
    detectable = 0
    for data in flipped:
        try:
            simplejpeg.decode_jpeg(data, strict=True)
        except ValueError:
            detectable += 1
    assert refused == detectable >= 10


def test_truncated_jpeg_with_end_marker_strict_only() -> None:
    data = truncated_jpeg_with_eoi()
    assert images.decode(data).rgb.shape == (240, 320, 3)  # lenient: grey tail, a verdict
    with pytest.raises(ImageDecodeError, match=r"JPEG data is corrupt: .*[Pp]remature"):
        images.decode(data, strict=True)


@pytest.mark.parametrize("factor", [1, 2, 4, 8])
def test_strict_jpeg_keeps_reduced_scale(factor: int) -> None:
    import cv2

    _ok, buf = cv2.imencode(".jpg", textured(1024, 768), [cv2.IMWRITE_JPEG_QUALITY, 90])
    data = buf.tobytes()
    target = (1024 // factor, 768 // factor)
    lenient = images.decode(data, target_size=target)
    strict = images.decode(data, target_size=target, strict=True)
    assert strict.reduction == lenient.reduction == factor
    assert strict.rgb.shape == lenient.rgb.shape == (768 // factor, 1024 // factor, 3)
    # Same image: libjpeg-turbo either way, RGB channel order both times.
    diff = np.abs(strict.rgb.astype(int) - lenient.rgb.astype(int)).mean()
    assert diff < 2.0


def test_png_corrupt_is_refused() -> None:
    flipped = next(f for f in hostile_corpus() if f.name == "png-idat-bitflips").data
    with pytest.raises(ImageDecodeError, match="PNG data is corrupt"):
        images.decode(flipped, strict=True)
    with pytest.raises(ImageDecodeError):
        images.decode(png_ancillary_crc_broken(), strict=True)


def test_memory_estimate_from_the_header() -> None:
    grey = png_bytes(7000, 7000)
    header = images.probe(grey)
    est = images.memory_estimate(header, len(grey), (64, 48))
    # the overlay of a 7000x7000 frame is drawn at 2048x2048 (heatmap.SERVER_MAX_SIDE)
    assert est == (
        len(grey)
        + 7000 * 7000 * images.BYTES_PER_PIXEL_IN_FLIGHT
        + 2048 * 2048 * images.BYTES_PER_OVERLAY_PIXEL
    )
    jpeg = good_jpeg()  # 320x240, decoded at 1/4 for a 64x48 model
    jh = images.probe(jpeg)
    assert images.memory_estimate(jh, len(jpeg), (64, 48)) == (
        len(jpeg) + 80 * 60 * (images.BYTES_PER_PIXEL_IN_FLIGHT + images.BYTES_PER_OVERLAY_PIXEL)
    )
