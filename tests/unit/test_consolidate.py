"""The parts of `consolidate` that need no environment: the atomic exchange, the baseline's
dependency closure, finding processes inside a prefix, and the fleet scan skipping undo copies."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from baseliner.atomic import exchange
from baseliner.audit.consolidate import _closed, plan, processes_inside
from baseliner.audit.inventory import find_prefixes
from baseliner.errors import ConsolidateError


def test_exchange_swaps_two_directories_in_one_step(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "x").mkdir(parents=True)
    (b / "y").mkdir(parents=True)
    ino_a, ino_b = a.stat().st_ino, b.stat().st_ino
    exchange(a, b)
    assert (a.stat().st_ino, b.stat().st_ino) == (ino_b, ino_a)
    assert (a / "y").is_dir() and (b / "x").is_dir()
    with pytest.raises(FileNotFoundError):
        exchange(a, tmp_path / "missing")  # both must exist: nothing is ever half-swapped
    assert a.stat().st_ino == ino_b


def _record(name: str, *depends: str) -> dict:
    return {"name": name, "version": "1", "build": "0", "depends": list(depends)}


def test_the_baseline_keeps_only_records_whose_dependencies_it_holds() -> None:
    common = {
        "python": _record("python", "libzlib >=1.2", "__glibc >=2.17"),  # virtual: not a package
        "libzlib": _record("libzlib"),
        "numpy": _record("numpy", "python >=3.9", "libblas >=3"),  # libblas differs per member
        "scipy": _record("scipy", "numpy >=1.22"),  # goes with numpy
    }
    assert sorted(_closed(common)) == ["libzlib", "python"]


def _prefix(root: Path, name: str, *records: dict) -> Path:
    meta = root / name / "conda-meta"
    meta.mkdir(parents=True)
    for record in records:
        (meta / f"{record['name']}-1-0.json").write_text(json.dumps(record))
    return root / name


def test_missing_packages_and_undo_copies(tmp_path: Path) -> None:
    envs = tmp_path / "envs"
    a = _prefix(envs, "a", {**_record("zlib"), "fn": "zlib-1-0.conda"})
    b = _prefix(envs, "b", {**_record("zlib"), "fn": "zlib-1-0.conda"}, _record("extra"))
    _prefix(envs / ".baseliner-undo", "a", _record("zlib"))
    assert list(find_prefixes(envs)) == [a, b]  # the undo copy is not part of the fleet
    cache = tmp_path / "pkgs"
    (cache / "zlib-1-0" / "info").mkdir(parents=True)
    (cache / "zlib-1-0" / "info" / "index.json").write_text("{}")
    found = plan([a, b], [cache], "base")
    assert found.sources == {"zlib-1-0": cache / "zlib-1-0"}
    assert found.missing == {"extra-1-0": [str(b)]}
    assert found.deltas == {str(a): [], str(b): ["extra-1-0"]}
    with pytest.raises(ConsolidateError, match="two environments"):
        plan([a], [cache], "base")


def test_a_process_running_inside_a_prefix_is_found(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "data.txt").write_text("x")
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import time; f = open({str(prefix / 'data.txt')!r}); time.sleep(60)"]
    )
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=prefix / "bin")
    try:
        time.sleep(0.5)
        found = processes_inside([prefix, tmp_path / "other"])
        pids = {line.split(":")[0] for line in found[str(prefix)]}
        assert pids == {f"pid {holder.pid}", f"pid {idle.pid}"}  # an open file; a working directory
        assert str(tmp_path / "other") not in found
    finally:
        holder.kill()
        idle.kill()
        holder.wait()
        idle.wait()
    assert processes_inside([prefix]) == {}
