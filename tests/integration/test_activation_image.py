"""An image behaves as an activated environment: `docker run IMAGE CMD`, `docker exec`, and a pod
whose `command` replaces the entrypoint all see what the activate.d scripts export; an unpacked
tarball gets the same from conda-pack's bin/activate."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from baseliner.build import BuildOptions, build_baseline
from baseliner.images import TEST_LABEL, run
from baseliner.pack import unpack

from ..conftest import MakeProject, spec

pytestmark = pytest.mark.docker
PROBE = 'echo "$ACTIVATEDEMO_DATA|$ACTIVATEDEMO_FLAG"; activatedemo-tool'
EXPECTED = ["/opt/env/share/activatedemo|on", "activatedemo tool"]


@pytest.fixture
def geo(make_project: MakeProject, docker_client: Any):  # type: ignore[no-untyped-def]
    project = make_project({"geo": spec("geo", conda=["python 3.*", "activatedemo"])})
    result = build_baseline(project, "geo", BuildOptions(), connect=lambda: docker_client)
    yield project, result
    for tag in result.image_tags:
        docker_client.images.remove(tag, force=True)


def test_every_way_into_the_image_sees_the_activation(geo: Any, docker_client: Any) -> None:
    _, result = geo
    ref = result.image_tags[1]
    via_entrypoint = run(docker_client, ref, ["sh", "-c", PROBE])
    assert via_entrypoint.output.strip().splitlines() == EXPECTED, via_entrypoint.output
    # A pod's `command` replaces the entrypoint: the variables come from the image's ENV.
    as_pod = run(docker_client, ref, ["-c", PROBE], entrypoint=["/bin/sh"])
    assert as_pod.output.strip().splitlines() == EXPECTED, as_pod.output
    container = docker_client.containers.run(
        ref, ["sleep", "60"], detach=True, network_mode="none", labels={TEST_LABEL: "activation"}
    )
    try:
        code, output = container.exec_run(["sh", "-c", PROBE])
        assert code == 0 and output.decode().strip().splitlines() == EXPECTED
    finally:
        container.remove(force=True, v=True)
    assert docker_client.images.get(ref).attrs["Config"]["Entrypoint"] == [
        "/usr/local/bin/baseliner-entrypoint"
    ]


def test_an_unpacked_tarball_activates_with_bin_activate(geo: Any, tmp_path: Path) -> None:
    _, result = geo
    dest = unpack(result.tarball, tmp_path / "geo-env")
    out = subprocess.run(
        ["bash", "-c", f". {dest}/bin/activate && {PROBE}"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip().splitlines() == [f"{dest}/share/activatedemo|on", "activatedemo tool"]
