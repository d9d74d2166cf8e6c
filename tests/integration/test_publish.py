"""Publishing to a real registry: a pushed tag never moves to another image."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from baseliner.build import BuildOptions, build_baseline
from baseliner.errors import ImageError
from baseliner.publish import publish_baseline
from baseliner.store import Store

from ..conftest import MakeProject, spec

pytestmark = pytest.mark.docker


def test_a_pushed_version_tag_is_not_moved_to_another_image(
    make_project: MakeProject, docker_client: Any, registry: str, tmp_path: Any
) -> None:
    name = "tagimm"
    project = make_project({name: spec(name, conda=["python 3.*", "hello-noarch"])})
    build_baseline(project, name, BuildOptions(), connect=lambda: docker_client)
    first = publish_baseline(project, name, Store(project.store_location), f"{registry}/org")
    digest = first["image"]["digest"]
    # The same build published again: the tag already points at it, nothing changes.
    again = publish_baseline(project, name, Store(project.store_location), f"{registry}/org")
    assert again["image"]["digest"] == digest

    # The spec changes under the same version; even a fresh store cannot move the registry tag.
    path = project.baselines_dir / f"{name}.yaml"
    changed = yaml.safe_load(path.read_text())
    changed["conda"].append("prefixdemo")
    path.write_text(yaml.safe_dump(changed))
    build_baseline(project, name, BuildOptions(), connect=lambda: docker_client)
    with pytest.raises(ImageError) as info:
        publish_baseline(project, name, Store(str(tmp_path / "other-store")), f"{registry}/org")
    text = info.value.render()
    assert f"registry tag {registry}/org/{name}:1.0 already points to another image" in text
    assert digest in text and "bump `version`" in text
    remote = docker_client.api.inspect_distribution(f"{registry}/org/{name}:1.0")["Descriptor"]["digest"]
    assert digest.endswith(remote)
