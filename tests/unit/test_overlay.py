"""Overlays on a published fixture baseline: pinned delta solve, conflicts, env, delta tarball, drift."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from baseliner.build import BuildOptions, build_baseline
from baseliner.config import Project
from baseliner.envs import conda_records
from baseliner.errors import LockError, PackError
from baseliner.lock import LockPaths
from baseliner.overlay import Base, Overlay, drift, load_overlay, lock_overlay, resolve_base
from baseliner.overlay_build import apply_delta, build_overlay
from baseliner.pack import sha256_file, unpack
from baseliner.store import Store, StoreError, publish

from ..conftest import MakeProject, spec

BASE = spec("obase", conda=["python 3.*", "hello-noarch", "needs-old-foo"], pip=["tinyutil"])


@pytest.fixture
def published(make_project: MakeProject) -> tuple[Project, Store]:
    project = make_project({"obase": BASE})
    result = build_baseline(project, "obase", BuildOptions(image=False))
    store = Store(project.store_location)
    baseline = project.repo().resolve("obase")
    from baseliner.lock import lock_files

    publish(store, result.manifest, lock_files(baseline.path))
    return project, store


NO_IMAGE = BuildOptions(image=False)


def _sha(path: Path | None) -> str:
    assert path is not None
    return sha256_file(path)


def _locked(project: Project, store: Store, tmp_path: Path) -> tuple[Overlay, Base]:
    """The `prefixdemo` overlay on obase@1.0, locked."""
    overlay = load_overlay(_overlay(tmp_path, conda=["prefixdemo"]))
    base = resolve_base(overlay, store, tmp_path / "bases")
    lock_overlay(overlay, base, project.mirrors(), project.build_dir)
    return overlay, base


def _overlay(tmp_path: Path, **fields: Any) -> Path:
    data = {"schema_version": 1, "name": "proj-x", "extends": "obase@1.0", **fields}
    path = tmp_path / "proj" / "overlay.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_store_index_lists_the_published_version(published: tuple[Project, Store]) -> None:
    project, store = published
    index = store.index()
    entry = index["baselines"]["obase"]["1.0"]
    manifest = store.manifest("obase", "1.0")
    assert {"obase.lock", "sbom.cdx.json", "obase-1.0-linux-64.tar.gz"} <= set(manifest["files"])
    # The hashes in the index and the manifest are those of the bytes the store holds.
    version_dir = Path(project.store_location) / "obase" / "1.0"
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((version_dir / name).read_bytes()).hexdigest() == digest, name
    names = sorted(p.name for p in version_dir.iterdir())
    locks = ["obase.lock", *(n for n in names if ".explicit-" in n), *(n for n in names if ".pip-" in n)]
    recomputed = hashlib.sha256()
    for name in locks:  # the lock, then the @EXPLICIT files, then the pip locks: names and bytes
        recomputed.update(name.encode() + b"\0" + (version_dir / name).read_bytes() + b"\0")
    assert entry["lock_hash"] == manifest["lock_hash"] == recomputed.hexdigest(), locks
    sbom = store.read_json("obase/1.0/sbom.cdx.json")
    assert {c["name"] for c in sbom["components"]} >= {"python", "hello-noarch", "libfoo", "tinyutil"}
    with pytest.raises(StoreError, match="not published"):
        store.manifest("obase", "9.9")
    (Path(project.store_location) / "obase/1.0/manifest.json").write_text('{"trunc')
    with pytest.raises(StoreError, match="corrupt"):
        store.manifest("obase", "1.0")


def test_delta_is_solved_with_the_base_pinned(published: tuple[Project, Store], tmp_path: Path) -> None:
    project, store = published
    overlay = load_overlay(_overlay(tmp_path, conda=["prefixdemo"], pip=["tinyapp"]))
    base = resolve_base(overlay, store, tmp_path / "bases")
    locked = lock_overlay(overlay, base, project.mirrors(), project.build_dir, project.pip_index)
    assert locked.layered
    assert sorted(str(r.name.normalized) for r in locked.records["linux-64"]) == ["prefixdemo"]
    pip = overlay.pip_path("linux-64").read_text()
    assert "tinyapp==0.5.0" in pip and "tinyutil" not in pip  # tinyutil is the base's
    head = overlay.lock_path.read_text()
    assert f"# baseliner-base-lock-hash: {base.lock_hash}" in head and "# baseliner-layered: true" in head


def test_conflict_with_the_base_is_refused_naming_the_package(
    published: tuple[Project, Store], tmp_path: Path
) -> None:
    project, store = published
    overlay = load_overlay(_overlay(tmp_path, conda=["libfoo >=2"]))
    base = resolve_base(overlay, store, tmp_path / "bases")
    with pytest.raises(LockError) as info:
        lock_overlay(overlay, base, project.mirrors(), project.build_dir)
    text = info.value.render()
    assert "would change its base obase@1.0" in text
    assert "libfoo: base obase@1.0 has 1.0 (h0_0), the overlay needs 'libfoo >=2'" in text
    assert "--allow-base-changes" in text


def test_overlay_env_delta_tarball_and_apply(published: tuple[Project, Store], tmp_path: Path) -> None:
    project, store = published
    overlay = load_overlay(_overlay(tmp_path, conda=["prefixdemo"], pip=["tinyapp"]))
    base = resolve_base(overlay, store, tmp_path / "bases")
    lock_overlay(overlay, base, project.mirrors(), project.build_dir, project.pip_index)
    built = build_overlay(project, overlay, base, NO_IMAGE)
    assert built.layered
    # The environment's new bytes are about the delta's: base files share inodes with the base env.
    base_env = project.build_dir / "envs" / "obase-1.0-linux-64"
    seen = {os.stat(p).st_ino for p in _files(base_env)} | {
        os.stat(p).st_ino for p in _files(project.package_cache)
    }
    seen |= {os.stat(p).st_ino for p in _files(project.build_dir / "uv-cache")}
    new = {
        p.relative_to(built.env).as_posix(): os.lstat(p).st_size
        for p in _files(built.env)
        if os.stat(p).st_ino not in seen
    }
    # Files holding the prefix must be per-environment copies (conda does the same); all else is shared.
    per_prefix = {
        e["_path"]
        for r in conda_records(base_env)
        for e in r["paths_data"]["paths"]
        if e.get("prefix_placeholder")
    }
    extra = {
        p: n
        for p, n in new.items()
        if p not in built.delta_files and p not in per_prefix and not p.startswith("conda-meta/")
    }
    assert sum(extra.values()) <= 16 * 1024, sorted(extra.items(), key=lambda kv: -kv[1])[:3]
    assert sum(n for p, n in new.items() if p in built.delta_files) <= 1.2 * built.delta_bytes
    assert any(f.startswith("bin/prefixdemo") for f in built.delta_files)
    assert not any("hello_noarch" in f or "tinyutil" in f for f in built.delta_files)
    # Unpack the base somewhere new, apply the delta: both parts work and prefixes are rewritten.
    base_tar = Path(project.store_location) / "obase/1.0/obase-1.0-linux-64.tar.gz"
    target = unpack(base_tar, tmp_path / "elsewhere" / "env")
    apply_delta(built.delta, target)
    out = subprocess.run(
        [target / "bin/python", "-c", "import hello_noarch, tinyutil, tinyapp; print(tinyapp.ANSWER)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "42"
    assert subprocess.run([target / "bin/prefixdemo"], capture_output=True, text=True).stdout.strip() == str(
        target
    )
    assert (target / "share/prefixdemo/config.txt").read_text() == f"data_dir={target}/share/prefixdemo\n"
    assert str(built.env).encode() not in (target / "bin/prefixdemo").read_bytes()


def test_delta_is_refused_on_a_different_base(published: tuple[Project, Store], tmp_path: Path) -> None:
    project, store = published
    overlay, base = _locked(project, store, tmp_path)
    built = build_overlay(project, overlay, base, NO_IMAGE)
    target = unpack(Path(project.store_location) / "obase/1.0/obase-1.0-linux-64.tar.gz", tmp_path / "other")
    marker = target / "etc/baseliner/baseline.json"
    data = json.loads(marker.read_text())
    marker.write_text(json.dumps({**data, "lock_hash": "0" * 64, "version": "2.0"}))
    with pytest.raises(PackError, match="built on another base"):
        apply_delta(built.delta, target)
    assert not (target / "bin/prefixdemo").exists()


def test_drift_reports_added_removed_and_upgraded(published: tuple[Project, Store], tmp_path: Path) -> None:
    project, store = published
    overlay = load_overlay(_overlay(tmp_path))
    base = resolve_base(overlay, store, tmp_path / "bases")
    env = unpack(Path(project.store_location) / "obase/1.0/obase-1.0-linux-64.tar.gz", tmp_path / "copy")
    assert drift(env, base).clean
    meta = env / "conda-meta"
    (next(meta.glob("hello-noarch-*.json"))).unlink()  # removed
    libfoo = next(meta.glob("libfoo-*.json"))
    record = json.loads(libfoo.read_text())
    libfoo.unlink()
    (meta / "libfoo-2.0-h0_0.json").write_text(json.dumps({**record, "version": "2.0"}))  # upgraded
    (meta / "prefixdemo-1.0-h0_0.json").write_text(
        json.dumps({"name": "prefixdemo", "version": "1.0", "build": "h0_0", "files": []})
    )
    result = drift(env, base)
    assert result.added == ["prefixdemo 1.0=h0_0"]
    assert result.removed == ["hello-noarch 0.3=py_0"]
    assert result.changed == ["libfoo 1.0=h0_0 -> 2.0=h0_0"]


def test_overlay_spec_errors_name_file_and_line(tmp_path: Path) -> None:
    from baseliner.errors import SpecError

    path = _overlay(tmp_path, conda=["numpy >=1,<"], colour="red")
    with pytest.raises(SpecError) as info:
        load_overlay(path)
    text = info.value.render()
    assert "overlay.yaml" in text and "conda[0]" in text and "colour: unknown key" in text and "line" in text


def _files(root: Path) -> list[Path]:
    out = []
    for dirpath, _, names in os.walk(root):
        out += [Path(dirpath, n) for n in names if not os.path.islink(os.path.join(dirpath, n))]
    return out


import os  # noqa: E402

assert LockPaths


def test_allow_base_changes_gives_a_full_non_layered_lock(make_project: MakeProject, tmp_path: Path) -> None:
    from baseliner.lock import lock_files

    project = make_project({"libbase": spec("libbase", conda=["python 3.*", "libfoo 1.*"])})
    result = build_baseline(project, "libbase", BuildOptions(image=False))
    store = Store(project.store_location)
    publish(store, result.manifest, lock_files(project.repo().resolve("libbase").path))
    path = tmp_path / "proj" / "overlay.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(
        yaml.safe_dump(
            {"schema_version": 1, "name": "wants-new", "extends": "libbase@1.0", "conda": ["libfoo >=2"]}
        )
    )
    overlay = load_overlay(path)
    base = resolve_base(overlay, store, tmp_path / "bases")
    with pytest.raises(LockError, match="would change its base"):
        lock_overlay(overlay, base, project.mirrors(), project.build_dir)
    locked = lock_overlay(overlay, base, project.mirrors(), project.build_dir, allow_base_changes=True)
    assert not locked.layered
    assert {(str(r.name.normalized), str(r.version)) for r in locked.records["linux-64"]} >= {
        ("libfoo", "2.0"),
        ("python", "3.11.7"),
    }
    assert "# baseliner-layered: false" in overlay.lock_path.read_text()


def test_a_truncated_index_or_a_missing_file_is_a_clear_error(
    published: tuple[Project, Store], tmp_path: Path
) -> None:
    project, store = published
    root = Path(project.store_location)
    index = (root / "index.json").read_text()
    (root / "index.json").write_text(index[: len(index) // 2])
    with pytest.raises(StoreError, match=r"index\.json' is corrupt"):
        store.index()
    (root / "index.json").write_text(index)
    (root / "obase/1.0/obase.lock").unlink()
    overlay = load_overlay(_overlay(tmp_path))
    with pytest.raises(StoreError, match=r"obase/1\.0/obase\.lock' is missing"):
        resolve_base(overlay, store, tmp_path / "bases")
    assert (root / "index.json").read_text() == index  # reading changed nothing


def test_an_unchanged_overlay_rebuild_is_a_no_op(published: tuple[Project, Store], tmp_path: Path) -> None:
    project, store = published
    overlay, base = _locked(project, store, tmp_path)
    first = build_overlay(project, overlay, base, NO_IMAGE)
    first_sha = _sha(first.delta)  # the paths stay; what they hold may change
    stamp = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (first.delta, first.tarball, first.manifest)}
    again = build_overlay(project, overlay, base, NO_IMAGE)
    assert first.rebuilt and not again.rebuilt
    assert (_sha(again.delta), again.delta_files) == (first_sha, first.delta_files)
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in stamp} == stamp  # nothing rewritten
    forced = build_overlay(project, overlay, base, BuildOptions(image=False, force=True))
    assert forced.rebuilt and _sha(forced.delta) == first_sha  # and deterministic
    # A changed overlay lock is a rebuild.
    lock_overlay(
        load_overlay(_overlay(tmp_path, conda=["prefixdemo", "activatedemo"])),
        base,
        project.mirrors(),
        project.build_dir,
    )
    changed = build_overlay(project, load_overlay(overlay.path), base, NO_IMAGE)
    assert changed.rebuilt and _sha(changed.delta) != first_sha


def test_the_cli_applies_a_delta_and_reports_its_drift(
    published: tuple[Project, Store], tmp_path: Path
) -> None:
    from ..support.cli import baseliner

    project, store = published
    path = _overlay(tmp_path, conda=["prefixdemo"], pip=["tinyapp"])
    (path.parent / "baseliner.yaml").write_text((project.root / "baseliner.yaml").read_text())
    ran = baseliner(project.root, "lock-overlay", str(path), "--store", str(store.location), cwd=path.parent)
    assert ran.code == 0, ran.err
    ran = baseliner(
        project.root, "build-overlay", str(path), "--store", str(store.location), "--no-image", "--json"
    )
    assert ran.code == 0, ran.err
    built = json.loads(ran.out)
    assert (built["kind"], built["rebuilt"], built["layered"]) == ("overlay", True, True)
    assert [s["name"] for s in built["steps"]] == ["env", "lint", "pack"]
    again = json.loads(
        baseliner(
            project.root, "build-overlay", str(path), "--store", str(store.location), "--no-image", "--json"
        ).out
    )
    assert (again["rebuilt"], again["steps"]) == (False, [])
    base_tar = Path(project.store_location) / "obase/1.0/obase-1.0-linux-64.tar.gz"
    dest = tmp_path / "site" / "env"
    assert baseliner(project.root, "unpack", str(base_tar), str(dest)).code == 0
    ran = baseliner(project.root, "drift", str(dest), "--baseline", "obase@1.0", "--json")
    assert ran.code == 0 and json.loads(ran.out)["added"] == []
    ran = baseliner(project.root, "unpack", built["delta"], str(dest))
    assert ran.code == 0, ran.err
    assert subprocess.run([dest / "bin/prefixdemo"], capture_output=True, text=True).stdout.strip() == str(
        dest
    )
    ran = baseliner(project.root, "drift", str(dest), "--baseline", "obase@1.0", "--json")
    assert ran.code == 1  # the overlay's packages are drift from the base
    assert any(line.startswith("prefixdemo ") for line in json.loads(ran.out)["added"])


def test_a_future_overlay_manifest_is_refused_naming_the_file(
    published: tuple[Project, Store], tmp_path: Path
) -> None:
    from baseliner.errors import ArtifactError

    project, store = published
    overlay, base = _locked(project, store, tmp_path)
    built = build_overlay(project, overlay, base, NO_IMAGE)
    built.manifest.write_text(json.dumps({**json.loads(built.manifest.read_text()), "schema_version": 2}))
    with pytest.raises(ArtifactError) as info:
        build_overlay(project, overlay, base, NO_IMAGE)
    assert f"{built.manifest} has schema_version 2, which this baseliner does not read" in info.value.render()


def test_cache_overlays_in_the_org_config_fill_the_shared_cache_with_their_delta(
    published: tuple[Project, Store], tmp_path: Path
) -> None:
    from ..support.cli import baseliner

    project, store = published
    overlay, _ = _locked(project, store, tmp_path)
    shared = tmp_path / "shared-pkgs"
    assert baseliner(project.root, "cache", "--directory", str(shared)).code == 0
    assert not list(shared.glob("prefixdemo-*"))  # the base alone does not need it
    config = yaml.safe_load((project.root / "baseliner.yaml").read_text())
    config["cache_overlays"] = [str(overlay.lock_path)]
    (project.root / "baseliner.yaml").write_text(yaml.safe_dump(config))
    ran = baseliner(project.root, "cache", "--directory", str(shared))
    assert ran.code == 0 and "1 added" in ran.err, ran.err
    assert len(list(shared.glob("prefixdemo-*/info/repodata_record.json"))) == 1
    stats = json.loads(baseliner(project.root, "cache.stats", "--directory", str(shared), "--json").out)
    assert stats["packages"] == len(list(shared.glob("*/info/repodata_record.json")))
    assert baseliner(project.root, "cache.verify", "--directory", str(shared)).code == 0
