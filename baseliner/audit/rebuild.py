"""Rebuilding one environment from its own records, and checking the result against the old one.

`stage` links the environment's conda records from a package cache with py-rattler (files
written for the old environment's path), then makes the new tree hold what the old one holds:

* a path is left as py-rattler linked it only when the old path is the same thing: a regular
  file with the same bytes (the same inode, or equal sha256), mode, owner and group; a symlink
  with the same target; a directory;
* everything else is copied over from the old tree (`copy2`, owner kept, hardlinks within the
  tree kept as hardlinks): pip's distributions, files changed since install, files rewritten for
  a prefix whose old bytes differ (a tree copied by hand to another path keeps what it had),
  files no package owns (`conda-meta/history`, kernels, configs);
* a path the new install made that the old tree lacks is removed.

So every path of the old tree has the same bytes, mode and link target in the new one; only
`conda-meta/*.json` are the new install's own, saying truthfully where the files now come from.

`compare` is the check before a swap: the same conda records (name, version, build, channel), the
same pip distributions and versions, and every top-level module of site-packages that imports in
the old environment imports in the new one (`python -B`: neither tree gains a byte).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import engine
from ..lint import pip_distributions
from ..pack import sha256_file
from ..pypi import normalise

Inode = tuple[int, int]


@dataclass
class Carried:
    """What `stage` copied from the old tree instead of linking it, by reason."""

    files: int = 0
    bytes: int = 0
    removed: int = 0  # paths the new install made that the old tree lacks
    reasons: dict[str, int] = field(default_factory=dict)  # reason -> files

    def add(self, reason: str, size: int) -> None:
        self.files += 1
        self.bytes += size
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {"files": self.files, "bytes": self.bytes, "removed": self.removed, "reasons": self.reasons}


def conda_meta(prefix: Path) -> list[dict[str, Any]]:
    """The environment's conda-meta records, as JSON."""
    return [json.loads(p.read_text()) for p in sorted((prefix / "conda-meta").glob("*.json"))]


def conda_key(record: dict[str, Any]) -> tuple[str, str, str, str]:
    """What makes two records the same package: name, version, build and channel."""
    channel = str(record.get("channel") or str(record.get("url", "")).rsplit("/", 2)[0])
    return str(record["name"]), str(record["version"]), str(record["build"]), channel.rstrip("/")


def _recorded(prefix: Path) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """Each conda-recorded path's `paths_data` entry, and the paths pip's RECORD files list."""
    entries: dict[str, dict[str, Any]] = {}
    owned: set[str] = set()
    for record in conda_meta(prefix):
        owned.update(map(str, record.get("files", [])))
        for entry in (record.get("paths_data") or {}).get("paths", []):
            entries[str(entry.get("_path", ""))] = entry
    pip = {rel for dist in pip_distributions(prefix, owned | set(entries)) for rel in dist.files}
    return entries, pip


class _Hashes:
    """sha256 per inode, computed once (many environments link the same cache file)."""

    def __init__(self) -> None:
        self._known: dict[Inode, str] = {}
        self.bytes = 0

    def of(self, path: str, st: os.stat_result) -> str:
        inode = (st.st_dev, st.st_ino)
        if inode not in self._known:
            self._known[inode] = sha256_file(Path(path))
            self.bytes += st.st_size
        return self._known[inode]


def _same(src: str, st: os.stat_result, dst: str, hashes: _Hashes) -> bool:
    try:
        dt = os.lstat(dst)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        return stat.S_ISLNK(dt.st_mode) and os.readlink(src) == os.readlink(dst)
    if not (stat.S_ISREG(st.st_mode) and stat.S_ISREG(dt.st_mode)):
        return False
    if (st.st_dev, st.st_ino) == (dt.st_dev, dt.st_ino):
        return True
    if (st.st_size, st.st_mode, st.st_uid, st.st_gid) != (dt.st_size, dt.st_mode, dt.st_uid, dt.st_gid):
        return False
    return hashes.of(src, st) == hashes.of(dst, dt)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _owner(path: str, st: os.stat_result) -> None:
    if os.geteuid() == 0:
        os.lchown(path, st.st_uid, st.st_gid)


def _reason(rel: str, entries: dict[str, dict[str, Any]], pip: set[str]) -> str:
    entry = entries.get(rel)
    if entry is None:
        return "pip" if rel in pip else "no package records it"
    if entry.get("prefix_placeholder"):
        return "rewritten for another prefix"
    return "changed since install"


def carry(old: Path, new: Path, hashes: _Hashes | None = None) -> Carried:
    """Make `new` hold every path of `old` as `old` has it (see the module docstring)."""
    hashes = hashes or _Hashes()
    entries, pip = _recorded(old)
    out = Carried()
    copied: dict[Inode, str] = {}  # old inode -> its first copy, for hardlinks inside the tree
    for dirpath, dirnames, filenames in os.walk(old):
        rel_dir = os.path.relpath(dirpath, old)
        for name in [*dirnames, *filenames]:
            src = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            dst = os.path.join(new, rel)
            st = os.lstat(src)
            if stat.S_ISDIR(st.st_mode):
                if not (os.path.isdir(dst) and not os.path.islink(dst)):
                    _remove(dst)
                    os.mkdir(dst)
                os.chmod(dst, stat.S_IMODE(st.st_mode))
                _owner(dst, st)
                continue
            if (rel_dir == "conda-meta" and name.endswith(".json")) or _same(src, st, dst, hashes):
                continue
            _remove(dst)
            inode = (st.st_dev, st.st_ino)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), dst)
            elif inode in copied:
                os.link(copied[inode], dst)
                continue
            elif stat.S_ISREG(st.st_mode):
                shutil.copy2(src, dst, follow_symlinks=False)
                copied[inode] = dst
            else:
                continue  # a socket or fifo: nothing a package or pip installs
            _owner(dst, st)
            out.add(_reason(rel, entries, pip), st.st_size)
    for dirpath, dirnames, filenames in os.walk(new, topdown=False):
        rel_dir = os.path.relpath(dirpath, new)
        for name in [*filenames, *dirnames]:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if rel_dir == "conda-meta" and name.endswith(".json"):
                continue
            if not os.path.lexists(os.path.join(old, rel)):
                _remove(os.path.join(dirpath, name))
                out.removed += 1
    return out


def stage(
    old: Path, staged: Path, cache: Path, records: Sequence[Any], hashes: _Hashes | None = None
) -> Carried:
    """`records` (the old environment's conda records) linked from `cache` into `staged`, files
    written for `old`'s path, then `carry`."""
    engine.install(records, staged, cache, alternative_prefix=old, link_scripts=False)
    return carry(old, staged, hashes)


# --- the check ---------------------------------------------------------------------------------

_IMPORTS = """\
import importlib, json, sys
out = {}
for name in sys.argv[2:]:
    try:
        importlib.import_module(name)
        out[name] = "ok"
    except BaseException as exc:
        out[name] = type(exc).__name__
with open(sys.argv[1], "w") as fh:
    json.dump(out, fh)
"""


def top_level_modules(prefix: Path) -> list[str]:
    """The importable names at the top of the environment's site-packages."""
    names: set[str] = set()
    for site in prefix.glob("lib/python*/site-packages"):
        for entry in site.iterdir():
            stem = entry.name.split(".", 1)[0]
            if not stem.isidentifier() or stem.startswith("__"):
                continue
            if (entry.is_dir() and (entry / "__init__.py").is_file()) or entry.suffix in (".py", ".so"):
                names.add(stem)
    return sorted(names)


def imports(prefix: Path, modules: Sequence[str], timeout: float = 600) -> dict[str, str]:
    """Import each module with the environment's python: "ok" or the exception's type name."""
    python = Path(os.path.abspath(prefix)) / "bin" / "python"
    if not modules or not python.exists():
        return {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    with tempfile.TemporaryDirectory(prefix="baseliner-imports-") as tmp:
        result = Path(tmp) / "result.json"
        proc = subprocess.run(
            [str(python), "-B", "-s", "-c", _IMPORTS, str(result), *modules],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if not result.is_file():
            return dict.fromkeys(modules, f"python exited {proc.returncode}: {proc.stderr.strip()[-200:]}")
        return dict(json.loads(result.read_text()))


def pip_dists(prefix: Path) -> set[tuple[str, str]]:
    """(normalised name, version) of every distribution pip (not conda) installed."""
    owned = {str(f) for r in conda_meta(prefix) for f in r.get("files", [])}
    return {(normalise(d.name), d.version) for d in pip_distributions(prefix, owned)}


def compare(old: Path, new: Path, modules: Sequence[str] | None = None) -> list[str]:
    """How the environment at `new` differs from the one at `old` (empty: the same)."""
    problems = []
    before, after = {conda_key(r) for r in conda_meta(old)}, {conda_key(r) for r in conda_meta(new)}
    problems += [f"conda record lost: {' '.join(k)}" for k in sorted(before - after)]
    problems += [f"conda record added: {' '.join(k)}" for k in sorted(after - before)]
    pip_before, pip_after = pip_dists(old), pip_dists(new)
    problems += [f"pip distribution lost: {n}=={v}" for n, v in sorted(pip_before - pip_after)]
    problems += [f"pip distribution added: {n}=={v}" for n, v in sorted(pip_after - pip_before)]
    names = top_level_modules(old) if modules is None else list(modules)
    with ThreadPoolExecutor(2) as pool:  # two interpreters side by side: most of the check's time
        was_run, now_run = pool.submit(imports, old, names), pool.submit(imports, new, names)
        was, now = was_run.result(), now_run.result()
    problems += [
        f"import {name}: {now.get(name, 'not tried')} (it imported before)"
        for name, result in sorted(was.items())
        if result == "ok" and now.get(name) != "ok"
    ]
    return problems
