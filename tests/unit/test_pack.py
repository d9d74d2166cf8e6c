"""Packing with conda-pack (deterministic gzip, threaded zstd) and unpacking safely elsewhere."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from baseliner.condapkg import FIXED_MTIME
from baseliner.envs import normalise_mtimes
from baseliner.errors import PackError
from baseliner.pack import open_tarball, pack_env, unpack, write_checksum

from ..conftest import FULL, MakeProject, install_baseline, spec
from ..support.fixture_channel import BINARY_PLACEHOLDER, TEXT_PLACEHOLDER

# What conda-pack adds to every archive: its unpack script and the activation scripts.
_CONDA_PACK_OWN = {
    "bin/activate",
    "bin/activate.fish",
    "bin/conda-unpack",
    "bin/conda_unpack_progress.py",
    "bin/deactivate",
}


@pytest.fixture
def built(make_project: MakeProject) -> tuple[Path, Path]:
    project = make_project({"ml": spec("ml", **FULL)})
    prefix = install_baseline(project, "ml")
    normalise_mtimes(prefix, FIXED_MTIME)
    return project.root, prefix


def test_same_build_twice_gives_same_tarball_bytes(make_project: MakeProject) -> None:
    project = make_project({"ml": spec("ml", **FULL)})
    digests = []
    for _ in range(2):
        prefix = install_baseline(project, "ml")  # a fresh install each time
        normalise_mtimes(prefix, FIXED_MTIME)
        digests.append(pack_env(prefix, project.root / "dist" / "ml.tar.gz").sha256)
    assert digests[0] == digests[1]


@pytest.mark.parametrize("fmt", ["tar.gz", "tar.zst"])
def test_unpacked_elsewhere_runs_and_holds_the_new_prefix(
    built: tuple[Path, Path], tmp_path: Path, fmt: str
) -> None:
    root, prefix = built
    packed = pack_env(prefix, root / "dist" / f"ml.{fmt}", fmt, 3, 2)  # type: ignore[arg-type]
    assert Path(str(packed.path) + ".sha256").read_text() == f"{packed.sha256}  ml.{fmt}\n"
    dest = unpack(packed.path, tmp_path / "elsewhere" / "env")
    run = subprocess.run(
        [dest / "bin/python", "-c", "import sys, tinyapp, hello_noarch; print(sys.prefix)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout.strip() == str(dest)
    # Every file that carried a prefix placeholder now holds the new path, and no trace of the old.
    assert subprocess.run([dest / "bin/prefixdemo"], capture_output=True, text=True).stdout.strip() == str(
        dest
    )
    assert (dest / "share/prefixdemo/config.txt").read_text() == f"data_dir={dest}/share/prefixdemo\n"
    for rel in ("bin/prefixdemo", "bin/prefixdemo-config", "share/prefixdemo/config.txt"):
        data = (dest / rel).read_bytes()
        assert str(prefix).encode() not in data
        assert TEXT_PLACEHOLDER.encode() not in data and BINARY_PLACEHOLDER.encode() not in data
    assert subprocess.run([dest / "bin/prefixdemo-config"], capture_output=True, text=True).stdout.startswith(
        f"data_dir={dest}"
    )
    # conda-pack rewrites entry-point shebangs to `/usr/bin/env python`: they run with the env on PATH.
    env = {**os.environ, "PATH": f"{dest / 'bin'}:{os.environ['PATH']}"}
    assert (
        subprocess.run(["hello-noarch"], capture_output=True, text=True, env=env).stdout.strip()
        == "hello from noarch"
    )


def test_checksum_mismatch_is_refused(built: tuple[Path, Path], tmp_path: Path) -> None:
    root, prefix = built
    packed = pack_env(prefix, root / "dist" / "ml.tar.gz")
    with packed.path.open("r+b") as fh:
        fh.seek(packed.size // 2)
        byte = fh.read(1)
        fh.seek(packed.size // 2)
        fh.write(bytes([byte[0] ^ 1]))
    with pytest.raises(PackError, match="checksum mismatch"):
        unpack(packed.path, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def _hostile(tmp_path: Path, name: str, **attrs: object) -> Path:
    path = tmp_path / f"{name}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("bin/ok.txt")
        ok.size = 3
        tar.addfile(ok, io.BytesIO(b"ok\n"))
        member = tarfile.TarInfo(str(attrs.pop("member_name", "evil")))
        for key, value in attrs.items():
            setattr(member, key, value)
        data = b"x" if member.isreg() else b""
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    write_checksum(path)
    return path


HOSTILE = {
    "absolute": {"member_name": "/tmp/baseliner-evil-abs"},
    "dotdot": {"member_name": "../../baseliner-evil-dotdot"},
    "symlink-out": {"member_name": "bin/link", "type": tarfile.SYMTYPE, "linkname": "../../../etc/passwd"},
    "symlink-abs": {"member_name": "bin/link", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"},
    "hardlink-out": {"member_name": "bin/hard", "type": tarfile.LNKTYPE, "linkname": "../outside"},
    "device": {"member_name": "dev/null", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3},
    "fifo": {"member_name": "bin/fifo", "type": tarfile.FIFOTYPE},
    "setuid": {"member_name": "bin/su", "mode": 0o4755},
    "newline": {"member_name": "bin/evil\nname"},
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_are_refused_and_write_nothing(case: str, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    archive = _hostile(tmp_path / "in", case, **HOSTILE[case])  # type: ignore[arg-type]
    dest = tmp_path / "box" / "dest"
    with pytest.raises(PackError, match="unsafe member"):
        unpack(archive, dest, run_conda_unpack=False)
    assert not dest.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == [archive.name, archive.name + ".sha256"]
    assert not Path("/tmp/baseliner-evil-abs").exists()


def test_unpack_refuses_a_non_empty_destination(built: tuple[Path, Path], tmp_path: Path) -> None:
    root, prefix = built
    packed = pack_env(prefix, root / "dist" / "ml.tar.gz")
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "keep.txt").write_text("mine")
    with pytest.raises(PackError, match="not empty"):
        unpack(packed.path, tmp_path / "dest")
    assert (tmp_path / "dest" / "keep.txt").read_text() == "mine"
    shutil.rmtree(tmp_path / "dest")
    assert os.path.isdir(unpack(packed.path, tmp_path / "dest"))


@pytest.mark.parametrize("fmt", ["tar.gz", "tar.zst"])
def test_pack_writes_one_checked_file_compressed_as_asked(
    fmt: str, built: tuple[Path, Path], tmp_path: Path
) -> None:
    """The file is the compressor's bytes of the tar stream, at the level asked; the result names
    it, its sha256 and size; only the archive and its checksum are left; `only` packs a delta."""
    import hashlib

    import zstandard

    from baseliner.gzipblocks import GzipBlocksWriter

    _, prefix = built
    out = tmp_path / "out"
    said: list[str] = []
    packed = pack_env(prefix, out / f"ml.{fmt}", fmt, 3, 2, report=said.append)  # type: ignore[arg-type]
    assert said == [f"conda-pack {prefix.name} -> {fmt} (level 3, 2 thread(s))"]
    data = packed.path.read_bytes()
    assert (packed.path, packed.size, packed.sha256) == (
        out / f"ml.{fmt}",
        len(data),
        hashlib.sha256(data).hexdigest(),
    )
    assert sorted(p.name for p in out.iterdir()) == [f"ml.{fmt}", f"ml.{fmt}.sha256"]
    again = io.BytesIO()
    if fmt == "tar.gz":
        tar = gzip.decompress(data)
        with GzipBlocksWriter(again, 3, 1) as gz:
            gz.write(tar)
    else:
        tar = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
        with zstandard.ZstdCompressor(level=3, threads=1, write_checksum=True).stream_writer(
            again, closefd=False
        ) as z:
            z.write(tar)
    assert again.getvalue() == data  # the level reached the compressor; the stream is whole

    delta = pack_env(prefix, out / f"delta.{fmt}", fmt, only={"bin/prefixdemo", "lib/python3.11/os.py"})  # type: ignore[arg-type]
    with open_tarball(delta.path) as archive:
        names = {member.name for member in archive}
    assert names - _CONDA_PACK_OWN == {"bin/prefixdemo", "lib/python3.11/os.py"}

    (prefix / "bin" / "prefixdemo").unlink()  # a file conda installed, gone: conda-pack refuses
    with pytest.raises(PackError) as refused:
        pack_env(prefix, out / f"broken.{fmt}", fmt)  # type: ignore[arg-type]
    assert refused.value.message == f"conda-pack refused {prefix}"
    assert refused.value.hint == "the environment may have been changed outside conda; rebuild it"
    assert "bin/prefixdemo" in "\n".join(refused.value.details)
    # conda-pack's whole message is shown, to its last line of advice (more than the usual five)
    assert "  - only one version of each package is installed (conda preferred)." in refused.value.render()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"ml.{fmt}", f"ml.{fmt}.sha256", f"delta.{fmt}", f"delta.{fmt}.sha256"]
    )


@pytest.mark.parametrize(("fmt", "level"), [("tar.gz", 3), ("tar.zst", 3)])
def test_unset_the_level_is_the_formats_own_and_any_thread_count_writes_the_same_bytes(
    fmt: str, level: int, built: tuple[Path, Path], tmp_path: Path
) -> None:
    """What a spec without `pack:` gets (gzip 3 / zstd 3, every core), and that the thread count
    changes no byte: zstd's 0 would be its single-threaded mode, whose bytes differ."""
    from baseliner.spec import DEFAULT_LEVEL, PackSpec

    _, prefix = built
    assert (PackSpec(format=fmt).compress_level, PackSpec().threads, DEFAULT_LEVEL[fmt]) == (None, -1, level)  # type: ignore[arg-type]
    said: list[str] = []
    default = pack_env(prefix, tmp_path / "default" / f"ml.{fmt}", fmt, report=said.append)  # type: ignore[arg-type]
    assert said == [f"conda-pack {prefix.name} -> {fmt} (level {level}, {os.cpu_count()} thread(s))"]
    same = {
        pack_env(prefix, tmp_path / f"t{threads}" / f"ml.{fmt}", fmt, level, threads).sha256  # type: ignore[arg-type]
        for threads in (0, 1, 3)
    }
    other = pack_env(prefix, tmp_path / "other" / f"ml.{fmt}", fmt, level + 1, 1).sha256  # type: ignore[arg-type]
    assert same == {default.sha256} != {other}


def test_a_build_key_holds_the_level_packed_at_and_not_the_thread_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from baseliner.spec import DEFAULT_LEVEL, PackSpec

    assert PackSpec(threads=1).output_fields() == PackSpec(threads=8).output_fields()
    assert PackSpec(compress_level=4).output_fields() != PackSpec().output_fields()
    # an unset level is keyed as the level it packs at: the same key as naming it ...
    assert PackSpec().output_fields() == PackSpec(compress_level=DEFAULT_LEVEL["tar.gz"]).output_fields()
    before = PackSpec(format="tar.zst").output_fields()
    # ... so a release with a new default packs again instead of keeping bytes the key no longer names
    monkeypatch.setitem(DEFAULT_LEVEL, "tar.zst", DEFAULT_LEVEL["tar.zst"] + 1)
    assert PackSpec(format="tar.zst").output_fields() != before


def test_the_archive_holds_what_conda_pack_itself_writes(built: tuple[Path, Path], tmp_path: Path) -> None:
    """Our streaming writer against conda-pack's own `tarfile` archive of the same env: the same
    members in the same order, with the same types, modes, link targets and bytes. Only the
    normalised fields (mtime, owner) may differ."""
    import conda_pack

    _, prefix = built
    ours = pack_env(prefix, tmp_path / "ours.tar.gz", "tar.gz", 4, 2).path
    theirs = tmp_path / "theirs.tar"
    conda_pack.pack(prefix=str(prefix), output=str(theirs), format="tar", verbose=False)

    def members(path: Path) -> list[tuple[str, bytes, int, str, int, bytes]]:
        with tarfile.open(path) as tar:
            return [
                (m.name, m.type, m.mode, m.linkname, m.size, tar.extractfile(m).read() if m.isreg() else b"")  # type: ignore[union-attr]
                for m in tar
            ]

    mine, reference = members(ours), members(theirs)
    assert len(mine) > 40 and any(m[1] == tarfile.SYMTYPE for m in mine)
    assert [m[0] for m in mine] == [m[0] for m in reference]
    assert mine == reference
    with tarfile.open(ours) as tar:
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in tar} == {(FIXED_MTIME, 0, 0, "", "")}


@pytest.mark.parametrize(
    "name",
    [
        "bin/python",
        "lib/",
        "x" * 100,
        "x" * 101,
        "lib/python3.11/site-packages/" + "a" * 80 + "/__init__.py",
        "share/naïve.txt",
    ],
)
@pytest.mark.parametrize(
    "kind,linkname,size",
    [
        (tarfile.REGTYPE, "", 12345),
        (tarfile.REGTYPE, "", 8**11 - 1),  # the largest size ustar's 11 octal digits hold
        (tarfile.REGTYPE, "", 8**11),
        (tarfile.DIRTYPE, "", 0),
        (tarfile.SYMTYPE, "../lib/x", 0),
        (tarfile.SYMTYPE, "l" * 100, 0),
        (tarfile.SYMTYPE, "l" * 101, 0),
        (tarfile.LNKTYPE, "bin/python", 0),
    ],
)
def test_fast_headers_are_tarfiles(name: str, kind: bytes, linkname: str, size: int) -> None:
    from baseliner.pack import _fast_header

    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.size, info.mtime = kind, linkname, 0o755, size, FIXED_MTIME
    expected = info.tobuf(tarfile.PAX_FORMAT, "utf-8")
    fast = _fast_header(name, 0o100755, size, kind, linkname)
    if len(expected) > tarfile.BLOCKSIZE:  # a pax record is needed: the fast path declines
        assert fast is None
    else:
        assert fast == expected


@pytest.mark.parametrize("length", [0, 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 5])
def test_block_gzip_is_gzip_and_the_same_on_any_thread_count(length: int) -> None:
    import gzip
    import random

    from baseliner.gzipblocks import GzipBlocksWriter

    rng = random.Random(length)
    words = [bytes(rng.choices(b"abcdefgh", k=rng.randint(1, 9))) for _ in range(500)]
    data = b" ".join(rng.choices(words, k=length // 4 + 1))[:length]
    outputs = []
    # writes that do not fall on block boundaries, one write of everything, writes of several blocks
    for threads, chunk in ((1, 70_001), (2, max(length, 1)), (3, 2 * (1 << 20) + 3)):
        out = io.BytesIO()
        with GzipBlocksWriter(out, 4, threads) as gz:
            for start in range(0, length, chunk):
                gz.write(data[start : start + chunk])
        outputs.append(out.getvalue())
    assert outputs[0] == outputs[1] == outputs[2]
    assert gzip.decompress(outputs[0]) == data
    assert outputs[0][4:8] == b"\0\0\0\0"  # no mtime in the header
    if length > 1 << 20:
        assert len(outputs[0]) < length / 2  # the blocks are primed: they still compress as one
