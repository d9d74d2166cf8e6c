"""Lint findings on real environments: each planted problem is found and named."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from uv import find_uv_bin

from baseliner.errors import LintError
from baseliner.lint import lint_env, raise_on_errors

from ..conftest import MakeProject, install_baseline, spec


def _checks(findings):  # type: ignore[no-untyped-def]
    return sorted({f.check for f in findings})


def test_clean_env_has_no_findings(make_project: MakeProject) -> None:
    prefix = install_baseline(
        make_project({"ml": spec("ml", conda=["python 3.*", "prefixdemo", "hello-noarch"], pip=["tinyapp"])}),
        "ml",
    )
    assert lint_env(prefix, ["/opt/env"]) == []


def test_pip_clobbering_a_conda_file_is_refused_naming_both(make_project: MakeProject) -> None:
    prefix = install_baseline(
        make_project({"ml": spec("ml", conda=["python 3.*", "hello-noarch"], pip=["clobber"])}), "ml"
    )
    findings = lint_env(prefix)
    assert _checks(findings) == ["changed-file", "pip-clobber"]  # the clobbered file also changed
    with pytest.raises(LintError) as info:
        raise_on_errors("ml", findings, "invoke build-baseline ml")
    text = info.value.render()
    assert "pip package clobber 1.0 overwrote files of conda package hello-noarch 0.3" in text
    assert "hello_noarch/__init__.py" in text


def test_pip_shadowing_a_conda_package(make_project: MakeProject, pypi_index: str) -> None:
    # A lock refuses this (tests/unit/test_lock.py); lint finds it where pip ran by hand.
    prefix = install_baseline(make_project({"ml": spec("ml", conda=["python 3.*", "hello-noarch"])}), "ml")
    uv_cmd = [find_uv_bin(), "pip", "install", "--python", str(prefix / "bin" / "python"), "--no-deps"]
    subprocess.run([*uv_cmd, "--no-config", "--index-url", pypi_index, "hello-noarch==9.0"], check=True)
    (finding,) = lint_env(prefix)
    assert finding.check == "pip-shadow"
    assert "pip package hello-noarch 9.0 shadows conda package hello-noarch 0.3" in finding.message


def test_editables_missing_changed_long_prefix_and_escaping_links(make_project: MakeProject) -> None:
    prefix = install_baseline(
        make_project({"ml": spec("ml", conda=["python 3.*", "prefixdemo", "hello-noarch"], pip=["tinyapp"])}),
        "ml",
    )
    site = next(prefix.glob("lib/python3*/site-packages"))
    direct = next(site.glob("tinyapp-*.dist-info")) / "direct_url.json"
    direct.write_text(json.dumps({"url": "file:///home/me/tinyapp", "dir_info": {"editable": True}}))
    (site / "oldstyle.egg-link").write_text("/home/me/oldstyle\n.\n")
    (site / "devpath.pth").write_text("/home/me/src\n")
    (prefix / "share/prefixdemo/config.txt").write_text("changed\n")
    (prefix / "bin/prefixdemo-config").unlink()
    os.symlink("/etc/passwd", prefix / "bin/passwd-link")
    findings = lint_env(prefix, ["/opt/" + "x" * 300])
    assert _checks(findings) == [
        "changed-file",
        "editable",
        "missing-file",
        "prefix-length",
        "symlink-escape",
    ]
    messages = "\n".join(f.message for f in findings)
    assert "tinyapp-0.5.0.dist-info is an editable install of file:///home/me/tinyapp" in messages
    assert "oldstyle.egg-link" in messages and "devpath.pth adds /home/me/src" in messages
    assert "prefixdemo 1.0: files differ from conda-meta: share/prefixdemo/config.txt" in messages
    assert "prefixdemo 1.0: files listed in conda-meta are missing: bin/prefixdemo-config" in messages
    assert "bin/prefixdemo (placeholder" in messages
    assert "bin/passwd-link -> /etc/passwd" in messages
    assert all(f.fix for f in findings)
