"""Overlay images against a real engine and registry: FROM base@digest plus one delta layer."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Any

import pytest

from baseliner.build import BuildOptions, build_baseline
from baseliner.errors import StoreError
from baseliner.images import run
from baseliner.overlay import load_overlay, lock_overlay, resolve_base
from baseliner.overlay_build import build_overlay
from baseliner.publish import publish_baseline
from baseliner.render import PACKAGE_TEMPLATES
from baseliner.store import Store

from ..conftest import MakeProject, spec, write_overlay
from ..support.serving import layers, size

pytestmark = pytest.mark.docker


def _git_repo(root: Path, remote: str) -> str:
    """Make `root` a git checkout with one commit and an origin; returns the commit."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
        ).stdout

    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "baselines")
    git("remote", "add", "origin", remote)
    return git("rev-parse", "HEAD").strip()


def test_overlay_image_reuses_base_layers_and_adds_one(
    make_project: MakeProject, docker_client: Any, registry: str, tmp_path: Path
) -> None:
    name = "ovbase"
    project = make_project({name: spec(name, conda=["python 3.*", "hello-noarch"], pip=["tinyutil"])})
    revision = _git_repo(project.root, "git@git.example.org:platform/baselines.git")
    result = build_baseline(project, name, BuildOptions(), connect=lambda: docker_client)
    store = Store(project.store_location)
    entry = publish_baseline(project, name, store, f"{registry}/org")
    digest_ref = entry["image"]["digest"]
    assert digest_ref.startswith(f"{registry}/org/{name}@sha256:")

    path = write_overlay(tmp_path / "proj", "proj-ov", f"{name}@1.0", conda=["prefixdemo"], pip=["tinyapp"])
    (path.parent / "baseliner.yaml").write_text(
        (project.root / "baseliner.yaml").read_text() + f"store: {project.store_location}\n"
    )
    overlay = load_overlay(path)
    base = resolve_base(overlay, store, tmp_path / "bases")
    lock_overlay(overlay, base, project.mirrors(), project.build_dir, project.pip_index)
    built = build_overlay(project, overlay, base, BuildOptions(), connect=lambda: docker_client)
    (tag,) = built.image_tags
    try:
        assert [s.name for s in built.steps] == ["env", "lint", "pack", "image", "smoke"]
        assert built.steps[3].detail.endswith(f"FROM {digest_ref}")
        again = build_overlay(project, overlay, base, BuildOptions(), connect=lambda: docker_client)
        assert (again.rebuilt, again.steps, again.image_note) == (False, [], "fresh")
        assert docker_client.images.get(tag).id == docker_client.images.get(again.image_tags[0]).id
        # a site's own overlay template: the image is built again, the delta is not
        project.templates_dir.mkdir(parents=True, exist_ok=True)
        own = (PACKAGE_TEMPLATES / "overlay.Dockerfile.j2").read_text() + "# this site's line\n"
        (project.templates_dir / "overlay.Dockerfile.j2").write_text(own)
        key_before = docker_client.images.get(tag).labels["io.baseliner.build-key"]
        edited = build_overlay(project, overlay, base, BuildOptions(), connect=lambda: docker_client)
        assert [s.name for s in edited.steps] == ["image", "smoke"]
        assert docker_client.images.get(tag).labels["io.baseliner.build-key"] != key_before
        base_layers, ov_layers = layers(docker_client, digest_ref), layers(docker_client, tag)
        assert ov_layers[: len(base_layers)] == base_layers  # the base's layers, untouched
        assert len(ov_layers) == len(base_layers) + 1  # exactly one added layer
        added = size(docker_client, tag) - size(docker_client, digest_ref)
        assert added <= 1.2 * built.delta_bytes, (added, built.delta_bytes)
        probe = run(
            docker_client,
            tag,
            [
                "python",
                "-c",
                "import os, hello_noarch, tinyutil, tinyapp; print(os.getuid(), tinyapp.ANSWER)",
            ],
        )
        assert probe.exit_code == 0, probe.output
        assert probe.output.split() == ["1000", "42"]
        assert run(docker_client, tag, ["prefixdemo"]).output.strip() == "/opt/env"
        # the delta's modules come compiled too: nothing is compiled at import
        verbose = run(docker_client, tag, ["python", "-B", "-v", "-c", "import tinyapp, tinyutil"]).output
        lines = verbose.splitlines()
        from_pyc = [line.rsplit(" matches ", 1)[1] for line in lines if " matches " in line]
        assert any("/site-packages/tinyapp/" in p for p in from_pyc), verbose[-2000:]  # the overlay's
        assert any("/site-packages/tinyutil" in p for p in from_pyc), verbose[-2000:]  # the base's
        assert [line for line in lines if line.startswith("# code object from /opt/env/")] == []
        base_labels = docker_client.images.get(digest_ref).labels
        assert (
            base_labels["org.opencontainers.image.source"] == "ssh://git.example.org/platform/baselines.git"
        )
        assert base_labels["org.opencontainers.image.revision"] == revision
        labels = docker_client.images.get(tag).labels
        assert labels["org.opencontainers.image.base.name"] == f"{registry}/org/{name}:1.0"
        assert labels["org.opencontainers.image.base.digest"] == digest_ref.split("@")[1]
    finally:
        docker_client.images.remove(tag, force=True)
        for ref in result.image_tags:
            docker_client.images.remove(ref, force=True)


def test_an_overlay_on_a_base_built_on_another_engine_uses_the_local_build_of_the_same_lock(
    make_project: MakeProject, docker_client: Any, tmp_path: Path
) -> None:
    """Published without a registry, a base names its image by an id only the engine that built
    it has. Here the id is another engine's: the local tag built from the same lock (its build key)
    stands in, and a tag built from anything else is refused with the command that fixes it."""
    name = "ovlocal"
    project = make_project({name: spec(name, conda=["python 3.*", "hello-noarch"])})
    result = build_baseline(project, name, BuildOptions(), connect=lambda: docker_client)
    store = Store(project.store_location)
    publish_baseline(project, name, store)
    path = write_overlay(tmp_path / "proj", "proj-local", f"{name}@1.0", conda=["prefixdemo"])
    overlay = load_overlay(path)
    published = resolve_base(overlay, store, tmp_path / "bases")
    assert published.manifest is not None
    elsewhere = {**published.manifest["image"], "id": "sha256:" + "ab" * 32}
    base = dataclasses.replace(published, manifest={**published.manifest, "image": elsewhere})
    lock_overlay(overlay, base, project.mirrors(), project.build_dir, project.pip_index)
    local_id = docker_client.images.get(result.image_tags[1]).id
    tags: tuple[str, ...] = ()
    try:
        built = build_overlay(project, overlay, base, BuildOptions(), connect=lambda: docker_client)
        tags = built.image_tags
        assert built.steps[3].detail.endswith(f"FROM {local_id}")
        assert run(docker_client, tags[0], ["prefixdemo"]).output.strip() == "/opt/env"

        other = docker_client.images.get("baseliner/debian-base:bookworm")
        for ref in result.image_tags:  # the tags now name an image of other content
            repository, tag = ref.rsplit(":", 1)
            other.tag(repository, tag)
        with pytest.raises(StoreError) as caught:
            build_overlay(project, overlay, base, BuildOptions(force=True), connect=lambda: docker_client)
        assert caught.value.message == f"the image of base {name}@1.0 is not on this Docker Engine"
        assert f"published as the local image {elsewhere['id']}" in caught.value.details[0]
        assert caught.value.hint.startswith(f"build the base here (`invoke build-baseline {name}`")
    finally:
        for ref in tags:
            docker_client.images.remove(ref, force=True)
        for ref in result.image_tags:  # back on the base's own image, then removed with it
            repository, tag = ref.rsplit(":", 1)
            docker_client.images.get(local_id).tag(repository, tag)
            docker_client.images.remove(ref, force=True)
