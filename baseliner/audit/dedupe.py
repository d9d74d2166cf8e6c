"""Deduplicating a live server: identical files of conda environments, pip installs and package
caches become hardlinks to one inode.

Candidates come from what installed the files, not from a byte scan of the disk:

* `conda-meta/*.json` of each environment: every `hardlink` file of `paths_data` with its sha256
  and size. Files conda rewrote for their prefix (`prefix_placeholder`) are never candidates;
* pip's `*.dist-info/RECORD` of each environment, for files no conda record owns;
* `PKGS/NAME-VERSION-BUILD/info/paths.json` of each package cache, the copy conda itself would
  hardlink from, which is therefore the one kept when it takes part.

Files with the same recorded (sha256, size) form a group. A file takes part only when it still
is what its record says: a regular file of that size whose sha256 (computed once per inode) is
the recorded one; a file changed since install is left alone and reported. Within a group, files
are linked only on one device and between the same owner, group and mode, so no path changes its
owner or permissions; the kept inode keeps its own mtime (a linked path shows it from then on).

Bytes are counted as `du -sb` counts them (apparent size, each inode once). An inode is *freed*
when every one of its links is relinked; one with links outside the scanned trees is relinked but
still on disk, and counted apart.

Each link is made under a scratch name in the file's directory, then renamed over the file, so a
kill leaves every path either the old file or the link, never missing; a later run removes the
scratch names of dead runs.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import Report, silent
from ..concurrency import is_scratch, scratch_file, sweep
from ..pack import sha256_file
from .inventory import find_prefixes

Inode = tuple[int, int]  # (st_dev, st_ino)


@dataclass(frozen=True)
class Candidate:
    """A file some record says should hold `sha256` and `size` bytes."""

    path: Path
    sha256: str
    size: int
    origin: str  # "conda NAME-VERSION-BUILD", "pip NAME-VERSION" or "cache NAME-VERSION-BUILD"

    @property
    def from_cache(self) -> bool:
        return self.origin.startswith("cache ")


@dataclass(frozen=True)
class Link:
    """Replace `path` (the inode `was`, `size` bytes) with a hardlink to `keep`."""

    keep: Path
    path: Path
    was: Inode
    size: int


@dataclass
class Tally:
    files: int = 0
    bytes: int = 0

    def add(self, size: int, files: int = 1) -> None:
        self.files += files
        self.bytes += size

    def as_dict(self) -> dict[str, int]:
        return {"files": self.files, "bytes": self.bytes}


@dataclass
class DedupePlan:
    """What `dedupe` would do, and what it leaves and why."""

    environments: list[str] = field(default_factory=list)
    caches: list[str] = field(default_factory=list)
    candidates: int = 0
    links: list[Link] = field(default_factory=list)
    freed: Tally = field(default_factory=Tally)  # inodes whose every link is relinked
    held_elsewhere: Tally = field(default_factory=Tally)  # relinked, but linked from outside too
    already_shared: Tally = field(default_factory=Tally)  # candidates already on the kept inode
    placeholder: Tally = field(default_factory=Tally)  # rewritten per prefix: never linked
    modified: Tally = field(default_factory=Tally)  # no longer what the record says
    cross_device: Tally = field(default_factory=Tally)  # identical, but on another filesystem
    cross_owner: Tally = field(default_factory=Tally)  # identical, but another owner or mode
    hashed_bytes: int = 0
    swept: list[str] = field(default_factory=list)  # scratch names of dead runs, removed

    def as_dict(self) -> dict[str, Any]:
        return {
            "environments": self.environments,
            "caches": self.caches,
            "candidates": self.candidates,
            "links": len(self.links),
            "freed": self.freed.as_dict(),
            "held_elsewhere": self.held_elsewhere.as_dict(),
            "already_shared": self.already_shared.as_dict(),
            "left": {
                "placeholder": self.placeholder.as_dict(),
                "modified": self.modified.as_dict(),
                "cross_device": self.cross_device.as_dict(),
                "cross_owner": self.cross_owner.as_dict(),
            },
            "hashed_bytes": self.hashed_bytes,
            "swept": self.swept,
        }


@dataclass
class DedupeResult:
    linked: int = 0
    skipped: list[str] = field(default_factory=list)  # changed between plan and link, or refused

    def as_dict(self) -> dict[str, Any]:
        return {"linked": self.linked, "skipped": self.skipped}


# --- candidates ------------------------------------------------------------------------------


@dataclass
class Records:
    """What the environments' and caches' records say about their files."""

    environments: list[Path] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    placeholders: list[tuple[Path, int]] = field(default_factory=list)  # rewritten per prefix


def records(
    roots: Sequence[Path] = (), prefixes: Sequence[Path] = (), caches: Sequence[Path] = ()
) -> Records:
    """Every recorded file of the environments under `roots` (found by their conda-meta), the
    `prefixes` and the package `caches`: conda's records, pip's RECORD files, the caches' paths.json."""
    out = Records()
    seen: set[str] = set()
    for prefix in [*(p for r in roots for p in find_prefixes(r)), *prefixes]:
        if (key := os.path.realpath(prefix)) not in seen:
            seen.add(key)
            out.environments.append(Path(prefix))
    for prefix in out.environments:
        owned = _conda_candidates(prefix, out)
        out.candidates += _pip_candidates(prefix, owned)
    for cache in caches:
        _cache_candidates(cache, out)
    return out


def _conda_candidates(prefix: Path, out: Records) -> set[str]:
    """Add the env's conda-recorded files to `out`; returns every path (relative) conda owns."""
    owned: set[str] = set()
    meta = prefix / "conda-meta"
    for record_path in sorted(meta.glob("*.json")):
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            continue
        dist = f"{record.get('name')}-{record.get('version')}-{record.get('build')}"
        owned.update(str(f) for f in record.get("files", []))
        for entry in (record.get("paths_data") or {}).get("paths", []):
            rel = str(entry.get("_path", ""))
            owned.add(rel)
            _add(out, prefix / rel, entry, f"conda {dist}")
    return owned


def _add(out: Records, path: Path, entry: dict[str, Any], origin: str) -> None:
    """One `paths_data` / `paths.json` entry: a candidate, a per-prefix file, or neither."""
    if entry.get("path_type", "hardlink") != "hardlink" or not entry.get("sha256"):
        return
    size = int(entry.get("size_in_bytes") or 0)
    if entry.get("prefix_placeholder"):
        out.placeholders.append((path, size))
    else:
        out.candidates.append(Candidate(path, str(entry["sha256"]), size, origin))


def _record_hash(value: str) -> str | None:
    """RECORD's `sha256=<urlsafe base64>` as hex (None for another algorithm or no hash)."""
    algorithm, _, digest = value.partition("=")
    if algorithm != "sha256" or not digest:
        return None
    return base64.urlsafe_b64decode(digest + "=" * (-len(digest) % 4)).hex()


def _pip_candidates(prefix: Path, owned: set[str]) -> list[Candidate]:
    """Candidates of pip's RECORD files, for the files no conda record of the env owns."""
    out: list[Candidate] = []
    root = os.path.realpath(prefix)
    inside: dict[str, bool] = {}  # directory -> whether it resolves inside the prefix
    for record in sorted(prefix.glob("lib/python*/site-packages/*.dist-info/RECORD")):
        site = str(record.parent.parent)
        site_rel = os.path.relpath(site, prefix)
        dist = record.parent.name.removesuffix(".dist-info")
        try:
            lines = record.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for line in lines:
            parts = line.rsplit(",", 2)
            if len(parts) != 3 or not parts[2].isdigit():
                continue
            rel = os.path.normpath(os.path.join(site_rel, parts[0]))
            if rel in owned or rel.startswith(".."):
                continue  # conda's file (its record decides), or outside the env: not ours to touch
            digest = _record_hash(parts[1])
            if digest is None:
                continue
            path = os.path.join(str(prefix), rel)
            directory = os.path.dirname(path)
            if directory not in inside:
                real = os.path.realpath(directory)
                inside[directory] = os.path.commonpath([root, real]) == root
            if inside[directory]:
                out.append(Candidate(Path(path), digest, int(parts[2]), f"pip {dist}"))
    return out


def _cache_candidates(cache: Path, out: Records) -> None:
    for paths_json in sorted(cache.glob("*/info/paths.json")):
        package = paths_json.parent.parent
        try:
            entries = json.loads(paths_json.read_text()).get("paths", [])
        except (OSError, ValueError):
            continue
        for entry in entries:
            _add(out, package / str(entry.get("_path", "")), entry, f"cache {package.name}")


def _sweep_scratch(directories: Iterable[Path], plan: DedupePlan) -> None:
    """Remove the scratch links of dead dedupe runs in the directories candidates live in."""
    for directory in directories:
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        if any(is_scratch(n) for n in names):
            plan.swept += [str(p) for p in sweep(directory)]


# --- the plan --------------------------------------------------------------------------------


@dataclass
class _File:
    candidate: Candidate
    st: os.stat_result


def plan(
    roots: Sequence[Path] = (),
    prefixes: Sequence[Path] = (),
    caches: Sequence[Path] = (),
    report: Report = silent,
) -> DedupePlan:
    """What to link under `roots` (environments found by their conda-meta), `prefixes` and the
    package `caches`, with the bytes it frees and what it leaves (see the module docstring)."""
    result = DedupePlan()
    found = records(roots, prefixes, caches)
    candidates = found.candidates
    envs = found.environments
    result.environments = [str(p) for p in envs]
    result.caches = [str(c) for c in caches]
    for _, size in found.placeholders:
        result.placeholder.add(size)
    result.candidates = len(candidates)
    _sweep_scratch({c.path.parent for c in candidates}, result)
    report(f"{len(candidates)} recorded files in {len(envs)} environment(s) and {len(caches)} cache(s)")

    groups: dict[tuple[str, int], dict[Path, _File]] = defaultdict(dict)
    for candidate in candidates:
        try:
            st = candidate.path.lstat()
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        if st.st_size != candidate.size:
            result.modified.add(st.st_size)
            continue
        if st.st_size == 0:
            continue  # nothing to free, and no reason to touch it
        groups[(candidate.sha256, candidate.size)].setdefault(candidate.path, _File(candidate, st))

    hashes: dict[Inode, str] = {}
    for (digest, size), by_path in groups.items():
        files = list(by_path.values())
        if len({(f.st.st_dev, f.st.st_ino) for f in files}) < 2:
            continue
        sound = []
        for f in files:
            inode = (f.st.st_dev, f.st.st_ino)
            if inode not in hashes:
                hashes[inode] = sha256_file(f.candidate.path)
                result.hashed_bytes += size
            if hashes[inode] == digest:
                sound.append(f)
            else:
                result.modified.add(size)
        _plan_group(sound, size, result)
    return result


def _plan_group(files: list[_File], size: int, result: DedupePlan) -> None:
    """Links for one group of identical files: within each (device, owner, group, mode) class,
    onto one kept inode. At best the group ends as one inode; each further class is left, counted
    as cross-device (one per further device) or cross-owner (the rest)."""
    by_class: dict[tuple[int, int, int, int], list[_File]] = defaultdict(list)
    for f in files:
        by_class[(f.st.st_dev, f.st.st_uid, f.st.st_gid, stat.S_IMODE(f.st.st_mode))].append(f)
    devices = {dev for dev, *_ in by_class}
    if len(devices) > 1:
        result.cross_device.add(size * (len(devices) - 1), len(devices) - 1)
    if len(by_class) > len(devices):
        result.cross_owner.add(size * (len(by_class) - len(devices)), len(by_class) - len(devices))
    for members in by_class.values():
        _link_class(members, size, result)


def _link_class(files: list[_File], size: int, result: DedupePlan) -> None:
    inodes: dict[Inode, list[_File]] = defaultdict(list)
    for f in files:
        inodes[(f.st.st_dev, f.st.st_ino)].append(f)
    if len(inodes) < 2:
        if files:
            result.already_shared.add(size * (len(files) - 1), len(files) - 1)
        return

    def rank(inode: Inode) -> tuple[bool, int, str]:
        members = inodes[inode]
        return (
            any(f.candidate.from_cache for f in members),  # the copy conda links from
            members[0].st.st_nlink,
            min(str(f.candidate.path) for f in members),
        )

    keep_inode = max(inodes, key=rank)
    keep = inodes[keep_inode][0].candidate.path
    result.already_shared.add(size * (len(inodes[keep_inode]) - 1), len(inodes[keep_inode]) - 1)
    for inode, members in inodes.items():
        if inode == keep_inode:
            continue
        paths = sorted({f.candidate.path for f in members})
        for path in paths:
            result.links.append(Link(keep, path, inode, size))
        if members[0].st.st_nlink <= len(paths):
            result.freed.add(size, len(paths))
        else:
            result.held_elsewhere.add(size, len(paths))


# --- linking ---------------------------------------------------------------------------------


def execute(plan: DedupePlan, report: Report = silent) -> DedupeResult:
    """Make the plan's links: each under a scratch name, renamed over the file. A file that changed
    since it was planned (another inode, size or a new kept file) is skipped and named."""
    result = DedupeResult()
    for number, link in enumerate(plan.links, 1):
        if number % 1000 == 0:
            report(f"linked {number}/{len(plan.links)}")
        try:
            now, keep = link.path.lstat(), link.keep.lstat()
        except OSError as exc:
            result.skipped.append(f"{link.path}: {exc.strerror}")
            continue
        if (now.st_dev, now.st_ino) != link.was or now.st_size != link.size or keep.st_size != link.size:
            # Only a file still on its planned inode is replaced; the kept one must still be that size.
            result.skipped.append(f"{link.path}: changed since it was planned")
            continue
        if (now.st_dev, now.st_ino) == (keep.st_dev, keep.st_ino):
            continue
        tmp = scratch_file(link.path)
        try:
            os.link(link.keep, tmp)
            os.replace(tmp, link.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            result.skipped.append(f"{link.path}: {exc.strerror}")
            continue
        result.linked += 1
    return result
