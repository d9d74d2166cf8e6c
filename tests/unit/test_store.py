"""The artifact store: a published NAME@VERSION never changes under its users."""

from __future__ import annotations

import json

import pytest
import yaml

from baseliner.build import BuildOptions, build_baseline
from baseliner.lock import lock_files
from baseliner.store import Store, StoreError, publish

from ..conftest import MakeProject, spec


def _build_and_publish(project, name: str, store: Store):  # type: ignore[no-untyped-def]
    result = build_baseline(project, name, BuildOptions(image=False))
    return result, publish(store, result.manifest, lock_files(project.repo().resolve(name).path))


def test_republishing_identical_content_is_a_no_op(make_project: MakeProject) -> None:
    project = make_project({"imm": spec("imm", conda=["python 3.*", "hello-noarch"])})
    store = Store(project.store_location)
    result, entry = _build_and_publish(project, "imm", store)
    version_dir = store.path / "imm" / "1.0"
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in version_dir.iterdir()}
    again = publish(store, result.manifest, lock_files(project.repo().resolve("imm").path))
    assert again == entry
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in version_dir.iterdir()} == before


def test_a_changed_spec_under_the_same_version_is_refused_naming_both_lock_hashes(
    make_project: MakeProject,
) -> None:
    project = make_project({"imm": spec("imm", conda=["python 3.*", "hello-noarch"])})
    store = Store(project.store_location)
    _, first = _build_and_publish(project, "imm", store)
    path = project.baselines_dir / "imm.yaml"
    changed = yaml.safe_load(path.read_text())
    changed["conda"].append("prefixdemo")  # same `version: "1.0"`
    path.write_text(yaml.safe_dump(changed))
    result = build_baseline(project, "imm", BuildOptions(image=False))
    with pytest.raises(StoreError) as info:
        publish(store, result.manifest, lock_files(project.repo().resolve("imm").path))
    text = info.value.render()
    new_hash = json.loads(result.manifest.read_text())["lock_hash"]
    assert first["lock_hash"] != new_hash
    assert f"published {first['lock_hash']}, this build {new_hash}" in text
    assert "bump `version` in baselines/imm.yaml" in text
    assert store.index()["baselines"]["imm"]["1.0"]["lock_hash"] == first["lock_hash"]
    # A new version is the way: it publishes beside the old one.
    changed["version"] = "1.1"
    path.write_text(yaml.safe_dump(changed))
    _build_and_publish(project, "imm", store)
    assert sorted(store.index()["baselines"]["imm"]) == ["1.0", "1.1"]
