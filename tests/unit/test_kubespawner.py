"""The rendered JupyterHub profile, loaded by KubeSpawner's own code on a hub that already
configures a home volume, its mount and an environment variable: all three survive, the shared
cache is added, and the pod KubeSpawner would create carries both."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import yaml

from baseliner.config import KubernetesConfig
from baseliner.lock import lock_baseline
from baseliner.render import render_kubernetes

from ..conftest import spec

DIGEST = "127.0.0.1:5000/org/ml@sha256:" + "cd" * 32
HOME_VOLUME = {"name": "home", "persistentVolumeClaim": {"claimName": "claim-{username}"}}
HOME_MOUNT = {"name": "home", "mountPath": "/home/jovyan"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory, channel_dir: Any) -> dict[str, Any]:
    from baseliner.config import Project

    root = tmp_path_factory.mktemp("k8s-repo")
    (root / "baselines").mkdir()
    (root / "baselines" / "ml.yaml").write_text(yaml.safe_dump(spec("ml", version="2026.12")))
    (root / "baseliner.yaml").write_text(
        yaml.safe_dump({"schema_version": 1, "channel_mirrors": {"fixture": channel_dir.as_uri()}})
    )
    project = Project.load(root)
    baseline = project.repo().resolve("ml")
    lock_baseline(baseline, project.mirrors(), project.build_dir)
    out = render_kubernetes(baseline, DIGEST, KubernetesConfig(), None)
    return {name: yaml.safe_load(data) for name, data in out.items()}


def _hub_config(as_dicts: bool, extra_config: str | None) -> Any:
    from traitlets.config import Config

    c = Config()
    if as_dicts:
        c.KubeSpawner.volumes = {"home": HOME_VOLUME}
        c.KubeSpawner.volume_mounts = {"home": HOME_MOUNT}
    else:  # as z2jh's jupyterhub_config.py sets them from singleuser.storage
        c.KubeSpawner.volumes = [HOME_VOLUME]
        c.KubeSpawner.volume_mounts = [HOME_MOUNT]
    c.KubeSpawner.environment = {"HUB_SETTING": "kept"}
    if extra_config is not None:
        exec(compile(extra_config, "hub.extraConfig", "exec"), {"c": c})  # as z2jh runs it
    return c


@pytest.fixture(autouse=True, scope="module")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """KubeSpawner loads a client configuration (once) when it is created; nothing contacts it."""
    from kubernetes_asyncio.config import kube_config

    path = tmp_path_factory.mktemp("kube") / "config"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "test",
                "clusters": [{"name": "test", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "test", "user": {"token": "unused"}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
            }
        )
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))  # read at import
        yield


def _spawn(config: Any, profiles: list[dict[str, Any]]) -> Any:
    from kubernetes_asyncio.client import ApiClient
    from kubespawner import KubeSpawner

    async def run() -> Any:
        spawner = KubeSpawner(config=config, _mock=True)
        spawner.profile_list = profiles
        spawner.user_options = {"profile": profiles[0]["slug"]}
        await spawner.load_user_options()
        pod = await spawner.get_pod_manifest()
        async with ApiClient() as api:  # the JSON KubeSpawner would send to the API server
            return spawner, api.sanitize_for_serialization(pod)

    return asyncio.run(run())


def _names(items: list[dict[str, Any]]) -> list[str]:
    return [item["name"] for item in items]


@pytest.mark.parametrize("hub", ["z2jh lists + the rendered extraConfig", "dicts"])
def test_the_profile_keeps_the_hubs_home_and_adds_the_shared_cache(rendered: dict, hub: str) -> None:  # type: ignore[type-arg]
    values = rendered["jupyterhub-values.yaml"]
    extra = values["hub"]["extraConfig"]["baseliner-dict-volumes"] if hub.startswith("z2jh") else None
    config = _hub_config(as_dicts=hub == "dicts", extra_config=extra)
    _, pod = _spawn(config, values["singleuser"]["profileList"])
    (container,) = pod["spec"]["containers"]
    assert sorted(_names(pod["spec"]["volumes"])) == ["baseliner-shared-pkgs", "home"]
    assert sorted(_names(container["volumeMounts"])) == ["baseliner-shared-pkgs", "home"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    home = volumes["home"]["persistentVolumeClaim"]["claimName"]
    assert home.startswith("claim-mock-name")  # the hub's template, expanded for this user
    shared = volumes["baseliner-shared-pkgs"]
    assert shared["persistentVolumeClaim"] == {"claimName": "baseliner-shared-pkgs", "readOnly": True}
    assert mounts["baseliner-shared-pkgs"] == {
        "name": "baseliner-shared-pkgs",
        "mountPath": "/opt/conda/pkgs-shared",
        "readOnly": True,
    }
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HUB_SETTING"] == "kept"
    assert env["CONDA_PKGS_DIRS"] == "/home/baseliner/.conda/pkgs,/opt/conda/pkgs-shared"
    assert container["image"] == DIGEST
    assert pod["spec"]["securityContext"]["fsGroup"] == 1000


def test_the_standalone_profile_is_the_same_entry_with_a_slug(rendered: dict) -> None:  # type: ignore[type-arg]
    (profile,) = rendered["jupyterhub-profile.yaml"]
    assert profile == rendered["jupyterhub-values.yaml"]["singleuser"]["profileList"][0]
    assert profile["slug"] == "ml-2026-12"


def test_without_the_extra_config_kubespawner_replaces_a_list(rendered: dict) -> None:  # type: ignore[type-arg]
    # Why the values carry hub.extraConfig: KubeSpawner's _apply_overrides replaces list values.
    config = _hub_config(as_dicts=False, extra_config=None)
    _, pod = _spawn(config, rendered["jupyterhub-values.yaml"]["singleuser"]["profileList"])
    assert "home" not in _names(pod["spec"]["volumes"])
