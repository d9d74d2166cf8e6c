"""`consolidate`: one cluster of the audit becomes a baseline plus a delta per member, installed
offline from the server's own package caches and swapped into place, with an undo copy kept.

The plan has no side effects. The members' conda-meta records are the lock: exact packages with
their URLs and hashes, so nothing is solved and no channel is asked.

* The baseline is the records every member has exactly (name, version, build, channel), less
  any whose dependencies are not all among them, so it installs on its own; each member's delta
  is the rest of its records, and its pip distributions, carried over by their RECORD files.
* Every package must be in a cache: `PKGS/NAME-VERSION-BUILD/info/index.json` (with the record's
  sha256 where `info/repodata_record.json` names one), or the archive `PKGS/FN`. The caches are
  the ones given, then the ones the records were linked from. Missing packages are named.
* A member in use (a process whose executable, working directory, open file or mapped library
  lies inside the prefix, read from /proc) is named, and refused unless forced.

Executing, per member, under `PARENT/.baseliner-undo/` (held by one lock for the run):

1. stage the member's records from the cache into `.baseliner-undo/NAME`, written for the
   member's path, and carry the rest over (`rebuild.stage`);
2. check it against the old environment (`rebuild.compare`): any difference stops before a swap;
3. write the journal `.baseliner-undo/NAME.json` (the staged directory's inode), then exchange the
   staged environment and the member in one `renameat2(RENAME_EXCHANGE)`. At every instant the
   member's path holds a working environment, the old or the new one; after the exchange the old
   one is the undo copy, untouched (only renamed).

A rerun resumes: a member whose path holds the journaled inode is done; a staged environment
that was never swapped is removed and staged again. `undo` exchanges back and removes the new
environments; `finish` removes the undo copies, which is when the bytes are freed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import engine
from ..artifacts import ConsolidationJournal, read
from ..atomic import Report, exchange, silent, write_json_atomic
from ..concurrency import hold, scratch
from ..errors import ConsolidateError
from . import disk
from .propose import Proposal
from .rebuild import Carried, _Hashes, compare, conda_key, conda_meta, pip_dists, stage

UNDO_DIR = ".baseliner-undo"


def dist_name(record: dict[str, Any]) -> str:
    """NAME-VERSION-BUILD: the package's directory in a cache."""
    return f"{record['name']}-{record['version']}-{record['build']}"


@dataclass
class Member:
    path: Path
    records: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def undo_dir(self) -> Path:
        return self.path.parent / UNDO_DIR


@dataclass
class Plan:
    members: list[Member]
    baseline_name: str
    baseline: list[dict[str, Any]]  # records of the baseline, every member has them exactly
    deltas: dict[str, list[str]]  # member path -> its other packages (NAME-VERSION-BUILD)
    sources: dict[str, Path]  # NAME-VERSION-BUILD -> the cached package directory or archive
    missing: dict[str, list[str]]  # NAME-VERSION-BUILD -> the members that need it
    in_use: dict[str, list[str]]  # member path -> "pid N: what"
    cache: Path  # the one cache every environment is linked from

    @property
    def baseline_path(self) -> Path:
        return self.members[0].path.parent / self.baseline_name

    def as_dict(self) -> dict[str, Any]:
        return {
            "members": [str(m.path) for m in self.members],
            "baseline": {"name": self.baseline_name, "path": str(self.baseline_path)},
            "baseline_packages": sorted(dist_name(r) for r in self.baseline),
            "deltas": self.deltas,
            "cache": str(self.cache),
            "missing": self.missing,
            "in_use": self.in_use,
        }


# --- the plan --------------------------------------------------------------------------------


def _closed(common: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`common` (by name) less every record one of whose dependencies is not in it, repeatedly."""
    kept = dict(common)
    changed = True
    while changed:
        changed = False
        for name, record in list(kept.items()):
            deps = [engine.spec_name(d) for d in record.get("depends", [])]
            if any(not d.startswith("__") and d not in kept for d in deps):
                del kept[name]
                changed = True
    return kept


def _cached(record: dict[str, Any], caches: Sequence[Path]) -> Path | None:
    """Where `record`'s package is in `caches`: its extracted directory or its archive."""
    import json

    for cache in caches:
        package = cache / dist_name(record)
        if (package / "info" / "index.json").is_file():
            with contextlib.suppress(OSError, ValueError):
                known = json.loads((package / "info" / "repodata_record.json").read_text()).get("sha256")
                if known and record.get("sha256") and known != record["sha256"]:
                    continue  # the same name-version-build from another channel
            return package
        archive = cache / str(record.get("fn", ""))
        if record.get("fn") and archive.is_file():
            return archive
    return None


def linked_from(records: Sequence[dict[str, Any]]) -> list[Path]:
    """The package caches the records say their files were linked from, most used first."""
    counts: Counter[str] = Counter()
    for record in records:
        source = record.get("extracted_package_dir") or (record.get("link") or {}).get("source")
        if source and os.path.isdir(source):
            counts[os.path.dirname(os.path.normpath(source))] += 1
    return [Path(p) for p, _ in counts.most_common()]


def processes_inside(prefixes: Sequence[Path]) -> dict[str, list[str]]:
    """Processes whose executable, cwd, open files or mapped files lie inside a prefix."""
    roots = {os.path.realpath(p): str(p) for p in prefixes}
    found: dict[str, list[str]] = {}

    def inside(target: str) -> str | None:
        for root, prefix in roots.items():
            if target == root or target.startswith(root + os.sep):
                return prefix
        return None

    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        if int(pid) == os.getpid():
            continue
        base = f"/proc/{pid}"
        targets: list[str] = []
        for link in ("exe", "cwd"):
            with contextlib.suppress(OSError):
                targets.append(os.readlink(f"{base}/{link}"))
        with contextlib.suppress(OSError):
            targets += [os.readlink(f"{base}/fd/{fd}") for fd in os.listdir(f"{base}/fd")]
        with contextlib.suppress(OSError), open(f"{base}/maps") as maps:
            targets += [line.split(None, 5)[5].strip() for line in maps if len(line.split(None, 5)) == 6]
        hits = {prefix for t in targets if (prefix := inside(t.removesuffix(" (deleted)")))}
        if hits:
            command = "?"
            with contextlib.suppress(OSError), open(f"{base}/cmdline", "rb") as fh:
                command = fh.read().replace(b"\0", b" ").decode(errors="replace")
            for prefix in hits:
                found.setdefault(prefix, []).append(f"pid {pid}: {command.strip()[:120]}")
    return found


def plan(prefixes: Sequence[Path], caches: Sequence[Path], baseline_name: str) -> Plan:
    """What consolidating the environments at `prefixes` would do (see the module docstring)."""
    members = [Member(Path(os.path.abspath(p)), conda_meta(Path(p))) for p in prefixes]
    caches = [Path(os.path.abspath(c)) for c in caches]
    if len(members) < 2:
        raise ConsolidateError(
            "a cluster to consolidate needs two environments or more", hint="run `invoke audit`"
        )
    all_records = [r for m in members for r in m.records]
    search = [*caches, *(c for c in linked_from(all_records) if c not in caches)]
    if not search:
        raise ConsolidateError(
            "no package cache: the records name none that still exists",
            hint="pass --cache PKGS (the pkgs directory the environments were created from)",
        )
    keyed = [{conda_key(r): r for r in m.records} for m in members]
    common_keys = set(keyed[0]).intersection(*keyed[1:])
    baseline = _closed({k[0]: keyed[0][k] for k in common_keys})
    base_keys = {conda_key(r) for r in baseline.values()}
    sources: dict[str, Path] = {}
    missing: dict[str, list[str]] = {}
    for member in members:
        for record in member.records:
            name = dist_name(record)
            if name in sources:
                continue
            found = _cached(record, search)
            if found is None:
                missing.setdefault(name, []).append(str(member.path))
            else:
                sources[name] = found
    return Plan(
        members,
        baseline_name,
        sorted(baseline.values(), key=dist_name),
        {
            str(m.path): sorted(dist_name(r) for r in m.records if conda_key(r) not in base_keys)
            for m in members
        },
        sources,
        missing,
        processes_inside([m.path for m in members]),
        search[0],
    )


def rattler_records(prefix: Path, names: set[str] | None = None) -> list[Any]:
    """py-rattler's records of the environment (those named NAME-VERSION-BUILD in `names`)."""
    records = engine.prefix_records(prefix)
    if names is None:
        return records
    return [r for r in records if f"{r.name.normalized}-{r.version}-{r.build}" in names]


def lock_files(plan: Plan, out: Path, command: str) -> list[Path]:
    """`@EXPLICIT` locks of the baseline and of every member under `out/locks/` (URL#md5 of the
    exact records, dependencies first), as `conda create --file` reads them."""
    from ..atomic import write_atomic
    from ..lock import explicit_file

    first = plan.members[0]
    subdirs = sorted({str(r.get("subdir", "")) for r in first.records} - {"noarch", ""}) or ["noarch"]
    head = f"# written by `{command}` from the environments' own conda-meta records"
    written = [out / "locks" / f"{plan.baseline_name}.txt"]
    base = rattler_records(first.path, {dist_name(r) for r in plan.baseline})
    write_atomic(written[0], explicit_file(head, subdirs[0], base))
    for member in plan.members:
        path = out / "locks" / f"{member.name}.txt"
        write_atomic(path, explicit_file(head, subdirs[0], rattler_records(member.path)))
        written.append(path)
    return written


def specs(proposal: Proposal, plan: Plan) -> Proposal:
    """`proposal` with the baseline and overlays the plan installs: the baseline's exact records
    and the pip distributions every member has, each overlay the rest of its member."""
    import dataclasses

    def conda(records: Sequence[dict[str, Any]]) -> list[str]:
        return sorted(f"{r['name']} =={r['version']} {r['build']}" for r in records)

    pips = {str(m.path): pip_dists(m.path) for m in plan.members}
    common = set.intersection(*pips.values())
    base_keys = {conda_key(r) for r in plan.baseline}
    baseline = {
        **proposal.baseline,
        "conda": conda(plan.baseline),
        "pip": sorted(f"{n}=={v}" for n, v in common),
    }
    overlays = {}
    for member in plan.members:
        overlay = proposal.overlays[member.name]
        extra = {k: v for k, v in overlay.items() if k not in ("conda", "pip")}
        delta = conda([r for r in member.records if conda_key(r) not in base_keys])
        pip = sorted(f"{n}=={v}" for n, v in pips[str(member.path)] - common)
        overlays[member.name] = {
            **extra,
            **({"conda": delta} if delta else {}),
            **({"pip": pip} if pip else {}),
        }
    return dataclasses.replace(proposal, baseline=baseline, overlays=overlays, conflicts=[])


# --- executing -------------------------------------------------------------------------------


@dataclass
class MemberResult:
    path: str
    state: str  # "swapped", "already swapped"
    carried: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    members: list[MemberResult] = field(default_factory=list)
    baseline: str = ""
    linked_into_cache: list[str] = field(default_factory=list)  # packages copied into the cache
    before_bytes: int = 0
    after_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "members": [m.__dict__ for m in self.members],
            "baseline": self.baseline,
            "linked_into_cache": self.linked_into_cache,
            "before_bytes": self.before_bytes,
            "after_bytes": self.after_bytes,
            "measured_freed_bytes": self.before_bytes - self.after_bytes,
        }


def _journal_path(path: Path) -> Path:
    return path.parent / UNDO_DIR / f"{path.name}.json"


def installed_baselines(prefixes: Sequence[Path]) -> set[Path]:
    """Those of `prefixes` that are baselines a consolidation installed and has not finished:
    not members of the cluster, though the audit finds them beside it."""
    out = set()
    for prefix in prefixes:
        journal = _journal_path(Path(prefix))
        if journal.is_file() and read(ConsolidationJournal, journal).kind == "baseline":
            out.add(Path(prefix))
    return out


def _swapped(journal: ConsolidationJournal) -> bool:
    """Whether the environment's path holds the staged directory (the journal's inode)."""
    try:
        return os.lstat(journal.path).st_ino == journal.staged_inode
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def _held(parents: Sequence[Path]) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for parent in sorted(set(parents)):
            stack.enter_context(hold(parent / UNDO_DIR / ".lock", f"consolidation in {parent}", timeout=0))
        yield


def _into_cache(plan: Plan, report: Report) -> list[str]:
    """Every package the plan needs as an extracted directory in `plan.cache`."""
    added = []
    for name, source in sorted(plan.sources.items()):
        target = plan.cache / name
        if source == target or (target / "info" / "index.json").is_file():
            continue
        report(f"adding {name} to {plan.cache}")
        with scratch(plan.cache, f"pkg-{name}") as tmp:
            made = tmp / name
            if source.is_dir():
                shutil.copytree(source, made, symlinks=True, copy_function=_link_or_copy)
            else:
                engine.extract(source, made)
            made.rename(target)
        added.append(name)
    return added


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _consolidate_member(
    member: Member, plan: Plan, hashes: _Hashes, force: bool, report: Report
) -> MemberResult:
    journal_path = _journal_path(member.path)
    if journal_path.is_file():
        journal = read(ConsolidationJournal, journal_path)
        if _swapped(journal):
            return MemberResult(str(member.path), "already swapped")
        journal_path.unlink()
    staged = member.undo_dir / member.name
    if os.path.lexists(staged):
        shutil.rmtree(staged)  # staged by a run that stopped before its swap
    report(f"{member.name}: installing {len(member.records)} packages from {plan.cache}")
    carried: Carried = stage(member.path, staged, plan.cache, rattler_records(member.path), hashes)
    report(f"{member.name}: checking records, pip distributions and imports against the old one")
    problems = compare(member.path, staged)
    if problems:
        shutil.rmtree(staged)
        raise ConsolidateError(
            f"the rebuilt {member.name} differs from the old one; nothing was swapped",
            details=problems,
            detail_limit=10,
            hint="the old environment is untouched; report this with the lines above",
        )
    if not force and (users := processes_inside([member.path])):
        shutil.rmtree(staged)
        raise ConsolidateError(
            f"{member.name} came into use while it was rebuilt; it was not swapped",
            details=[p for procs in users.values() for p in procs],
            hint="stop those processes and run the same command again (it resumes)",
        )
    write_json_atomic(
        journal_path,
        ConsolidationJournal(
            schema_version=1, kind="member", path=str(member.path), staged_inode=staged.lstat().st_ino
        ).model_dump(),
    )
    exchange(staged, member.path)
    return MemberResult(str(member.path), "swapped", carried.as_dict())


def _install_baseline(plan: Plan, report: Report) -> str:
    path = plan.baseline_path
    journal_path = _journal_path(path)
    if journal_path.is_file() and _swapped(read(ConsolidationJournal, journal_path)):
        return "already installed"
    if os.path.lexists(path):
        raise ConsolidateError(
            f"{path} exists and is not a baseline this consolidation installed",
            hint="move it away (or rename it), then run the same command again",
        )
    staged = path.parent / UNDO_DIR / path.name
    if os.path.lexists(staged):
        shutil.rmtree(staged)
    report(f"installing the baseline {plan.baseline_name} ({len(plan.baseline)} packages)")
    records = rattler_records(plan.members[0].path, {dist_name(r) for r in plan.baseline})
    engine.install(records, staged, plan.cache, alternative_prefix=path, link_scripts=False)
    write_json_atomic(
        journal_path,
        ConsolidationJournal(
            schema_version=1, kind="baseline", path=str(path), staged_inode=staged.lstat().st_ino
        ).model_dump(),
    )
    staged.rename(path)
    return "installed"


def execute(plan: Plan, force: bool = False, report: Report = silent) -> Outcome:
    """Consolidate the plan's members (see the module docstring); resumable after a kill."""
    if plan.missing:
        raise ConsolidateError(
            f"{len(plan.missing)} package(s) are in no package cache",
            details=[f"{name} (needed by {', '.join(who)})" for name, who in sorted(plan.missing.items())],
            hint="pass --cache for the pkgs directory that holds them; `conda clean` may have removed them",
        )
    if plan.in_use and not force:
        raise ConsolidateError(
            f"{len(plan.in_use)} environment(s) are in use",
            details=[f"{path}: {p}" for path, procs in sorted(plan.in_use.items()) for p in procs],
            hint="stop those processes (or pass --force to swap under them)",
        )
    outcome = Outcome()
    parents = [m.path.parent for m in plan.members]
    trees = [plan.cache, *(m.path for m in plan.members)]
    with _held(parents):
        outcome.before_bytes = disk.measure(trees).total
        outcome.linked_into_cache = _into_cache(plan, report)
        outcome.baseline = _install_baseline(plan, report)
        hashes = _Hashes()
        for member in plan.members:
            outcome.members.append(_consolidate_member(member, plan, hashes, force, report))
        outcome.after_bytes = disk.measure([*trees, plan.baseline_path]).total
    return outcome


# --- undo and finish -------------------------------------------------------------------------


def journals(roots: Sequence[Path]) -> list[tuple[Path, ConsolidationJournal]]:
    """Every consolidation journal under `roots` (beside the environments it swapped)."""
    found = []
    for root in roots:
        for dirpath, dirnames, _ in os.walk(root):
            if "conda-meta" in dirnames:
                dirnames[:] = []  # a prefix: its own subdirectories hold no environments
                continue
            if UNDO_DIR in dirnames:
                for path in sorted((Path(dirpath) / UNDO_DIR).glob("*.json")):
                    found.append((path, read(ConsolidationJournal, path)))
            dirnames[:] = [d for d in dirnames if not d.startswith(".baseliner-")]
    return found


def _tidy(journal_paths: Sequence[Path]) -> None:
    """Remove each undo directory that holds nothing but its lock file."""
    for directory in {p.parent for p in journal_paths}:
        if [p.name for p in directory.iterdir()] == [".lock"]:
            (directory / ".lock").unlink()
            directory.rmdir()


def undo(roots: Sequence[Path], report: Report = silent) -> list[str]:
    """Put back every old environment under `roots` and remove the new ones."""
    found = journals(roots)
    restored = []
    with _held([p.parent.parent for p, _ in found]):
        for journal_path, journal in found:
            path = Path(journal.path)
            staged = journal_path.parent / path.name
            if journal.kind == "member" and _swapped(journal):
                report(f"restoring {path}")
                exchange(staged, path)
                restored.append(str(path))
            elif journal.kind == "baseline" and _swapped(journal):
                report(f"removing the baseline {path}")
                os.rename(path, staged)
                restored.append(str(path))
            if os.path.lexists(staged):
                shutil.rmtree(staged)  # the new environment (or a never-swapped one)
            journal_path.unlink()
    _tidy([p for p, _ in found])
    return restored


def finish(roots: Sequence[Path], report: Report = silent) -> tuple[list[str], int]:
    """Remove the undo copies under `roots`; returns the environments finished and the bytes freed."""
    found = journals(roots)
    done, freed = [], 0
    with _held([p.parent.parent for p, _ in found]):
        for journal_path, journal in found:
            staged = journal_path.parent / Path(journal.path).name
            if journal.kind == "member" and _swapped(journal) and os.path.lexists(staged):
                report(f"removing the old {journal.path}")
                before = disk.measure([staged, Path(journal.path)]).total
                shutil.rmtree(staged)
                freed += before - disk.measure([Path(journal.path)]).total
            elif os.path.lexists(staged):
                shutil.rmtree(staged)  # staged by a run that never swapped
            if journal.kind == "member":
                done.append(journal.path)
            journal_path.unlink()
    _tidy([p for p, _ in found])
    return done, freed
