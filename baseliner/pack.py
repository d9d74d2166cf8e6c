"""Packing environments with conda-pack, checksums, and safe unpacking.

conda-pack's Packer decides what goes in and how (prefix records, `conda-unpack`, shebang
rewriting are all its own); each member it adds goes, normalised (one fixed mtime, owner root),
through a streaming tar writer straight into the compressor, so the same environment always packs
to the same bytes:

* `tar.gz` (default): gzip with a zero header mtime, zlib-ng on `threads` cores (`gzipblocks`);
* `tar.zst`: zstandard with `threads` workers. conda-pack's own zstd writer ignores the
  compression level and thread count, and its writers stamp the files it adds itself
  (`bin/conda-unpack`'s helper) with the current time, which is why they are not used.

Either way the bytes are the same on any number of threads (-1, the default, is every core).

`unpack` verifies the `.sha256` next to the tarball, refuses members that could write outside the
destination or carry privileges (`safetar`: absolute paths, `..`, links that leave the destination
by themselves or through the archive's other symlinks, device files, setuid/setgid bits, control
characters in names), extracts into a temporary directory next to the destination, renames it into
place and runs `conda-unpack` there.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from .atomic import Report, silent, write_atomic
from .concurrency import claim, owner_is_dead, release, scratch
from .condapkg import FIXED_MTIME
from .errors import PackError, is_disk_full
from .gzipblocks import GzipBlocksWriter, Sink
from .safetar import MemberGuard, data_attrs
from .spec import DEFAULT_LEVEL

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


def write_checksum(path: Path, digest: str | None = None) -> str:
    """Write `path.sha256` in `sha256sum` format (atomically); returns the hex digest. `digest`,
    when the file's sha256 was computed as it was written, saves reading it again."""
    digest = digest or sha256_file(path)
    write_atomic(path.with_name(path.name + ".sha256"), f"{digest}  {path.name}\n")
    return digest


def pack_env(
    prefix: Path,
    output: Path,
    fmt: Format = "tar.gz",
    compress_level: int | None = None,
    threads: int = -1,
    report: Report = silent,
    only: Collection[str] | None = None,
) -> PackResult:
    """Pack `prefix` into `output` (written under a temporary name, then renamed).

    One pass: conda-pack's own Packer chooses the files and rewrites what must be rewritten
    (conda-meta, the prefix records, `bin/conda-unpack`); each member goes, with a fixed mtime and
    root ownership, straight into the compressor (zlib-ng in blocks on every core, or zstd), which
    writes the file. No intermediate tar touches the disk, and memory does not grow with the
    environment.

    With `only`, just those prefix-relative files go in (a delta); `conda-unpack` then rewrites the
    prefix in those files alone. `compress_level` None is the format's `spec.DEFAULT_LEVEL`; `threads`
    -1 is every core (the bytes are the same on any number)."""
    if compress_level is None:
        compress_level = DEFAULT_LEVEL[fmt]
    # Below 1 is every core. Never 0 for zstd: that is its single-threaded mode, whose bytes differ
    # from those of its workers (the same on any number of them).
    threads = (os.cpu_count() or 1) if threads < 1 else threads
    with scratch(output.parent, f"pack-{output.name}") as tmp_dir:
        report(f"conda-pack {prefix.name} -> {fmt} (level {compress_level}, {threads} thread(s))")
        tmp = tmp_dir / f"env.{fmt}"
        digest = hashlib.sha256()  # of the bytes as they are written: the file is not read again
        with (
            tmp.open("wb") as out,
            _compressor(_Hashing(out, digest), fmt, compress_level, threads) as stream,
        ):
            _conda_pack(prefix, stream, only)
        tmp.replace(output)
    return PackResult(output, write_checksum(output, digest.hexdigest()), output.stat().st_size)


@contextlib.contextmanager
def _compressor(out: Sink, fmt: Format, level: int, threads: int) -> Iterator[IO[bytes]]:
    if fmt == "tar.gz":
        # zlib-ng on every core, in blocks that join into one gzip member: the bytes depend on the
        # input and the level only (not on the thread count or the time: mtime 0, no file name).
        with GzipBlocksWriter(out, level, threads) as gz:
            yield gz  # type: ignore[misc]
    else:
        import zstandard

        cctx = zstandard.ZstdCompressor(level=max(level, 1), threads=threads, write_checksum=True)
        # zstandard's stubs ask for IO[bytes]; the writer calls only `write`
        with cctx.stream_writer(out, closefd=False) as zst:  # type: ignore[arg-type]
            yield zst


_FLUSH = 1 << 20  # bytes gathered before one write into the compressor
_HEADER_TAIL = b"ustar\x0000" + tarfile.NUL * (32 + 32 + 8 + 8 + 155 + 12)


def _fast_header(name: str, mode: int, size: int, kind: bytes, linkname: str) -> bytes | None:
    """The ustar header `TarInfo.tobuf(PAX_FORMAT)` writes for a member with mtime FIXED_MTIME and
    owner root, when it needs no pax record (ASCII names of at most 100 bytes); None otherwise.
    The same bytes, built in one pass instead of tarfile's field-by-field checks (tested against
    tarfile member by member)."""
    if kind == tarfile.DIRTYPE and not name.endswith("/"):
        name += "/"
    if not (name.isascii() and linkname.isascii() and len(name) <= 100 and len(linkname) <= 100):
        return None
    if size >= 8**11:
        return None
    head = b"".join(
        (
            name.encode().ljust(100, tarfile.NUL),
            b"%07o\0" % (mode & 0o7777),
            b"0000000\x000000000\x00",
            b"%011o\0" % size,
            b"%011o\0" % FIXED_MTIME,
            b"        ",
            kind,
            linkname.encode().ljust(100, tarfile.NUL),
            _HEADER_TAIL,
        )
    )
    return head[:148] + b"%06o\0" % sum(head) + head[155:]


class _TarWriter:
    """A tar stream of normalised members (mtime FIXED_MTIME, owner root, no pax extras), written
    straight into `out` in blocks of about 1 MiB. The bytes are those `tarfile` writes (headers in
    PAX format, by `TarInfo.tobuf` whenever a name needs a pax record); what is left out is
    `TarFile.add`'s per-member cost (owner-name lookups, copies of every TarInfo, a list of all
    members, 10 KiB writes), which made the Python side the pack's bottleneck.

    A file whose inode was already written (a hardlink inside the env) becomes a hardlink member,
    as tarfile writes it."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out, self.offset, self.pending = out, 0, bytearray()
        self.linked: dict[tuple[int, int], str] = {}  # inodes with several links -> first name

    def _write(self, data: bytes) -> None:
        self.offset += len(data)
        if len(data) >= _FLUSH:  # a file's block goes to the compressor as it was read
            if self.pending:
                self.out.write(self.pending)
                self.pending = bytearray()
            self.out.write(data)
            return
        self.pending += data
        if len(self.pending) >= _FLUSH:
            self.out.write(self.pending)
            self.pending = bytearray()

    def add(self, source: str, target: str, data: bytes | None = None) -> None:
        st = os.lstat(source)
        kind, size, linkname = tarfile.REGTYPE, 0, ""
        if stat.S_ISDIR(st.st_mode):
            kind = tarfile.DIRTYPE
        elif stat.S_ISLNK(st.st_mode):
            kind, linkname = tarfile.SYMTYPE, os.readlink(source)
        elif not stat.S_ISREG(st.st_mode):
            raise PackError(f"cannot pack {source}: not a file, directory or symlink")
        elif data is not None:
            size = len(data)
        elif st.st_nlink > 1 and (st.st_dev, st.st_ino) in self.linked:
            kind, linkname = tarfile.LNKTYPE, self.linked[st.st_dev, st.st_ino]
        else:
            if st.st_nlink > 1:
                self.linked[st.st_dev, st.st_ino] = target
            size = st.st_size
        mode = stat.S_IMODE(st.st_mode)
        header = _fast_header(target, mode, size, kind, linkname)
        if header is None:
            info = tarfile.TarInfo(target)
            info.mode, info.size, info.type, info.linkname, info.mtime = (
                mode,
                size,
                kind,
                linkname,
                FIXED_MTIME,
            )
            # utf-8 for names that are not (surrogate-escaped bytes), whatever the locale says
            header = info.tobuf(tarfile.PAX_FORMAT, "utf-8")
        self._write(header)
        if data is not None:
            self._write(data)
        elif size:
            self._copy(source, size)
        if size % tarfile.BLOCKSIZE:
            self._write(tarfile.NUL * (tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE))

    def _copy(self, source: str, size: int) -> None:
        with open(source, "rb", buffering=0) as fh:
            left = size
            while left:
                block = fh.read(min(left, _FLUSH))
                if not block:
                    raise PackError(f"{source} shrank while it was packed", hint="build again")
                self._write(block)
                left -= len(block)

    def close(self) -> None:
        """The end of the archive, as tarfile writes it: two zero blocks, padded to a record."""
        self._write(tarfile.NUL * (tarfile.BLOCKSIZE * 2))
        self._write(tarfile.NUL * (-self.offset % tarfile.RECORDSIZE))
        self.out.write(self.pending)


def _conda_pack(prefix: Path, stream: IO[bytes], only: Collection[str] | None) -> None:
    """Write the environment at `prefix` as a tar stream into `stream`, through conda-pack's Packer."""
    import conda_pack
    from conda_pack.core import Packer
    from conda_pack.formats import ArchiveBase

    class Archive(ArchiveBase):
        """conda-pack's archive interface over a streaming tar of normalised members."""

        def __init__(self, tar: _TarWriter) -> None:
            self.arcroot, self.tar = "", tar

        def _add(self, source: str, target: str) -> None:
            self.tar.add(source, target)

        def _add_bytes(self, source: str, data: bytes, target: str) -> None:
            self.tar.add(source, target, data)

    try:
        env = conda_pack.CondaEnv.from_prefix(str(prefix))
        if only is not None:
            wanted = set(only)
            env = conda_pack.CondaEnv(env.prefix, [f for f in env.files if f.target in wanted])
        tar = _TarWriter(stream)
        packer = Packer(env.prefix, Archive(tar))
        for file in env.files:
            packer.add(file)
        packer.finish()
        tar.close()
    except conda_pack.CondaPackException as exc:
        raise PackError(
            f"conda-pack refused {prefix}",
            details=str(exc).strip().splitlines()[:12],
            detail_limit=12,
            hint="the environment may have been changed outside conda; rebuild it",
        ) from exc


# --- unpacking -------------------------------------------------------------------------------


class _Hashing(io.RawIOBase):
    """A file read or written through a sha256: the checksum comes from the same bytes as the
    extraction, or as the packing."""

    def __init__(self, raw: IO[bytes], digest: Any) -> None:
        self.raw, self.digest = raw, digest

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.digest.update(data)
        return self.raw.write(data)

    def readinto(self, buffer: Any) -> int:
        count = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        if count:
            self.digest.update(memoryview(buffer)[:count])
        return count or 0


@contextlib.contextmanager
def open_tarball(path: Path, digest: Any = None) -> Iterator[tarfile.TarFile]:
    """Open a .tar.gz / .tar.zst / .tar for sequential reading. With `digest` (a hashlib object),
    every byte of the file goes through it, to the end, once the block ends."""
    name = path.name
    with path.open("rb", buffering=0) as plain:
        raw = _Hashing(plain, digest) if digest is not None else plain
        source: IO[bytes] = io.BufferedReader(raw, 1 << 20)
        if name.endswith((".tar.zst", ".tzst")):
            import zstandard

            with (
                zstandard.ZstdDecompressor().stream_reader(source, closefd=False) as stream,
                tarfile.open(fileobj=stream, mode="r|") as tar,
            ):
                yield tar
        elif name.endswith((".tar.gz", ".tgz")):
            # ISA-L's gunzip (the same bytes out as zlib's, faster) on a thread of its own, which
            # also reads and hashes the file: it releases the GIL while the main thread extracts.
            from isal import igzip_threaded

            with (
                igzip_threaded.open(source, "rb", threads=1) as stream,
                tarfile.open(fileobj=stream, mode="r|") as tar,
            ):
                yield tar
        else:
            with tarfile.open(fileobj=source, mode="r|") as tar:
                yield tar
        if isinstance(raw, _Hashing):
            while source.read(1 << 20):  # what the buffer holds, then the rest of the file
                pass


def expected_checksum(tarball: Path) -> str:
    """The sha256 the `.sha256` file next to `tarball` names."""
    side = tarball.with_name(tarball.name + ".sha256")
    if not side.is_file():
        raise PackError(
            f"no checksum file next to {tarball.name}",
            details=[f"expected {side}"],
            hint="copy the .sha256 file with the tarball (or pass --no-verify if you checked it another way)",
        )
    words = side.read_text().split()
    return words[0] if words else ""


def _mismatch(tarball: Path, expected: str, actual: str) -> PackError:
    return PackError(
        f"checksum mismatch for {tarball.name}",
        details=[f"expected {expected}", f"actual   {actual}"],
        hint="the tarball is corrupt or was altered; copy it again",
    )


def verify_checksum(tarball: Path) -> str:
    """Check a tarball against the `.sha256` file beside it; returns the digest."""
    expected = expected_checksum(tarball)
    actual = sha256_file(tarball)
    if actual != expected:
        raise _mismatch(tarball, expected, actual)
    return actual


def unpack(
    tarball: Path, dest: Path, verify: bool = True, run_conda_unpack: bool = True, report: Report = silent
) -> Path:
    """Verify, check every member, extract to `dest` (which must not exist or be empty), conda-unpack.

    One read of the archive: each member is checked as its header arrives and extracted into a
    scratch directory next to `dest`, while the file's sha256 is computed from the same bytes.
    Only when every member was safe and the checksum matched is the scratch renamed to `dest`;
    otherwise it is removed, with any directories the unpack created for it."""
    if not tarball.is_file():
        raise PackError(f"tarball {str(tarball)!r} does not exist")
    expected = expected_checksum(tarball) if verify else None
    dest = dest.absolute()
    if owner_is_dead(dest):  # a killed unpack renamed it into place before conda-unpack finished
        report(f"removing {dest}: an unpack into it was interrupted")
        shutil.rmtree(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        if _holds(dest, tarball, verify):
            report(f"{dest} already holds this environment")  # a finished unpack: running it again is a no-op
            return dest
        raise PackError(f"destination {str(dest)!r} exists and is not empty", hint="choose a new directory")
    created = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]
    try:
        with scratch(dest.parent, f"unpack-{dest.name}") as tmp:
            env = tmp / "env"
            env.mkdir()
            report(f"extracting into {dest}" + (", verifying its sha256 on the way" if verify else ""))
            _extract_checked(tarball, env, expected)
            # The owner file travels with the env: until conda-unpack is done, DEST is unfinished.
            owner = claim(env)
            if dest.exists():
                dest.rmdir()
            env.rename(dest)
    except BaseException:
        for directory in created:  # innermost first; only while they are empty
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
    try:
        if run_conda_unpack:
            conda_unpack(dest, report)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    finally:
        release(dest, owner)
    return dest


def _extract_checked(tarball: Path, env: Path, expected: str | None) -> None:
    """Extract `tarball` into `env`, member by member as the headers arrive, refusing the archive
    at the first unsafe member (the rest is read to name them all, and not extracted); with
    `expected`, the file's sha256 must equal it."""
    digest = hashlib.sha256() if expected is not None else None
    problems: list[str] = []
    guard = MemberGuard()

    def safe(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
        for member in tar:
            problems.extend(guard.problems(member))
            if not problems:
                yield member

    try:
        with open_tarball(tarball, digest) as tar:
            tar.extractall(env, members=safe(tar), filter=data_attrs)
    except (
        tarfile.TarError,
        OSError,
        KeyError,
        RecursionError,
        EOFError,
    ) as exc:  # KeyError: a link to no member
        if isinstance(exc, OSError) and is_disk_full(exc):
            raise
        if expected is not None and (actual := sha256_file(tarball)) != expected:
            raise _mismatch(tarball, expected, actual) from None  # the likelier cause: say that
        raise PackError(
            f"cannot extract {tarball.name}: {type(exc).__name__}: {str(exc)[:200]}",
            hint="the archive was not made by baseliner/conda-pack or was tampered with (or is truncated)",
        ) from None
    if digest is not None and expected is not None and digest.hexdigest() != expected:
        raise _mismatch(tarball, expected, digest.hexdigest())
    if problems:
        raise PackError(
            f"refusing to unpack {tarball.name}: {len(problems)} unsafe member(s)",
            details=problems,
            detail_limit=5,
            hint="the archive was not made by baseliner/conda-pack or was tampered with",
        )


def _holds(dest: Path, tarball: Path, verify: bool) -> bool:
    """Whether `dest` is a finished unpack of `tarball` (the same environment marker)."""
    if not (dest / ENV_MARKER).is_file():
        return False
    if verify:
        verify_checksum(tarball)
    try:
        with open_tarball(tarball) as tar:
            for member in tar:
                if member.name == ENV_MARKER and member.isreg() and (fh := tar.extractfile(member)):
                    return fh.read() == (dest / ENV_MARKER).read_bytes()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise PackError(f"cannot read {tarball.name}: {exc}", hint="the tarball may be truncated") from exc
    return False


def conda_unpack(prefix: Path, report: Report = silent) -> None:
    """Run the `bin/conda-unpack` that conda-pack wrote, with the environment's own python."""
    script = prefix / "bin" / "conda-unpack"
    if not script.is_file():
        return
    report(f"conda-unpack in {prefix}")
    path = os.pathsep.join(p for p in (str(prefix / "bin"), os.environ.get("PATH")) if p)
    proc = subprocess.run(
        [str(prefix / "bin" / "python"), str(script)],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": path},
    )
    if proc.returncode != 0:
        raise PackError(
            f"conda-unpack failed in {prefix}",
            details=(proc.stderr or proc.stdout).strip().splitlines()[-10:],
            detail_limit=10,
            hint="the new prefix may be longer than a binary prefix placeholder allows",
        )
