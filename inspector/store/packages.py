"""The fleet's package store: model package archives, stored once each, addressed by sha256.

Any node puts the archive of a package it has (an upload, a package found in its models
folder) and any other node gets it by the checksum recorded in `model_versions`. The store
never trusts its own bytes: `get` hashes what it streams out and refuses a mismatch.

`PackageStore` is the whole interface (put, get, exists), so another backend can sit behind
it (chosen by a URL setting when there is more than one): an S3-compatible bucket would map
`put` to a PUT of `packages/<sha256>.tar.gz` (skipped when a HEAD finds it), `get` to a
streamed GET verified the same way, and `exists` to HEAD. The one built here keeps archives in the
database itself (`package_blobs` + `package_chunks`), in rows of `CHUNK_BYTES`, so no value
comes near PostgreSQL's 1 GB bytea limit and neither side holds a whole archive in memory.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Protocol

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from inspector.core.errors import InspectorError
from inspector.core.names import utcnow
from inspector.core.package import sha256_file
from inspector.store.db import Database
from inspector.store.models import PackageBlob, PackageChunk

CHUNK_BYTES = 4 << 20
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class PackageStoreError(InspectorError):
    """An archive that is missing from the store or does not match its checksum."""

    status_code = 502


class PackageStore(Protocol):
    """Where nodes share package archives, by content (sha256 hex digest)."""

    def exists(self, sha256: str) -> bool:
        """True when the archive with this checksum is stored."""
        ...

    def put(self, path: Path, sha256: str | None = None) -> str:
        """Store the file (once: storing the same bytes again does nothing) and return its
        checksum; PackageStoreError when `sha256` is given and the file does not match."""
        ...

    def get(self, sha256: str, dest: Path) -> None:
        """Write the archive to `dest`, verified; PackageStoreError when it is missing or its
        bytes do not hash to `sha256` (then `dest` does not exist)."""
        ...


def _check_sha(sha256: str) -> str:
    if not _SHA_RE.match(sha256):
        raise PackageStoreError(f"not a sha256 hex digest: {sha256!r}")
    return sha256


class DatabasePackageStore:
    """Archives in the database, chunked (see the module docstring)."""

    def __init__(self, db: Database, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.db = db
        self.chunk_bytes = chunk_bytes

    def exists(self, sha256: str) -> bool:
        with self.db.session() as s:
            return s.get(PackageBlob, _check_sha(sha256)) is not None

    def put(self, path: Path, sha256: str | None = None) -> str:
        actual = sha256_file(path)
        if sha256 is not None and _check_sha(sha256) != actual:
            raise PackageStoreError(f"{path.name} hashes to {actual}, not {sha256}",
                                    hint="the archive changed or was damaged; pack it again")
        if self.exists(actual):
            return actual
        try:
            self._insert(path, actual)
        except IntegrityError:  # another node stored the same archive a moment earlier
            if not self.exists(actual):
                raise
        return actual

    def _insert(self, path: Path, sha256: str) -> None:
        size = path.stat().st_size
        chunks = max(1, -(-size // self.chunk_bytes))
        with self.db.session() as s, path.open("rb") as fh:
            s.add(PackageBlob(sha256=sha256, size=size, chunks=chunks, created_at=utcnow()))
            s.flush()
            for seq in range(chunks):
                s.execute(insert(PackageChunk).values(sha256=sha256, seq=seq,
                                                      data=fh.read(self.chunk_bytes)))

    def get(self, sha256: str, dest: Path) -> None:
        with self.db.session() as s:
            blob = s.get(PackageBlob, _check_sha(sha256))
            n = None if blob is None else blob.chunks
        if n is None:
            raise PackageStoreError(f"package archive {sha256} is not in the package store",
                                    hint="upload the package again (POST /v1/models) or start "
                                         "a node that has it in its models folder")
        tmp = dest.with_name(dest.name + ".part")
        digest = hashlib.sha256()
        try:
            with tmp.open("wb") as out:
                for seq in range(n):  # one chunk in memory at a time
                    with self.db.session() as s:
                        data = s.scalar(select(PackageChunk.data).where(
                            PackageChunk.sha256 == sha256, PackageChunk.seq == seq))
                    if data is None:
                        raise PackageStoreError(f"package archive {sha256} lacks chunk {seq}")
                    digest.update(data)
                    out.write(data)
            if digest.hexdigest() != sha256:
                raise PackageStoreError(
                    f"package archive {sha256} is damaged: its bytes hash to "
                    f"{digest.hexdigest()}", hint="upload the package again")
            tmp.rename(dest)
        finally:
            tmp.unlink(missing_ok=True)

