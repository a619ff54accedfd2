"""Hostile and odd frames for the decode path, as (name, bytes, expected status class).

`expected` is the class of HTTP status the server must answer with the default settings
(max_side 16384, max_pixels 50 M, strict_decode on): "2xx" for valid images, "4xx" for images it
must refuse with a clear error, "any" where either is right (a bit flip the JPEG decoder cannot
notice). Nothing here may ever answer 5xx. Shared by the hostile-frame
tests and the fuzz suite; everything is made in memory and seeded, so the corpus is the same on
every run.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np
from PIL import Image


@dataclass(frozen=True)
class HostileFrame:
    name: str
    data: bytes
    #: "2xx", "4xx" or "any" (default settings); `status` narrows it when one code is certain.
    expected: str
    status: int | None = None

    def __iter__(self):  # type: ignore[no-untyped-def]
        """Unpacks as (name, bytes, expected_status_class)."""
        return iter((self.name, self.data, self.expected))


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def png_bytes(width: int, height: int, rows: bytes | None = None, *, bit_depth: int = 8,
              color_type: int = 0, extra_chunks: bytes = b"") -> bytes:
    """A hand-built PNG (IHDR [+ extra] + IDAT + IEND); `rows` None means an all-zero image."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    if rows is None:
        channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
        row = b"\x00" + bytes(width * channels * bit_depth // 8)
        comp = zlib.compressobj(9)
        out = [comp.compress(row) for _ in range(height)]
        out.append(comp.flush())
        idat = b"".join(out)
    else:
        idat = zlib.compress(rows, 9)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + extra_chunks
            + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))


def header_only_png(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims a size and that holds no pixel data at all."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IEND", b"")


def textured(width: int = 320, height: int = 240, seed: int = 0) -> np.ndarray:
    """A BGR frame with texture (so JPEG entropy data is dense and bit flips land in it)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(20, 200, size=(height // 8, width // 8, 3), dtype=np.uint8)
    img = cv2.resize(img, (width, height), interpolation=cv2.INTER_CUBIC)
    cv2.circle(img, (width // 2, height // 2), min(width, height) // 5, (240, 240, 240), -1)
    return img


def _encode(img: np.ndarray, ext: str, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, img, params or [])
    if not ok:
        raise RuntimeError(f"could not encode {ext}")
    return bytes(buf.tobytes())


def good_jpeg(seed: int = 0) -> bytes:
    return _encode(textured(seed=seed), ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90])


def bit_flipped_jpegs(count: int = 30, seed: int = 1234) -> list[bytes]:
    """JPEGs with one to three bits flipped inside the entropy-coded data (seeded).

    Flips avoid the last bytes, so the end-of-image marker stays and only the decoder can tell.
    """
    rng = np.random.default_rng(seed)
    base = good_jpeg()
    sos = base.index(b"\xff\xda")
    start = sos + 2 + int.from_bytes(base[sos + 2:sos + 4], "big")
    out = []
    for _ in range(count):
        buf = bytearray(base)
        for _ in range(int(rng.integers(1, 4))):
            pos = int(rng.integers(start, len(buf) - 4))
            buf[pos] ^= 1 << int(rng.integers(0, 8))
        out.append(bytes(buf))
    return out


def truncated_jpeg_with_eoi() -> bytes:
    """The first 60 % of a JPEG with an end-of-image marker stuck on."""
    base = good_jpeg(seed=3)
    return base[: len(base) * 6 // 10] + b"\xff\xd9"


def png_idat_flipped(seed: int = 7) -> bytes:
    """A PNG with bits flipped inside its IDAT payload (the CRC no longer matches)."""
    base = _encode(textured(seed=seed), ".png")
    i = base.index(b"IDAT")
    n = int.from_bytes(base[i - 4:i], "big")
    buf = bytearray(base)
    rng = np.random.default_rng(seed)
    for pos in rng.integers(i + 4 + n // 4, i + 4 + n - 1, size=3):
        buf[int(pos)] ^= 0x10
    return bytes(buf)


def png_ancillary_crc_broken() -> bytes:
    """A valid image whose ancillary tEXt chunk has a wrong CRC. libpng only warns (OpenCV
    decodes it), but Pillow's header parser refuses the file: 400 in either decode mode."""
    text = _chunk(b"tEXt", b"Comment\x00camera 7")
    text = text[:-4] + bytes(b ^ 0xFF for b in text[-4:])
    rows = b"".join(b"\x00" + bytes(range(i, i + 64)) for i in range(48))
    return png_bytes(64, 48, rows, extra_chunks=text)


def png16() -> bytes:
    img = (textured(96, 64).astype(np.uint16) * 257)
    return _encode(img, ".png")


def cmyk_jpeg() -> bytes:
    im = Image.fromarray(textured(96, 64)[:, :, ::-1].copy()).convert("CMYK")
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def palette_bmp() -> bytes:
    im = Image.fromarray(textured(96, 64)[:, :, ::-1].copy()).convert("P", palette=1)
    buf = io.BytesIO()
    im.save(buf, "BMP")
    return buf.getvalue()


def wide_tiff(width: int = 1_048_577) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, 1)).save(buf, "TIFF", compression="tiff_deflate")
    return buf.getvalue()


def wide_bmp(width: int = 1_048_577) -> bytes:
    """A 1-bit BMP `width` x 1 (about 130 KB)."""
    buf = io.BytesIO()
    Image.new("1", (width, 1)).save(buf, "BMP")
    return buf.getvalue()


def grey_png_7000() -> bytes:
    """7000 x 7000 grey, about 47 KB: 49 M pixels, under max_pixels, over heavy_frame_pixels."""
    return png_bytes(7000, 7000)


@cache
def hostile_corpus() -> tuple[HostileFrame, ...]:
    """The whole corpus (cached: the big PNG takes a second to build)."""
    frames = [
        HostileFrame("png-1x70000", png_bytes(1, 70_000), "4xx", 413),
        HostileFrame("png-70000x1", png_bytes(70_000, 1), "4xx", 413),
        HostileFrame("png-grey-7000x7000", grey_png_7000(), "2xx", 200),
        HostileFrame("tiff-1048577-wide", wide_tiff(), "4xx", 413),
        HostileFrame("bmp-1048577-wide", wide_bmp(), "4xx", 413),
        HostileFrame("truncated-jpeg-with-eoi", truncated_jpeg_with_eoi(), "4xx", 400),
        HostileFrame("png-idat-bitflips", png_idat_flipped(), "4xx", 400),
        HostileFrame("zero-bytes", b"", "4xx", 400),
        HostileFrame("png-header-only-100000x100000", header_only_png(100_000, 100_000),
                     "4xx", 413),
        HostileFrame("png-header-only-300x200", header_only_png(300, 200), "4xx", 400),
        HostileFrame("png-16bit", png16(), "2xx", 200),
        HostileFrame("png-ancillary-crc", png_ancillary_crc_broken(), "4xx", 400),
        HostileFrame("jpeg-cmyk", cmyk_jpeg(), "2xx", 200),
        HostileFrame("bmp-palette", palette_bmp(), "2xx", 200),
        HostileFrame("jpeg-good", good_jpeg(), "2xx", 200),
    ]
    for i, data in enumerate(bit_flipped_jpegs(30)):
        # A flip may land where the decoder cannot notice it (a coefficient that is still a
        # valid code): that frame decodes cleanly, so only "never 5xx" is certain.
        frames.append(HostileFrame(f"jpeg-bitflip-{i:02d}", data, "any"))
    return tuple(frames)
