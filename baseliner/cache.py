"""The shared package cache: one conda-compatible `pkgs` directory for every published baseline.

Layout, as conda and mamba read it (and py-rattler as a read-only cache layer):

    CACHE/urls.txt                          one package URL per line (conda's record of downloads)
    CACHE/<fn>                              the archive (.conda / .tar.bz2), sha256-verified
    CACHE/<name>-<version>-<build>/         the extracted package
    CACHE/<name>-<version>-<build>/info/repodata_record.json   url, channel, md5, sha256, size, depends…

Pods mount it read-only next to a writable user cache (`CONDA_PKGS_DIRS=<user>,<shared>`), so
`conda create` and `conda install` link from it and download nothing the org already has.
`fill` is incremental; every write is a temp name + rename, and the extracted directory appears
only once it is complete (its repodata_record.json is written last).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import engine
from .atomic import Report, silent, write_atomic, write_json_atomic
from .channels import DEFAULT_CHANNEL_ALIAS, resolve_channel, split_credentials
from .concurrency import is_scratch, leftovers, scratch, sweep
from .engine import EngineError
from .errors import CacheError
from .lock import read_lock_records
from .pack import sha256_file
from .store import Store

if TYPE_CHECKING:
    from .engine import RepoDataRecord


def dist_name(fn: str) -> str:
    """A package file name without its archive extension (the name of its extracted directory)."""
    return fn.removesuffix(".conda").removesuffix(".tar.bz2")


@dataclass(frozen=True)
class Wanted:
    """A package some published lock needs, and which baselines need it."""

    record_json: str
    record: RepoDataRecord
    fn: str
    url: str
    sha256: str
    users: tuple[str, ...]


def wanted_packages(
    store: Store, platform: str = "linux-64", overlay_locks: Iterable[Path] = ()
) -> dict[str, Wanted]:
    """Every package of every published baseline version, and of the listed overlay locks (by file
    name), with who needs it."""
    index = store.index()["baselines"]
    out: dict[str, Wanted] = {}

    def add(records: Iterable[RepoDataRecord], user: str) -> None:
        for record in records:
            fn = record.file_name
            users = (*out[fn].users, user) if fn in out else (user,)
            out[fn] = Wanted(record.to_json(), record, fn, record.url, (record.sha256 or b"").hex(), users)

    with tempfile.TemporaryDirectory() as tmp:
        for name in sorted(index):
            for version in sorted(index[name]):
                lock = store.fetch(name, version, f"{name}.lock", Path(tmp) / f"{name}-{version}.lock")
                add(read_lock_records(lock, platform)[1], f"{name}@{version}")
    for lock in overlay_locks:
        add(read_lock_records(lock, platform)[1], f"overlay:{lock.parent.name}")
    return out


def _download(url: str, dest: Path, mirrors: Mapping[str, str]) -> None:
    if url.startswith("file://"):
        shutil.copyfile(url.removeprefix("file://"), dest)
        return
    request = urllib.request.Request(url)
    for mirror in mirrors.values():  # credentials live in the config's mirror URL, never in `url`
        clean, found = split_credentials(mirror)
        if found and url.startswith(clean.rstrip("/") + "/"):
            token = base64.b64encode(f"{found[1]}:{found[2]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=120) as response, dest.open("wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)


@dataclass
class FillResult:
    added: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)


def fill(
    cache: Path, wanted: Mapping[str, Wanted], mirrors: Mapping[str, str], report: Report = silent
) -> FillResult:
    """Add every wanted package that is missing: archive, extracted dir, repodata_record.json, urls.txt.

    Archives are downloaded (from the mirrors) and checked against the lock's sha256; py-rattler
    then extracts them, writing its own per-package metadata beside conda's, so the same
    directory is a conda `pkgs` dir and a py-rattler cache layer. All of it happens in one scratch
    directory of the cache (see `concurrency.scratch`); each finished package is renamed into place
    (its directory, then its archive), so a killed fill leaves only what the next one sweeps."""
    cache.mkdir(parents=True, exist_ok=True)
    result = FillResult()
    urls = (cache / "urls.txt").read_text().splitlines() if (cache / "urls.txt").is_file() else []
    missing: list[Wanted] = []
    for fn, item in sorted(wanted.items()):
        if (cache / dist_name(fn) / "info" / "repodata_record.json").is_file() and (cache / fn).is_file():
            result.present.append(fn)
        else:
            missing.append(item)
    with scratch(cache, "fill") as tmp:

        def archive(item: Wanted) -> None:
            if (tmp / item.fn).is_file():
                return
            if (cache / item.fn).is_file() and sha256_file(cache / item.fn) == item.sha256:
                os.link(cache / item.fn, tmp / item.fn)
            else:
                report(f"downloading {item.fn}")
                _fetch_archive(tmp, item, mirrors)

        for item in missing:
            archive(item)
        for user in sorted({u for item in missing for u in item.users}):
            group = [item for item in missing if user in item.users and item.fn not in result.added]
            if not group:
                continue
            # py-rattler links what it extracts, and links a noarch: python package only with a python.
            helpers = [w for w in wanted.values() if user in w.users and w.record.name.normalized == "python"]
            helpers = [w for w in helpers if w not in group and any(g.record.noarch.python for g in group)]
            for item in helpers:
                archive(item)
            report(f"extracting {len(group)} package(s) of {user}")
            _extract_with_rattler(tmp, [*group, *helpers])
            for item in group:
                dist = dist_name(item.fn)
                write_json_atomic(tmp / dist / "info" / "repodata_record.json", json.loads(item.record_json))
                for name in (dist, f"{dist}.lock"):  # the package, then py-rattler's note of it
                    if (tmp / name).exists():
                        if (cache / name).is_dir():
                            (cache / name).rename(tmp / f"replaced-{name}")
                        os.replace(tmp / name, cache / name)
                os.replace(tmp / item.fn, cache / item.fn)
                result.added.append(item.fn)
                if item.url not in urls:
                    urls.append(item.url)
    write_atomic(cache / "urls.txt", "".join(f"{u}\n" for u in urls))
    return result


def _fetch_archive(directory: Path, item: Wanted, mirrors: Mapping[str, str]) -> None:
    channel = item.url.rsplit("/", 2)[0]
    name = channel.removeprefix(DEFAULT_CHANNEL_ALIAS + "/")
    ref = resolve_channel(name if "://" not in name else channel, mirrors, directory)
    path = directory / item.fn
    _download(ref.to_source(item.url), path, mirrors)
    actual = sha256_file(path)
    if actual != item.sha256:
        path.unlink()
        raise CacheError(
            f"package {item.fn} does not match its lock",
            details=[f"lock sha256 {item.sha256}", f"got         {actual}"],
            hint="the channel or mirror serves a different file; check it before filling the cache",
        )


def _extract_with_rattler(cache: Path, items: list[Wanted]) -> None:
    """Let py-rattler extract archives in `cache` there (a throwaway prefix receives the links)."""
    records = []
    for item in items:
        record = engine.copy_record(item.record)  # a copy: the url changes
        record.url = (cache / item.fn).resolve().as_uri()
        records.append(record)
    with tempfile.TemporaryDirectory(prefix="prefix-", dir=cache) as prefix:
        try:
            engine.install(records, prefix, cache)
        except EngineError as exc:
            raise CacheError(
                f"extracting packages into {cache} failed", details=exc.text.splitlines()[:8]
            ) from exc


@dataclass
class VerifyResult:
    corrupt: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    # Scratch space of interrupted fills and exports (ours: `--repair` or the next fill removes it).
    leftovers: list[str] = field(default_factory=list)
    # Packages whose files no longer match their paths.json (`--repair` re-extracts them).
    damaged: list[str] = field(default_factory=list)

    @property
    def sound(self) -> bool:
        return not (self.corrupt or self.missing or self.foreign or self.leftovers)

    def as_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in sorted(vars(self).items())}

    def error(self, cache: Path, repair_command: str) -> CacheError:
        """The CacheError that says what is wrong, leftovers first, with the command that repairs it."""
        return CacheError(
            f"shared cache {cache} is not sound",
            details=[
                *(f"leftover of an interrupted run: {p}" for p in self.leftovers),
                *(f"corrupt: {p}" for p in self.corrupt),
                *(f"missing: {p}" for p in self.missing),
                *(f"foreign: {p}" for p in self.foreign),
            ],
            detail_limit=10,
            hint=f"run `{repair_command}` (leftovers and damaged packages are ours to restore; "
            "a foreign entry is not: remove it by hand if nothing needs it)",
        )


def _package_dirs(cache: Path) -> Iterable[Path]:
    return sorted(p for p in cache.iterdir() if p.is_dir() and not p.name.startswith("."))


def verify(cache: Path) -> VerifyResult:
    """Rehash every file of every extracted package against its paths.json."""
    result = VerifyResult()
    known: set[str] = {"urls.txt", "urls"}
    result.leftovers = [p.name for p in leftovers(cache)]
    known |= {p.name for p in cache.iterdir() if is_scratch(p.name)}  # leftovers, or a live fill's
    for pkg in _package_dirs(cache):
        record = pkg / "info" / "repodata_record.json"
        paths_json = pkg / "info" / "paths.json"
        if not record.is_file() or not paths_json.is_file():
            result.foreign.append(f"{pkg.name}/ (not a package: no info/repodata_record.json or paths.json)")
            known.add(pkg.name)
            continue
        known |= {pkg.name, json.loads(record.read_text()).get("fn", "")}
        for entry in json.loads(paths_json.read_text()).get("paths", []):
            path = pkg / entry["_path"]
            if entry.get("path_type", "hardlink") != "hardlink":
                continue
            if not path.is_file():
                result.missing.append(f"{pkg.name}/{entry['_path']}")
            elif entry.get("sha256") and sha256_file(path) != entry["sha256"]:
                result.corrupt.append(f"{pkg.name}/{entry['_path']}")
            else:
                continue
            if pkg.name not in result.damaged:
                result.damaged.append(pkg.name)
    for item in sorted(cache.iterdir()):
        if item.name not in known and not item.name.endswith(".lock"):
            result.foreign.append(item.name)
    return result


def repair(cache: Path, found: VerifyResult) -> list[str]:
    """Remove what `verify` found that baseliner can restore: the leftovers of interrupted runs,
    and each damaged package's directory (the next fill extracts it again from its archive,
    checked against the lock). Foreign entries are never touched. Returns what was removed."""
    removed = [p.name for p in sweep(cache)]
    for name in found.damaged:
        shutil.rmtree(cache / name, ignore_errors=True)
        (cache / f"{name}.lock").unlink(missing_ok=True)
        removed.append(f"{name}/")
    return removed


def prune_plan(cache: Path, wanted: Mapping[str, Wanted]) -> list[tuple[str, int]]:
    """Packages (dist names) in the cache that no published lock references, with their bytes."""
    keep = {dist_name(fn) for fn in wanted}
    out = []
    for pkg in _package_dirs(cache):
        if pkg.name not in keep and (pkg / "info" / "repodata_record.json").is_file():
            out.append(
                (
                    pkg.name,
                    _tree_bytes(pkg)
                    + sum(f.stat().st_size for f in cache.glob(f"{pkg.name}.*") if f.is_file()),
                )
            )
    return out


def prune(cache: Path, wanted: Mapping[str, Wanted]) -> list[tuple[str, int]]:
    """Remove what `prune_plan` lists (never a package a published lock needs)."""
    plan = prune_plan(cache, wanted)
    gone = {name for name, _ in plan}
    for name in gone:
        shutil.rmtree(cache / name)
        for leftover in (cache / f"{name}.conda", cache / f"{name}.tar.bz2", cache / f"{name}.lock"):
            leftover.unlink(missing_ok=True)  # the archive, and py-rattler's note of the package
    urls_txt = cache / "urls.txt"
    if gone and urls_txt.is_file():
        urls = urls_txt.read_text().splitlines()
        kept = [u for u in urls if dist_name(u.rsplit("/", 1)[-1]) not in gone]
        write_atomic(urls_txt, "".join(f"{u}\n" for u in kept))
    return plan


def _tree_bytes(root: Path) -> int:
    seen: set[int] = set()
    total = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_size
    return total


def stats(cache: Path, wanted: Mapping[str, Wanted]) -> dict[str, object]:
    """Packages, bytes, sharing, and bytes saved against a separate cache per baseline."""
    sizes = {
        fn: _tree_bytes(cache / dist_name(fn))
        + ((cache / fn).stat().st_size if (cache / fn).is_file() else 0)
        for fn in wanted
        if (cache / dist_name(fn)).is_dir()
    }
    shared_by = Counter(len(w.users) for w in wanted.values())
    separate = sum(sizes.get(fn, 0) * len(w.users) for fn, w in wanted.items())
    total = sum(sizes.values())
    return {
        "packages": len(sizes),
        "bytes": total,
        "baselines_per_package": dict(sorted(shared_by.items())),
        "bytes_with_separate_caches": separate,
        "bytes_saved": separate - total,
    }


def export_tarball(cache: Path, output: Path) -> Path:
    """A tarball of the cache for seeding an NFS share or a PVC (sorted, fixed mtimes; atomic)."""
    import gzip
    import tarfile

    from .condapkg import FIXED_MTIME

    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime, info.uid, info.gid, info.uname, info.gname = FIXED_MTIME, 0, 0, "", ""
        return info

    with scratch(output.parent, f"export-{output.name}") as tmp_dir:
        tmp = tmp_dir / output.name
        # gzip's header would carry the time and the file name: neither, so two exports are equal.
        with (
            tmp.open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w") as tar,
        ):
            for dirpath, dirnames, filenames in os.walk(cache):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    if name.startswith("."):  # scratch space and the cache-wide lock
                        continue
                    full = Path(dirpath, name)
                    tar.add(
                        full, arcname=full.relative_to(cache).as_posix(), recursive=False, filter=normalise
                    )
        tmp.replace(output)
    return output
