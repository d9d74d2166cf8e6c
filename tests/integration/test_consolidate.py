"""`consolidate` on a fleet of real prefixes: four environments of one cluster, each a full copy
(as `conda create --copy` or a hand unpack leaves them), with pip installs of the same wheels, a
file changed since install, a file no package owns and files rewritten per prefix. The fixture
channel's canonical URLs (conda.anaconda.org/fixture) are unreachable here, so every install
is offline from the package cache, as on a server without a channel.

Checked with `du -sb`, with a snapshot of every path (type, bytes, mode, link target), with the
environments' own python, and with kill -9 at random moments."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from baseliner.audit.inventory import parse_explicit
from baseliner.audit.rebuild import conda_key, conda_meta, pip_dists
from baseliner.config import Project
from baseliner.lock import lock_baseline, read_lock

from ..conftest import FULL, MakeProject, install_baseline, spec

BASELINER = str(Path(sys.executable).with_name("baseliner"))
MEMBERS = {"e0": "fl", "e1": "fl", "e2": "fl-foo1", "e3": "fl-foo2"}
THRESHOLD = "0.6"


def _du(*trees: Path) -> int:
    out = subprocess.run(["du", "-sbc", *map(str, trees)], capture_output=True, text=True, check=True)
    return int(out.stdout.splitlines()[-1].split()[0])


def _snapshot(tree: Path, meta: bool = False, inodes: bool = False) -> dict[str, tuple]:
    """Every path below `tree`: type, mode, bytes' sha256 or link target (conda-meta's JSON
    records only with `meta`; inode numbers only with `inodes`)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, tree)
            if not meta and rel.startswith("conda-meta/") and name.endswith(".json"):
                continue
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                what: tuple = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                what = ("dir", stat.S_IMODE(st.st_mode))
            else:
                what = ("file", stat.S_IMODE(st.st_mode), hashlib.sha256(Path(path).read_bytes()).hexdigest())
            out[rel] = (*what, st.st_ino) if inodes else what
    return out


def _works(prefix: Path) -> None:
    run = subprocess.run(
        [
            prefix / "bin/python",
            "-B",
            "-c",
            "import hello_noarch, tinyutil, tinyapp; print(tinyapp.ANSWER)",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0 and run.stdout.strip() == "42", f"{prefix}: {run.stderr}"
    config = subprocess.run([prefix / "bin/prefixdemo-config"], capture_output=True, text=True)
    assert config.stdout.strip() == f"data_dir={prefix}/share/prefixdemo", config.stdout


def _consolidate(*args: str, check: bool = True) -> dict:
    proc = subprocess.run([BASELINER, "consolidate", *args, "--json"], capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stderr
        return dict(json.loads(proc.stdout))
    return {"returncode": proc.returncode, "stderr": proc.stderr}


@pytest.fixture
def fleet(make_project: MakeProject, tmp_path: Path) -> tuple[Project, Path]:
    """envs/e0..e3: e0 and e1 the same packages, e2 and e3 with other libfoo versions (and e3 one
    more package); each a full copy that shares no file with the cache or another env."""
    project = make_project(
        {
            "fl": spec("fl", **FULL),
            "fl-foo1": spec("fl-foo1", conda=[*FULL["conda"], "libfoo 1.*"], pip=FULL["pip"]),
            "fl-foo2": spec("fl-foo2", conda=[*FULL["conda"], "libfoo 2.*", "activatedemo"], pip=FULL["pip"]),
        }
    )
    root = tmp_path / "envs"
    for env, baseline in MEMBERS.items():
        prefix = install_baseline(project, baseline, target=root / env)
        subprocess.run(["cp", "-a", str(prefix), f"{prefix}.copy"], check=True)  # copies, not links
        subprocess.run(["rm", "-rf", str(prefix)], check=True)
        os.rename(f"{prefix}.copy", prefix)
    site = next((root / "e1").glob("lib/python*/site-packages"))
    init = site / "hello_noarch" / "__init__.py"
    init.write_text(init.read_text() + "ANSWER_BY_HAND = 1\n")  # changed since install
    init3 = next((root / "e3").glob("lib/python*/site-packages")) / "hello_noarch" / "__init__.py"
    text = init3.read_bytes()
    init3.write_bytes(text[:-1] + b" ")  # same size, other bytes (still valid Python)
    kernel = root / "e0" / "share" / "jupyter" / "kernels" / "e0" / "kernel.json"
    kernel.parent.mkdir(parents=True)
    kernel.write_text('{"display_name": "e0"}\n')  # no package owns it
    return project, root


def _args(project: Project, root: Path) -> list[str]:
    return [
        "--cluster",
        "0",
        "--root",
        str(root),
        "--cache",
        str(project.package_cache),
        "--threshold",
        THRESHOLD,
    ]


def test_consolidate_rebuilds_each_member_from_the_cache_and_frees_what_it_measures(
    fleet: tuple[Project, Path], tmp_path: Path
) -> None:
    project, root = fleet
    cache = project.package_cache
    members = [root / m for m in MEMBERS]
    before = {m: _snapshot(m) for m in members}
    records = {m: {conda_key(r) for r in conda_meta(m)} for m in members}
    pips = {m: pip_dists(m) for m in members}
    before_du = _du(root, cache)
    out = tmp_path / "proposal"

    dry = _consolidate(*_args(project, root), "--out", str(out))
    assert _du(root, cache) == before_du and {m: _snapshot(m) for m in members} == before  # a dry run
    plan = dry["plan"]
    assert plan["members"] == [str(m) for m in members]
    assert sorted(p.rsplit("-", 2)[0] for p in plan["baseline_packages"]) == [
        "hello-noarch",
        "prefixdemo",
        "python",
    ]
    assert plan["deltas"][str(root / "e2")] == ["libfoo-1.0-h0_0"]
    assert plan["deltas"][str(root / "e3")] == ["activatedemo-1.0-h0_0", "libfoo-2.0-h0_0"]
    assert plan["missing"] == {} and plan["in_use"] == {}
    # The locks are the members' exact records, read back by the audit's @EXPLICIT parser.
    for m in members:
        locked = parse_explicit(
            out / "locks" / f"{m.name}.txt", (out / "locks" / f"{m.name}.txt").read_text()
        )
        assert {(p.name, p.version, p.build) for p in locked.packages} == {k[:3] for k in records[m]}
    # The proposed baseline is a real spec: baseliner locks it from the fixture channel to the same packages.
    shutil.copy(out / "baselines" / "cluster-0-base.yaml", project.root / "baselines")
    proposed = Project.load(project.root).repo().resolve("cluster-0-base")
    lock_baseline(proposed, project.mirrors(), project.build_dir, project.pip_index)
    assert {
        f"{r.name.normalized}-{r.version}-{r.build}" for r in read_lock(proposed, "linux-64").records
    } == set(plan["baseline_packages"])
    overlay = (out / "overlays" / "e3" / "overlay.yaml").read_text()
    assert "libfoo ==2.0 h0_0" in overlay and "activatedemo ==1.0 h0_0" in overlay

    done = _consolidate(*_args(project, root), "--out", str(out), "--yes")
    result = done["result"]
    assert [m["state"] for m in result["members"]] == ["swapped"] * 4
    for m in members:
        assert _snapshot(m) == before[m], f"{m.name}: a path changed"
        assert {conda_key(r) for r in conda_meta(m)} == records[m]
        assert pip_dists(m) == pips[m]
        _works(m)
    # conda's files are the cache's now; pip's, the hand-changed and the unowned ones are copies.
    os_py = [next(m.glob("lib/python3.*/os.py")) for m in members]
    cached = next(cache.glob("python-*/lib/python3.*/os.py"))
    assert {p.stat().st_ino for p in os_py} == {cached.stat().st_ino}
    changed = next((root / "e1").glob("lib/python*/site-packages/hello_noarch/__init__.py"))
    assert "ANSWER_BY_HAND" in changed.read_text() and changed.stat().st_nlink == 1
    reasons = result["members"][1]["carried"]["reasons"]
    assert reasons.get("changed since install") == 1 and reasons.get("pip", 0) > 0
    assert result["members"][3]["carried"]["reasons"].get("changed since install") == 1  # same size
    assert result["members"][0]["carried"]["reasons"].get("no package records it", 0) >= 1
    baseline = Path(plan["baseline"]["path"])
    assert {r["name"] for r in conda_meta(baseline)} == {"hello-noarch", "prefixdemo", "python"}

    finished = _consolidate("--root", str(root), "--finish")
    assert sorted(finished["finished"]) == [str(m) for m in members]
    freed = before_du - _du(root, cache)
    measured = result["measured_freed_bytes"]
    print(
        f"\nconsolidate: fleet+cache {before_du / 1e6:.1f} MB, freed {freed / 1e6:.1f} MB "
        f"(measured at the swap {measured / 1e6:.1f} MB, the audit predicted {done['predicted_freed_bytes'] / 1e6:.1f} MB)"
    )
    assert abs(freed - measured) <= 0.01 * measured, (freed, measured)
    # The audit's figure counts packages, not the files each env keeps its own copy of (pip's,
    # per-prefix, changed): a few per cent apart at most.
    assert abs(freed - done["predicted_freed_bytes"]) <= 0.05 * freed, (freed, done["predicted_freed_bytes"])
    assert freed >= 0.9 * 3 * _du(root / "e0")  # three of the four copies at least
    assert not (root / ".baseliner-undo").exists()
    for m in members:
        _works(m)


def test_undo_puts_back_the_very_same_trees(fleet: tuple[Project, Path]) -> None:
    project, root = fleet
    members = [root / m for m in MEMBERS]
    before = {m: _snapshot(m, meta=True, inodes=True) for m in members}
    _consolidate(*_args(project, root), "--out", str(root.parent / "proposal"), "--yes")
    assert all(_snapshot(m, meta=True, inodes=True) != before[m] for m in members)
    restored = _consolidate("--root", str(root), "--undo")
    assert sorted(restored["restored"]) == sorted(str(p) for p in [*members, root / "cluster-0-base"])
    assert {m: _snapshot(m, meta=True, inodes=True) for m in members} == before
    assert sorted(p.name for p in root.iterdir()) == list(MEMBERS)


def test_refuses_members_in_use_and_names_missing_packages(
    fleet: tuple[Project, Path], tmp_path: Path
) -> None:
    project, root = fleet
    out = ["--out", str(tmp_path / "proposal")]
    before = {m: _snapshot(root / m) for m in MEMBERS}
    sleeper = subprocess.Popen([root / "e1" / "bin" / "python", "-c", "import time; time.sleep(120)"])
    try:
        time.sleep(0.5)
        refused = _consolidate(*_args(project, root), *out, "--yes", check=False)
        assert refused["returncode"] == 19, refused
        assert "in use" in refused["stderr"] and str(root / "e1") in refused["stderr"]
        assert f"pid {sleeper.pid}" in refused["stderr"] and "--force" in refused["stderr"]
    finally:
        sleeper.kill()
        sleeper.wait()
    assert {m: _snapshot(root / m) for m in MEMBERS} == before
    (project.package_cache / "libfoo-2.0-h0_0").rename(tmp_path / "libfoo-2.0-h0_0")
    missing = _consolidate(*_args(project, root), *out, check=False)
    assert missing["returncode"] == 19
    assert "libfoo-2.0-h0_0 (needed by " + str(root / "e3") in missing["stderr"], missing["stderr"]
    assert "--cache" in missing["stderr"]
    other = tmp_path / "other-pkgs"
    other.mkdir()
    (tmp_path / "libfoo-2.0-h0_0").rename(other / "libfoo-2.0-h0_0")
    done = _consolidate(*_args(project, root), "--cache", str(other), *out, "--yes")
    assert done["result"]["linked_into_cache"] == ["libfoo-2.0-h0_0"]
    assert {m: _snapshot(root / m) for m in MEMBERS} == before
    for m in MEMBERS:
        _works(root / m)


def test_killed_consolidations_leave_every_member_working(
    fleet: tuple[Project, Path], tmp_path: Path
) -> None:
    project, root = fleet
    members = [root / m for m in MEMBERS]
    pristine = {m: _snapshot(m, meta=True, inodes=True) for m in members}
    contents = {m: _snapshot(m) for m in members}
    argv = [BASELINER, "consolidate", *_args(project, root), "--out", str(tmp_path / "proposal"), "--yes"]
    start = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True)
    duration = time.monotonic() - start
    _consolidate("--root", str(root), "--undo")
    assert {m: _snapshot(m, meta=True, inodes=True) for m in members} == pristine
    trials = 5
    for seed in range(trials):
        proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        time.sleep(random.Random(seed).uniform(0.5, duration))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for m in members:
            assert _snapshot(m) == contents[m], f"trial {seed}: {m.name} changed"
            _works(m)
        if seed % 2:  # resume, then undo; or undo the half-done run at once
            subprocess.run(argv, check=True, capture_output=True)
        _consolidate("--root", str(root), "--undo")
        assert {m: _snapshot(m, meta=True, inodes=True) for m in members} == pristine, f"trial {seed}"
    print(f"\nconsolidate kill trials: {trials}, every member working (a run took {duration:.1f} s)")


def test_a_member_on_another_filesystem_is_rebuilt_there(
    fleet: tuple[Project, Path], tmp_path: Path, tmpfs: Path
) -> None:
    project, root = fleet
    other = tmpfs
    subprocess.run(["rm", "-rf", str(root / "e2"), str(root / "e3")], check=True)
    install_baseline(project, "fl", target=other / "e9")  # linked from the cache cannot be: copied
    before = {p: _snapshot(p) for p in (root / "e0", root / "e1", other / "e9")}
    args = [
        "--cluster",
        "0",
        "--root",
        str(root),
        "--root",
        str(other),
        "--cache",
        str(project.package_cache),
    ]
    done = _consolidate(*args, "--out", str(tmp_path / "proposal"), "--yes")
    assert [m["state"] for m in done["result"]["members"]] == ["swapped"] * 3
    assert (other / ".baseliner-undo" / "e9").is_dir()  # the undo copy stays on its filesystem
    for prefix, snapshot in before.items():
        assert _snapshot(prefix) == snapshot
        _works(prefix)
    assert os.stat(other / "e9").st_dev != os.stat(project.package_cache).st_dev
    _consolidate("--root", str(root), "--root", str(other), "--finish")
    assert not (other / ".baseliner-undo").exists()
    _works(other / "e9")
