"""The member guard: links that leave the destination only through the archive's other symlinks
are refused, what stays inside is not, and it never lets through what tarfile's own "data"
filter (which asks the disk) would refuse."""

from __future__ import annotations

import contextlib
import io
import tarfile
from pathlib import Path

import pytest

from baseliner.errors import PackError
from baseliner.pack import unpack, write_checksum
from baseliner.safetar import MemberGuard, member_problems

SYM, LNK, REG, DIR = tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.REGTYPE, tarfile.DIRTYPE


def _member(name: str, kind: bytes = REG, linkname: str = "") -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.linkname, member.mode = kind, linkname, 0o644
    return member


def _verdicts(*members: tarfile.TarInfo) -> list[list[str]]:
    guard = MemberGuard()
    return [guard.problems(member) for member in members]


@pytest.mark.parametrize(
    ("members", "refused"),
    [
        # `a` is the destination itself, so `a/a/x` sits at its top: `../..` from there leaves it
        ([_member("a", SYM, "."), _member("a/a/x", SYM, "../..")], "symlink to '../..' leaves"),
        ([_member("a", SYM, "."), _member("l", SYM, "a/a/../..")], "symlink to 'a/a/../..' leaves"),
        ([_member("a", SYM, "."), _member("h", LNK, "a/a/../x")], "hardlink to 'a/a/../x' leaves"),
        ([_member("a", SYM, "b"), _member("b", SYM, "a"), _member("a/x")], "through a symlink"),  # a loop
    ],
)
def test_links_that_leave_only_through_other_symlinks_are_refused(
    members: list[tarfile.TarInfo], refused: str
) -> None:
    assert [member_problems(m) for m in members] == [[] for _ in members]  # each is fine by itself
    *before, last = _verdicts(*members)
    assert before == [[] for _ in before]
    assert len(last) == 1 and refused in last[0], last


@pytest.mark.parametrize(
    "members",
    [
        [_member("lib/deep", DIR), _member("d", SYM, "lib/deep"), _member("d/f")],  # a file through a link
        [_member("bin/x", SYM, "../lib/y"), _member("bin/x")],  # written through the link at its path
        [_member("a", SYM, "."), _member("a/a/x", SYM, ".")],  # `a/a/x` is `x`: points at the destination
        [_member("lib/x"), _member("b", SYM, "lib"), _member("h", LNK, "b/x")],
    ],
)
def test_links_that_stay_inside_are_let_through(members: list[tarfile.TarInfo]) -> None:
    assert _verdicts(*members) == [[] for _ in members]


def test_a_replaced_symlink_is_judged_by_its_new_target() -> None:
    assert _verdicts(_member("l", SYM, "."), _member("l", SYM, "x/y"), _member("z", SYM, "l/..")) == [
        [],
        [],
        [],
    ]
    verdicts = _verdicts(_member("a", SYM, "x/y"), _member("a", SYM, "."), _member("z", SYM, "a/.."))
    assert verdicts == [[], [], ["'z': symlink to 'a/..' leaves the destination through a symlink"]]


def _archive(path: Path, entries: list[tuple[str, bytes, str]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, kind, target in entries:
            member = _member(name, kind, target)
            data = b"payload" if kind == REG else b""
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    write_checksum(path)
    return path


def _tree(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        out[rel] = f"-> {path.readlink()}" if path.is_symlink() else "dir" if path.is_dir() else "file"
    return out


def test_the_guard_never_accepts_what_the_data_filter_refuses(tmp_path: Path) -> None:
    """The oracle is tarfile itself: its "data" filter, with `os.path.realpath` on the disk, over
    the members `member_problems` lets through. Where the guard accepts an archive, so does the
    filter, and both write the same tree."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    part = st.sampled_from(["..", ".", "a", "b"])
    rel = st.lists(part, min_size=1, max_size=3).map("/".join)
    name = st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=3).map("/".join)
    kind = st.sampled_from([REG, SYM, SYM, SYM, LNK, DIR])
    archives = st.lists(st.tuples(name, kind, rel), min_size=1, max_size=5)
    counter = iter(range(10**9))
    accepted = 0

    @settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(entries=archives)
    def check(entries: list[tuple[str, bytes, str]]) -> None:
        nonlocal accepted
        work = tmp_path / f"case{next(counter)}"
        (work / "in").mkdir(parents=True)
        archive = _archive(work / "in" / "env.tar", entries)
        try:
            ours = _tree(unpack(archive, work / "box" / "ours", run_conda_unpack=False))
        except PackError:
            return
        accepted += 1
        theirs = work / "box" / "theirs"
        theirs.mkdir()
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            assert not [p for m in members for p in member_problems(m)]
            with contextlib.suppress(tarfile.FilterError):
                tar.extractall(theirs, filter="data")
                assert _tree(theirs) == ours, entries
                return
        raise AssertionError(f"the data filter refuses what the guard accepted: {entries}")

    check()
    assert accepted > 30  # the property was tested on archives that got through, not only refusals


def test_an_archive_escaping_through_a_chain_of_links_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    archive = _archive(
        tmp_path / "in" / "env.tar",
        [("bin/ok", REG, ""), ("a", SYM, "."), ("a/a/out", SYM, "../.."), ("a/a/out/evil", REG, "")],
    )
    with pytest.raises(PackError, match="unsafe member") as info:
        unpack(archive, tmp_path / "box" / "dest", run_conda_unpack=False)
    assert "'a/a/out': symlink to '../..' leaves the destination through a symlink" in str(info.value.details)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
