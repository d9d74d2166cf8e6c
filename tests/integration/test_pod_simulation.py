"""Pod simulation: the image pulled by digest from a real registry and run exactly as the rendered
Deployment says, with the shared cache as a read-only volume; a second environment is created
inside from the shared cache alone, with no network.

py-rattler 0.28's layered cache opens each package's cache metadata file for writing, even in a
layer it detects as read-only, so it cannot use a read-only mount as a layer (EROFS; checked
below). The second environment is therefore installed by py-rattler from the shared cache's
archives (file:// URLs into the read-only mount) into the writable user cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import rattler
import yaml

from baseliner.build import BuildOptions, build_baseline
from baseliner.cache import fill, verify, wanted_packages
from baseliner.images import TEST_LABEL, ensure_image, export_volume
from baseliner.lock import LockPaths
from baseliner.publish import publish_baseline
from baseliner.store import Store

from ..conftest import MakeProject, spec
from ..support.k8s import validate

pytestmark = pytest.mark.docker

SCRIPT = r"""
import asyncio, json, os, pathlib, subprocess
from rattler import LockFile, PackageCache, install
records = LockFile.from_path("/opt/test/lock").environment("default").conda_repodata_records()["linux-64"]
layers = os.environ["CONDA_PKGS_DIRS"].split(",")
target = pathlib.Path.home() / "envs" / "second"
try:
    asyncio.run(install(records, target_prefix=target, package_cache=PackageCache.new_layered(layers), show_progress=False))
    layered = "ok"
except Exception as exc:
    layered = str(exc).splitlines()[-1]
for record in records:
    record.url = pathlib.Path(layers[1], record.file_name).as_uri()
asyncio.run(install(records, target_prefix=target, cache_dir=layers[0], show_progress=False))
run = subprocess.run([str(target / "bin" / "python"), "-c", "import hello_noarch, sys; print(sys.prefix)"], capture_output=True, text=True)
user = pathlib.Path(layers[0])
print(json.dumps({"uid": os.getuid(), "python": run.stdout.strip(), "err": run.stderr[-300:], "layered": layered,
                  "user_cache": sorted(p.name for p in user.iterdir()) if user.exists() else [],
                  "shared_writable": os.access(layers[1], os.W_OK)}))
"""


def test_pod_runs_from_digest_and_creates_an_env_from_the_shared_cache_alone(
    make_project: MakeProject, docker_client: Any, registry: str, tmp_path: Path
) -> None:
    project = make_project({"podsim": spec("podsim", conda=["python 3.*", "hello-noarch", "needs-old-foo"])})
    result = build_baseline(project, "podsim", BuildOptions(), connect=lambda: docker_client)
    store = Store(project.store_location)
    entry = publish_baseline(project, "podsim", store, f"{registry}/org")
    cache = tmp_path / "shared-pkgs"
    fill(cache, wanted_packages(store), project.mirrors())
    assert verify(cache).sound
    volume = export_volume(docker_client, cache, f"baseliner-test-pkgs-{tmp_path.name[-12:].lower()}")
    deployment = yaml.safe_load(store.read_bytes("podsim/1.0/k8s-deployment.yaml"))
    validate(deployment, "V1Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == entry["image"]["digest"]
    # Nothing local: the engine must pull the image by digest from the registry.
    for tag in [*result.image_tags, *entry["image"]["pushed"]]:
        docker_client.images.remove(tag, force=True)
    ensure_image(docker_client, container["image"])
    mount = container["volumeMounts"][0]
    security = pod["securityContext"]
    rattler_dir = Path(rattler.__file__).parent
    box = docker_client.containers.run(
        container["image"],
        ["python", "-c", SCRIPT],
        detach=True,
        network_mode="none",
        user=f"{security['runAsUser']}:{security['runAsGroup']}",
        environment={e["name"]: e["value"] for e in container["env"]} | {"PYTHONPATH": "/opt/test-py"},
        volumes={
            volume: {"bind": mount["mountPath"], "mode": "ro" if mount["readOnly"] else "rw"},
            str(rattler_dir): {"bind": "/opt/test-py/rattler", "mode": "ro"},
            str(LockPaths(project.repo().resolve("podsim").path).lock): {
                "bind": "/opt/test/lock",
                "mode": "ro",
            },
        },
        labels={TEST_LABEL: "pod"},
    )
    try:
        status = box.wait(timeout=300)
        output = box.logs().decode()
    finally:
        box.remove(force=True, v=True)
        docker_client.volumes.get(volume).remove(force=True)
    assert status["StatusCode"] == 0, output
    report = json.loads(output.strip().splitlines()[-1])
    assert report["uid"] == security["runAsUser"] != 0
    assert report["python"] == "/home/baseliner/envs/second", report["err"]
    assert report["shared_writable"] is False
    # The limitation the module docstring describes, still there: when py-rattler can read a
    # read-only layer, this fails, and the image should use the shared cache as a layer instead.
    assert report["layered"] != "ok", "py-rattler now reads a read-only cache layer: use it"
    assert "Read-only file system" in report["layered"] or "Permission denied" in report["layered"], report[
        "layered"
    ]
    # Every package came from the shared cache's archives: the container has no network at all.
    assert sorted(
        n for n in report["user_cache"] if not n.startswith(".") and not n.endswith(".lock")
    ) == sorted(f.removesuffix(".conda").removesuffix(".tar.bz2") for f in wanted_packages(store))
