"""Installing locks into prefixes: a real conda prefix, hardlinks from the cache, atomic failure."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from baseliner.channels import DEFAULT_CHANNEL_ALIAS
from baseliner.envs import RELOCATABLE_LAUNCHER, _with_top_level
from baseliner.errors import EnvError

from ..conftest import FULL, MakeProject, install_baseline, spec
from ..support.fixture_channel import BINARY_PLACEHOLDER, TEXT_PLACEHOLDER


def test_installed_env_is_an_ordinary_conda_prefix(make_project: MakeProject) -> None:
    project = make_project({"ml": spec("ml", **FULL)})
    prefix = install_baseline(project, "ml")
    names = sorted(json.loads(p.read_text())["name"] for p in (prefix / "conda-meta").glob("*.json"))
    assert names == ["hello-noarch", "prefixdemo", "python"]
    # conda packages, the noarch entry point, pip packages and their console script all work
    out = subprocess.run(
        [prefix / "bin/python", "-c", "import hello_noarch, tinyapp; print(tinyapp.ANSWER)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "42"
    assert (
        subprocess.run([prefix / "bin/hello-noarch"], capture_output=True, text=True).stdout.strip()
        == "hello from noarch"
    )
    assert subprocess.run([prefix / "bin/tinyutil"], capture_output=True, text=True).stdout.strip() == "42"
    # prefix placeholders were replaced by the final (not the staging) prefix
    assert subprocess.run([prefix / "bin/prefixdemo"], capture_output=True, text=True).stdout.strip() == str(
        prefix
    )
    config = (prefix / "share/prefixdemo/config.txt").read_text()
    assert config == f"data_dir={prefix}/share/prefixdemo\n"
    assert TEXT_PLACEHOLDER not in config
    assert BINARY_PLACEHOLDER.encode() not in (prefix / "bin/prefixdemo").read_bytes()
    assert not list(prefix.parent.glob(".staging-*"))
    # the standard library comes compiled, as a conda python does: imported from checked-hash pycs
    probe = subprocess.run(
        [prefix / "bin/python", "-v", "-c", "import json.decoder"],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONDONTWRITEBYTECODE": "1"},
    )
    pyc = prefix / f"lib/python{sys.version_info.major}.{sys.version_info.minor}/json/__pycache__"
    assert (
        f"{pyc}/decoder.cpython-{sys.version_info.major}{sys.version_info.minor}.pyc matches" in probe.stderr
    )
    assert (pyc / f"decoder.cpython-{sys.version_info.major}{sys.version_info.minor}.pyc").read_bytes()[
        4:8
    ] == b"\x03\0\0\0"
    # the console script got a relocatable launcher, and its RECORD line the new hash and size
    script = (prefix / "bin/tinyutil").read_bytes()
    assert script.startswith(RELOCATABLE_LAUNCHER)
    (record,) = prefix.glob("lib/python*/site-packages/tinyutil-*.dist-info/RECORD")
    digest = base64.urlsafe_b64encode(hashlib.sha256(script).digest()).rstrip(b"=").decode()
    lines = [
        line
        for line in record.read_text().splitlines()
        if line.endswith(f"/bin/tinyutil,sha256={digest},{len(script)}")
    ]
    assert len(lines) == 1, record.read_text()


def test_conda_meta_names_the_canonical_channel_in_the_installers_own_layout(
    make_project: MakeProject,
) -> None:
    """The records name the lock's canonical URL, not the mirror; only those two values change, so
    the installer's layout (two-space indent) stays, and the file is the same JSON otherwise."""
    project = make_project({"ml": spec("ml", **FULL)})
    prefix = install_baseline(project, "ml")
    canonical = f"{DEFAULT_CHANNEL_ALIAS}/fixture"  # the spec's channel `fixture`, mirrored on disk
    for path in (prefix / "conda-meta").glob("*.json"):
        text = path.read_text()
        record = json.loads(text)
        assert record["url"].startswith(canonical + "/") and record["channel"] == canonical + "/"
        assert text.startswith('{\n  "'), text[:40]


def test_a_record_edit_that_cannot_be_made_in_place_is_written_whole() -> None:
    old = {"url": "file:///m/x.conda", "channel": "file:///m/", "n": 1}
    new = {**old, "url": "https://c.example/x.conda", "channel": "https://c.example/"}
    text = json.dumps(old, indent=2)
    assert _with_top_level(text, old, new) == json.dumps(new, indent=2)  # edited in place
    twice = {**old, "link": {"url": "file:///m/x.conda"}}  # the same pair nested: not edited in place
    assert json.loads(_with_top_level(json.dumps(twice, indent=2), twice, {**twice, "url": "u"})) == {
        **twice,
        "url": "u",
    }
    assert (
        _with_top_level(json.dumps(twice, indent=2), twice, {**twice, "url": "u"})
        == json.dumps({**twice, "url": "u"}, indent=1) + "\n"
    )
    # The one occurrence nested, the top-level pair spaced otherwise: the nested one is left alone
    nested = '{\n  "link": {\n    "url": "file:///m/x.conda"\n  },\n  "url":  "file:///m/x.conda"\n}'
    edited = json.loads(_with_top_level(nested, json.loads(nested), {**json.loads(nested), "url": "u"}))
    assert edited == {"link": {"url": "file:///m/x.conda"}, "url": "u"}
    compact = json.dumps(old)  # no line starts a key: written whole
    assert _with_top_level(compact, old, new) == json.dumps(new, indent=1) + "\n"
    missing = {"url": "file:///m/x.conda"}  # a key the record lacks is added by a full dump
    assert _with_top_level(json.dumps(missing), missing, new) == json.dumps(new, indent=1) + "\n"
    escaped = {"url": "file:///m/\u00e9.conda"}  # written unescaped by the installer: no match
    assert (
        _with_top_level(json.dumps(escaped, ensure_ascii=False), escaped, {"url": "u"})
        == json.dumps({"url": "u"}, indent=1) + "\n"
    )


def test_files_are_hardlinked_from_the_package_cache(make_project: MakeProject) -> None:
    project = make_project({"ml": spec("ml", conda=["python 3.*", "hello-noarch"])})
    prefix = install_baseline(project, "ml")
    env_file = next(prefix.glob("lib/python3*/os.py"))
    cached = next(project.package_cache.glob("python-*/lib/python3*/os.py"))
    assert env_file.stat().st_ino == cached.stat().st_ino
    second = install_baseline(project, "ml", env_name="ml-again")
    assert next(second.glob("lib/python3*/os.py")).stat().st_ino == cached.stat().st_ino


def test_failed_pip_install_leaves_nothing_behind(make_project: MakeProject) -> None:
    project = make_project({"ml": spec("ml", pip=["tinyapp"])})
    baseline = project.repo().resolve("ml")
    from baseliner.lock import LockPaths, lock_baseline

    lock_baseline(baseline, project.mirrors(), project.build_dir, project.pip_index)
    pip = LockPaths(baseline.path).pip("linux-64")
    text = pip.read_text()
    first = text.index("--hash=sha256:") + len("--hash=sha256:")
    pip.write_text(text[:first] + ("0" if text[first] != "0" else "1") + text[first + 1 :])
    with pytest.raises(EnvError, match="pip lock"):
        install_baseline(project, "ml")
    envs = project.build_dir / "envs"
    assert not (envs / "ml").exists()
    assert list(envs.iterdir()) == []


def test_tampered_package_is_refused(make_project: MakeProject, channel_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "tampered-channel"
    shutil.copytree(channel_dir, copy)
    project = make_project({"ml": spec("ml", conda=["libfoo 1.*"])}, channel_url=copy.as_uri())
    from baseliner.lock import lock_baseline

    baseline = project.repo().resolve("ml")
    lock_baseline(baseline, project.mirrors(), project.build_dir)
    archive = next(copy.glob("linux-64/libfoo-1.0-*"))
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(EnvError) as info:
        install_baseline(project, "ml")
    assert "libfoo" in info.value.render()
    assert not (project.build_dir / "envs" / "ml").exists()
