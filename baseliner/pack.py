"""Packing environments with conda-pack, checksums, and safe unpacking.

conda-pack writes a plain tar (prefix records, `conda-unpack`, shebang rewriting are all its own);
baseliner then streams it once through a normaliser (every member's mtime set to one fixed time,
owner root) into the compressor, so the same environment always packs to the same bytes:

* `tar.gz` (default): gzip with a zero header mtime, one thread;
* `tar.zst`: zstandard with `threads` workers (-1: every core). conda-pack's own zstd writer
  ignores the compression level and thread count, and its writers stamp the files it adds itself
  (`bin/conda-unpack`'s helper) with the current time, which is why they are not used.

`unpack` verifies the `.sha256` next to the tarball, refuses members that could write outside the
destination or carry privileges (absolute paths, `..`, escaping symlinks or hardlinks, device
files, setuid/setgid bits, control characters in names), extracts into a temporary directory next
to the destination, renames it into place and runs `conda-unpack` there.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import posixpath
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Literal

from .atomic import Report, silent, write_atomic
from .concurrency import claim, owner_is_dead, release, scratch
from .condapkg import FIXED_MTIME
from .errors import PackError, first_few, is_disk_full
from .yamlsource import control_characters

# The file every baseliner environment carries (name, version, platform, lock hash).
ENV_MARKER = "etc/baseliner/baseline.json"

Format = Literal["tar.gz", "tar.zst"]


@dataclass(frozen=True)
class PackResult:
    path: Path
    sha256: str
    size: int


def sha256_file(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksum(path: Path) -> str:
    """Write `path.sha256` in `sha256sum` format (atomically); returns the hex digest."""
    digest = sha256_file(path)
    write_atomic(path.with_name(path.name + ".sha256"), f"{digest}  {path.name}\n")
    return digest


def pack_env(
    prefix: Path,
    output: Path,
    fmt: Format = "tar.gz",
    compress_level: int = 4,
    threads: int = 1,
    report: Report = silent,
    only: Collection[str] | None = None,
) -> PackResult:
    """Pack `prefix` into `output` (written under a temporary name, then renamed).

    One pass: conda-pack's own Packer chooses the files and rewrites what must be rewritten
    (conda-meta, the prefix records, `bin/conda-unpack`); each member goes, with a fixed mtime and
    root ownership, straight into the compressor (ISA-L's gzip, or zstd), which writes the file. No
    intermediate tar touches the disk, and memory does not grow with the environment.

    With `only`, just those prefix-relative files go in (a delta); `conda-unpack` then rewrites the
    prefix in those files alone."""
    with scratch(output.parent, f"pack-{output.name}") as tmp_dir:
        report(f"conda-pack {prefix.name} -> {fmt} (level {compress_level}, {threads} thread(s))")
        tmp = tmp_dir / f"env.{fmt}"
        with tmp.open("wb") as out, _compressor(out, fmt, compress_level, threads) as stream:
            _conda_pack(prefix, stream, only)
        tmp.replace(output)
    return PackResult(output, write_checksum(output), output.stat().st_size)


def _isal_level(level: int) -> int:
    """ISA-L has levels 0-3: zlib's 1-2 are about its 1, 3 its 2, and 4 and up its 3."""
    return 1 if level <= 2 else 2 if level == 3 else 3


@contextlib.contextmanager
def _compressor(out: IO[bytes], fmt: Format, level: int, threads: int) -> Iterator[IO[bytes]]:
    if fmt == "tar.gz":
        # Blocks compressed in parallel into one gzip member; the bytes depend on the input and
        # the level only (not on the thread count or the time: mtime 0, no file name).
        from isal import igzip_threaded

        workers = (os.cpu_count() or 1) if threads < 1 else threads
        with igzip_threaded.open(out, "wb", compresslevel=_isal_level(level), threads=workers) as gz:
            yield gz
    else:
        import zstandard

        cctx = zstandard.ZstdCompressor(level=max(level, 1), threads=threads, write_checksum=True)
        with cctx.stream_writer(out, closefd=False) as zst:
            yield zst


def _normalised(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """The same member with a fixed mtime and root ownership: the bytes depend on content only."""
    member.mtime = FIXED_MTIME
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    member.pax_headers = {}
    return member


def _conda_pack(prefix: Path, stream: IO[bytes], only: Collection[str] | None) -> None:
    """Write the environment at `prefix` as a tar stream into `stream`, through conda-pack's Packer."""
    import conda_pack
    from conda_pack.core import Packer
    from conda_pack.formats import ArchiveBase

    class Archive(ArchiveBase):
        """conda-pack's archive interface over a streaming tar of normalised members."""

        def __init__(self, tar: tarfile.TarFile) -> None:
            self.arcroot, self.tar = "", tar

        def _add(self, source: str, target: str) -> None:
            self.tar.add(source, target, recursive=False, filter=_normalised)

        def _add_bytes(self, source: str, data: bytes, target: str) -> None:
            member = _normalised(self.tar.gettarinfo(source, target))
            member.size = len(data)
            self.tar.addfile(member, io.BytesIO(data))

    try:
        env = conda_pack.CondaEnv.from_prefix(str(prefix))
        if only is not None:
            wanted = set(only)
            env = conda_pack.CondaEnv(env.prefix, [f for f in env.files if f.target in wanted])
        with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            packer = Packer(env.prefix, Archive(tar))
            for file in env.files:
                packer.add(file)
            packer.finish()
    except conda_pack.CondaPackException as exc:
        raise PackError(
            f"conda-pack refused {prefix}",
            details=str(exc).strip().splitlines()[:12],
            detail_limit=12,
            hint="the environment may have been changed outside conda; rebuild it",
        ) from exc


# --- unpacking -------------------------------------------------------------------------------


@contextlib.contextmanager
def open_tarball(path: Path) -> Iterator[tarfile.TarFile]:
    """Open a .tar.gz / .tar.zst / .tar for sequential reading."""
    name = path.name
    if name.endswith((".tar.zst", ".tzst")):
        import zstandard

        with (
            path.open("rb") as raw,
            zstandard.ZstdDecompressor().stream_reader(raw) as stream,
            tarfile.open(fileobj=stream, mode="r|") as tar,
        ):
            yield tar
    elif name.endswith((".tar.gz", ".tgz")):
        from isal import igzip  # ISA-L's gunzip: the same bytes out as zlib's, faster

        with igzip.open(path, "rb") as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            yield tar
    else:
        with tarfile.open(path, mode="r|") as tar:
            yield tar


def _escapes(base: PurePosixPath, target: str) -> bool:
    if target.startswith("/"):
        return True
    parts: list[str] = list(base.parts)
    for part in PurePosixPath(target).parts:
        if part == "..":
            if not parts:
                return True
            parts.pop()
        elif part != ".":
            parts.append(part)
    return False


def member_problems(member: tarfile.TarInfo) -> list[str]:
    """Why a tar member must not be extracted (empty when it is safe)."""
    name = member.name
    problems = []
    if control_characters(name):
        problems.append(f"{name!r}: control character in the name")
    path = PurePosixPath(name)
    if name.startswith("/") or path.is_absolute():
        problems.append(f"{name!r}: absolute path")
    elif ".." in path.parts:
        problems.append(f"{name!r}: '..' in the path")
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        problems.append(f"{name!r}: device or fifo")
    if member.mode & (stat.S_ISUID | stat.S_ISGID):
        problems.append(f"{name!r}: setuid/setgid bit")
    if member.issym() and _escapes(path.parent, member.linkname):
        problems.append(f"{name!r}: symlink to {member.linkname!r} escapes the destination")
    if member.islnk() and _escapes(PurePosixPath(), member.linkname):
        problems.append(f"{name!r}: hardlink to {member.linkname!r} escapes the destination")
    if not member.isdir() and posixpath.normpath(name) in (".", ""):
        problems.append(f"{name!r}: not a file name (the destination itself)")
    if member.islnk() and posixpath.normpath(member.linkname) == posixpath.normpath(name):
        problems.append(f"{name!r}: hardlink to itself")  # tarfile would recurse without end
    return problems


def verify_checksum(tarball: Path) -> str:
    """Check a tarball against the `.sha256` file beside it; returns the digest."""
    side = tarball.with_name(tarball.name + ".sha256")
    if not side.is_file():
        raise PackError(
            f"no checksum file next to {tarball.name}",
            details=[f"expected {side}"],
            hint="copy the .sha256 file with the tarball (or pass --no-verify if you checked it another way)",
        )
    expected = side.read_text().split()[0] if side.read_text().split() else ""
    actual = sha256_file(tarball)
    if actual != expected:
        raise PackError(
            f"checksum mismatch for {tarball.name}",
            details=[f"expected {expected}", f"actual   {actual}"],
            hint="the tarball is corrupt or was altered; copy it again",
        )
    return actual


def unpack(
    tarball: Path, dest: Path, verify: bool = True, run_conda_unpack: bool = True, report: Report = silent
) -> Path:
    """Verify, check every member, extract to `dest` (which must not exist or be empty), conda-unpack."""
    if not tarball.is_file():
        raise PackError(f"tarball {str(tarball)!r} does not exist")
    if verify:
        report(f"verifying sha256 of {tarball.name}")
        verify_checksum(tarball)
    dest = dest.absolute()
    if owner_is_dead(dest):  # a killed unpack renamed it into place before conda-unpack finished
        report(f"removing {dest}: an unpack into it was interrupted")
        shutil.rmtree(dest)
    problems: list[str] = []
    marker: bytes | None = None
    try:
        with open_tarball(tarball) as tar:
            for member in tar:
                problems += member_problems(member)
                if member.name == ENV_MARKER and member.isreg() and (fh := tar.extractfile(member)):
                    marker = fh.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise PackError(f"cannot read {tarball.name}: {exc}", hint="the tarball may be truncated") from exc
    if problems:
        raise PackError(
            f"refusing to unpack {tarball.name}: {len(problems)} unsafe member(s)",
            details=first_few(problems, 5),
            detail_limit=6,
            hint="the archive was not made by baseliner/conda-pack or was tampered with",
        )
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        if (
            marker is not None
            and (dest / ENV_MARKER).is_file()
            and (dest / ENV_MARKER).read_bytes() == marker
        ):
            report(f"{dest} already holds this environment")  # a finished unpack: running it again is a no-op
            return dest
        raise PackError(f"destination {str(dest)!r} exists and is not empty", hint="choose a new directory")
    with scratch(dest.parent, f"unpack-{dest.name}") as tmp:
        env = tmp / "env"
        env.mkdir()
        report(f"extracting into {dest}")
        try:
            with open_tarball(tarball) as tar:
                tar.extractall(env, filter="data")
        except (tarfile.TarError, OSError, KeyError, RecursionError) as exc:  # KeyError: a link to no member
            if isinstance(exc, OSError) and is_disk_full(exc):
                raise
            raise PackError(
                f"cannot extract {tarball.name}: {type(exc).__name__}: {str(exc)[:200]}",
                hint="the archive was not made by baseliner/conda-pack or was tampered with",
            ) from None
        # The owner file travels with the env: until conda-unpack is done, DEST is unfinished.
        owner = claim(env)
        if dest.exists():
            dest.rmdir()
        env.rename(dest)
    try:
        if run_conda_unpack:
            conda_unpack(dest, report)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    finally:
        release(dest, owner)
    return dest


def conda_unpack(prefix: Path, report: Report = silent) -> None:
    """Run the `bin/conda-unpack` that conda-pack wrote, with the environment's own python."""
    script = prefix / "bin" / "conda-unpack"
    if not script.is_file():
        return
    report(f"conda-unpack in {prefix}")
    proc = subprocess.run(
        [str(prefix / "bin" / "python"), str(script)],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{prefix / 'bin'}:{os.environ.get('PATH', '')}"},
    )
    if proc.returncode != 0:
        raise PackError(
            f"conda-unpack failed in {prefix}",
            details=(proc.stderr or proc.stdout).strip().splitlines()[-10:],
            detail_limit=10,
            hint="the new prefix may be longer than a binary prefix placeholder allows",
        )
