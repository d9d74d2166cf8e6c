"""The org channel, built for real from wheels on a local index (whl2conda, py-rattler), and pip
after conda resolved knowing what conda installs."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from baseliner.config import Project
from baseliner.errors import ChannelError, LockError
from baseliner.orgchannel import build_org_channel, load_org_channel, lock_org_channel

from ..conftest import MakeProject, install_baseline

URL = "https://conda.example.org/tiny"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def _write_spec(root: Path, **fields: object) -> Path:
    spec = {
        "schema_version": 1,
        "name": "tiny",
        "url": URL,
        "python": PYTHON,
        "platform": "linux-64",
        "requirements": ["tinyutil ==1.2.0"],
        **fields,
    }
    path = root / "channels" / "tiny.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _hashes(channel: Path) -> dict[str, str]:
    return {
        p.relative_to(channel).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(channel.glob("*/*"))
        if p.name.endswith((".conda", ".tar.bz2"))
    }


@pytest.fixture(scope="session")
def tiny_channel(tmp_path_factory: pytest.TempPathFactory, pypi_index: str) -> Path:
    root = tmp_path_factory.mktemp("org")
    org = load_org_channel(_write_spec(root))
    lock_org_channel(org, pypi_index)
    build_org_channel(org, root / "channel", root / "work", pypi_index)
    return root


def test_the_same_lock_gives_identical_packages_and_a_rerun_does_nothing(
    tiny_channel: Path, tmp_path: Path, pypi_index: str
) -> None:
    org = load_org_channel(tiny_channel / "channels" / "tiny.yaml")
    first = _hashes(tiny_channel / "channel")
    assert set(first) == {
        "noarch/tinyutil-1.2.0-py_0.conda",
        "linux-64/python_abi-" + PYTHON + "-5_cp" + PYTHON.replace(".", "") + ".conda",
        f"linux-64/python-{sys.version.split()[0]}-0_baseliner_cp{PYTHON.replace('.', '')}.tar.bz2",
    }
    # Converted again from nothing (own wheel download, own conversion cache): the same bytes.
    again = build_org_channel(org, tmp_path / "channel", tmp_path / "work", pypi_index)
    assert again.converted == 1 and not again.noop
    assert _hashes(tmp_path / "channel") == first
    rerun = build_org_channel(org, tmp_path / "channel", tmp_path / "work", pypi_index)
    assert rerun.noop and rerun.converted == 0


def test_converted_packages_follow_conda_forge_shape(tiny_channel: Path) -> None:
    repodata = json.loads((tiny_channel / "channel" / "noarch" / "repodata.json").read_text())
    (record,) = repodata["packages.conda"].values()
    assert record["name"] == "tinyutil" and record["noarch"] == "python"
    assert record["depends"] == []  # a wheel without requirements depends on nothing
    platform = json.loads((tiny_channel / "channel" / "linux-64" / "repodata.json").read_text())
    abi = next(r for r in platform["packages.conda"].values() if r["name"] == "python_abi")
    assert abi["constrains"] == [f"python {PYTHON}.*"]


def test_a_stale_channel_lock_is_refused(tiny_channel: Path, tmp_path: Path) -> None:
    spec = _write_spec(tmp_path, requirements=["tinyutil ==1.2.0", "tinyapp"])
    (tmp_path / "channels" / "tiny.lock").write_bytes((tiny_channel / "channels" / "tiny.lock").read_bytes())
    with pytest.raises(ChannelError) as info:
        build_org_channel(load_org_channel(spec), tmp_path / "c", tmp_path / "w")
    assert "out of date" in info.value.render() and "invoke channel --lock" in info.value.render()


def org_project(make_project: MakeProject, tiny_channel: Path, pip: list[str], **config: object) -> Project:
    """A project whose `app` baseline takes tinyutil from the tiny org channel at `tiny_channel`
    and `pip` after it; `config` adds keys to its baseliner.yaml."""
    project = make_project(
        {
            "app": {
                "schema_version": 1,
                "name": "app",
                "version": "1.0",
                "channels": [URL],
                "conda": [f"python {PYTHON}.*", "tinyutil"],
                "pip": pip,
            }
        }
    )
    written = yaml.safe_load((project.root / "baseliner.yaml").read_text())
    written.update(channel_mirrors={URL: str(tiny_channel / "channel")}, **config)
    (project.root / "baseliner.yaml").write_text(yaml.safe_dump(written))
    return Project.load(project.root)


def test_pip_uses_the_conda_package_a_requirement_depends_on(
    make_project: MakeProject, tiny_channel: Path
) -> None:
    project = org_project(make_project, tiny_channel, ["tinyapp"])
    prefix = install_baseline(project, "app")
    pip_lock = (project.root / "baselines" / "app.pip-linux-64.txt").read_text()
    assert "tinyapp==0.5.0" in pip_lock and "tinyutil" not in pip_lock
    records = [json.loads(p.read_text()) for p in (prefix / "conda-meta").glob("*.json")]
    assert any(r["name"] == "tinyutil" for r in records)
    site = next(prefix.glob("lib/python*/site-packages"))
    (dist,) = site.glob("tinyutil-*.dist-info")
    assert (dist / "INSTALLER").read_text() == "whl2conda"  # conda's, never reinstalled by pip
    out = subprocess.run(
        [prefix / "bin" / "python", "-c", "import tinyapp; print(tinyapp.ANSWER)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "42"
    # the noarch entry point became a working script
    assert (
        subprocess.run([prefix / "bin" / "tinyutil"], capture_output=True, text=True).stdout.strip() == "42"
    )
    # and the conda-meta records name the canonical channel, not the directory it came from
    assert all(r["url"].startswith(URL + "/") and r["channel"] == URL + "/" for r in records)


def test_a_pip_requirement_needing_another_version_of_a_conda_package_fails_naming_both(
    make_project: MakeProject, tiny_channel: Path
) -> None:
    project = org_project(make_project, tiny_channel, ["needs-newer-util"])
    with pytest.raises(LockError) as info:
        install_baseline(project, "app")
    text = info.value.render()
    assert "needs another version of a package conda provides" in text
    assert "needs-newer-util" in text and "tinyutil==1.2.0 is installed by conda" in text
