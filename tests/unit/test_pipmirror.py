"""The org's PyPI mirror: the org channel's wheels as a PEP 503 index on disk, read by uv and pip
themselves, and pip sections that lock and install from it with the upstream index unreachable."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from baseliner.config import Project
from baseliner.errors import SpecError
from baseliner.orgchannel import build_org_channel, load_org_channel, lock_org_channel
from baseliner.pipmirror import STATE_FILE, mirror_org_channel
from baseliner.pypi import parse_pip_lock

from ..conftest import MakeProject, install_baseline
from .test_orgchannel import URL, org_project

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
UNREACHABLE = "http://127.0.0.1:9/simple"  # the discard port: nothing answers


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory, pypi_index: str) -> Path:
    """A tiny org channel of two wheels (`tinyapp` requires `tinyutil`), built and mirrored."""
    root = tmp_path_factory.mktemp("org")
    spec = {
        "schema_version": 1,
        "name": "tiny",
        "url": URL,
        "python": PYTHON,
        "platform": "linux-64",
        "requirements": ["tinyutil ==1.2.0", "tinyapp"],
    }
    (root / "channels").mkdir()
    (root / "channels" / "tiny.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    channel = load_org_channel(root / "channels" / "tiny.yaml")
    lock_org_channel(channel, pypi_index)
    build_org_channel(channel, root / "channel", root / "work", pypi_index)
    mirror_org_channel(channel, root / "pypi", root / "work", pypi_index)
    return root


def test_pip_downloads_each_locked_wheel_from_the_mirror_by_its_pep503_page(
    org: Path, tmp_path: Path
) -> None:
    pins = parse_pip_lock((org / "channels" / "tiny.lock").read_text())
    assert sorted(p.name for p in pins) == ["tinyapp", "tinyutil"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--dest", str(tmp_path)]
    for pin in pins:
        subprocess.run(
            [*pip, "--index-url", (org / "pypi").as_uri(), "--require-hashes", "-r", "/dev/stdin"],
            input=f"{pin.name}=={pin.version} --hash=sha256:{pin.hashes[0]}\n",
            text=True,
            env=env,
            check=True,
            capture_output=True,
        )
    hashes = {hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.glob("*.whl")}
    assert len(hashes) == 2 and all(hashes & set(pin.hashes) for pin in pins)


def test_a_pip_section_locks_and_installs_from_the_mirror_with_the_upstream_index_unreachable(
    make_project: MakeProject, org: Path
) -> None:
    project = org_project(
        make_project, org, ["tinyapp"], pip_index_url=UNREACHABLE, pip_mirror=str(org / "pypi")
    )
    assert project.pip_index == (org / "pypi").as_uri()
    prefix = install_baseline(project, "app")
    assert "tinyapp==0.5.0" in (project.root / "baselines" / "app.pip-linux-64.txt").read_text()
    out = subprocess.run(
        [prefix / "bin" / "python", "-c", "import tinyapp; print(tinyapp.ANSWER)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "42"
    # installed as from any index: no record of when uv's cache unpacked the wheel, which a
    # file:// index leaves in the dist-info (and which would differ by machine)
    (dist,) = next(prefix.glob("lib/python*/site-packages")).glob("tinyapp-*.dist-info")
    assert sorted(p.name for p in dist.iterdir()) == ["INSTALLER", "METADATA", "RECORD", "REQUESTED", "WHEEL"]


def test_a_rerun_keeps_the_mirror_and_a_new_lock_replaces_it_whole(
    org: Path, tmp_path: Path, pypi_index: str
) -> None:
    channel = load_org_channel(org / "channels" / "tiny.yaml")
    again = mirror_org_channel(channel, org / "pypi", org / "work", pypi_index)
    assert again.noop and again.wheels == 2
    # a lock that differs (here: by a comment) writes the mirror anew, from nothing left behind
    copy = tmp_path / "channels"
    copy.mkdir()
    (copy / "tiny.yaml").write_bytes((org / "channels" / "tiny.yaml").read_bytes())
    (copy / "tiny.lock").write_text((org / "channels" / "tiny.lock").read_text() + "# re-locked\n")
    mirror = tmp_path / "pypi"
    (mirror / "stale").mkdir(parents=True)
    built = mirror_org_channel(load_org_channel(copy / "tiny.yaml"), mirror, org / "work", pypi_index)
    assert not built.noop
    assert sorted(p.name for p in mirror.iterdir()) == [STATE_FILE, "index.html", "tinyapp", "tinyutil"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["channels", "pypi"]  # no scratch left


def test_the_mirror_is_a_directory_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "baseliner.yaml").write_text("schema_version: 1\npip_mirror: build/pypi\n")
    assert Project.load(tmp_path).pip_index == (tmp_path / "build" / "pypi").as_uri()
    (tmp_path / "baseliner.yaml").write_text(
        "schema_version: 1\npip_index_url: https://pypi.example/simple\n"
    )
    assert Project.load(tmp_path).pip_index == "https://pypi.example/simple"
    (tmp_path / "baseliner.yaml").write_text("schema_version: 1\npip_mirror: https://pypi.example/simple\n")
    with pytest.raises(SpecError) as info:
        Project.load(tmp_path)
    assert "pip_mirror" in info.value.render()
