"""The shared package cache: conda's layout field for field, verify, prune, stats."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from baseliner.build import BuildOptions, build_baseline
from baseliner.cache import dist_name, fill, prune, prune_plan, stats, verify, wanted_packages
from baseliner.lock import LockPaths, lock_files, read_lock_records
from baseliner.store import Store, publish

from ..conftest import MakeProject, spec


@pytest.fixture
def store_of_two(make_project: MakeProject, tmp_path: Path):  # type: ignore[no-untyped-def]
    project = make_project(
        {
            "one": spec("one", conda=["python 3.*", "hello-noarch"]),
            "two": spec("two", conda=["python 3.*", "needs-old-foo"]),
        }
    )
    full = Store(str(tmp_path / "store-full"))
    only_one = Store(str(tmp_path / "store-one"))
    for name in ("one", "two"):
        result = build_baseline(project, name, BuildOptions(image=False))
        files = lock_files(project.repo().resolve(name).path)
        publish(full, result.manifest, files)
        if name == "one":
            publish(only_one, result.manifest, files)
    return project, full, only_one


def test_cache_follows_conda_layout_and_matches_the_locks(store_of_two, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    project, store, _ = store_of_two
    cache = tmp_path / "shared-pkgs"
    wanted = wanted_packages(store)
    added = fill(cache, wanted, project.mirrors()).added
    assert sorted(added) == sorted(wanted)
    python_fn = next(fn for fn in wanted if fn.startswith("python-"))
    assert wanted[python_fn].users == ("one@1.0", "two@1.0")
    urls = (cache / "urls.txt").read_text().splitlines()
    locked = {}
    for name in ("one", "two"):
        _, records = read_lock_records(LockPaths(project.repo().resolve(name).path).lock, "linux-64")
        locked.update({r.file_name: r for r in records})
    assert sorted(urls) == sorted(r.url for r in locked.values())
    for fn, record in locked.items():
        dist = fn.removesuffix(".conda").removesuffix(".tar.bz2")
        rec = json.loads((cache / dist / "info" / "repodata_record.json").read_text())
        assert rec["url"] == record.url and rec["fn"] == fn
        assert rec["sha256"] == record.sha256.hex() and rec["md5"] == record.md5.hex()
        assert rec["size"] == record.size and rec["depends"] == list(record.depends)
        assert rec["name"] == str(record.name.normalized) and rec["channel"]
        assert (cache / fn).is_file() and (cache / dist / "info" / "index.json").is_file()
    assert fill(cache, wanted, project.mirrors()).added == []  # incremental: nothing twice
    assert verify(cache).sound


def test_verify_finds_a_single_flipped_byte_and_foreign_entries(store_of_two, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    project, store, _ = store_of_two
    cache = tmp_path / "pkgs"
    fill(cache, wanted_packages(store), project.mirrors())
    victim = next(cache.glob("hello-noarch-*/site-packages/hello_noarch/__init__.py"))
    data = bytearray(victim.read_bytes())
    data[0] ^= 1
    victim.write_bytes(bytes(data))
    (cache / "stray-dir").mkdir()
    result = verify(cache)
    assert result.corrupt == [f"{victim.parent.parent.parent.name}/site-packages/hello_noarch/__init__.py"]
    assert [f.split("/")[0].split(" ")[0] for f in result.foreign] == ["stray-dir"]
    assert not result.sound


def test_prune_lists_exactly_the_unreferenced_packages(store_of_two, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    project, full, only_one = store_of_two
    cache = tmp_path / "pkgs"
    fill(cache, wanted_packages(full), project.mirrors())
    keep = wanted_packages(only_one)
    plan = prune_plan(cache, keep)
    assert sorted(n for n, _ in plan) == ["libfoo-1.0-h0_0", "needs-old-foo-1.0-h0_0"]
    assert all(size > 0 for _, size in plan)
    prune(cache, keep)
    assert not (cache / "libfoo-1.0-h0_0").exists()
    for fn in keep:
        assert (cache / fn).is_file()
    assert verify(cache).sound


def test_stats_counts_sharing(store_of_two, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    project, store, _ = store_of_two
    cache = tmp_path / "pkgs"
    wanted = wanted_packages(store)
    fill(cache, wanted, project.mirrors())
    result = stats(cache, wanted)
    assert result["packages"] == 4
    assert result["baselines_per_package"] == {1: 3, 2: 1}  # python is shared by both

    # Checked against `du`: the files of each package (its directory without the directories
    # themselves, plus its archive), python counted once per baseline that needs it.
    def du_files(*paths: Path) -> int:
        du = subprocess.run(["du", "-sbc", *map(str, paths)], capture_output=True, text=True, check=True)
        dirs = subprocess.run(
            ["find", *map(str, paths), "-type", "d", "-printf", "%s\n"],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(du.stdout.splitlines()[-1].split()[0]) - sum(int(n) for n in dirs.stdout.split())

    per_package = {fn: du_files(cache / dist_name(fn), cache / fn) for fn in wanted}
    python = next(fn for fn in wanted if fn.startswith("python-"))
    assert result["bytes"] == sum(per_package.values())
    assert result["bytes_saved"] == per_package[python]  # the one package both baselines share
    assert result["bytes_with_separate_caches"] == result["bytes"] + per_package[python]


def test_cache_tarball_for_seeding_a_pvc(store_of_two, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import tarfile

    from baseliner.cache import export_tarball

    project, store, _ = store_of_two
    cache = tmp_path / "pkgs"
    fill(cache, wanted_packages(store), project.mirrors())
    first = export_tarball(cache, tmp_path / "out" / "cache.tar.gz")
    with tarfile.open(first) as tar:
        names = set(tar.getnames())
        assert all(m.mtime == tar.getmembers()[0].mtime for m in tar.getmembers())
    assert "urls.txt" in names and any(n.endswith("info/repodata_record.json") for n in names)
    expected = {
        p.relative_to(cache).as_posix()
        for p in cache.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }
    assert names == expected
    again = export_tarball(cache, tmp_path / "elsewhere" / "other-name.tar.gz")
    assert again.read_bytes() == first.read_bytes()  # byte for byte: no timestamp, no file name


def test_verify_tells_leftovers_from_foreign_and_repair_heals_both_kinds_of_damage(
    store_of_two, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys
    import time

    from baseliner.cache import repair
    from baseliner.concurrency import SCRATCH_PREFIX, _host

    project, store, _ = store_of_two
    cache = tmp_path / "pkgs"
    wanted = wanted_packages(store)
    fill(cache, wanted, project.mirrors())
    clean = {p.name for p in cache.iterdir()}
    # A fill killed mid-way: its scratch directory with an owner file nobody holds any more.
    code = (
        "import os, sys; from pathlib import Path; from baseliner.concurrency import scratch\n"
        "with scratch(Path(sys.argv[1]), 'fill') as tmp:\n"
        "    (tmp / 'python-3.11.conda').write_bytes(b'x' * 1000); os.kill(os.getpid(), 9)\n"
    )
    # A live run's scratch directory (a scratch of its own sweeps only dead runs' leftovers) ...
    live = subprocess.Popen(
        [sys.executable, "-c", code.replace("os.kill(os.getpid(), 9)", "input()"), str(cache)],
        stdin=subprocess.PIPE,
    )
    try:
        for _ in range(200):
            if [p for p in cache.iterdir() if p.name.startswith(SCRATCH_PREFIX)]:
                break
            time.sleep(0.05)
        # ... then a killed fill, and a write_atomic killed between its write and its rename.
        subprocess.run([sys.executable, "-c", code, str(cache)], check=False)
        (cache / f"{SCRATCH_PREFIX}write.{_host()}.999999999.ab12.urls.txt").write_text("half")
        victim = next(cache.glob("hello-noarch-*/site-packages/hello_noarch/__init__.py"))
        victim.write_text("tampered")
        (cache / "stray-dir").mkdir()
        result = verify(cache)
        assert len(result.leftovers) == 2 and all(n.startswith(SCRATCH_PREFIX) for n in result.leftovers)
        assert [f.split(" ")[0] for f in result.foreign] == ["stray-dir/"]
        assert result.damaged == [victim.parent.parent.parent.name]
        removed = repair(cache, result)
        assert sorted(removed) == sorted([*result.leftovers, f"{result.damaged[0]}/"])
        fill(cache, wanted, project.mirrors())  # extracts the damaged package again
        (cache / "stray-dir").rmdir()  # foreign: ours to report, not to delete
        after = verify(cache)
        assert after.sound, after
        assert {p.name for p in cache.iterdir() if not p.name.startswith(SCRATCH_PREFIX)} == clean
        assert victim.read_text() != "tampered"
        assert [p for p in cache.iterdir() if p.name.startswith(SCRATCH_PREFIX)]  # the live one stays
    finally:
        live.communicate(b"\n", timeout=30)
    assert not [p for p in cache.iterdir() if p.name.startswith(SCRATCH_PREFIX)]
