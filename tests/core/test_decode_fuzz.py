"""Whatever bytes arrive, decode either returns an RGB frame or raises ImageDecodeError."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inspector.core import images
from inspector.core.errors import ImageDecodeError
from tests.conftest import encode_bgr
from tests.model_factory import part_image

VALID = [
    encode_bgr(part_image(40, 30, defect=True), ext) for ext in (".jpg", ".png", ".bmp", ".tiff")
]


def _decode_or_domain_error(data: bytes) -> None:
    try:
        out = images.decode(data, target_size=(16, 16), max_pixels=10_000_000)
    except ImageDecodeError as exc:
        assert 400 <= exc.status_code < 500
        return
    assert out.rgb.dtype == np.uint8 and out.rgb.ndim == 3 and out.rgb.shape[2] == 3


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes(data: bytes) -> None:
    _decode_or_domain_error(data)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
    st.integers(1, 10_000),
)
def test_mutated_valid_images(base: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(base[: max(1, len(base) - cut % len(base))])
    for pos, value in flips:
        data[pos % len(data)] = value
    _decode_or_domain_error(bytes(data))
