"""build-baseline end to end against a real Docker Engine and the fixture channel over HTTP."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from baseliner.build import BuildOptions, build_baseline
from baseliner.errors import ImageError, LintError
from baseliner.images import run

from ..conftest import FULL, MakeProject, spec

pytestmark = pytest.mark.docker


@pytest.fixture
def project(make_project: MakeProject, http_channel: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    name = f"bltest-{tmp_path.name[-8:].lower().replace('_', '-')}"
    return make_project({name: spec(name, **FULL)}, channel_url=http_channel)


def _name(project: Any) -> str:
    return str(project.repo().names()[0])


@pytest.fixture
def built(project: Any, docker_client: Any):  # type: ignore[no-untyped-def]
    result = build_baseline(project, _name(project), BuildOptions(), connect=lambda: docker_client)
    yield project, result
    for tag in result.image_tags:
        docker_client.images.remove(tag, force=True)


def test_image_runs_env_python_as_non_root_without_network(built: Any, docker_client: Any) -> None:
    project, result = built
    assert [s.name for s in result.steps] == ["lock", "env", "lint", "pack", "render", "image", "smoke"]
    ref = result.image_tags[1]
    probe = run(
        docker_client,
        ref,
        [
            "python",
            "-c",
            "import os, sys, socket, json, tinyapp, hello_noarch;"
            "ifs = [n for _, n in socket.if_nameindex()];"
            "print(json.dumps({'uid': os.getuid(), 'exe': sys.executable, 'ifs': ifs, 'answer': tinyapp.ANSWER}))",
        ],
    )
    assert probe.exit_code == 0, probe.output
    data = json.loads(probe.output.strip().splitlines()[-1])
    assert data["uid"] == 1000 and data["exe"].startswith("/opt/env/bin/python")
    assert data["ifs"] == ["lo"]  # no network but loopback
    assert data["answer"] == 42
    ep = run(docker_client, ref, ["hello-noarch"])
    assert ep.output.strip() == "hello from noarch"
    demo = run(docker_client, ref, ["prefixdemo"])
    assert demo.output.strip() == "/opt/env"  # binary placeholder rewritten to the image prefix
    # site-packages comes byte-compiled (the stdlib with the python package): the container
    # imports its packages from pycs, so a read-only root filesystem compiles nothing at start
    verbose = run(
        docker_client, ref, ["python", "-B", "-v", "-c", "import json, tinyapp, hello_noarch"]
    ).output
    lines = verbose.splitlines()
    from_pyc = [line.rsplit(" matches ", 1)[1] for line in lines if " matches " in line]
    assert any("/site-packages/tinyapp/" in p for p in from_pyc), verbose[-2000:]  # pip's
    assert any("/site-packages/hello_noarch" in p for p in from_pyc), verbose[-2000:]  # conda's
    assert any(p.endswith("/json/__init__.py") for p in from_pyc), verbose[-2000:]  # the stdlib's
    compiled_now = [line for line in lines if line.startswith("# code object from /opt/env/")]
    assert compiled_now == [], compiled_now[:5]
    labels = docker_client.images.get(ref).labels
    assert labels["org.opencontainers.image.title"] == _name(project)
    assert ref.endswith(labels["io.baseliner.lock-hash"][:12])


def test_image_and_tarball_hold_the_same_package_set(built: Any, docker_client: Any) -> None:
    _, result = built
    with tarfile.open(result.tarball) as tar:
        in_tarball = sorted(
            m.name.removeprefix("conda-meta/")
            for m in tar
            if m.name.startswith("conda-meta/") and m.name.endswith(".json")
        )
    listing = run(docker_client, result.image_tags[0], ["sh", "-c", "ls /opt/env/conda-meta | grep json$"])
    assert sorted(listing.output.split()) == in_tarball
    manifest = json.loads(result.manifest.read_text())
    assert (
        sorted(f"{p['name']}-{p['version']}-{p['build']}.json" for p in manifest["packages"]["conda"])
        == in_tarball
    )
    assert manifest["image"]["tags"] == list(result.image_tags)
    assert manifest["tarball"]["sha256"] == Path(f"{result.tarball}.sha256").read_text().split()[0]


def test_rebuilding_with_nothing_changed_rebuilds_nothing(built: Any, docker_client: Any) -> None:
    project, result = built
    image_id = docker_client.images.get(result.image_tags[0]).id
    tar_mtime = result.tarball.stat().st_mtime_ns
    again = build_baseline(project, _name(project), BuildOptions(), connect=lambda: docker_client)
    assert not again.rebuilt
    assert [s.name for s in again.steps] == ["render"]
    assert docker_client.images.get(result.image_tags[0]).id == image_id
    assert result.tarball.stat().st_mtime_ns == tar_mtime


def test_pip_clobbering_stops_the_build_naming_both(make_project: MakeProject, docker_client: Any) -> None:
    project = make_project({"clob": spec("clob", conda=["python 3.*", "hello-noarch"], pip=["clobber"])})
    with pytest.raises(LintError) as info:
        build_baseline(project, "clob", BuildOptions(), connect=lambda: docker_client)
    assert "pip package clobber 1.0 overwrote files of conda package hello-noarch 0.3" in info.value.render()
    assert not (project.dist_dir / "clob").exists()


def test_failing_docker_step_shows_the_step_and_log_tail(project: Any, docker_client: Any) -> None:
    project.templates_dir.mkdir()
    source = Path(__file__).resolve().parents[2] / "baseliner" / "templates" / "Dockerfile.j2"
    text = source.read_text().replace(
        "FROM ${BASE_IMAGE}\n", "FROM ${BASE_IMAGE}\nRUN echo about-to-fail && exit 7\n", 1
    )
    (project.templates_dir / "Dockerfile.j2").write_text(text)
    for name in ("README.md.j2", "condarc.j2", "environment.yml.j2"):
        shutil.copy(source.with_name(name), project.templates_dir / name)
    with pytest.raises(ImageError) as info:
        build_baseline(project, _name(project), BuildOptions(), connect=lambda: docker_client)
    text = info.value.render()
    assert "failed at Step" in text and "RUN echo about-to-fail && exit 7" in text
    assert "about-to-fail" in text.split("failed at", 1)[1]
    assert "returned a non-zero code: 7" in text


def test_cli_build_without_engine_builds_the_rest(project: Any, tmp_path: Path) -> None:
    env = {
        "DOCKER_HOST": "unix:///nonexistent/docker.sock",
        "PATH": "/usr/bin:/bin",
        "BASELINER_ROOT": str(project.root),
    }
    proc = subprocess.run(
        [str(Path(__import__("sys").executable).with_name("baseliner")), "build-baseline", _name(project)],
        capture_output=True,
        text=True,
        env=env,
        cwd=project.root,
    )
    assert proc.returncode == 0, proc.stderr
    assert "no Docker Engine can be reached" in proc.stderr
    assert (project.dist_dir / _name(project) / "1.0").is_dir()


def test_a_build_leaves_no_volume_or_container_behind(project: Any, docker_client: Any) -> None:
    # The image declares the shared cache a VOLUME: every smoke container gets an anonymous volume,
    # which outlives the container unless it is removed with it.
    volumes = {v.id for v in docker_client.volumes.list()}
    containers = {c.id for c in docker_client.containers.list(all=True)}
    result = build_baseline(project, _name(project), BuildOptions(), connect=lambda: docker_client)
    try:
        assert result.image_tags
        assert {v.id for v in docker_client.volumes.list()} == volumes
        assert {c.id for c in docker_client.containers.list(all=True)} == containers
    finally:
        for tag in result.image_tags:
            docker_client.images.remove(tag, force=True)


def test_a_build_killed_in_the_image_step_leaves_no_copy_of_the_env(project: Any, tmp_path: Path) -> None:
    import os
    import signal
    import sys
    import time

    from baseliner.concurrency import SCRATCH_PREFIX

    systmp = tmp_path / "systmp"
    systmp.mkdir()
    envs = project.build_dir / "envs"
    env = {**os.environ, "BASELINER_ROOT": str(project.root), "TMPDIR": str(systmp)}
    command = [str(Path(sys.executable).with_name("baseliner")), "build-baseline", _name(project)]
    proc = subprocess.Popen(command, env=env, cwd=project.root, start_new_session=True)
    manifest = project.dist_dir / _name(project) / "1.0" / "manifest.json"
    deadline = time.monotonic() + 300
    while not manifest.exists():  # the manifest is the last step before the image
        assert proc.poll() is None and time.monotonic() < deadline, "the build ended before its image step"
        time.sleep(0.05)
    time.sleep(1.0)  # into the image build, whose context holds the environment's tarball
    assert proc.poll() is None, "the build ended before it could be killed in its image step"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    left = {p.relative_to(systmp): p.stat().st_size for p in systmp.rglob("*") if p.is_file()}
    assert sum(left.values()) < 1_000_000, left
    again = subprocess.run(command, env=env, cwd=project.root, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert not list(envs.glob(f"{SCRATCH_PREFIX}*"))
