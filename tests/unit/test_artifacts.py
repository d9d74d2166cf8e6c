"""The files baseliner writes are read back through strict, versioned models: a file of a future
version, or with an unknown key, is a clear error naming it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from baseliner.artifacts import MODELS, Manifest, read
from baseliner.build import BuildOptions, build_baseline
from baseliner.errors import ArtifactError
from baseliner.lock import lock_files
from baseliner.store import Store, publish

from ..conftest import MakeProject, spec


@pytest.fixture
def published(make_project: MakeProject):  # type: ignore[no-untyped-def]
    project = make_project({"art": spec("art", conda=["python 3.*", "hello-noarch"], pip=["tinyapp"])})
    result = build_baseline(project, "art", BuildOptions(image=False))
    store = Store(project.store_location)
    publish(store, result.manifest, lock_files(project.repo().resolve("art").path))
    return project, store, result


def test_what_a_build_and_a_publish_write_reads_back(published) -> None:  # type: ignore[no-untyped-def]
    _, store, result = published
    manifest = read(Manifest, result.manifest)
    assert manifest.name == "art" and manifest.packages.pip[0].sha256
    assert store.manifest("art", "1.0")["files"]["art.lock"]
    assert store.index()["baselines"]["art"]["1.0"]["lock_hash"] == manifest.lock_hash


@pytest.mark.parametrize("entry", ["index.json", "art/1.0/manifest.json"])
def test_a_future_schema_version_is_refused_naming_the_file(published, entry: str) -> None:  # type: ignore[no-untyped-def]
    _, store, _ = published
    path = store.path / entry
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "schema_version": 2}))
    with pytest.raises(ArtifactError) as info:
        store.index() if entry == "index.json" else store.manifest("art", "1.0")
    text = info.value.render()
    assert f"{entry} has schema_version 2, which this baseliner does not read" in text
    assert "another baseliner version" in text


def test_an_unknown_key_is_refused(published) -> None:  # type: ignore[no-untyped-def]
    _, _, result = published
    data = json.loads(result.manifest.read_text())
    result.manifest.write_text(json.dumps({**data, "tarbal": {}}))
    with pytest.raises(ArtifactError, match="tarbal: Extra inputs are not permitted"):
        read(Manifest, result.manifest)


def test_a_future_env_marker_stops_an_overlay_apply(published, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from baseliner.overlay_build import apply_delta
    from baseliner.pack import ENV_MARKER, unpack

    _, _, result = published
    target = unpack(result.tarball, tmp_path / "env")
    marker = target / ENV_MARKER
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "schema_version": 9}))
    delta = _delta(tmp_path / "x.delta.tar.gz", {})
    with pytest.raises(ArtifactError, match="schema_version 9"):
        apply_delta(delta, target, verify=False)


def _delta(path: Path, marker: dict[str, object]) -> Path:
    import io
    import tarfile

    body = {"name": "p", "base": "art@1.0", "base_lock_hash": "0", "layered": True, "platform": "linux-64"}
    data = json.dumps(body | marker).encode()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("etc/baseliner/overlay.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_a_future_overlay_marker_is_refused_naming_the_delta(published, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from baseliner.overlay_build import apply_delta
    from baseliner.pack import unpack

    _, _, result = published
    target = unpack(result.tarball, tmp_path / "env")
    delta = _delta(tmp_path / "p.delta.tar.gz", {"schema_version": 2})
    with pytest.raises(ArtifactError) as info:
        apply_delta(delta, target, verify=False)
    assert "p.delta.tar.gz:etc/baseliner/overlay.json has schema_version 2" in info.value.render()
    delta = _delta(tmp_path / "q.delta.tar.gz", {"layered": "perhaps"})
    with pytest.raises(
        ArtifactError,
        match=re.escape("q.delta.tar.gz:etc/baseliner/overlay.json is not a valid OverlayMarker"),
    ):
        apply_delta(delta, target, verify=False)


def test_baseliner_schema_prints_each_models_json_schema() -> None:
    baseliner = str(Path(sys.executable).with_name("baseliner"))
    for name, model in MODELS.items():
        out = subprocess.run([baseliner, "schema", name], capture_output=True, text=True, check=True)
        schema = json.loads(out.stdout)
        assert schema["title"] == model.__name__ and schema["additionalProperties"] is False


def test_a_tarball_changed_in_place_is_rebuilt_though_its_digest_is_remembered(published) -> None:  # type: ignore[no-untyped-def]
    """The no-op check remembers the tarball's sha256 by inode, size, mtime and ctime: a byte
    changed in place, with the size and mtime put back, still makes the next build repack."""
    import os

    project, _, result = published
    again = build_baseline(project, "art", BuildOptions(image=False))
    assert not again.rebuilt and (project.build_dir / "stamps" / f"{result.tarball.name}.json").is_file()
    before = result.tarball.stat()
    with result.tarball.open("r+b") as fh:
        fh.seek(before.st_size // 2)
        byte = fh.read(1)
        fh.seek(before.st_size // 2)
        fh.write(bytes([byte[0] ^ 1]))
    os.utime(result.tarball, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert build_baseline(project, "art", BuildOptions(image=False)).rebuilt
