"""Safe unpacking of uploaded archives: valid layouts, and every kind of malicious archive."""

from __future__ import annotations

import io
import tarfile
import warnings
import zipfile
from pathlib import Path

import pytest

from inspector.core.errors import InspectorError
from inspector.lifecycle.archive import ArchiveError, Limits, extract, safe_member_path
from inspector.lifecycle.errors import PayloadTooLargeError, UnsupportedMediaTypeError
from tests.lifecycle.packing import (
    file_info,
    link_info,
    tar_gz,
    tar_with,
    zip_of,
    zip_with,
)
from tests.model_factory import make_package

LIMITS = Limits(max_bytes=5_000_000, max_members=50)


def unpack(tmp_path: Path, data: bytes, limits: Limits = LIMITS) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    archive = tmp_path / "upload.bin"
    archive.write_bytes(data)
    dest = tmp_path / "tree"
    extract(archive, dest, limits)
    return dest


def test_tar_gz_and_zip_of_a_package_unpack(tmp_path: Path) -> None:
    pkg = make_package(tmp_path / "models", name="parts", version="2")
    tree = unpack(tmp_path / "a", tar_gz(pkg))
    assert (tree / "2" / "card.json").is_file() and (tree / "2" / "model.onnx").is_file()
    assert (tree / "2" / "model.onnx").read_bytes() == (pkg / "model.onnx").read_bytes()
    tree = unpack(tmp_path / "b", zip_of(pkg))
    assert (tree / "card.json").is_file()


def test_plain_and_other_compressed_tars(tmp_path: Path) -> None:
    for i, mode in enumerate(("w", "w:bz2", "w:xz")):
        data = tar_with([(file_info("pkg/card.json"), b"{}")], mode=mode)
        tree = unpack(tmp_path / str(i), data)
        assert (tree / "pkg" / "card.json").read_bytes() == b"{}"


@pytest.mark.parametrize("name", [
    "../evil.txt", "pkg/../../evil.txt", "/etc/evil", "C:/evil", "a/" * 9 + "deep",
    "..\\evil.txt", "pkg/\x00x",
])
def test_unsafe_member_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ArchiveError, match="unsafe path"):
        safe_member_path(name)
    data = tar_with([(file_info("pkg/card.json"), b"{}"), (file_info(name), b"x")])
    with pytest.raises(ArchiveError):
        unpack(tmp_path, data)
    assert not (tmp_path / "tree").exists(), "a refused archive leaves nothing behind"
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()


def test_zip_traversal_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="unsafe path"):
        unpack(tmp_path, zip_with([("card.json", b"{}"), ("../../evil.txt", b"x")]))
    assert not (tmp_path.parent / "evil.txt").exists()


@pytest.mark.parametrize("hard", [False, True])
def test_tar_links_are_refused(tmp_path: Path, hard: bool) -> None:
    data = tar_with([(link_info("pkg/model.onnx", "/etc/passwd", hard), None)])
    with pytest.raises(ArchiveError, match="not a regular file"):
        unpack(tmp_path, data)


def test_tar_devices_and_fifos_are_refused(tmp_path: Path) -> None:
    for kind in (tarfile.CHRTYPE, tarfile.FIFOTYPE):
        info = file_info("pkg/dev")
        info.type = kind
        with pytest.raises(ArchiveError, match="not a regular file"):
            unpack(tmp_path / str(kind), tar_with([(info, None)]))


def test_zip_symlinks_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="not a regular file"):
        unpack(tmp_path, zip_with([("card.json", b"{}")], symlink="model.onnx"))


def test_zip_bomb_stops_at_the_limit(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model.onnx", b"\0" * 20_000_000)  # ~20 kB compressed
    assert len(buf.getvalue()) < 100_000
    with pytest.raises(PayloadTooLargeError, match="unpacks to more than"):
        unpack(tmp_path, buf.getvalue())
    assert not (tmp_path / "tree").exists()


def test_zip_with_a_lying_size_header_stops_at_the_limit(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model.onnx", b"\0" * 6_000_000)
    raw = bytearray(buf.getvalue())
    # Shrink the declared size in the central directory: the reader must not trust it.
    cd = raw.rfind(b"PK\x01\x02")
    raw[cd + 24:cd + 28] = (100).to_bytes(4, "little")
    with pytest.raises(InspectorError):
        unpack(tmp_path, bytes(raw))
    assert not (tmp_path / "tree").exists()


def test_tar_gz_bomb_stops_at_the_limit(tmp_path: Path) -> None:
    data = tar_with([(file_info("pkg/model.onnx"), b"\0" * 20_000_000)])
    assert len(data) < 100_000
    with pytest.raises(PayloadTooLargeError):
        unpack(tmp_path, data)


def test_too_many_members_and_duplicates(tmp_path: Path) -> None:
    many = tar_with([(file_info(f"pkg/f{i}"), b"x") for i in range(60)])
    with pytest.raises(ArchiveError, match="more than 50 members"):
        unpack(tmp_path / "a", many)
    dup = tar_with([(file_info("pkg/card.json"), b"{}"), (file_info("pkg/card.json"), b"[]")])
    with pytest.raises(ArchiveError, match="twice"):
        unpack(tmp_path / "b", dup)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name itself
        dup_zip = zip_with([("card.json", b"{}"), ("card.json", b"[]")])
    with pytest.raises(ArchiveError, match="twice"):
        unpack(tmp_path / "c", dup_zip)


def test_not_an_archive_and_corrupt_archives(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedMediaTypeError, match="not a zip or tar"):
        unpack(tmp_path / "a", b"hello, this is not an archive" * 30)
    pkg = make_package(tmp_path / "models")
    data = tar_gz(pkg)
    with pytest.raises(ArchiveError, match=r"cannot be read|truncated"):
        unpack(tmp_path / "b", data[: len(data) * 2 // 3])
    with pytest.raises(ArchiveError, match="cannot be read"):
        unpack(tmp_path / "c", zip_of(pkg)[:-30])
