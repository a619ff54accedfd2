"""The database package store: put once, get verified, chunked rows, refusals."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from inspector.store.db import Database
from inspector.store.models import PackageBlob, PackageChunk
from inspector.store.packages import DatabasePackageStore, PackageStoreError


def archive(tmp_path: Path, size: int, seed: int = 0) -> Path:
    path = tmp_path / f"a{seed}-{size}.bin"
    path.write_bytes(bytes((i * 7 + seed) % 251 for i in range(size)))
    return path


def test_put_get_exists_round_trip_in_chunks(db: Database, tmp_path: Path) -> None:
    store = DatabasePackageStore(db, chunk_bytes=1000)
    src = archive(tmp_path, 3500)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    assert not store.exists(sha)
    assert store.put(src) == sha
    assert store.exists(sha)
    with db.session() as s:
        sizes = s.scalars(select(func.length(PackageChunk.data)).where(
            PackageChunk.sha256 == sha).order_by(PackageChunk.seq)).all()
    assert list(sizes) == [1000, 1000, 1000, 500]
    out = tmp_path / "out.tar.gz"
    store.get(sha, out)
    assert out.read_bytes() == src.read_bytes()


def test_put_is_idempotent_and_an_empty_archive_is_one_chunk(db: Database,
                                                            tmp_path: Path) -> None:
    store = DatabasePackageStore(db, chunk_bytes=1000)
    src = archive(tmp_path, 10)
    assert store.put(src) == store.put(src, hashlib.sha256(src.read_bytes()).hexdigest())
    empty = archive(tmp_path, 0, seed=1)
    store.get(store.put(empty), tmp_path / "empty")
    assert (tmp_path / "empty").read_bytes() == b""
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(PackageBlob)) == 2
        assert s.scalar(select(func.count()).select_from(PackageChunk)) == 2


def test_put_refuses_a_file_that_does_not_match_its_checksum(db: Database,
                                                            tmp_path: Path) -> None:
    store = DatabasePackageStore(db)
    with pytest.raises(PackageStoreError, match="hashes to"):
        store.put(archive(tmp_path, 100), "0" * 64)
    assert not store.exists("0" * 64)
    with pytest.raises(PackageStoreError, match="not a sha256"):
        store.exists("../etc/passwd")


def test_get_refuses_damaged_or_missing_archives(db: Database, tmp_path: Path) -> None:
    store = DatabasePackageStore(db, chunk_bytes=64)
    sha = store.put(archive(tmp_path, 200))
    with db.session() as s:
        s.execute(update(PackageChunk).where(PackageChunk.sha256 == sha, PackageChunk.seq == 1)
                  .values(data=b"x" * 64))
    out = tmp_path / "out"
    with pytest.raises(PackageStoreError, match="damaged"):
        store.get(sha, out)
    assert not out.exists() and not list(tmp_path.glob("out*"))
    with pytest.raises(PackageStoreError, match="not in the package store"):
        store.get("a" * 64, out)
