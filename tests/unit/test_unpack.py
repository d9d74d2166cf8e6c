"""Unpacking at its edges, on small archives written here: every refusal in its own words, the
no-op of a finished unpack, an interrupted one, a full disk, what tarfile's data filter takes
away, and conda-unpack that runs or fails. Each test pins a promise a mutation of `pack.unpack`
broke without a test noticing; they are fast, so the mutation run uses them."""

from __future__ import annotations

import errno
import io
import os
import stat
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from baseliner.concurrency import OWNER_FILE, SCRATCH_PREFIX, claim
from baseliner.errors import PackError
from baseliner.pack import ENV_MARKER, unpack, write_checksum

from ..conftest import mounted_tmpfs

MARKER = b'{"name": "demo", "version": "1"}\n'
NOT_MADE_BY_US = "the archive was not made by baseliner/conda-pack or was tampered with"
CORRUPT = "the tarball is corrupt or was altered; copy it again"


def _file(
    name: str, data: bytes = b"", mode: int = 0o644, kind: bytes = tarfile.REGTYPE, linkname: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, linkname
    return info, data


def _archive(path: Path, *members: tuple[tarfile.TarInfo, bytes]) -> str:
    """Write `members` as `path` (.tar or .tar.gz) with its .sha256; returns the digest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data))
    return write_checksum(path)


def _env(marker: bytes = MARKER) -> list[tuple[tarfile.TarInfo, bytes]]:
    """A small environment, its marker last (so finding it means reading past other files)."""
    return [
        _file("bin", mode=0o755, kind=tarfile.DIRTYPE),
        _file("bin/tool", b"#!/bin/sh\necho tool\n", 0o755),
        _file("lib/data.txt", b"data\n" * 100),
        _file(ENV_MARKER, marker),
    ]


def _error(call: Callable[[], object]) -> PackError:
    with pytest.raises(PackError) as info:
        call()
    return info.value


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_each_refusal_before_extracting_says_what_and_what_to_do(tmp_path: Path) -> None:
    archive = tmp_path / "in" / "env.tar"
    missing = _error(lambda: unpack(archive, tmp_path / "d"))
    assert (missing.message, list(missing.details), missing.hint) == (
        f"tarball {str(archive)!r} does not exist",
        [],
        None,
    )
    digest = _archive(archive, *_env())
    side = archive.with_name("env.tar.sha256")
    side.unlink()
    none = _error(lambda: unpack(archive, tmp_path / "d"))
    assert (none.message, list(none.details), none.hint) == (
        "no checksum file next to env.tar",
        [f"expected {side}"],
        "copy the .sha256 file with the tarball (or pass --no-verify if you checked it another way)",
    )
    assert unpack(archive, tmp_path / "unverified", verify=False) == tmp_path / "unverified"
    side.write_text("")
    empty = _error(lambda: unpack(archive, tmp_path / "d"))
    assert (empty.message, list(empty.details), empty.hint) == (
        "checksum mismatch for env.tar",
        ["expected ", f"actual   {digest}"],
        CORRUPT,
    )
    write_checksum(archive)
    for dest in (tmp_path / "full", tmp_path / "a-file"):
        (tmp_path / "full").mkdir(exist_ok=True)
        (tmp_path / "full" / "keep").write_text("mine")
        (tmp_path / "a-file").write_text("mine")
        taken = _error(lambda dest=dest: unpack(archive, dest))
        assert (taken.message, taken.hint) == (
            f"destination {str(dest)!r} exists and is not empty",
            "choose a new directory",
        )
    assert (tmp_path / "full" / "keep").read_text() == "mine"
    assert not (tmp_path / "d").exists()


def test_an_empty_destination_directory_is_used_and_progress_is_reported(tmp_path: Path) -> None:
    archive = tmp_path / "in" / "env.tar"
    _archive(archive, *_env())
    dest = tmp_path / "dest"
    dest.mkdir()
    said: list[str] = []
    scratch_names: list[str] = []

    def report(message: str) -> None:
        said.append(message)
        scratch_names.extend(p.name for p in tmp_path.iterdir() if p.name.startswith(SCRATCH_PREFIX))

    assert unpack(archive, dest, report=report) == dest
    assert said == [f"extracting into {dest}, verifying its sha256 on the way"]
    assert len(scratch_names) == 1 and scratch_names[0].startswith(f"{SCRATCH_PREFIX}unpack-dest.")
    assert (dest / "bin/tool").read_bytes() == b"#!/bin/sh\necho tool\n"
    assert (dest / ENV_MARKER).read_bytes() == MARKER
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "in"]  # no scratch left
    assert not (dest / OWNER_FILE).exists()

    said.clear()
    unpack(archive, tmp_path / "plain", verify=False, report=said.append)
    assert said == [f"extracting into {tmp_path / 'plain'}"]


def test_unsafe_members_are_named_and_nothing_is_written(tmp_path: Path) -> None:
    archive = tmp_path / "in" / "env.tar"
    _archive(archive, _file("bin/ok", b"ok\n"), *[_file(f"../x{i}", b"evil") for i in range(7)])
    parent = tmp_path / "a" / "b"
    said: list[str] = []

    def report(message: str) -> None:  # someone else puts a file in `a` while the unpack runs
        said.append(message)
        (tmp_path / "a" / "theirs").write_text("theirs")

    refused = _error(lambda: unpack(archive, parent / "dest", report=report))
    assert refused.render() == "\n".join(
        [
            "error: refusing to unpack env.tar: 7 unsafe member(s):",
            *[f"  - '../x{i}': '..' in the path" for i in range(5)],
            "  - + 2 others",
            f"hint: {NOT_MADE_BY_US}",
        ]
    )
    assert said  # the unpack got as far as extracting
    assert not parent.exists()  # the directory it made is removed; `a` holds another's file
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["theirs"]
    assert not list(tmp_path.rglob("x[0-9]"))


def test_an_archive_that_cannot_be_read_names_the_likelier_cause(tmp_path: Path) -> None:
    # A hardlink to no member: tarfile's KeyError, its text longer than the 200 characters shown.
    target = "lib/" + "m" * 250
    archive = tmp_path / "in" / "env.tar"
    _archive(archive, *_env(), _file("bin/hard", kind=tarfile.LNKTYPE, linkname=target))
    broken = _error(lambda: unpack(archive, tmp_path / "d"))
    head = "cannot extract env.tar: KeyError: "
    assert broken.message.startswith(head + "\"linkname 'lib/mmm") and len(broken.message) == len(head) + 200
    assert broken.hint == NOT_MADE_BY_US + " (or is truncated)"

    gz = tmp_path / "in" / "env.tar.gz"
    digest = _archive(gz, *_env(), _file("lib/noise", os.urandom(100_000)))
    _flip(gz, gz.stat().st_size // 2)
    corrupt = _error(lambda: unpack(gz, tmp_path / "d"))  # a gzip error: the checksum says why
    actual = write_checksum(gz)
    assert (corrupt.message, list(corrupt.details), corrupt.hint) == (
        "checksum mismatch for env.tar.gz",
        [f"expected {digest}", f"actual   {actual}"],
        CORRUPT,
    )
    unverified = _error(lambda: unpack(gz, tmp_path / "d", verify=False))  # gzip's OSError, not a crash
    assert unverified.message.startswith("cannot extract env.tar.gz: BadGzipFile: ")
    assert not (tmp_path / "d").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_a_full_disk_is_raised_as_itself_and_leaves_nothing(tmp_path: Path) -> None:
    archive = tmp_path / "in" / "env.tar"
    _archive(archive, *_env(), _file("lib/big", os.urandom(3 << 20)))
    with mounted_tmpfs(tmp_path / "small", "1m") as small:
        with pytest.raises(OSError) as info:
            unpack(archive, small / "dest")
        assert info.value.errno == errno.ENOSPC  # the CLI turns it into DiskFullError
        assert list(small.iterdir()) == []


def test_the_data_filter_drops_owners_and_group_write(tmp_path: Path) -> None:
    archive = tmp_path / "in" / "env.tar"
    shared, _ = member = _file("lib/shared.txt", b"shared\n", 0o666)
    shared.uid = shared.gid = 4242
    _archive(archive, *_env(), member)
    dest = unpack(archive, tmp_path / "dest")
    st = (dest / "lib/shared.txt").stat()
    assert stat.S_IMODE(st.st_mode) == 0o644
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())


def test_a_finished_unpack_is_a_no_op_and_a_different_one_is_not(tmp_path: Path) -> None:
    archive = tmp_path / "in" / "env.tar"
    digest = _archive(archive, *_env())
    dest = unpack(archive, tmp_path / "dest")
    inode = dest.stat().st_ino
    said: list[str] = []
    assert unpack(archive, dest, report=said.append) == dest
    assert said == [f"{dest} already holds this environment"] and dest.stat().st_ino == inode

    other = tmp_path / "in" / "other.tar"
    _archive(other, *_env(b'{"name": "other"}\n'))
    unmarked = tmp_path / "in" / "unmarked.tar"
    _archive(unmarked, *_env()[:-1])
    for archive_ in (other, unmarked):
        assert _error(lambda a=archive_: unpack(a, dest)).message.endswith("exists and is not empty")

    _flip(archive, 1024 + 100)  # the checksum is checked before the marker is trusted
    mismatch = _error(lambda: unpack(archive, dest))
    assert (mismatch.message, list(mismatch.details)) == (
        "checksum mismatch for env.tar",
        [f"expected {digest}", f"actual   {write_checksum(archive)}"],
    )
    archive.write_bytes(archive.read_bytes()[:2048])  # cut before the marker
    cut = _error(lambda: unpack(archive, dest, verify=False))
    assert cut.message.startswith("cannot read env.tar: ") and cut.hint == "the tarball may be truncated"
    assert dest.stat().st_ino == inode and (dest / ENV_MARKER).read_bytes() == MARKER


def test_an_interrupted_unpack_is_removed_and_done_again(tmp_path: Path) -> None:
    archive = tmp_path / "in" / "env.tar"
    _archive(archive, *_env())
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "half-written").write_text("x")
    os.close(claim(dest))  # an owner file no process holds: the unpack that made it died
    said: list[str] = []
    unpack(archive, dest, report=said.append)
    assert said[0] == f"removing {dest}: an unpack into it was interrupted"
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == [
        "bin/tool",
        ENV_MARKER,
        "lib/data.txt",
    ]


def _with_conda_unpack(path: Path, script: str) -> None:
    """An archive whose `bin/python` runs this interpreter, with a `bin/conda-unpack` script."""
    python = f'#!/bin/sh\nexec {sys.executable} "$@"\n'.encode()
    _archive(
        path, *_env(), _file("bin/python", python, 0o755), _file("bin/conda-unpack", script.encode(), 0o755)
    )


@pytest.mark.parametrize("path", ["/usr/bin:/bin", None])
def test_conda_unpack_runs_in_the_new_prefix_with_its_bin_first(
    path: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASELINER_TEST_SEEN", "yes")
    if path is None:  # no PATH at all: the env's bin alone (no empty entry, which would mean ".")
        monkeypatch.delenv("PATH")
    else:
        monkeypatch.setenv("PATH", path)
    archive = tmp_path / "in" / "env.tar"
    _with_conda_unpack(
        archive,
        "import os, sys\n"
        "prefix = os.path.dirname(os.path.dirname(os.path.abspath(sys.argv[0])))\n"
        "with open(os.path.join(prefix, 'unpacked'), 'w') as fh:\n"
        "    fh.write(os.environ['PATH'] + '\\n' + os.environ['BASELINER_TEST_SEEN'])\n",
    )
    said: list[str] = []
    dest = unpack(archive, tmp_path / "dest", report=said.append)  # conda-unpack runs by default
    expected = f"{dest / 'bin'}:{path}" if path else str(dest / "bin")
    assert (dest / "unpacked").read_text() == f"{expected}\nyes"
    assert said[-1] == f"conda-unpack in {dest}"
    assert not (dest / OWNER_FILE).exists()


@pytest.mark.parametrize("stream", ["stderr", "stdout"])
def test_a_failing_conda_unpack_names_its_last_lines_and_removes_the_env(stream: str, tmp_path: Path) -> None:
    archive = tmp_path / "in" / "env.tar"
    _with_conda_unpack(
        archive,
        f"import sys\nfor i in range(12):\n    print(f'line {{i}}', file=sys.{stream})\nsys.exit(3)\n",
    )
    dest = tmp_path / "dest"
    failed = _error(lambda: unpack(archive, dest))
    assert (failed.message, list(failed.details), failed.hint) == (
        f"conda-unpack failed in {dest}",
        [f"line {i}" for i in range(2, 12)],
        "the new prefix may be longer than a binary prefix placeholder allows",
    )
    assert failed.render().count("\n  - ") == 10
    assert not dest.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
