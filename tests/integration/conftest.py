"""Integration fixtures: a real Docker Engine and the local base image.

Where no engine answers, these tests skip with the reason, unless BASELINER_REQUIRE_DOCKER=1
(set by .ci/run): then a missing engine or base image fails the run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from baseliner.errors import DockerUnavailable
from baseliner.images import BASE_IMAGE, TEST_LABEL, connect, image_exists

REQUIRED = os.environ.get("BASELINER_REQUIRE_DOCKER") == "1"


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A directory on a filesystem of its own (a 512 MB tmpfs), unmounted afterwards."""
    from ..conftest import mounted_tmpfs

    with mounted_tmpfs(tmp_path / "tmpfs", "512m") as other:
        yield other


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason} (BASELINER_REQUIRE_DOCKER=1: Docker tests are required here)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    try:
        client = connect()
    except DockerUnavailable as exc:
        _unavailable(f"no Docker Engine: {exc.details[0] if exc.details else exc.message}")
    if not image_exists(client, BASE_IMAGE):
        _unavailable(f"base image {BASE_IMAGE} missing: run `invoke base-image`")
    images_before = {image.id for image in client.images.list(all=True)}
    volumes_before = {volume.id for volume in client.volumes.list()}
    yield client
    for container in client.containers.list(all=True, filters={"label": TEST_LABEL}):
        container.remove(force=True, v=True)
    _remove_new(client, images_before, volumes_before)


def _remove_new(client: Any, images_before: set[str], volumes_before: set[str]) -> None:
    """Remove the images and volumes this session made: a run of the suite builds some GB of them,
    and a machine that keeps them fills its disk within a few runs."""
    from docker.errors import APIError

    for _ in range(5):  # children before parents: each round removes what no longer has children
        left = [image for image in client.images.list(all=True) if image.id not in images_before]
        if not left:
            break
        for image in left:
            with contextlib.suppress(APIError):
                client.images.remove(image.id, force=True)
    for volume in client.volumes.list():
        if volume.id not in volumes_before:
            with contextlib.suppress(APIError):
                volume.remove(force=True)


@contextlib.contextmanager
def serve_registry(root: Path, htpasswd: Path | None = None) -> Iterator[str]:
    """Debian's docker-registry (the CNCF distribution registry) on 127.0.0.1, with its own config
    (and HTTP Basic auth from `htpasswd` when given); yields HOST:PORT."""
    import shutil
    import socket
    import subprocess
    import time
    import urllib.error
    import urllib.request

    binary = shutil.which("docker-registry")
    if binary is None:
        _unavailable("docker-registry is not installed (apt-get install docker-registry)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    auth = f"auth:\n  htpasswd:\n    realm: baseliner-test\n    path: {htpasswd}\n" if htpasswd else ""
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{auth}"
    )
    proc = subprocess.Popen(
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(50):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except urllib.error.HTTPError:  # 401: up, and asking for credentials
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("the local registry did not start")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory, docker_client: Any) -> Iterator[str]:
    """An anonymous local registry for the session."""
    with serve_registry(tmp_path_factory.mktemp("registry")) as host:
        yield host


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory: pytest.TempPathFactory, docker_client: Any) -> Any:
    """The repo's `demo` baseline, built once for every test that needs it: the org channel from
    channels/org.yaml (wheels and conversions cached in the repo's build/org-channel, shared with
    `make demo`) and its PyPI mirror, then env, tarball, image and smoke test, all in a copy of the
    repo in tmp."""
    import shutil
    from pathlib import Path

    import yaml

    from baseliner.build import BuildOptions, build_baseline
    from baseliner.config import Project
    from baseliner.orgchannel import build_org_channel, load_org_channel
    from baseliner.pipmirror import mirror_org_channel

    repo = Path(__file__).resolve().parents[2]
    root = tmp_path_factory.mktemp("demo-repo")
    for name in ("baselines", "channels", "templates"):
        shutil.copytree(repo / name, root / name)
    org = load_org_channel(root / "channels" / "org.yaml")
    channel = root / "channel"
    build_org_channel(org, channel, repo / "build" / "org-channel")
    # the org's PyPI mirror of the same wheels: the demo's pip section installs from it, offline
    mirror_org_channel(org, root / "pypi", repo / "build" / "org-channel", None)
    config = {
        "schema_version": 1,
        "channel_mirrors": {org.spec.url: str(channel)},
        "pip_mirror": "pypi",
        "package_cache": "build/pkgs",
    }
    (root / "baseliner.yaml").write_text(yaml.safe_dump(config))
    project = Project.load(root)
    result = build_baseline(project, "demo", BuildOptions(), connect=lambda: docker_client)
    return project, result, channel
