"""Decode image bytes (JPEG, PNG, BMP, TIFF; 8/16-bit; gray, color, alpha) to RGB uint8.

The header is read first (Pillow parses only the header on open), so an absurd claimed size or
side is refused before a single pixel is decoded, and the server can reserve the memory a frame
will take (`memory_estimate`) before decoding it. JPEGs at least twice the model's input are
decoded at reduced scale by libjpeg itself (1/2, 1/4, 1/8), which is several times faster than a
full decode followed by a resize.

Strict decoding (`strict=True`, the server's default) refuses what the decoder only warns about:
corrupt JPEG entropy data (libjpeg-turbo through `simplejpeg`, which raises on warnings) and PNG
CRC or zlib errors. Lenient decoding judges whatever OpenCV (or Pillow) manages to decode.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
import simplejpeg
from PIL import Image

from inspector.core import heatmap
from inspector.core.errors import ImageDecodeError, ImageTooLargeError

#: Default pixel budget for one frame (about a 100-megapixel sensor).
DEFAULT_MAX_PIXELS = 100_000_000
#: Longest side OpenCV's codecs accept (its JPEG codec stops at 65,500 px; BMP/TIFF readers
#: assert at 2^20): anything longer is refused from the header with 413, never decoded.
DEFAULT_MAX_SIDE = 65_500
#: Peak memory per decoded pixel while a frame is in flight, on top of its body bytes, for
#: decoding and resizing it: the decoded array (3 B/px RGB) and OpenCV's copy being converted
#: (gray 1, BGR 3; a 16-bit frame 6 + 6 more while it is shifted to 8 bits). Measured as the
#: growth of the process's peak RSS (scripts/bench_hostile_frames.py --measure-bytes-per-pixel,
#: `decode` column): 4.2 B/px for a 7000x7000 grey PNG, 6.4 for a 5000x5000 colour PNG or BMP,
#: 6.2 for a 16384x3000 colour PNG, 8.2 for 2048x2048, 15.3 for a 16-bit colour 5000x5000 PNG;
#: 16 covers the worst. (4-channel 16-bit or float frames can take a few more.)
BYTES_PER_PIXEL_IN_FLIGHT = 16
#: Peak memory per pixel of the heatmap overlay the server draws and JPEG-encodes (the anomaly
#: map brought onto it as float32, its colour version, the blend, the encoder's copy). The
#: overlay is at most heatmap.SERVER_MAX_SIDE on its longer side, so a huge frame costs
#: O(2048^2) here, not O(frame). Measured (`overlay` column: full - decode, per overlay pixel):
#: 14.5 B/px at 2048x2048, 16.3 at 1600x1200; 18 leaves headroom. Before the overlay was bounded
#: the whole frame was overlaid and one 7000x7000 grey PNG took 19.3 B/px (now 4.9).
BYTES_PER_OVERLAY_PIXEL = 18

# Pillow warns about huge sizes (we apply our own limit) and about corrupt TIFF/EXIF (we raise
# our own error). Filters are set once here: warnings.catch_warnings is not thread-safe, and
# frames are decoded in worker threads.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")

_FORMATS = {"JPEG", "PNG", "BMP", "TIFF", "MPO"}
_REDUCED_FLAGS = {
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


@dataclass(frozen=True)
class DecodedImage:
    """An RGB uint8 frame, the size the camera sent, and how it was decoded."""

    rgb: np.ndarray
    original_width: int
    original_height: int
    format: str
    reduction: int = 1


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class DecodeLimits:
    """What a frame may be: pixels and longest side (checked from the header), and whether
    decoder warnings (corrupt data) refuse it."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_side: int = DEFAULT_MAX_SIDE
    strict: bool = False


def probe(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int = DEFAULT_MAX_SIDE
) -> ImageHeader:
    """Read format and size from the header only; refuse empty, unknown and oversize images
    (ImageTooLargeError when a side is over `max_side` or the area over `max_pixels`)."""
    if not data:
        raise ImageDecodeError("empty image: the body has zero bytes", hint="send the frame bytes")
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = (im.format or "").upper()
            width, height = im.size
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(
            f"image refused before decoding: {exc}",
            hint=f"send frames of at most {max_pixels} pixels",
        ) from exc
    except Exception as exc:  # Pillow raises many types for garbage input
        raise ImageDecodeError(
            "not a readable image (corrupt or unknown format)",
            hint="send JPEG, PNG, BMP or TIFF bytes",
        ) from exc
    if fmt not in _FORMATS:
        raise ImageDecodeError(
            f"unsupported image format {fmt or 'unknown'}", hint="send JPEG, PNG, BMP or TIFF"
        )
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"image header claims an empty size {width}x{height}")
    if max(width, height) > max_side:
        raise ImageTooLargeError(
            f"image header claims {width}x{height} pixels: a side is over the limit of "
            f"{max_side} pixels",
            hint="downscale or crop the frame at the camera, or raise max_side in settings "
                 f"(at most {DEFAULT_MAX_SIDE})",
        )
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image header claims {width}x{height} = {width * height} pixels, over the limit of "
            f"{max_pixels}",
            hint="downscale the frame at the camera or raise max_pixels in settings",
        )
    return ImageHeader(fmt, width, height)


def jpeg_reduction(width: int, height: int, target: tuple[int, int] | None) -> int:
    """Largest libjpeg scale factor (1, 2, 4, 8) that keeps the frame >= the target size."""
    if target is None:
        return 1
    tw, th = target
    factor = 1
    for f in (2, 4, 8):
        if width // f >= tw and height // f >= th:
            factor = f
    return factor


def decode_reduction(header: ImageHeader, target: tuple[int, int] | None) -> int:
    """The scale factor the decoder will use (1 but for JPEGs at least twice the target)."""
    if header.format in ("JPEG", "MPO"):
        return jpeg_reduction(header.width, header.height, target)
    return 1


def decoded_size(header: ImageHeader, target: tuple[int, int] | None) -> tuple[int, int]:
    """Width and height the decoder will produce (JPEGs may be decoded at reduced scale)."""
    r = decode_reduction(header, target)
    return -(-header.width // r), -(-header.height // r)


def memory_estimate(header: ImageHeader, nbytes: int, target: tuple[int, int] | None) -> int:
    """Bytes a frame holds at its peak in the server: its body, BYTES_PER_PIXEL_IN_FLIGHT per
    decoded pixel and BYTES_PER_OVERLAY_PIXEL per pixel of its (bounded) heatmap overlay.
    Computed from the header, before decoding."""
    w, h = decoded_size(header, target)
    return nbytes + pixels_estimate(w, h)


def pixels_estimate(width: int, height: int) -> int:
    """The in-flight bytes of a decoded frame of this size, without its body."""
    ow, oh = heatmap.bounded_size(width, height, heatmap.SERVER_MAX_SIDE)
    return width * height * BYTES_PER_PIXEL_IN_FLIGHT + ow * oh * BYTES_PER_OVERLAY_PIXEL


def worst_frame_bytes(max_pixels: int, max_side: int, max_body_bytes: int) -> int:
    """The most one legal frame can hold in flight: max_pixels decoded at the shape with the
    biggest overlay (square, or max_side long when that is shorter) plus a max_body_bytes body."""
    side = min(max_side, int(max_pixels**0.5))
    return max_body_bytes + pixels_estimate(side, max_pixels // max(side, 1))


def _to_rgb8(img: np.ndarray) -> np.ndarray:
    """OpenCV's decoded array (gray/BGR/BGRA, 8 or 16 bit, or float) -> RGB uint8."""
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        hi = float(img.max()) if img.size else 1.0
        scale = 255.0 if hi <= 1.0 else 255.0 / hi
        img = np.clip(img * scale, 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageDecodeError(
            f"unsupported pixel type {img.dtype}", hint="send 8 or 16-bit images"
        )
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    channels = img.shape[2]
    if channels == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    raise ImageDecodeError(f"unsupported channel count {channels}")


def _decode_with_pillow(data: bytes) -> np.ndarray:
    """Fallback for what OpenCV cannot read (some TIFF compressions, palette BMPs)."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(im, dtype=np.uint32)
            scale = 256 if arr.max() > 255 else 1
            return _to_rgb8((arr // scale).astype(np.uint8))
        return np.asarray(im.convert("RGB"))


_CORRUPT_HINT = ("check the camera, its encoder and the cable, and resend; for cameras known "
                 "to send slightly broken frames set strict_decode=false")


def _decode_jpeg_strict(data: bytes, header: ImageHeader, reduction: int) -> np.ndarray | None:
    """libjpeg-turbo with warnings as errors, at 1/`reduction` scale; None when simplejpeg cannot
    handle this kind of JPEG at all (12-bit, lossless), so OpenCV gets to try."""
    try:
        return simplejpeg.decode_jpeg(
            data, colorspace="RGB", strict=True, min_factor=reduction,
            min_width=-(-header.width // reduction), min_height=-(-header.height // reduction))
    except ValueError as exc:
        msg = str(exc).strip()
        if "precision" in msg or "JPEG process" in msg:
            return None
        raise ImageDecodeError(f"JPEG data is corrupt: {msg}", hint=_CORRUPT_HINT) from exc


def decode(
    data: bytes,
    *,
    target_size: tuple[int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    strict: bool = False,
    header: ImageHeader | None = None,
) -> DecodedImage:
    """Decode bytes to an RGB uint8 array.

    target_size (width, height) is the model's input size: JPEGs at least twice that size are
    decoded at reduced scale. `strict` refuses corrupt data that the decoder would only warn
    about. `header` is this data's `probe` result when the caller has it already. Raises
    ImageDecodeError (or ImageTooLargeError) with a message fit to show a user.
    """
    if header is None:
        header = probe(data, max_pixels=max_pixels, max_side=max_side)
    try:
        return _decode(data, header, target_size, strict)
    except cv2.error as exc:  # OpenCV asserts on sizes and formats it cannot handle
        raise ImageDecodeError(
            f"{header.format} image could not be decoded: "
            f"{(getattr(exc, 'err', None) or str(exc)).strip()}",
            hint="send an 8-bit JPEG or PNG frame of ordinary size",
        ) from exc


def _decode(
    data: bytes, header: ImageHeader, target_size: tuple[int, int] | None, strict: bool
) -> DecodedImage:
    buf = np.frombuffer(data, dtype=np.uint8)
    reduction = 1
    img: np.ndarray | None = None
    is_jpeg = header.format in ("JPEG", "MPO")
    if is_jpeg:
        reduction = jpeg_reduction(header.width, header.height, target_size)
        if strict:
            img = _decode_jpeg_strict(data, header, reduction)
        if img is None:
            flag = _REDUCED_FLAGS.get(reduction, cv2.IMREAD_COLOR)
            img = cv2.imdecode(buf, flag)
            if img is not None:
                img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    else:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        if img is not None:
            img = _to_rgb8(img)
    if img is None:
        if strict and header.format == "PNG":
            # libpng stops on CRC errors in critical chunks and on zlib errors in IDAT;
            # Pillow would be no more forgiving, and a strict server refuses either way.
            raise ImageDecodeError("PNG data is corrupt (a CRC or zlib error in its pixel data)",
                                   hint=_CORRUPT_HINT)
        try:
            img = _decode_with_pillow(data)
            reduction = 1
        except Exception as exc:
            raise ImageDecodeError(
                f"{header.format} image is corrupt or truncated",
                hint="check the camera's encoder output and resend",
            ) from exc
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ImageDecodeError(f"{header.format} image decoded to an empty array")
    # A truncated JPEG often decodes "successfully" with a grey tail; libjpeg only warns.
    if is_jpeg and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise ImageDecodeError(
            "JPEG image is truncated (no end-of-image marker)",
            hint="resend the whole frame",
        )
    return DecodedImage(
        rgb=np.ascontiguousarray(img),
        original_width=header.width,
        original_height=header.height,
        format=header.format,
        reduction=reduction,
    )


def encode(rgb: np.ndarray, fmt: str = "png", *, quality: int = 90) -> bytes:
    """Encode an RGB uint8 array as PNG or JPEG bytes."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    fmt = fmt.lower().lstrip(".")
    if fmt in ("jpg", "jpeg"):
        ok, out = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    elif fmt == "png":
        ok, out = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    else:
        raise ValueError(f"unsupported output format {fmt!r}: use png or jpeg")
    if not ok:
        raise RuntimeError(f"OpenCV failed to encode a {rgb.shape} image as {fmt}")
    return bytes(out.tobytes())
