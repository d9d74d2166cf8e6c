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


def test_the_published_sbom_validates_and_carries_purls_hashes_and_dependencies(
    make_project: MakeProject,
) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    project = make_project(
        {"sb": spec("sb", conda=["python 3.*", "hello-noarch", "prefixdemo"], pip=["tinyapp"])}
    )
    store = Store(project.store_location)
    _build_and_publish(project, "sb", store)
    text = store.read_bytes("sb/1.0/sbom.cdx.json").decode()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None  # the schema, independently
    bom = json.loads(text)
    by_ref = {c["bom-ref"]: c for c in bom["components"]}
    demo = by_ref["conda:prefixdemo"]
    assert demo["purl"] == (
        "pkg:conda/prefixdemo@1.0?build=h0_0&channel=https://conda.anaconda.org/fixture&subdir=linux-64&type=tar.bz2"
    )
    assert "subdir=noarch&type=conda" in by_ref["conda:hello-noarch"]["purl"]
    assert by_ref["pypi:tinyapp"]["purl"] == "pkg:pypi/tinyapp@0.5.0"
    assert [h["alg"] for h in by_ref["pypi:tinyutil"]["hashes"]] == ["SHA-256"]
    needs = {d["ref"]: set(d.get("dependsOn", [])) for d in bom["dependencies"]}
    assert needs["conda:hello-noarch"] == {"conda:python"}
    assert needs["pypi:tinyapp"] == {"pypi:tinyutil"}
    assert needs["sb@1.0"] == set(by_ref)
