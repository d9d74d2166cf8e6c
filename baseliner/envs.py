"""Installing a lock into a prefix: conda packages with py-rattler, then the pip lock with uv.

The environment is built in a staging directory next to its final path and renamed into place
only when every step succeeded, so a failed or killed build never leaves a half-made environment
where a finished one is expected. Files are written as if they lived at the final path
(py-rattler's `alternative_target_prefix`; pip script shebangs are retargeted), so the rename
leaves an ordinary, working conda prefix (conda-meta records) that conda, mamba and conda-pack read.

Packages come from the package cache (`build/pkgs` by default): extracted once, then hardlinked
into every environment where the filesystem allows (files with a prefix placeholder are copied).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import engine
from .atomic import Report, silent
from .channels import ChannelRef
from .concurrency import scratch
from .engine import EngineError
from .errors import EnvError
from .lock import LockedEnv
from .pack import ENV_MARKER
from .pypi import ResolveFailed, install_locked, parse_pip_lock

if TYPE_CHECKING:
    from .engine import RepoDataRecord

# Written into every built prefix (and so into its tarball): which baseline and lock it holds.
BASELINE_MARKER = ENV_MARKER
OVERLAY_MARKER = "etc/baseliner/overlay.json"


@dataclass(frozen=True)
class InstallResult:
    prefix: Path
    conda_packages: int
    pip_packages: int
    cache_hits: int
    cache_misses: int


def _source_records(records: Sequence[RepoDataRecord], refs: Sequence[ChannelRef]) -> list[RepoDataRecord]:
    """Records pointing at the configured mirrors instead of the canonical URLs of the lock."""
    out = []
    for record in records:
        for ref in refs:
            url = record.url
            if url.startswith(ref.canonical + "/"):
                record.url = ref.to_source(url)
                break
        out.append(record)
    return out


def _cache_hits(records: Sequence[RepoDataRecord], cache: Path) -> int:
    hits = 0
    for record in records:
        name = record.file_name
        stem = name.removesuffix(".conda").removesuffix(".tar.bz2")
        if (cache / stem / "info" / "index.json").is_file():
            hits += 1
    return hits


def install_conda(records: Sequence[RepoDataRecord], staging: Path, final: Path, cache: Path) -> None:
    """Link `records` from the package cache into `staging`, with prefixes rewritten for `final`."""
    try:
        engine.install(records, staging, cache, alternative_prefix=final, link_scripts=False)
    except EngineError as exc:  # InstallerError, hash mismatches, network errors
        hint = "a package may be corrupt (hash mismatch) or a channel unreachable; check the mirror and retry"
        if "longer than the placeholder" in exc.text:
            hint = f"the prefix ({len(str(final))} chars) is longer than a package's prefix placeholder; build in a shorter directory"
        raise EnvError(
            f"installing conda packages into {final} failed",
            details=exc.text.splitlines()[:10],
            detail_limit=10,
            hint=hint,
        ) from exc


def install_pip(pip_lock: Path, staging: Path, index_url: str | None, uv_cache: Path) -> int:
    """Install the pip lock with the environment's own python: --no-deps --require-hashes."""
    try:
        install_locked(pip_lock, staging / "bin" / "python", index_url, uv_cache)
    except ResolveFailed as exc:
        raise EnvError(
            f"installing the pip lock {pip_lock.name} failed",
            details=exc.lines,
            detail_limit=12,
            hint="a hash may not match (the index changed?) or the index is unreachable; re-lock or fix the index",
        ) from exc
    _retarget_scripts(staging)
    return len(parse_pip_lock(pip_lock.read_text()))


def canonical_records(prefix: Path, refs: Sequence[ChannelRef]) -> int:
    """Make the conda-meta records name the canonical URL of each package (the lock's), not the
    mirror it was fetched from: conda's `create --clone` and `list --explicit` read `url` and
    `channel`, and find the packages in the shared cache by them. (`extracted_package_dir` and
    `link.source` name this machine's package cache, true where the env was built; conda-pack
    blanks them in the tarball, and reads them first to handle prefixes from the package.)"""
    changed = 0
    for path in sorted((prefix / "conda-meta").glob("*.json")):
        text = path.read_text()
        record = json.loads(text)
        url = str(record.get("url", ""))
        for ref in refs:
            canonical = ref.to_canonical(url)
            if canonical != url:
                updated = {**record, "url": canonical, "channel": ref.canonical + "/"}
                _replace_file(path, _with_top_level(text, record, updated).encode())
                changed += 1
                break
    return changed


_FIRST_KEY = re.compile(r'\{\n( +)"')


def _with_top_level(text: str, old: dict[str, Any], new: dict[str, Any]) -> str:
    """`text` (the JSON of `old`) turned into the JSON of `new`, which differs in top-level string
    values only: each `"key": "value"` is replaced where it occurs once, so the installer's layout
    is kept and the large `paths_data` is neither encoded nor parsed again (Python's indenting
    encoder is pure Python: 0.2 s for a demo's records; a second parse, 0.03 s). The one occurrence
    must start a line at the indent of the document's first key: in a pretty-printed document
    that is a top-level key (a JSON string holds no raw newline), never a nested one. Anything
    else is dumped whole."""
    first = _FIRST_KEY.match(text)
    if first is None:  # not pretty-printed: no line tells a top-level key from a nested one
        return json.dumps(new, indent=1) + "\n"
    indent = first.group(1)
    out = text
    for key, value in new.items():
        if old.get(key) == value:
            continue
        before = f"{json.dumps(key)}: {json.dumps(old.get(key))}"
        if not isinstance(old.get(key), str) or out.count(before) != 1 or f"\n{indent}{before}" not in out:
            return json.dumps(new, indent=1) + "\n"
        out = out.replace(before, f"{json.dumps(key)}: {json.dumps(value)}")
    return out


# A launcher that finds the environment's python next to itself: valid as sh and as python, so it
# works at any prefix (no shebang length limit, nothing for conda-unpack to rewrite).
RELOCATABLE_LAUNCHER = (
    b'#!/bin/sh\n\'\'\'exec\' "$(dirname -- "$(realpath -- "$0")")/python" "$0" "$@"\n\' \'\'\'\n'
)
UV_LAUNCHER_END = b"\n' '''\n"


def _retarget_scripts(staging: Path) -> None:
    """Console scripts written by the installer name the staging python (as a shebang, or in an
    `exec` line when the path is too long for one); give them a relocatable launcher instead and
    update their hashes in the RECORD files."""
    marker = f"{staging}/bin/python".encode()
    changed: dict[str, bytes] = {}
    for script in sorted((staging / "bin").iterdir()):
        if script.is_symlink() or not script.is_file():
            continue
        with script.open("rb") as fh:
            head = fh.read(1024)
        if not head.startswith(b"#!") or marker not in head:
            continue
        data = script.read_bytes()
        if data.startswith(b"#!/bin/sh\n'''exec'") and UV_LAUNCHER_END in data:
            body = data.split(UV_LAUNCHER_END, 1)[1]
        else:
            body = data.split(b"\n", 1)[1]
        data = RELOCATABLE_LAUNCHER + body
        _replace_file(script, data)
        changed[script.name] = data
    if not changed:
        return
    bin_dir = str(staging / "bin")
    for record in staging.glob("lib/python*/site-packages/*.dist-info/RECORD"):
        out, touched = [], False
        for line in record.read_text().splitlines():
            path = line.partition(",")[0]
            if path.rpartition("/")[2] not in changed:  # cheap first: most lines are other files
                out.append(line)
                continue
            target = os.path.normpath(os.path.join(record.parent.parent, path))
            if os.path.dirname(target) == bin_dir:
                data = changed[os.path.basename(target)]
                digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                line, touched = f"{path},sha256={digest},{len(data)}", True
            out.append(line)
        # Only the installer's own RECORDs: conda's files must stay as conda-meta lists them.
        if touched:
            _replace_file(record, ("\n".join(out) + "\n").encode())


def _replace_file(path: Path, data: bytes) -> None:
    """Write through a new inode: the old one may be a hardlink into a shared cache."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, path.stat().st_mode & 0o7777)
    tmp.replace(path)


def normalise_mtimes(prefix: Path, epoch: int) -> None:
    """Give every file the same mtime, so packing the same environment twice gives the same bytes."""
    for dirpath, dirnames, filenames in os.walk(prefix):
        for name in [*filenames, *dirnames]:
            os.utime(os.path.join(dirpath, name), (epoch, epoch), follow_symlinks=False)
    os.utime(prefix, (epoch, epoch))


def install_env(
    locked: LockedEnv,
    refs: Sequence[ChannelRef],
    final: Path,
    cache: Path,
    pip_index_url: str | None = None,
    uv_cache: Path | None = None,
    report: Report = silent,
    extra_pip_locks: Sequence[Path] = (),
    markers: dict[str, object] | None = None,
) -> InstallResult:
    """Install `locked` at `final` through a staging prefix renamed into place on success."""
    final = final.resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    records = _source_records(locked.records, refs)
    hits = _cache_hits(records, cache)
    with scratch(final.parent, f"env-{final.name}") as tmp:
        staging = tmp / "prefix"
        staging.mkdir()
        report(f"installing {len(records)} conda packages ({hits} already in {cache})")
        install_conda(records, staging, final, cache)
        # The conda-meta edit (Python, 0.1 s for the demo) runs while uv installs the pip lock in
        # its own process: the two touch disjoint files (conda-meta/ and site-packages, bin/).
        with ThreadPoolExecutor(1, thread_name_prefix="conda-meta") as pool:
            canonical = pool.submit(canonical_records, staging, refs)
            pip_count = 0
            for pip_lock in [*([locked.pip_lock] if locked.pip_lock else []), *extra_pip_locks]:
                report(f"installing pip lock {pip_lock.name} with uv (--no-deps --require-hashes)")
                pip_count += install_pip(
                    pip_lock, staging, pip_index_url, uv_cache or cache.parent / "uv-cache"
                )
            canonical.result()
        for rel, data in (markers or {}).items():
            marker = staging / rel
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    return InstallResult(final, len(records), pip_count, hits, len(records) - hits)


def conda_records(prefix: Path) -> list[dict[str, Any]]:
    """The conda-meta records of a prefix, as conda writes them (one JSON file per package)."""
    meta = prefix / "conda-meta"
    return [json.loads(p.read_text()) for p in sorted(meta.glob("*.json"))] if meta.is_dir() else []
