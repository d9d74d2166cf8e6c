"""The registry as the store, against Debian's docker-registry on 127.0.0.1: a baseline published
as an image plus an OCI bundle, resolved from there by an overlay with nothing local left, pulled
and unpacked offline, its SBOM found from the image digest, and its version immutable."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from baseliner.build import BuildOptions, build_baseline
from baseliner.errors import StoreError
from baseliner.overlay import load_overlay, lock_overlay, resolve_base
from baseliner.overlay_build import build_overlay
from baseliner.pack import unpack
from baseliner.publish import publish_baseline
from baseliner.registry import SBOM_TYPE, OciStore
from baseliner.store import open_store

from ..conftest import MakeProject, spec, write_overlay
from ..support.cli import baseliner

pytestmark = pytest.mark.docker


def test_published_to_a_registry_an_overlay_builds_from_it_with_nothing_local(
    make_project: MakeProject, docker_client: Any, registry: str, tmp_path: Path
) -> None:
    name = "regbase"
    location = f"oci://{registry}/org"
    project = make_project({name: spec(name, conda=["python 3.*", "hello-noarch"], pip=["tinyutil"])})
    build_baseline(project, name, BuildOptions(), connect=lambda: docker_client)
    ran = baseliner(project.root, "publish", name, "--store", location)
    assert ran.code == 0, ran.text
    store = open_store(location)
    assert isinstance(store, OciStore)

    # The bundle: one layer per file, each with its media type; the image beside it.
    bundle = store.bundle_manifest(name, "1.0")
    assert bundle is not None
    layers = {
        layer["annotations"]["org.opencontainers.image.title"]: layer for layer in bundle.data["layers"]
    }
    tarball = f"{name}-1.0-linux-64.tar.gz"
    assert {tarball, f"{tarball}.sha256", f"{name}.lock", "manifest.json", "sbom.cdx.json"} <= set(layers)
    assert layers[tarball]["mediaType"] == "application/vnd.baseliner.env.v1.tar+gzip"
    assert layers["sbom.cdx.json"]["mediaType"] == SBOM_TYPE
    manifest = store.manifest(name, "1.0")
    digest_ref = manifest["image"]["digest"]
    assert digest_ref.startswith(f"{registry}/org/{name}@sha256:")

    # The SBOM is found from the image digest alone, by the sha256-<hex> referrers tag.
    image_digest = digest_ref.split("@", 1)[1]
    (referrer,) = store.referrers(name, image_digest)
    assert referrer["artifactType"] == SBOM_TYPE
    sbom = json.loads(store.read_blob(name, referrer["digest"], "sbom.cdx.json"))
    assert sbom["bomFormat"] == "CycloneDX" and any(c["name"] == "hello-noarch" for c in sbom["components"])

    # Nothing local is left: no store, no dist, no base image in the engine.
    subprocess.run(["rm", "-rf", str(project.store_location), str(project.dist_dir)], check=True)
    local = {
        i.id
        for i in docker_client.images.list(name=name)
        + docker_client.images.list(name=f"{registry}/org/{name}")
    }
    for image_id in local:
        docker_client.images.remove(image_id, force=True)
    assert not docker_client.images.list(name=name)

    path = write_overlay(tmp_path / "proj", "reg-ov", f"{name}@1.0", conda=["prefixdemo"])
    overlay = load_overlay(path)
    base = resolve_base(overlay, store, tmp_path / "bases")
    assert base.lock.read_text() and base.manifest["lock_hash"] == manifest["lock_hash"]
    lock_overlay(overlay, base, project.mirrors(), project.build_dir, project.pip_index)
    built = build_overlay(project, overlay, base, BuildOptions(), connect=lambda: docker_client)
    assert built.steps[3].name == "image" and built.steps[3].detail.endswith(f"FROM {digest_ref}")
    (tag,) = built.image_tags
    parent = docker_client.images.get(tag).attrs
    assert parent  # built on the base pulled by digest from the registry

    # Pulled for an offline machine: only the tarball and its checksum, verified; then unpacked.
    dest = tmp_path / "offline"
    ran = baseliner(project.root, "pull", f"{name}@1.0", "--store", location, "--dest", str(dest))
    assert ran.code == 0, ran.text
    assert sorted(p.name for p in dest.iterdir()) == [tarball, f"{tarball}.sha256"]
    env = unpack(dest / tarball, tmp_path / "env")
    assert subprocess.run([env / "bin" / "python", "-c", "import tinyutil, hello_noarch"]).returncode == 0
    # drift reads the base's lock from the registry too: the unpacked env is the baseline exactly
    ran = baseliner(
        project.root, "drift", str(env), "--baseline", f"{name}@1.0", "--store", location, "--json"
    )
    assert ran.code == 0, ran.text
    assert json.loads(ran.out) == {"added": [], "changed": [], "removed": []}


def test_a_republish_with_other_content_is_refused(
    make_project: MakeProject, docker_client: Any, registry: str
) -> None:
    name = "regimm"
    store = OciStore(f"oci://{registry}/org")
    project = make_project({name: spec(name, conda=["python 3.*", "hello-noarch"])})
    build_baseline(project, name, BuildOptions(image=False))
    first = publish_baseline(project, name, store)
    assert publish_baseline(project, name, store) == first  # the same content again: a no-op

    path = project.baselines_dir / f"{name}.yaml"
    changed = yaml.safe_load(path.read_text())
    changed["conda"].append("prefixdemo")
    path.write_text(yaml.safe_dump(changed))
    build_baseline(project, name, BuildOptions(image=False))
    with pytest.raises(StoreError) as info:
        publish_baseline(project, name, store)
    text = info.value.render()
    assert f"{name}@1.0 is already published in oci://{registry}/org with other content" in text
    assert first["lock_hash"] in text and "bump `version`" in text
    assert store.manifest(name, "1.0")["lock_hash"] == first["lock_hash"]  # the registry kept the first


PASSWORD = "reg-PASS-7d1e-secret"


def test_an_authenticated_registry_takes_credentials_from_the_docker_config_only(
    make_project: MakeProject,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """htpasswd auth: without credentials a clear refusal naming `docker login`; with them in
    $DOCKER_CONFIG (as `docker login` writes them) publish and pull work; the password appears in
    no file the project or the pull wrote, in no error and in nothing printed."""
    import base64

    import bcrypt

    from .conftest import serve_registry

    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_bytes(b"alice:" + bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)) + b"\n")
    (tmp_path / "registry").mkdir()
    name = "regauth"
    project = make_project({name: spec(name, conda=["python 3.*", "hello-noarch"])})
    build_baseline(project, name, BuildOptions(image=False))
    docker_dir = tmp_path / "docker-config"
    docker_dir.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_dir))
    with serve_registry(tmp_path / "registry", htpasswd) as host:
        location = f"oci://{host}/org"
        ran = baseliner(project.root, "publish", name, "--store", location)
        assert (
            ran.code == StoreError.exit_code and "docker login" in ran.text and "Traceback" not in ran.text
        ), ran.text
        token = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
        (docker_dir / "config.json").write_text(json.dumps({"auths": {host: {"auth": token}}}))
        ran = baseliner(project.root, "publish", name, "--store", location)
        assert ran.code == 0, ran.text
        dest = tmp_path / "pulled"
        ran = baseliner(project.root, "pull", f"{name}@1.0", "--store", location, "--dest", str(dest))
        assert ran.code == 0, ran.text
        (docker_dir / "config.json").write_text(
            json.dumps(
                {"auths": {host: {"auth": base64.b64encode(b"alice:wrong-" + PASSWORD.encode()).decode()}}}
            )
        )
        with pytest.raises(StoreError) as refused:
            OciStore(location).manifest(name, "1.0")
    printed = capfd.readouterr()
    texts = [refused.value.render(), printed.out, printed.err]
    assert all(PASSWORD not in t for t in texts)
    leaked = [
        str(p)
        for root in (project.root, dest)
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and PASSWORD.encode() in p.read_bytes()
    ]
    assert leaked == []
