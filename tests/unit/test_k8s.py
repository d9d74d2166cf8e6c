"""Kubernetes manifests rendered for a published baseline validate against the API models."""

from __future__ import annotations

import pytest
import yaml

from baseliner.config import KubernetesConfig
from baseliner.lock import lock_baseline
from baseliner.render import render_kubernetes

from ..conftest import MakeProject, spec
from ..support.k8s import validate

DIGEST = "127.0.0.1:5000/org/ml@sha256:" + "ab" * 32


@pytest.fixture
def manifests(make_project: MakeProject) -> dict[str, object]:
    project = make_project({"ml": spec("ml", conda=["needs-old-foo"], image={"uid": 1234, "gid": 2345})})
    baseline = project.repo().resolve("ml")
    lock_baseline(baseline, project.mirrors(), project.build_dir)
    out = render_kubernetes(baseline, DIGEST, KubernetesConfig(storage_class="nfs-ro"), project.templates_dir)
    return {name: yaml.safe_load(data) for name, data in out.items()}


def test_pvc_is_read_only_many(manifests: dict) -> None:  # type: ignore[type-arg]
    pvc = validate(manifests["k8s-pvc.yaml"], "V1PersistentVolumeClaim")
    assert pvc.spec.access_modes == ["ReadOnlyMany"]
    assert pvc.spec.storage_class_name == "nfs-ro"


def test_deployment_pulls_by_digest_mounts_read_only_runs_non_root(manifests: dict) -> None:  # type: ignore[type-arg]
    dep = validate(manifests["k8s-deployment.yaml"], "V1Deployment")
    pod = dep.spec.template.spec
    assert pod.security_context.run_as_non_root is True
    assert (pod.security_context.run_as_user, pod.security_context.fs_group) == (1234, 2345)
    (container,) = pod.containers
    assert container.image == DIGEST
    (mount,) = container.volume_mounts
    assert (mount.mount_path, mount.read_only) == ("/opt/conda/pkgs-shared", True)
    assert pod.volumes[0].persistent_volume_claim.read_only is True
    env = {e.name: e.value for e in container.env}
    assert env["CONDA_PKGS_DIRS"] == "/home/baseliner/.conda/pkgs,/opt/conda/pkgs-shared"
    assert container.resources.requests == {"cpu": "1", "memory": "4Gi"}


def test_kubespawner_profile(manifests: dict) -> None:  # type: ignore[type-arg]
    (profile,) = manifests["jupyterhub-profile.yaml"]
    override = profile["kubespawner_override"]
    assert profile["display_name"] == "ml 1.0" and override["image"] == DIGEST
    assert (override["uid"], override["fs_gid"]) == (1234, 2345)
    for volume in override["volumes"].values():
        validate(volume, "V1Volume")
    for mount in override["volume_mounts"].values():
        assert validate(mount, "V1VolumeMount").read_only is True


def test_the_validator_catches_a_misspelt_key_and_a_missing_field() -> None:
    with pytest.raises(AssertionError, match="keys lost"):
        validate(
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "spec": {"acessModes": ["ReadOnlyMany"]}},
            "V1PersistentVolumeClaim",
        )
    with pytest.raises(ValueError):
        validate({"name": "x"}, "V1VolumeMount")  # mountPath is required
