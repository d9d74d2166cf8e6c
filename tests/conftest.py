"""Shared fixtures: a real conda channel (on disk and over HTTP on 127.0.0.1), a local PyPI-style
index of tiny wheels, and throwaway baseline repos in tmp_path."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from baseliner.config import Project

from .support.fixture_channel import build_fixture_channel
from .support.serving import serve_directory
from .support.wheels import build_fixture_wheels

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"


def unavailable(reason: str, switch: str) -> None:
    """Skip with `reason`, unless the environment variable `switch` is 1 (set by .ci/run): then
    what the test needs is required here, and its absence fails the run instead of hiding a test."""
    import os

    if os.environ.get(switch) == "1":
        pytest.fail(f"{reason} ({switch}=1: required here)")
    pytest.skip(reason)


@contextlib.contextmanager
def mounted_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """`where` (created) as a filesystem of its own, a tmpfs of `size` (mount's syntax: "6m"),
    unmounted afterwards. It needs root: elsewhere the test skips, or fails under
    BASELINER_REQUIRE_ROOT=1."""
    import os

    if os.geteuid() != 0:
        unavailable("a tmpfs mount needs root", "BASELINER_REQUIRE_ROOT")
    where.mkdir(parents=True, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)]
    if subprocess.run(mount, capture_output=True).returncode != 0:
        unavailable("cannot mount a tmpfs here", "BASELINER_REQUIRE_ROOT")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


@pytest.fixture(scope="session")
def channel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fixture_channel(tmp_path_factory.mktemp("channel"))


@pytest.fixture(scope="session")
def http_channel(channel_dir: Path) -> Iterator[str]:
    with serve_directory(channel_dir) as url:
        yield url


@pytest.fixture(scope="session")
def pypi_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("pypi")
    build_fixture_wheels(root)
    with serve_directory(root) as url:
        yield f"{url}/simple"


MakeProject = Callable[..., Project]


@pytest.fixture
def make_project(tmp_path: Path, channel_dir: Path, pypi_index: str) -> MakeProject:
    """A baselines repo in tmp_path whose `fixture` channel is the test channel."""

    def make(
        specs: dict[str, dict | str], channel_url: str | None = None, root: Path | None = None
    ) -> Project:
        root = root or tmp_path / "repo"
        (root / "baselines").mkdir(parents=True, exist_ok=True)
        config = {
            "schema_version": 1,
            "channel_mirrors": {"fixture": channel_url or channel_dir.as_uri()},
            "pip_index_url": pypi_index,
            "package_cache": "build/pkgs",
        }
        (root / "baseliner.yaml").write_text(yaml.safe_dump(config))
        for name, spec in specs.items():
            text = spec if isinstance(spec, str) else yaml.safe_dump(spec, sort_keys=False)
            (root / "baselines" / f"{name}.yaml").write_text(text)
        return Project.load(root)

    return make


def spec(name: str, **fields: object) -> dict:
    """A minimal valid baseline spec on the fixture channel."""
    base: dict[str, object] = {
        "schema_version": 1,
        "name": name,
        "version": "1.0",
        "channels": ["fixture"],
        "conda": ["python 3.*"],
    }
    base.update(fields)
    return base


def write_overlay(directory: Path, name: str, extends: str, **fields: object) -> Path:
    """An overlay.yaml in `directory` (created) for `name` on `extends`, with `fields` added."""
    path = directory / "overlay.yaml"
    directory.mkdir(parents=True)
    path.write_text(yaml.safe_dump({"schema_version": 1, "name": name, "extends": extends, **fields}))
    return path


@pytest.fixture
def copy_data(tmp_path: Path) -> Callable[[str], Path]:
    """Copy a file or folder from tests/data into tmp_path (fixture data is never written in place)."""

    def copy(rel: str) -> Path:
        src = DATA / rel
        dst = tmp_path / "data" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
        return dst

    return copy


def install_baseline(
    project: Project, name: str, env_name: str | None = None, target: Path | None = None
) -> Path:
    """Lock `name` (if stale) and install it at `target` (default: under project/build/envs);
    returns the prefix."""
    from baseliner.channels import resolve_channels
    from baseliner.envs import install_env
    from baseliner.lock import lock_baseline, read_lock, stale_reason

    baseline = project.repo().resolve(name)
    if stale_reason(baseline):
        lock_baseline(baseline, project.mirrors(), project.build_dir, project.pip_index)
    refs = resolve_channels(baseline.channels, project.mirrors(), baseline.path.parent)
    target = target or project.build_dir / "envs" / (env_name or name)
    install_env(read_lock(baseline, "linux-64"), refs, target, project.package_cache, project.pip_index)
    return target


FULL = {"conda": ["python 3.*", "prefixdemo", "hello-noarch"], "pip": ["tinyapp"]}
