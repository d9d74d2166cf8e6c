"""Tests at the edges of the safety checks, each one there because a mutation of the code (an
off-by-one, a dropped bit, a missing normalisation) survived the rest of the suite. Each case is
the smallest input on each side of the line the code draws."""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
import stat
import subprocess
import tarfile
from pathlib import Path, PurePosixPath

import pytest
import yaml

from baseliner.audit.disk import measure
from baseliner.lint import lint_env
from baseliner.safetar import _escapes, member_problems

from ..conftest import MakeProject, install_baseline, spec


def _member(
    name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "", mode: int = 0o644
) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.linkname, member.mode = kind, linkname, mode
    return member


@pytest.mark.parametrize(
    ("name", "target", "escapes"),
    [
        ("bin/link", "../../x", True),  # exactly one level out of the destination
        ("bin/link", "../x", False),  # the destination's own top level
        ("bin/a", "../lib/x", False),  # a legitimate link between top-level directories
        ("a/b/c", "../../x", False),
        ("a/b/c", "../../../x", True),
        ("top", "..", True),
        ("top", ".", False),
        ("bin/link", "./../x", False),
        ("bin/link", "/etc/passwd", True),
    ],
)
def test_symlink_targets_at_the_destination_edge(name: str, target: str, escapes: bool) -> None:
    problems = member_problems(_member(name, tarfile.SYMTYPE, target))
    assert bool(problems) is escapes, problems
    if escapes:
        assert "escapes the destination" in problems[0]


@pytest.mark.parametrize(
    ("target", "escapes"),
    [("a/../../x", True), ("a/../x", False), ("../x", True), ("x", False), ("a/b/../../x", False)],
)
def test_hardlink_targets_are_relative_to_the_archive_root(target: str, escapes: bool) -> None:
    problems = member_problems(_member("deep/dir/h", tarfile.LNKTYPE, target))
    assert bool(problems) is escapes, problems


@pytest.mark.parametrize(
    ("mode", "refused"), [(0o2755, True), (0o4755, True), (0o6755, True), (0o1755, False), (0o755, False)]
)
def test_setuid_and_setgid_bits_are_refused(mode: int, refused: bool) -> None:
    problems = member_problems(_member("bin/tool", mode=mode))
    assert bool(problems) is refused
    if refused:
        assert problems == ["'bin/tool': setuid/setgid bit"]


def _outside(base: PurePosixPath, target: str) -> bool:
    """The oracle: where a link at `base/` pointing to `target` lands, by the standard library."""
    if target.startswith("/"):
        return True
    landed = posixpath.normpath(posixpath.join(str(base) if str(base) != "." else "", target) or ".")
    return landed == ".." or landed.startswith("../")


def test_link_escapes_agree_with_normpath_on_random_paths() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    part = st.sampled_from(["..", ".", "a", "b", "lib", "x"])
    path = st.lists(part, min_size=0, max_size=6).map(lambda p: "/".join(p))

    @settings(max_examples=2000, deadline=None)
    @given(base=st.lists(st.sampled_from(["a", "b", "bin"]), max_size=4), target=path, absolute=st.booleans())
    def check(base: list[str], target: str, absolute: bool) -> None:
        text = ("/" if absolute else "") + target
        if not text:
            return
        assert _escapes(PurePosixPath(*base), text) is _outside(PurePosixPath(*base), text)

    check()


def test_random_archives_never_write_outside_the_destination(tmp_path: Path) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from baseliner.errors import PackError
    from baseliner.pack import unpack, write_checksum

    part = st.sampled_from(["..", ".", "a", "b", "bin", "lib", "x"])
    rel = st.lists(part, min_size=1, max_size=5).map("/".join)
    kind = st.sampled_from([tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE])
    members = st.lists(st.tuples(rel, kind, rel, st.booleans()), min_size=1, max_size=6)
    counter = iter(range(10**9))

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(entries=members)
    def check(entries: list[tuple[str, bytes, str, bool]]) -> None:
        work = tmp_path / f"case{next(counter)}"
        (work / "in").mkdir(parents=True)
        archive = work / "in" / "env.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for name, kind, target, absolute in entries:
                member = _member(name, kind, ("/" if absolute else "") + target)
                data = b"payload" if kind == tarfile.REGTYPE else b""
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
        write_checksum(archive)
        dest = work / "box" / "dest"
        with contextlib.suppress(PackError):  # refused, with a message: anything else is a bug
            unpack(archive, dest, run_conda_unpack=False)
        written = {p.relative_to(work).as_posix() for p in work.rglob("*")}
        outside = {
            p for p in written if not p.startswith(("in", "box/dest/")) and p not in {"box", "box/dest"}
        }
        assert not outside, (entries, outside)

    check()


def test_disk_usage_is_apparent_bytes_as_du_sb_counts_them(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    (root / "one-byte").write_bytes(b"x")  # one byte, one block on disk
    with (root / "sparse").open("wb") as fh:
        fh.truncate(10_000_000)  # ten million bytes, almost no blocks
    os.link(root / "one-byte", root / "same-inode")
    du = int(
        subprocess.run(["du", "-sb", str(root)], capture_output=True, text=True, check=True).stdout.split()[0]
    )
    usage = measure([root])
    assert usage.total == du
    assert usage.roots[0].apparent == du
    assert du == root.stat().st_size + 1 + 10_000_000  # the directory, the byte once, the sparse file


def test_a_pip_name_that_differs_only_by_pep503_normalisation_still_shadows(
    make_project: MakeProject,
) -> None:
    prefix = install_baseline(make_project({"nm": spec("nm", conda=["python 3.*", "hello-noarch"])}), "nm")
    site = next(prefix.glob("lib/python3*/site-packages"))
    for spelled in ("Hello_Noarch", "hello.noarch", "HELLO--noarch"):
        info = site / f"{spelled.replace('-', '_')}-9.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {spelled}\nVersion: 9.0\n")
        (info / "RECORD").write_text(f"{info.name}/METADATA,,\n")
        findings = [f for f in lint_env(prefix) if f.check == "pip-shadow"]
        assert len(findings) == 1, (spelled, findings)
        assert f"pip package {spelled} 9.0 shadows conda package hello-noarch 0.3" in findings[0].message
        subprocess.run(["rm", "-rf", str(info)], check=True)


def test_the_prefix_length_check_at_exactly_the_placeholder_length(make_project: MakeProject) -> None:
    from tests.support.fixture_channel import BINARY_PLACEHOLDER

    prefix = install_baseline(make_project({"pl": spec("pl", conda=["python 3.*", "prefixdemo"])}), "pl")
    limit = len(BINARY_PLACEHOLDER)
    assert len(str(prefix.resolve())) < limit

    def too_long(target_length: int) -> bool:
        target = "/" + "x" * (target_length - 1)
        return any(f.check == "prefix-length" for f in lint_env(prefix, [target]))

    assert limit == 255  # conda-build's padded placeholder
    assert not too_long(255)  # as long as the placeholder: fits
    assert too_long(256)  # one more: does not


SPEC_CHANGES = {
    "pip": {"pip": ["tinyapp"]},
    "pip-pin": {"pip": ["tinyapp ==0.5.0"]},
    "channels": {"channels": ["fixture", "other"]},
    "platforms": {"platforms": ["linux-64", "linux-aarch64"]},
    "virtual-packages": {"virtual_packages": {"linux-64": ["__glibc=2.28"]}},
    "image": {"image": {"user": "someone"}},
    "conda": {"conda": ["python 3.*", "hello-noarch"]},
    "version": {"version": "2.0"},
    "pack": {"pack": {"format": "tar.zst"}},
}


@pytest.mark.parametrize("field", sorted(SPEC_CHANGES))
def test_every_input_of_the_solve_and_build_changes_the_spec_hash(field: str, tmp_path: Path) -> None:
    from baseliner.spec import BaselineRepo

    def spec_hash(**changes: object) -> str:
        root = tmp_path / f"repo-{len(list(tmp_path.iterdir()))}"
        (root / "baselines").mkdir(parents=True)
        (root / "baselines" / "h.yaml").write_text(yaml.safe_dump(spec("h", **changes), sort_keys=False))
        return BaselineRepo(root / "baselines").resolve("h").spec_hash

    assert spec_hash(**SPEC_CHANGES[field]) != spec_hash()


def test_any_yaml_a_user_writes_is_loaded_or_refused_with_file_and_line(tmp_path: Path) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from baseliner.errors import SpecError
    from baseliner.spec import BaselineRepo

    keys = st.sampled_from(
        [
            "schema_version",
            "name",
            "version",
            "channels",
            "conda",
            "pip",
            "platforms",
            "image",
            "pack",
            "extends",
            "virtual_packages",
            "description",
            "colour",
            "user",
            "uid",
            "env",
            "labels",
            "format",
        ]
    )
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 300),
        st.floats(allow_nan=False, width=16),
        st.text(max_size=12),
        st.sampled_from(["x", "1.0", "python 3.*", "fixture", "linux-64", "h"]),
    )
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
        max_leaves=8,
    )
    documents = st.one_of(
        st.dictionaries(keys, values, max_size=8).map(lambda d: {"schema_version": 1, "name": "h", **d}),
        st.dictionaries(keys, values, max_size=6),
        values,
    )
    # Text made of YAML's own syntax: tags, anchors and aliases, complex keys, flow collections.
    fragments = ["!!int ", "!!float ", "!!timestamp ", "!!binary ", "!!str ", "&a ", "*a", "? ", "[", "]"]
    fragments += ["{", "}", ": ", ", ", "- ", "\n", "  ", "x", "1", "name", "conda", "#", "'", '"', "---\n"]
    syntax = st.lists(st.sampled_from(fragments), max_size=16).map("".join)
    counter = iter(range(10**9))

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(document=documents, raw=st.one_of(st.none(), st.text(max_size=40), syntax))
    def check(document: object, raw: str | None) -> None:
        root = tmp_path / f"repo{next(counter)}" / "baselines"
        root.mkdir(parents=True)
        text = raw if raw is not None else yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
        (root / "h.yaml").write_text(text)
        try:
            BaselineRepo(root).resolve("h")
        except SpecError as exc:
            message = exc.render()
            assert "h.yaml" in message, message
            assert exc.where is not None and exc.where.line is not None, message
            assert "Traceback" not in message

    check()


@pytest.mark.parametrize(
    ("member", "problems"),
    [
        (_member("a\x07b"), ["'a\\x07b': control character in the name"]),
        (_member("/etc/passwd"), ["'/etc/passwd': absolute path"]),
        (_member("a/../../x"), ["'a/../../x': '..' in the path"]),
        (_member("a/../b"), ["'a/../b': '..' in the path"]),  # lands inside, still refused
        (_member("dev/tty", tarfile.CHRTYPE), ["'dev/tty': device or fifo"]),
        (_member("dev/sda", tarfile.BLKTYPE), ["'dev/sda': device or fifo"]),
        (_member("run/pipe", tarfile.FIFOTYPE), ["'run/pipe': device or fifo"]),
        (
            _member("bin/l", tarfile.SYMTYPE, "../../x"),
            ["'bin/l': symlink to '../../x' escapes the destination"],
        ),
        (_member("h", tarfile.LNKTYPE, "../x"), ["'h': hardlink to '../x' escapes the destination"]),
        (_member("."), ["'.': not a file name (the destination itself)"]),
        (_member("./"), ["'./': not a file name (the destination itself)"]),
        (_member(".", tarfile.DIRTYPE), []),  # the destination directory's own entry
        (_member("a/h", tarfile.LNKTYPE, "a/./h"), ["'a/h': hardlink to itself"]),
        (_member("bin/ok", tarfile.SYMTYPE, "../lib/x"), []),
        (_member("lib/ok", tarfile.LNKTYPE, "lib/x"), []),
        (
            _member("/abs\x01", tarfile.FIFOTYPE, mode=0o4755),  # every problem at once, in order
            [
                "'/abs\\x01': control character in the name",
                "'/abs\\x01': absolute path",
                "'/abs\\x01': device or fifo",
                "'/abs\\x01': setuid/setgid bit",
            ],
        ),
    ],
)
def test_each_hazard_is_named_in_its_own_words(member: tarfile.TarInfo, problems: list[str]) -> None:
    assert member_problems(member) == problems


def _inodes_under(root: Path) -> dict[tuple[int, int], int]:
    """Every inode below (and including) `root`, symlinks not followed: its size."""
    paths = [str(root)]
    for dirpath, dirnames, filenames in os.walk(root):
        paths += [os.path.join(dirpath, n) for n in [*dirnames, *filenames]]
    return {(st.st_dev, st.st_ino): st.st_size for st in map(os.lstat, paths)}


def test_disk_usage_of_several_roots_agrees_with_an_inode_count(tmp_path: Path) -> None:
    a, b, c, outside = (tmp_path / n for n in ("a", "b", "c", "outside"))
    for d in (a / "sub" / "deeper", b, c / "sub", outside):
        d.mkdir(parents=True)
    (a / "sub" / "deeper" / "one").write_bytes(b"1" * 100)
    os.link(a / "sub" / "deeper" / "one", a / "sub" / "one-again")  # linked twice, in one root only
    (a / "big").write_bytes(b"b" * 5000)
    os.link(a / "big", b / "big-link")  # a and b
    (a / "t").write_bytes(b"t" * 300)
    os.link(a / "t", b / "t")
    os.link(a / "t", c / "sub" / "t")  # all three
    (c / "x").write_bytes(b"x" * 700)
    os.link(c / "x", c / "y")  # the third root, linked within itself
    (b / "u").write_bytes(b"u" * 50)
    os.link(b / "u", outside / "u")  # linked from outside the roots: b's alone here
    (outside / "data").write_bytes(b"d" * 9000)
    (a / "link").symlink_to("big")  # a symlink's own size, not its target's
    (a / "dirlink").symlink_to(outside)  # never descended
    single = tmp_path / "single-file-root"
    single.write_bytes(b"s" * 1234)
    roots = [a, b, c, single]
    per_root = [_inodes_under(r) if r.is_dir() else {(0, 0): r.stat().st_size} for r in roots]
    holders: dict[tuple[int, int], set[int]] = {}
    sizes: dict[tuple[int, int], int] = {}
    for i, inodes in enumerate(per_root):
        for key, size in inodes.items():
            holders.setdefault(key, set()).add(i)
            sizes[key] = size
    usage = measure(roots)
    assert [u.root for u in usage.roots] == [str(r) for r in roots]
    assert [u.apparent for u in usage.roots] == [sum(i.values()) for i in per_root]
    assert [u.unique for u in usage.roots] == [
        sum(s for k, s in inodes.items() if holders[k] == {i}) for i, inodes in enumerate(per_root)
    ]
    assert [u.shared for u in usage.roots] == [
        sum(s for k, s in inodes.items() if len(holders[k]) > 1) for inodes in per_root
    ]
    assert usage.total == sum(sizes.values())
    du = subprocess.run(["du", "-sbc", *map(str, roots)], capture_output=True, text=True, check=True)
    assert usage.total == int(du.stdout.splitlines()[-1].split()[0])
    assert usage.of(str(b)).shared == 5000 + 300 and usage.of(str(c)).shared == 300  # by hand, too
    assert usage.of(str(single)).unique == usage.of(str(single)).apparent == 1234


def test_a_validators_message_reads_without_pydantics_prefix(tmp_path: Path) -> None:
    from baseliner.errors import SpecError
    from baseliner.spec import BaselineRepo

    (tmp_path / "baselines").mkdir()
    bad = spec("v", channels=["fixture", "fixture"], virtual_packages={"linux-64": ["glibc"]})
    (tmp_path / "baselines" / "v.yaml").write_text(yaml.safe_dump(bad, sort_keys=False))
    with pytest.raises(SpecError) as info:
        BaselineRepo(tmp_path / "baselines").resolve("v")
    details = [d.rsplit(" (line", 1)[0] for d in info.value.details]
    assert details == [
        "channels: a channel is listed twice",
        "virtual_packages.linux-64[0]: 'glibc' is not a virtual package like '__glibc=2.36'",
    ]


def test_a_childs_virtual_package_replaces_the_parents_whatever_its_build(tmp_path: Path) -> None:
    from baseliner.spec import BaselineRepo

    d = tmp_path / "baselines"
    d.mkdir()
    root = spec("root", virtual_packages={"linux-64": ["__cuda=11.8=0", "__glibc=2.17"]})
    child = {**spec("child", virtual_packages={"linux-64": ["__cuda=12.4"]}), "extends": "root"}
    for name, body in (("root", root), ("child", child)):
        (d / f"{name}.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    assert sorted(BaselineRepo(d).resolve("child").virtual_packages["linux-64"]) == [
        "__cuda=12.4",
        "__glibc=2.17",
    ]


def _tree_for_tar(root: Path) -> list[tuple[str, str]]:
    """A small env-like tree with every kind of member at the block edges: (source, name) pairs."""
    (root / "bin").mkdir(parents=True)
    (root / "lib" / ("d" * 120)).mkdir(parents=True)  # a name past ustar's 100 bytes: a pax record
    files = {
        "bin/tool": (b"#!/bin/sh\necho hi\n", 0o755),
        "lib/empty": (b"", 0o644),
        "lib/511": (b"a" * 511, 0o644),
        "lib/512": (b"b" * 512, 0o600),
        "lib/513": (b"c" * 513, 0o644),
        "lib/big": (bytes(range(256)) * 4500, 0o644),  # over one 1 MiB write
        f"lib/{'d' * 120}/long": (b"long\n", 0o644),
        "lib/naïve": (b"utf-8 name\n", 0o644),
        "lib/caf\udce9": (b"a latin-1 byte in the name\n", 0o644),  # not UTF-8: a binary pax record
    }
    for rel, (data, mode) in files.items():
        (root / rel).write_bytes(data)
        os.chmod(root / rel, mode)
    os.link(root / "lib/513", root / "lib/513-again")
    (root / "bin/link").symlink_to("tool")
    names = [
        "bin",
        "bin/tool",
        "bin/link",
        "lib",
        *sorted(r for r in files if r.startswith("lib/")),
        "lib/513-again",
    ]
    names.insert(names.index(f"lib/{'d' * 120}/long"), f"lib/{'d' * 120}")
    return [(str(root / n), n) for n in names]


@pytest.mark.parametrize("drop", [0, 1])  # two lengths, so the end pads to a record differently
def test_the_streaming_tar_writer_writes_tarfiles_bytes(drop: int, tmp_path: Path) -> None:
    from baseliner.pack import FIXED_MTIME, _TarWriter

    members = _tree_for_tar(tmp_path / "tree")[: -drop or None]
    ours = io.BytesIO()
    writer = _TarWriter(ours)
    for source, name in members:
        writer.add(source, name)
    writer.add(str(tmp_path / "tree" / "lib" / "511"), "etc/rewritten", data=b"rewritten\n")  # conda-pack's
    writer.close()

    theirs = io.BytesIO()
    seen: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=theirs, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for source, name in [*members, (str(tmp_path / "tree" / "lib" / "511"), "etc/rewritten")]:
            st = os.lstat(source)
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = stat.S_IMODE(st.st_mode), FIXED_MTIME
            data = b""
            if name == "etc/rewritten":
                data = b"rewritten\n"
            elif stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
            elif stat.S_ISLNK(st.st_mode):
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(source)
            elif (st.st_dev, st.st_ino) in seen:
                info.type, info.linkname = tarfile.LNKTYPE, seen[st.st_dev, st.st_ino]
            else:
                if st.st_nlink > 1:
                    seen[st.st_dev, st.st_ino] = name
                data = Path(source).read_bytes()
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert ours.getvalue() == theirs.getvalue()


def test_a_safe_archive_unpacks_whole_and_a_changed_one_is_named(tmp_path: Path) -> None:
    from baseliner.errors import PackError
    from baseliner.pack import _TarWriter, unpack, write_checksum

    members = _tree_for_tar(tmp_path / "tree")
    archive = tmp_path / "in" / "env.tar"
    archive.parent.mkdir()
    with archive.open("wb") as fh:
        writer = _TarWriter(fh)
        for source, name in members:
            writer.add(source, name)
        writer.close()
    digest = write_checksum(archive)
    dest = tmp_path / "out" / "env"
    assert unpack(archive, dest, run_conda_unpack=False) == dest
    for source, name in members:
        got, want = dest / name, Path(source)
        assert got.is_symlink() == want.is_symlink() and got.is_dir() == want.is_dir(), name
        if want.is_symlink():
            assert os.readlink(got) == os.readlink(want)
        elif want.is_file():
            assert got.read_bytes() == want.read_bytes(), name
            assert stat.S_IMODE(got.stat().st_mode) == stat.S_IMODE(want.stat().st_mode), name
    assert (dest / "lib/513").stat().st_ino == (dest / "lib/513-again").stat().st_ino  # still one inode
    assert not [p for p in dest.parent.iterdir() if p.name != "env"]  # no scratch left beside it

    with pytest.raises(PackError, match="not empty"):
        unpack(archive, dest, run_conda_unpack=False)  # no environment marker: not this unpack's
    data = bytearray(archive.read_bytes())
    data[600] ^= 0xFF  # inside the first file's bytes: still a tar, other bytes
    archive.write_bytes(bytes(data))
    with pytest.raises(PackError) as info:
        unpack(archive, tmp_path / "again", run_conda_unpack=False)
    assert info.value.message == "checksum mismatch for env.tar"
    assert info.value.details[0] == f"expected {digest}"
    assert not (tmp_path / "again").exists()
    (archive.parent / "env.tar.sha256").unlink()
    with pytest.raises(PackError, match=r"no checksum file next to env\.tar"):
        unpack(archive, tmp_path / "again", run_conda_unpack=False)


def test_the_tar_writer_copies_the_size_it_announced_and_refuses_other_files(tmp_path: Path) -> None:
    from baseliner.errors import PackError
    from baseliner.pack import _FLUSH, _TarWriter

    source = tmp_path / "grown"
    data = os.urandom(2 * _FLUSH + 10)
    source.write_bytes(data)
    out = io.BytesIO()
    writer = _TarWriter(out)
    writer._copy(str(source), _FLUSH + 5)  # the file grew after its header was written
    writer.close()
    assert out.getvalue()[: _FLUSH + 5] == data[: _FLUSH + 5]
    assert out.getvalue()[_FLUSH + 5 :].strip(b"\0") == b""
    with pytest.raises(PackError) as shrank:
        _TarWriter(io.BytesIO())._copy(str(source), len(data) + 1)
    assert (shrank.value.message, shrank.value.hint) == (
        f"{source} shrank while it was packed",
        "build again",
    )
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(PackError) as fifo:
        _TarWriter(io.BytesIO()).add(str(tmp_path / "fifo"), "fifo")
    assert fifo.value.message == f"cannot pack {tmp_path / 'fifo'}: not a file, directory or symlink"


def test_the_tar_writers_end_pads_to_a_record_from_every_offset(tmp_path: Path) -> None:
    """Archives of 0 to 20 empty members end at every block offset within tarfile's 10 KiB record."""
    from baseliner.pack import FIXED_MTIME, _TarWriter

    (tmp_path / "e").write_bytes(b"")
    for count in range(tarfile.RECORDSIZE // tarfile.BLOCKSIZE + 1):
        ours, theirs = io.BytesIO(), io.BytesIO()
        writer = _TarWriter(ours)
        with tarfile.open(fileobj=theirs, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for i in range(count):
                writer.add(str(tmp_path / "e"), f"e{i}")
                info = tarfile.TarInfo(f"e{i}")
                info.mode, info.mtime = stat.S_IMODE((tmp_path / "e").stat().st_mode), FIXED_MTIME
                tar.addfile(info)
        writer.close()
        assert ours.getvalue() == theirs.getvalue(), count
