"""Builds that survive kills, concurrency, tampering and a full disk — each shown by doing it.

The builds run as real `baseliner build-baseline --no-image` processes against the fixture
channel (file://) and the local wheel index (HTTP on 127.0.0.1); the image path is covered by
the Docker tests."""

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
from typing import Any

import pytest

from baseliner.concurrency import SCRATCH_PREFIX
from baseliner.config import Project
from baseliner.errors import DiskFullError

from ..conftest import MakeProject, mounted_tmpfs, spec

BASELINER = str(Path(sys.executable).with_name("baseliner"))
KILL_TRIALS = 20


def _build(project: Project, name: str, *extra: str, **kw: object) -> subprocess.Popen[str]:
    env = {**os.environ, "BASELINER_ROOT": str(project.root)}
    return subprocess.Popen(
        [BASELINER, "build-baseline", name, "--no-image", *extra],
        env=env,
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )  # type: ignore[call-overload]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_consistent(project: Project, name: str) -> None:
    """Whatever a killed build left is either absent or complete and self-consistent."""
    out = project.dist_dir / name / "1.0"
    manifest = out / "manifest.json"
    if manifest.exists():
        data = json.loads(manifest.read_text())  # never truncated
        tarball = out / data["tarball"]["name"]
        assert tarball.is_file() and _sha(tarball) == data["tarball"]["sha256"]
        assert (out / f"{tarball.name}.sha256").read_text().split()[0] == data["tarball"]["sha256"]
    # the package cache: every extracted package matches its paths.json, or py-rattler will redo it
    for pkg in project.package_cache.glob("*/info/paths.json"):
        root = pkg.parent.parent
        if not (project.package_cache / f"{root.name}.lock").is_file():
            continue
        for entry in json.loads(pkg.read_text())["paths"]:
            if entry.get("path_type", "hardlink") == "hardlink" and entry.get("sha256"):
                target = root / entry["_path"]
                assert target.is_file() and _sha(target) == entry["sha256"], f"corrupt cache entry {target}"


@pytest.fixture
def project(make_project: MakeProject) -> Project:
    return make_project(
        {
            "rel": spec("rel", conda=["python 3.*", "hello-noarch", "prefixdemo"], pip=["tinyapp"]),
            **{
                f"par{i}": spec(f"par{i}", conda=["python 3.*", "libfoo" if i % 2 else "needs-old-foo"])
                for i in range(6)
            },
        }
    )


def test_killed_builds_leave_nothing_partial_and_the_next_build_matches(
    project: Project, tmp_path: Path
) -> None:
    # The reference: an uninterrupted build in a copy of the repo.
    start = time.monotonic()
    ref = _build(project, "rel")
    assert ref.wait(timeout=300) == 0, ref.stderr.read() if ref.stderr else ""
    duration = time.monotonic() - start
    out = project.dist_dir / "rel" / "1.0"
    reference = _sha(out / "rel-1.0-linux-64.tar.gz")
    survived = 0
    for seed in range(KILL_TRIALS):
        # Start from nothing built so every step can be hit: env, pip, pack, manifest.
        for path in (project.dist_dir, project.build_dir / "envs"):
            subprocess.run(["rm", "-rf", str(path)], check=True)
        if seed % 4 == 0:
            subprocess.run(
                ["rm", "-rf", str(project.package_cache)], check=True
            )  # also hit downloads/extraction
        proc = _build(project, "rel", start_new_session=True)
        time.sleep(random.Random(seed).uniform(0.05, duration))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _check_consistent(project, "rel")
        again = _build(project, "rel")
        assert again.wait(timeout=300) == 0, again.stderr.read() if again.stderr else ""
        assert _sha(out / "rel-1.0-linux-64.tar.gz") == reference
        assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
        assert not list((project.build_dir / "envs").glob(f"{SCRATCH_PREFIX}*"))
        survived += 1
    assert survived == KILL_TRIALS
    print(
        f"\nkill trials: {KILL_TRIALS} run, {survived} survived (build took {duration:.1f} s uninterrupted)"
    )


def test_eight_concurrent_builds_share_cache_and_output(project: Project) -> None:
    names = ["par0", "par1", "par2", "par3", "par4", "par5", "par0", "par1"]  # two baselines twice
    procs = [_build(project, n, "--json") for n in names]
    outputs = [p.communicate(timeout=600) for p in procs]
    codes = [p.returncode for p in procs]
    assert codes == [0] * 8, "\n".join(e[-1500:] for (_, e), c in zip(outputs, codes, strict=True) if c)
    results = [json.loads(out)[0] for out, _ in outputs]
    for name in ("par0", "par1"):
        # Of the two builds of one baseline started at once, one built it; the other waited for
        # the build lock and then found everything fresh: no step ran.
        pair = [r for r in results if r["name"] == name]
        assert sorted(r["rebuilt"] for r in pair) == [False, True], pair
        waited = next(r for r in pair if not r["rebuilt"])
        assert [s["name"] for s in waited["steps"]] == ["render"], waited["steps"]
    digests = {}
    for name in set(names):
        _check_consistent(project, name)
        digests[name] = _sha(project.dist_dir / name / "1.0" / f"{name}-1.0-linux-64.tar.gz")
    # the same baseline built twice at once yields one consistent artifact: rebuilding changes nothing
    rerun = _build(project, "par0")
    assert rerun.wait(timeout=300) == 0
    assert _sha(project.dist_dir / "par0" / "1.0" / "par0-1.0-linux-64.tar.gz") == digests["par0"]
    print(f"\nparallel builds: {len(names)} run at once, {codes.count(0)} succeeded")


def test_another_build_holding_the_lock_is_named(project: Project) -> None:
    from baseliner.build import BuildOptions, BuildPaths, build_baseline
    from baseliner.concurrency import Locked, hold

    baseline = project.repo().resolve("par2")
    stem = BuildPaths(project, baseline, "linux-64").stem
    with hold(project.build_dir / "locks" / f"{stem}.lock", "test"), pytest.raises(Locked) as info:
        build_baseline(project, "par2", BuildOptions(image=False, lock_timeout=0.5))
    assert "another build holds the build of par2 1.0 (linux-64)" in info.value.render()


def test_full_disk_fails_clearly_and_poisons_nothing(project: Project, tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "small", "6m") as small:
        config = project.root / "baseliner.yaml"
        config.write_text(config.read_text() + f"dist: {small}\n")
        proc = _build(project, "rel")
        assert proc.wait(timeout=300) == DiskFullError.exit_code
        stderr = proc.stderr.read() if proc.stderr else ""
        assert "out of disk space while building rel" in stderr and "Traceback" not in stderr
        assert not [p for p in small.rglob("*") if p.is_file()]  # no partial artifact
        config.write_text(config.read_text().replace(f"dist: {small}\n", ""))
        again = _build(project, "rel")
        assert again.wait(timeout=300) == 0, again.stderr.read() if again.stderr else ""
        _check_consistent(project, "rel")


# --- interrupted work heals: each long operation killed at random moments, then run once ------

HEAL_TRIALS = 10


def _du(path: Path) -> int:
    """Bytes on disk as `du -sb` counts them (the outside oracle)."""
    return int(
        subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]
    )


def _ours(root: Path) -> list[str]:
    """Every scratch entry of ours anywhere under `root`."""
    return sorted(str(p.relative_to(root)) for p in root.rglob(f"{SCRATCH_PREFIX}*")) if root.exists() else []


def _run(argv: list[str], project: Project, **kw: object) -> subprocess.Popen[str]:
    env = {**os.environ, "BASELINER_ROOT": str(project.root)}
    return subprocess.Popen(
        argv, env=env, cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )  # type: ignore[call-overload]


def _finish(argv: list[str], project: Project) -> float:
    start = time.monotonic()
    proc = _run(argv, project)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return time.monotonic() - start


def _kill_trials(
    project: Project, argv: list[str], duration: float, reset: Any, check: Any
) -> dict[str, int]:
    """HEAL_TRIALS times: start `argv`, SIGKILL it at a random moment, count what it left, run it
    again to the end, then `check()`. Returns the kinds of leftover seen before healing."""
    seen: dict[str, int] = {}
    for seed in range(HEAL_TRIALS):
        reset()
        proc = _run(argv, project, start_new_session=True)
        time.sleep(random.Random(seed).uniform(0.02, duration))
        os.killpg(proc.pid, signal.SIGKILL)
        if proc.wait() == 0:  # it finished before the kill: nothing to heal
            seen["finished first"] = seen.get("finished first", 0) + 1
        else:
            for name in _ours(project.root.parent):
                kind = Path(name).name[len(SCRATCH_PREFIX) :].split(".")[0].split("-")[0]
                seen[kind] = seen.get(kind, 0) + 1
            _finish(argv, project)
        check()
    return seen


@pytest.fixture
def built_rel(project: Project) -> Project:
    _finish([BASELINER, "build-baseline", "rel", "--no-image"], project)
    return project


def test_killed_unpacks_heal_on_the_next_unpack(built_rel: Project, tmp_path: Path) -> None:
    project = built_rel
    tarball = project.dist_dir / "rel" / "1.0" / "rel-1.0-linux-64.tar.gz"
    parent = tmp_path / "offline"
    dest = parent / "rel-env"
    argv = [BASELINER, "unpack", str(tarball), str(dest)]
    duration = _finish(argv, project)
    reference = _du(parent)
    subprocess.run(["rm", "-rf", str(dest)], check=True)

    def check() -> None:
        assert _ours(parent) == []
        assert _du(parent) == reference
        assert subprocess.run([str(dest / "bin" / "python"), "-c", "import tinyapp"]).returncode == 0

    seen = _kill_trials(
        project, argv, duration, lambda: subprocess.run(["rm", "-rf", str(dest)], check=True), check
    )
    print(f"\nunpack: {HEAL_TRIALS} kills, leftovers before healing: {seen or 'none'}")


def test_killed_cache_fills_heal_and_verify_passes(built_rel: Project, tmp_path: Path) -> None:
    project = built_rel
    store, cache = tmp_path / "store", tmp_path / "shared-pkgs"
    _finish([BASELINER, "publish", "rel", "--store", str(store)], project)
    argv = [BASELINER, "cache", "--directory", str(cache), "--store", str(store)]
    duration = _finish(argv, project)
    reference = _du(cache)
    lock_size = max(p.stat().st_size for p in cache.glob("*.lock"))

    def check() -> None:
        assert _ours(cache) == []
        assert abs(_du(cache) - reference) <= lock_size
        _finish([BASELINER, "cache.verify", "--directory", str(cache)], project)

    seen = _kill_trials(
        project, argv, duration, lambda: subprocess.run(["rm", "-rf", str(cache)], check=True), check
    )
    print(f"\ncache fill: {HEAL_TRIALS} kills, leftovers before healing: {seen or 'none'}")


def test_killed_packs_heal_and_give_the_same_bytes(built_rel: Project, tmp_path: Path) -> None:
    project = built_rel
    env = next(p for p in (project.build_dir / "envs").iterdir() if p.name.startswith("rel"))
    out_dir = tmp_path / "packed"
    out = out_dir / "rel.tar.gz"
    code = "import sys; from pathlib import Path; from baseliner.pack import pack_env; pack_env(Path(sys.argv[1]), Path(sys.argv[2]))"
    argv = [sys.executable, "-c", code, str(env), str(out)]
    duration = _finish(argv, project)
    reference, size = _sha(out), _du(out_dir)

    def check() -> None:
        assert _ours(out_dir) == [] and _sha(out) == reference and _du(out_dir) == size

    seen = _kill_trials(
        project, argv, duration, lambda: subprocess.run(["rm", "-rf", str(out_dir)], check=True), check
    )
    print(f"\npack: {HEAL_TRIALS} kills, leftovers before healing: {seen or 'none'}")


def test_killed_publishes_heal_and_the_store_is_whole(built_rel: Project, tmp_path: Path) -> None:
    from baseliner.store import Store

    project = built_rel
    store = tmp_path / "store"
    argv = [BASELINER, "publish", "rel", "--store", str(store)]
    duration = _finish(argv, project)
    reference = _du(store)

    def check() -> None:
        assert _ours(store) == []
        assert _du(store) == reference
        assert Store(str(store)).manifest("rel", "1.0")["lock_hash"]

    seen = _kill_trials(
        project, argv, duration, lambda: subprocess.run(["rm", "-rf", str(store)], check=True), check
    )
    print(f"\npublish: {HEAL_TRIALS} kills, leftovers before healing: {seen or 'none'}")


def test_killed_pulls_from_a_registry_leave_no_half_written_file(
    built_rel: Project, tmp_path: Path, registry: str
) -> None:
    project = built_rel
    location = f"oci://{registry}/org"
    _finish([BASELINER, "publish", "rel", "--store", location], project)
    dest = tmp_path / "pulled"
    argv = [BASELINER, "pull", "rel@1.0", "--store", location, "--dest", str(dest)]
    duration = _finish(argv, project)
    tarball = dest / "rel-1.0-linux-64.tar.gz"
    reference = _sha(tarball)

    def check() -> None:
        assert _ours(dest) == []
        assert sorted(p.name for p in dest.iterdir()) == [tarball.name, f"{tarball.name}.sha256"]
        assert _sha(tarball) == reference

    import tempfile

    def temp_leftovers() -> set[str]:
        return {p.name for p in Path(tempfile.gettempdir()).iterdir() if p.name.startswith("baseliner")}

    before = temp_leftovers()
    killed = 0
    for seed in range(HEAL_TRIALS):
        subprocess.run(["rm", "-rf", str(dest)], check=True)
        proc = _run(argv, project, start_new_session=True)
        time.sleep(random.Random(seed).uniform(0.02, duration))
        os.killpg(proc.pid, signal.SIGKILL)
        if proc.wait() != 0:
            killed += 1
            # what the killed pull left at its final names is whole: absent, or the published bytes
            if tarball.exists():
                assert _sha(tarball) == reference
            _finish(argv, project)  # the next pull sweeps the scratch and succeeds
        check()
    assert temp_leftovers() == before  # nothing left in /tmp by the killed pulls either
    print(f"\npull: {HEAL_TRIALS} trials, {killed} killed before the end")
