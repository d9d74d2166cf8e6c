"""`dedupe` on a fleet of real prefixes: copies of the same environments (as `--copy`, a hand
unpack or another filesystem leave them), pip installs of the same wheel, a package cache, a file
changed since install, files rewritten per prefix, and a second filesystem (tmpfs). Checked with
`du -sb` and sha256 of every file, and by running the environments afterwards."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from baseliner.concurrency import SCRATCH_PREFIX
from baseliner.config import Project

from ..conftest import FULL, MakeProject, install_baseline, spec

BASELINER = str(Path(sys.executable).with_name("baseliner"))


def _du(*trees: Path) -> int:
    out = subprocess.run(["du", "-sbc", *map(str, trees)], capture_output=True, text=True, check=True)
    return int(out.stdout.splitlines()[-1].split()[0])


def _hashes(*trees: Path) -> dict[str, str]:
    out = {}
    for tree in trees:
        for path in sorted(tree.rglob("*")):
            if path.is_file() and not path.is_symlink():
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _inode(path: Path) -> tuple[int, int]:
    st = path.lstat()
    return st.st_dev, st.st_ino


def _dedupe(*args: str) -> dict:
    proc = subprocess.run([BASELINER, "dedupe", *args, "--json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


@pytest.fixture
def fleet(make_project: MakeProject, tmp_path: Path) -> tuple[Project, Path]:
    """Four copies of one environment under fleet/, each its own files (no link to the cache nor
    to each other), the package cache they came from, and two files changed since install."""
    project = make_project({"fl": spec("fl", **FULL)})
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    for n in range(4):
        env = install_baseline(project, "fl", f"e{n}")
        subprocess.run(["cp", "-a", str(env), str(fleet / f"e{n}")], check=True)  # copies, not links
        subprocess.run(["rm", "-rf", str(env)], check=True)
    site = next((fleet / "e1").glob("lib/python*/site-packages"))
    init = site / "hello_noarch" / "__init__.py"
    init.write_text(init.read_text() + "# changed by hand\n")  # another size
    init3 = next((fleet / "e3").glob("lib/python*/site-packages")) / "hello_noarch" / "__init__.py"
    text = init3.read_bytes()
    assert text.endswith(b"\n")
    init3.write_bytes(text[:-1] + b" ")  # same size, other bytes (still valid Python)
    return project, fleet


def test_dedupe_frees_what_it_predicts_and_changes_no_content(fleet: tuple[Project, Path]) -> None:
    project, root = fleet
    cache = project.package_cache
    before_hashes, before_du = _hashes(root, cache), _du(root, cache)
    site = {n: next((root / f"e{n}").glob("lib/python*/site-packages")) for n in range(4)}
    changed = [site[1] / "hello_noarch" / "__init__.py", site[3] / "hello_noarch" / "__init__.py"]
    changed_inodes = [_inode(p) for p in changed]
    placeholder = [root / f"e{n}" / "share" / "prefixdemo" / "config.txt" for n in range(4)]
    placeholder_inodes = [_inode(p) for p in placeholder]

    dry = _dedupe("--root", str(root), "--cache", str(cache))
    plan = dry["plan"]
    assert _du(root, cache) == before_du and _hashes(root, cache) == before_hashes  # a dry run
    assert plan["links"] > 0 and plan["freed"]["bytes"] > 0
    assert plan["left"]["modified"]["files"] == 2
    assert plan["left"]["placeholder"]["files"] >= 4
    assert plan["environments"] == [str(root / f"e{n}") for n in range(4)]

    done = _dedupe("--root", str(root), "--cache", str(cache), "--yes")
    freed = before_du - _du(root, cache)
    predicted = done["plan"]["freed"]["bytes"]
    assert predicted == plan["freed"]["bytes"]
    assert abs(freed - predicted) <= 0.01 * predicted, (freed, predicted)
    assert done["measured_freed_bytes"] == freed
    copies = _du(root / "e0")
    print(
        f"\ndedupe: fleet+cache {before_du / 1e6:.1f} MB, one env {copies / 1e6:.1f} MB, freed {freed / 1e6:.1f} MB"
    )
    assert freed >= 0.9 * 4 * copies  # every copy onto the cache's, less the per-prefix files
    assert _hashes(root, cache) == before_hashes  # no file's content changed
    assert [_inode(p) for p in changed] == changed_inodes  # changed files are left alone
    assert [_inode(p) for p in placeholder] == placeholder_inodes  # per-prefix files too
    # pip's copies of one wheel are one inode now, and it is the same across environments
    tinyapp = [next(site[n].glob("tinyapp/__init__.py")) for n in range(4)]
    assert len({_inode(p) for p in tinyapp}) == 1
    # conda's: linked onto the package cache's copy, the one conda would link from
    noarch = [site[n] / "hello_noarch" / "data.txt" for n in (0, 2)]
    cached = next(cache.glob("hello-noarch-*/site-packages/hello_noarch/data.txt"), None)
    if cached is not None:
        assert {_inode(p) for p in noarch} == {_inode(cached)}
    for n in range(4):
        run = subprocess.run(
            [
                root / f"e{n}" / "bin/python",
                "-c",
                "import hello_noarch, tinyutil, tinyapp; print(tinyapp.ANSWER)",
            ],
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0 and run.stdout.strip() == "42", run.stderr
    again = _dedupe("--root", str(root), "--cache", str(cache))
    assert again["plan"]["links"] == 0 and again["plan"]["freed"]["bytes"] == 0


def test_nothing_is_linked_across_filesystems_or_owners(fleet: tuple[Project, Path], tmpfs: Path) -> None:
    project, root = fleet
    other = tmpfs
    subprocess.run(["cp", "-a", str(root / "e0"), str(other / "e9")], check=True)
    owned = next((root / "e2").glob("lib/python*/site-packages")) / "tinyapp" / "__init__.py"
    os.chown(owned, 4242, 4242)
    owned_inode = _inode(owned)
    tmpfs_hashes = _hashes(other)
    result = _dedupe(
        "--root", str(root), "--root", str(other), "--cache", str(project.package_cache), "--yes"
    )
    left = result["plan"]["left"]
    assert left["cross_device"]["files"] > 0 and left["cross_device"]["bytes"] > 0
    assert left["cross_owner"]["files"] >= 1
    assert _inode(owned) == owned_inode and owned.stat().st_uid == 4242
    assert result["result"]["skipped"] == []  # no link was even tried across devices (EXDEV)
    assert _hashes(other) == tmpfs_hashes


def test_killed_dedupes_leave_every_file_whole(fleet: tuple[Project, Path]) -> None:
    project, root = fleet
    cache = project.package_cache
    pristine = root.parent / "pristine"
    subprocess.run(["cp", "-a", str(root), str(pristine)], check=True)
    before = _hashes(root)
    argv = [BASELINER, "dedupe", "--root", str(root), "--cache", str(cache), "--yes"]
    start = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True)
    duration = time.monotonic() - start
    trials = 6
    for seed in range(trials):
        subprocess.run(["rm", "-rf", str(root)], check=True)
        subprocess.run(["cp", "-a", str(pristine), str(root)], check=True)
        proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        time.sleep(random.Random(seed).uniform(0.05, duration))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        after = {p: h for p, h in _hashes(root).items() if SCRATCH_PREFIX not in p}
        assert after == before, f"trial {seed}: a file went missing or changed"
        finish = subprocess.run(argv, capture_output=True, text=True)
        assert finish.returncode == 0, finish.stderr
        assert not [p for p in root.rglob(f"{SCRATCH_PREFIX}*")], "the next run removes the dead run's links"
        assert _hashes(root) == before
    print(f"\ndedupe kill trials: {trials}, every file whole (dedupe took {duration:.1f} s uninterrupted)")
