"""Writing conda packages (`.tar.bz2` and `.conda`) from a tree of files.

Used to seed the local channel with a relocatable python made from the running interpreter, and by
the test fixtures. The output follows conda's package format: `info/index.json`, `info/paths.json`
(with sha256, size, and prefix placeholders with their file mode), `info/files`, `info/has_prefix`,
`info/link.json` for noarch python entry points. Archives are deterministic: sorted members, fixed
mtimes, owner root, so building twice gives the same bytes (and the same sha256 in a lock).
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import os
import stat
import tarfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .concurrency import scratch_file

# A fixed, plausible timestamp (2024-01-01, ms): conda records it; it must not vary between builds.
FIXED_TIMESTAMP_MS = 1704067200000
FIXED_MTIME = FIXED_TIMESTAMP_MS // 1000


@dataclass(frozen=True)
class Symlink:
    """A symbolic link inside a package, pointing at `target` (relative)."""

    target: str


@dataclass(frozen=True)
class FileEntry:
    """A regular file: its bytes, whether it is executable, and an optional prefix placeholder."""

    data: bytes
    executable: bool = False
    placeholder: str | None = None
    file_mode: Literal["text", "binary"] = "text"


Content = FileEntry | Symlink


@dataclass(frozen=True)
class PackageSpec:
    """What to put in a package."""

    name: str
    version: str
    build: str = "0"
    build_number: int = 0
    subdir: str = "linux-64"
    depends: tuple[str, ...] = ()
    constrains: tuple[str, ...] = ()
    files: Mapping[str, Content] = field(default_factory=dict)
    noarch: Literal["python", "generic"] | None = None
    entry_points: tuple[str, ...] = ()
    license: str = "BSD-3-Clause"
    # Further files for info/ (licenses, about.json), written as they are.
    extra_info: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def dist_name(self) -> str:
        return f"{self.name}-{self.version}-{self.build}"


def _tarinfo(name: str, size: int = 0, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _info_files(spec: PackageSpec) -> dict[str, bytes]:
    index: dict[str, object] = {
        "name": spec.name,
        "version": spec.version,
        "build": spec.build,
        "build_number": spec.build_number,
        "depends": list(spec.depends),
        "license": spec.license,
        "subdir": "noarch" if spec.noarch else spec.subdir,
        "timestamp": FIXED_TIMESTAMP_MS,
    }
    if spec.constrains:
        index["constrains"] = list(spec.constrains)
    if spec.noarch:
        index["noarch"] = spec.noarch
    else:
        arch, _, plat = spec.subdir.partition("-")
        index["platform"], index["arch"] = arch, {"64": "x86_64"}.get(plat, plat)
    paths, has_prefix = [], []
    for rel in sorted(spec.files):
        entry = spec.files[rel]
        if isinstance(entry, Symlink):
            paths.append({"_path": rel, "path_type": "softlink", "size_in_bytes": len(entry.target)})
            continue
        item: dict[str, object] = {
            "_path": rel,
            "path_type": "hardlink",
            "sha256": hashlib.sha256(entry.data).hexdigest(),
            "size_in_bytes": len(entry.data),
        }
        if entry.placeholder:
            item["file_mode"], item["prefix_placeholder"] = entry.file_mode, entry.placeholder
            has_prefix.append(f"{entry.placeholder} {entry.file_mode} {rel}\n")
        paths.append(item)
    out = {
        "info/index.json": json.dumps(index, indent=2, sort_keys=True).encode(),
        "info/paths.json": json.dumps({"paths": paths, "paths_version": 1}, indent=2).encode(),
        "info/files": "".join(f"{p}\n" for p in sorted(spec.files)).encode(),
        "info/about.json": json.dumps({"summary": f"{spec.name} (built by baseliner)"}).encode(),
        **spec.extra_info,
    }
    if has_prefix:
        out["info/has_prefix"] = "".join(has_prefix).encode()
    if spec.noarch == "python":
        link = {
            "noarch": {"type": "python", "entry_points": list(spec.entry_points)},
            "package_metadata_version": 1,
        }
        out["info/link.json"] = json.dumps(link, indent=2).encode()
    return out


def _write_tar(tar: tarfile.TarFile, members: Iterable[tuple[str, Content]]) -> None:
    for name, entry in sorted(members, key=lambda m: m[0]):
        if isinstance(entry, Symlink):
            info = _tarinfo(name, mode=0o777)
            info.type, info.linkname = tarfile.SYMTYPE, entry.target
            tar.addfile(info)
        else:
            info = _tarinfo(name, len(entry.data), 0o755 if entry.executable else 0o644)
            tar.addfile(info, io.BytesIO(entry.data))


def _tar_bytes(members: Iterable[tuple[str, Content]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _write_tar(tar, members)
    return buf.getvalue()


def write_package(spec: PackageSpec, channel_dir: Path, fmt: Literal["tar.bz2", "conda"] = "tar.bz2") -> Path:
    """Write `spec` into `channel_dir/<subdir>/`; returns the archive path (written atomically)."""
    subdir = channel_dir / ("noarch" if spec.noarch else spec.subdir)
    subdir.mkdir(parents=True, exist_ok=True)
    info = {k: FileEntry(v) for k, v in _info_files(spec).items()}
    target = subdir / f"{spec.dist_name}.{fmt}"
    tmp = scratch_file(target)
    if fmt == "tar.bz2":
        payload = _tar_bytes([*spec.files.items(), *info.items()])
        tmp.write_bytes(bz2.compress(payload, 9))
    else:
        import zstandard

        cctx = zstandard.ZstdCompressor(level=10)
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:

            def add(name: str, data: bytes) -> None:
                zi = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
                zi.external_attr = (stat.S_IFREG | 0o644) << 16
                zf.writestr(zi, data)

            add("metadata.json", json.dumps({"conda_pkg_format_version": 2}).encode())
            add(f"pkg-{spec.dist_name}.tar.zst", cctx.compress(_tar_bytes(spec.files.items())))
            add(f"info-{spec.dist_name}.tar.zst", cctx.compress(_tar_bytes(info.items())))
    tmp.replace(target)
    return target


def tree_files(root: Path, placeholder: str | None = None) -> dict[str, Content]:
    """Read a directory into package contents; text files holding `placeholder` are marked."""
    files: dict[str, Content] = {}
    marker = placeholder.encode() if placeholder else None
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            full = Path(dirpath, name)
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                files[rel] = Symlink(os.readlink(full))
                continue
            data = full.read_bytes()
            executable = bool(full.stat().st_mode & 0o111)
            if marker and marker in data and b"\0" not in data[:8192]:
                files[rel] = FileEntry(data, executable, placeholder, "text")
            else:
                files[rel] = FileEntry(data, executable)
    return files
