"""Build package archives in memory (valid, broken and malicious) for registry tests."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path


def tar_gz(folder: Path, arcroot: str | None = None) -> bytes:
    """`tar czf` of a package folder, its files under `arcroot/` (default: the folder name)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(folder, arcname=arcroot if arcroot is not None else folder.name)
    return buf.getvalue()


def zip_of(folder: Path, arcroot: str = "") -> bytes:
    """A zip of a package folder with its files at `arcroot/` (default: the archive root)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, f"{arcroot}/{p.relative_to(folder)}" if arcroot
                         else str(p.relative_to(folder)))
    return buf.getvalue()


def tar_with(members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:  # type: ignore[call-overload]
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return buf.getvalue()


def file_info(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def link_info(name: str, target: str, hard: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info


def zip_with(entries: list[tuple[str, bytes]], symlink: str | None = None) -> bytes:
    """A zip with plain entries, plus (optionally) a member that is a symlink."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()
