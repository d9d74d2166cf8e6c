"""Which tar members are safe to extract, decided from the archive alone.

`member_problems` names what is wrong with one member by itself: absolute paths, `..`, links that
leave the destination read as text, device files and fifos, setuid/setgid bits, control characters
in names. `MemberGuard` adds what only the members before it can tell: where a path lands once the
symlinks the archive already made are followed (`a -> .` then `a/a/x -> ../..` leaves the
destination although neither member does by itself).

That second check is the one tarfile's "data" filter makes with `os.path.realpath` on the disk:
into a directory that starts empty, the only symlinks on the disk are the archive's own, so
following them in memory decides the same, without the seven `lstat` calls per member that made
the filter a third of the unpack time of a 30,000-file environment. `data_attrs` is the rest of
that filter (no owners, no group/other write bits, owner read-write on files), for
`TarFile.extractall(filter=...)`.
"""

from __future__ import annotations

import posixpath
import stat
import tarfile
from pathlib import PurePosixPath

from .yamlsource import control_characters

# The kernel gives up after 40 symlinks in one lookup (ELOOP); so do we.
_MAX_HOPS = 40


def _escapes(base: PurePosixPath, target: str) -> bool:
    """Whether `target`, followed from the directory `base`, leaves the destination. (Path parts
    hold no "." once parsed: only the depth matters.)"""
    if target.startswith("/"):
        return True
    depth = len(base.parts)
    for part in PurePosixPath(target).parts:
        depth += -1 if part == ".." else 1
        if depth < 0:
            return True
    return False


def member_problems(member: tarfile.TarInfo) -> list[str]:
    """Why a tar member must not be extracted, by itself (empty when it is safe)."""
    name = member.name
    problems = []
    if control_characters(name):
        problems.append(f"{name!r}: control character in the name")
    path = PurePosixPath(name)
    if path.is_absolute():
        problems.append(f"{name!r}: absolute path")
    elif ".." in path.parts:
        problems.append(f"{name!r}: '..' in the path")
    if member.isdev():  # tarfile: a character or block device, or a fifo
        problems.append(f"{name!r}: device or fifo")
    if member.mode & (stat.S_ISUID | stat.S_ISGID):
        problems.append(f"{name!r}: setuid/setgid bit")
    if member.issym() and _escapes(path.parent, member.linkname):
        problems.append(f"{name!r}: symlink to {member.linkname!r} escapes the destination")
    if member.islnk() and _escapes(PurePosixPath(), member.linkname):
        problems.append(f"{name!r}: hardlink to {member.linkname!r} escapes the destination")
    if not member.isdir() and posixpath.normpath(name) == ".":  # normpath("") is "." too
        problems.append(f"{name!r}: not a file name (the destination itself)")
    if member.islnk() and posixpath.normpath(member.linkname) == posixpath.normpath(name):
        problems.append(f"{name!r}: hardlink to itself")  # tarfile would recurse without end
    return problems


class MemberGuard:
    """The members of one archive, checked in order: each by itself, and where it lands through
    the symlinks of the members before it. Feed it every member, in the order tarfile extracts
    them, into a destination that starts empty."""

    def __init__(self) -> None:
        self._links: dict[str, str] = {}  # a symlink member's normalised path: its target
        self._link_names: set[str] = set()  # their last parts: a path holding none needs no walk

    def problems(self, member: tarfile.TarInfo) -> list[str]:
        """Why `member` must not be extracted (empty when it is safe); a safe symlink is
        remembered for the members after it."""
        problems = member_problems(member)
        if problems:
            return problems
        name = member.name
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if member.issym():
            # os.symlink replaces what is at the path (tarfile unlinks it first): only the
            # directory is looked up, and the target from there.
            if self._leaves(parts[:-1]):
                problems.append(f"{name!r}: lies through a symlink outside the destination")
            elif self._leaves(parts[:-1] + member.linkname.split("/")):
                problems.append(
                    f"{name!r}: symlink to {member.linkname!r} leaves the destination through a symlink"
                )
            else:
                self._links["/".join(parts)] = member.linkname
                self._link_names.add(parts[-1])
        elif self._leaves(parts):
            # A file is opened, and a directory's mode set, through a symlink at its own path; a
            # hardlink whose target is not on the disk is written as a file there.
            problems.append(f"{name!r}: lies through a symlink outside the destination")
        elif member.islnk() and self._leaves(member.linkname.split("/")):
            problems.append(
                f"{name!r}: hardlink to {member.linkname!r} leaves the destination through a symlink"
            )
        return problems

    def _leaves(self, parts: list[str]) -> bool:
        """Whether `parts`, looked up from the destination with the archive's symlinks followed,
        lands outside it (or in a symlink loop)."""
        if not self._link_names.intersection(parts):
            return _escapes(PurePosixPath(), "/".join(parts)) if ".." in parts else False
        pending = list(reversed(parts))
        here: list[str] = []
        hops = 0
        while pending:
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if not here:
                    return True
                here.pop()
                continue
            here.append(part)
            target = self._links.get("/".join(here)) if part in self._link_names else None
            if target is None:
                continue
            hops += 1
            if hops > _MAX_HOPS or target.startswith("/"):
                return True
            here.pop()
            pending.extend(reversed(target.split("/")))
        return False


def data_attrs(member: tarfile.TarInfo, dest_path: str) -> tarfile.TarInfo:
    """tarfile's "data" filter without its path checks (a `MemberGuard` made them): no owners,
    no setuid/setgid/sticky or group/other write bits, files readable and writable by their owner."""
    mode = member.mode & 0o755
    if member.isreg() or member.islnk():
        if not mode & 0o100:
            mode &= ~0o111
        member.mode = mode | 0o600
    elif member.isdir() or member.issym():
        member.mode = None  # type: ignore[assignment]  # tarfile: keep the default
    else:
        raise tarfile.SpecialFileError(member)
    member.uid = member.gid = None  # type: ignore[assignment]
    member.uname = member.gname = None  # type: ignore[assignment]
    return member
