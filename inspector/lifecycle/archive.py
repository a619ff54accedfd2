"""Safe extraction of uploaded model-package archives (zip, tar, tar.gz/.bz2/.xz).

Nothing in an archive is trusted: the format comes from the magic bytes, every member name is
checked (no absolute paths, no `..`, no drive letters, bounded depth), only regular files and
folders are accepted (no symlinks, hard links, devices or FIFOs), duplicates are refused, and
the total unpacked size and the member count are bounded while extracting, so a zip bomb or a
lying header stops at the limit. Files are created exclusively under the target folder.
"""

from __future__ import annotations

import errno
import gzip
import shutil
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from inspector.core.errors import InspectorError
from inspector.lifecycle.errors import PayloadTooLargeError, UnsupportedMediaTypeError

_CHUNK = 1 << 20
MAX_DEPTH = 8


class ArchiveError(InspectorError):
    """An archive that is corrupt or unsafe to unpack."""

    status_code = 400


class StorageError(InspectorError):
    """The server cannot write to its models folder (full, read-only, no permission)."""

    status_code = 507


_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def storage_error(exc: OSError, where: Path) -> StorageError:
    return StorageError(f"cannot write to {where}: {exc.strerror}",
                        hint="free space on, or give the server write access to, its models "
                             "folder (models_dir)")


@dataclass(frozen=True)
class Limits:
    """Bounds on what one archive may unpack to."""

    max_bytes: int
    max_members: int = 1000


def detect_format(path: Path) -> str:
    """`zip` or `tar` from the file's first bytes; UnsupportedMediaTypeError otherwise."""
    with path.open("rb") as fh:
        head = fh.read(512)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")) or head[257:262] == b"ustar":
        return "tar"
    raise UnsupportedMediaTypeError(
        "the upload is not a zip or tar archive",
        hint="pack the package folder (model.onnx, card.json, report/) with "
             "`tar czf pkg.tar.gz -C models/NAME VERSION` or `zip -r pkg.zip VERSION`",
    )


def safe_member_path(name: str) -> PurePosixPath:
    """The relative path a member may be written to, or ArchiveError."""
    clean = name.replace("\\", "/")
    path = PurePosixPath(clean)
    parts = [p for p in path.parts if p not in ("", ".")]
    if (
        not parts or clean.startswith("/") or "\x00" in clean or ".." in parts
        or ":" in parts[0] or len(parts) > MAX_DEPTH or any(len(p) > 255 for p in parts)
    ):
        raise ArchiveError(
            f"unsafe path in archive: {name!r}",
            hint="archive members must be relative paths inside the package folder",
        )
    return PurePosixPath(*parts)


class _Budget:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.bytes = 0
        self.members = 0
        self.seen: set[PurePosixPath] = set()

    def member(self, rel: PurePosixPath, declared: int) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise ArchiveError(f"archive has more than {self.limits.max_members} members",
                               hint="upload just the package folder")
        if rel in self.seen:
            raise ArchiveError(f"archive lists {str(rel)!r} twice")
        self.seen.add(rel)
        self.grow(declared)

    def grow(self, n: int) -> None:
        if self.bytes + n > self.limits.max_bytes:
            raise PayloadTooLargeError(
                f"archive unpacks to more than {self.limits.max_bytes} bytes",
                hint="raise max_package_bytes in settings if the package really is this big",
            )


def _copy(src: IO[bytes], dest_root: Path, rel: PurePosixPath, budget: _Budget,
          expected: int) -> None:
    target = dest_root.joinpath(*rel.parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.parent.resolve().is_relative_to(dest_root):
        raise ArchiveError(f"unsafe path in archive: {str(rel)!r}")
    written = 0
    with target.open("xb") as out:
        while block := src.read(_CHUNK):
            budget.grow(len(block))
            budget.bytes += len(block)
            written += len(block)
            out.write(block)
    if written != expected:
        raise ArchiveError(f"archive member {str(rel)!r} is truncated "
                           f"({written} of {expected} bytes)", hint="re-create the archive")
    target.chmod(0o644)


def _extract_zip(archive: Path, dest: Path, budget: _Budget) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            rel = safe_member_path(info.filename)
            kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when made without Unix modes
            if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                raise ArchiveError(f"archive member {info.filename!r} is not a regular file",
                                   hint="links and special files are not accepted")
            if info.flag_bits & 0x1:
                raise ArchiveError(f"archive member {info.filename!r} is encrypted")
            budget.member(rel, 0 if info.is_dir() else info.file_size)
            if info.is_dir():
                dest.joinpath(*rel.parts).mkdir(parents=True, exist_ok=True)
                continue
            with zf.open(info) as src:
                _copy(src, dest, rel, budget, info.file_size)


def _extract_tar(archive: Path, dest: Path, budget: _Budget) -> None:
    # Stream mode: members are checked and written one by one, never listed up front, so a
    # compressed bomb stops at the byte limit instead of being inflated to list it.
    with tarfile.open(archive, mode="r|*") as tf:
        for member in tf:
            rel = safe_member_path(member.name)
            if not (member.isfile() or member.isdir()):
                raise ArchiveError(f"archive member {member.name!r} is not a regular file",
                                   hint="links and special files are not accepted")
            budget.member(rel, member.size if member.isfile() else 0)
            if member.isdir():
                dest.joinpath(*rel.parts).mkdir(parents=True, exist_ok=True)
                continue
            src = tf.extractfile(member)
            if src is None:
                raise ArchiveError(f"archive member {member.name!r} cannot be read")
            _copy(src, dest, rel, budget, member.size)


def extract(archive: Path, dest: Path, limits: Limits) -> int:
    """Unpack `archive` into the empty folder `dest`; returns the bytes written. Leaves `dest`
    empty (removed) when it raises."""
    fmt = detect_format(archive)
    dest.mkdir(parents=True, exist_ok=False)
    dest = dest.resolve()
    budget = _Budget(limits)
    try:
        if fmt == "zip":
            _extract_zip(archive, dest, budget)
        else:
            _extract_tar(archive, dest, budget)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
            raise storage_error(exc, dest) from exc
        if isinstance(exc, FileExistsError):
            raise ArchiveError(f"archive writes one path twice: {exc.filename}") from exc
        raise ArchiveError(f"the archive cannot be read: {exc}",
                           hint="re-create it; it may be truncated or corrupt") from exc
    except InspectorError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return budget.bytes


def _normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    info.mode = 0o755 if info.isdir() else 0o644
    return info


def pack(folder: Path, dest: Path) -> None:
    """Write `folder` as a tar.gz whose bytes depend only on the files' names and contents
    (sorted members, no times or owners), so one package always has one sha256 in the
    package store, whichever node packs it."""
    with dest.open("wb") as raw, \
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path in sorted(folder.rglob("*")):
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                continue
            info = _normalized(tf.gettarinfo(str(path), str(path.relative_to(folder))))
            if info.isfile():
                with path.open("rb") as fh:
                    tf.addfile(info, fh)
            else:
                tf.addfile(info)
