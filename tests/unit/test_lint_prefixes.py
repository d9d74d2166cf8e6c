"""Each lint check on a prefix written by hand (conda-meta records, a site-packages, links), with the
exact finding it must give; `test_lint.py` runs the same checks on environments the engines built.
No engine runs here, so these take milliseconds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from baseliner.errors import LintError
from baseliner.lint import LintFinding, lint_env, pip_distributions, raise_on_errors

SITE = "lib/python3.11/site-packages"


def _record(prefix: Path, name: str, version: str, files: dict[str, bytes], **entries: Any) -> dict[str, Any]:
    """Install `files` as conda package NAME (conda-meta record with paths_data); returns it."""
    paths = []
    for rel, data in files.items():
        (prefix / rel).parent.mkdir(parents=True, exist_ok=True)
        (prefix / rel).write_bytes(data)
        paths.append(
            {
                "_path": rel,
                "path_type": "hardlink",
                "sha256": hashlib.sha256(data).hexdigest(),
                **entries.get(rel, {}),
            }
        )
    record = {"name": name, "version": version, "files": sorted(files), "paths_data": {"paths": paths}}
    (prefix / "conda-meta").mkdir(parents=True, exist_ok=True)
    (prefix / "conda-meta" / f"{name}-{version}-0.json").write_text(json.dumps(record))
    return record


def _pip(prefix: Path, dist: str, metadata: bytes, record: list[str]) -> Path:
    info = prefix / SITE / f"{dist}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_bytes(metadata)
    (info / "RECORD").write_text("".join(f"{line}\n" for line in record))
    return info


def test_pip_distributions_read_names_versions_and_files_even_when_not_utf8(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    info = _pip(
        prefix,
        "caf_lib-1.0",
        b"Metadata-Version: 2.1\nName: caf\xe9-lib \nVersion: 1.0 \nSummary: caf\xe9\n",
        [
            "caf_lib/__init__.py,sha256=x,1",
            "../../../bin/caf,sha256=y,2",
            "/etc/caf.conf,,",
            "",
            "caf_lib-1.0.dist-info/RECORD,,",
        ],
    )
    (info / "RECORD").write_bytes((info / "RECORD").read_bytes() + b"caf_lib/d\xe9j\xe0.py,,\n")
    bare = prefix / SITE / "bare-2.0.dist-info"  # no METADATA, no RECORD
    bare.mkdir()
    (dist, other) = pip_distributions(prefix, set())
    assert (dist.name, dist.version, dist.dist_info) == ("bare", "?", bare)
    assert dist.files == ()
    assert (other.name, other.version, other.dist_info) == ("caf\ufffd-lib", "1.0", info)
    assert other.files == (
        f"{SITE}/caf_lib/__init__.py",
        "bin/caf",
        "/etc/caf.conf",
        f"{SITE}/caf_lib-1.0.dist-info/RECORD",
        f"{SITE}/caf_lib/d\ufffdj\ufffd.py",
    )
    # a dist-info that a conda package installed is conda's, not pip's
    conda_owned = {f"{SITE}/bare-2.0.dist-info/RECORD"}
    assert [d.name for d in pip_distributions(prefix, conda_owned)] == ["caf\ufffd-lib"]
    assert [d.name for d in pip_distributions(prefix, {f"{SITE}/caf_lib-1.0.dist-info/METADATA"})] == ["bare"]


def test_a_clean_prefix_has_no_findings(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    _record(prefix, "tool", "1.0", {"bin/tool": b"#!/bin/sh\n", f"{SITE}/tool.py": b"x = 1\n"})
    (prefix / "bin" / "alias").symlink_to("tool")
    _pip(prefix, "extra-2.0", b"Name: extra\nVersion: 2.0\n", ["extra.py,,"])
    (prefix / SITE / "extra.py").write_text("")
    # An "import" line is code, not a path: followed as one, this one would leave the prefix.
    escape = "../" * 16
    (prefix / SITE / "local.pth").write_text(
        f"# a comment\n\nimport sys; sys.path.insert(0, '{escape}x')\nextra\n"
    )
    assert lint_env(prefix) == []
    assert lint_env(tmp_path / "no-such-env") == []


def test_pip_over_conda_is_a_clobber_or_a_shadow_by_normalised_name(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    _record(prefix, "Ruamel.YAML", "0.17", {f"{SITE}/ruamel/yaml.py": b"conda's\n"})
    _record(
        prefix, "numpy", "1.24", {f"{SITE}/numpy/__init__.py": b"conda's\n", f"{SITE}/numpy/a.py": b"a\n"}
    )
    _pip(prefix, "ruamel_yaml-0.18", b"Name: ruamel_yaml\nVersion: 0.18\n", ["ruamel_yaml/x.py,,"])
    _pip(
        prefix,
        "numpy-1.26",
        b"Name: NumPy\nVersion: 1.26\n",
        ["numpy/__init__.py,,", "numpy/a.py,,", "numpy/b.py,,"],
    )
    assert lint_env(prefix) == [
        LintFinding(
            "error",
            "pip-clobber",
            f"pip package NumPy 1.26 overwrote files of conda package numpy 1.24: {SITE}/numpy/__init__.py, {SITE}/numpy/a.py",
            "drop NumPy from `pip:` (conda provides it) or from `conda:`",
        ),
        LintFinding(
            "error",
            "pip-shadow",
            "pip package ruamel_yaml 0.18 shadows conda package ruamel-yaml 0.17",
            "keep one of them: remove ruamel_yaml from `pip:` or from `conda:`",
        ),
    ]


def test_editable_installs_in_each_of_their_three_forms(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    site = prefix / SITE
    info = _pip(prefix, "mine-0.1", b"Name: mine\nVersion: 0.1\n", [])
    (info / "direct_url.json").write_text(
        json.dumps({"url": "file:///src/mine", "dir_info": {"editable": True}})
    )
    wheel = _pip(prefix, "wheel_one-1.0", b"Name: wheel_one\nVersion: 1.0\n", [])
    (wheel / "direct_url.json").write_text(json.dumps({"url": "file:///w.whl", "dir_info": {}}))
    broken = _pip(prefix, "broken-1.0", b"Name: broken\nVersion: 1.0\n", [])
    (broken / "direct_url.json").write_text("{not json")
    (site / "old.egg-link").write_text("/src/old\n")
    (site / "inside").mkdir()
    # an `import` line is run, not added to sys.path, whatever it looks like
    (site / "paths.pth").write_text(
        "inside\n../../../lib\n/src/outside\n ../../../../escape \nimport ../../../../../x\n"
    )
    messages = [(f.check, f.message, f.fix) for f in lint_env(prefix)]
    assert messages == [
        (
            "editable",
            "mine-0.1.dist-info is an editable install of file:///src/mine",
            "install it as a normal package (a wheel) or move it to an overlay",
        ),
        (
            "editable",
            "old.egg-link is an editable (develop) install",
            "install the package normally instead of `setup.py develop` / `pip install -e`",
        ),
        (
            "editable",
            "paths.pth adds ../../../../escape (outside the prefix) to sys.path",
            "remove the .pth file or install the package into the environment",
        ),
        (
            "editable",
            "paths.pth adds /src/outside (outside the prefix) to sys.path",
            "remove the .pth file or install the package into the environment",
        ),
    ]


def test_missing_changed_and_too_long_files_are_named_per_package(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    placeholder = "/" + "p" * 199  # 200 characters, longer than this test's prefix
    assert len(str(prefix.resolve())) < len(placeholder)
    files = {f"lib/f{i}": b"%d\n" % i for i in range(7)}
    _record(
        prefix,
        "pkg",
        "2.0",
        {**files, "lib/bin.so": b"\0binary", "lib/text.sh": b"text", "lib/rewritten": b"new"},
        **{
            "lib/bin.so": {"prefix_placeholder": placeholder, "file_mode": "binary"},
            "lib/text.sh": {"prefix_placeholder": placeholder[:20], "file_mode": "text"},
            "lib/rewritten": {"prefix_placeholder": placeholder, "file_mode": "text", "sha256": "0" * 64},
        },
    )
    record_path = next((prefix / "conda-meta").glob("pkg-*.json"))
    record = json.loads(record_path.read_text())
    record["paths_data"]["paths"] += [
        {"_path": "lib/link", "path_type": "softlink"},
        {"_path": "lib/dir", "path_type": "directory"},
        {"_path": "lib/in-prefix", "sha256": "0" * 64, "sha256_in_prefix": hashlib.sha256(b"p").hexdigest()},
    ]
    record_path.write_text(json.dumps(record))
    (prefix / "lib" / "in-prefix").write_bytes(b"p")
    for i in range(5):
        (prefix / f"lib/f{i}").unlink()  # five missing, and lib/link: six
    (prefix / "lib/f5").write_bytes(b"changed")
    (prefix / "lib/f6").write_bytes(b"changed")
    assert [(f.severity, f.check, f.message, f.fix) for f in lint_env(prefix)] == [
        (
            "error",
            "changed-file",
            "pkg 2.0: files differ from conda-meta: lib/f5, lib/f6",
            "rebuild the environment; a later install step modified package files",
        ),
        (
            "error",
            "missing-file",
            "pkg 2.0: files listed in conda-meta are missing: lib/f0, lib/f1, lib/f2, + 3 others",
            "rebuild the environment; something deleted package files",
        ),
    ]
    (prefix / "lib" / "link").symlink_to("f6")
    (prefix / "lib" / "f6").write_bytes(b"6\n")
    for i in range(6):
        (prefix / f"lib/f{i}").write_bytes(b"%d\n" % i)
    assert lint_env(prefix, ["/" + "q" * 199]) == []  # exactly the placeholder's length: fits
    over = "/" + "q" * 200  # one character more: the binary file can no longer be relocated there
    assert lint_env(prefix, ["/x", over]) == [
        LintFinding(
            "error",
            "prefix-length",
            "pkg 2.0: prefix of 201 chars is longer than the binary placeholder of lib/bin.so (placeholder 200 chars)",
            "choose a shorter env prefix (image.prefix or the build directory)",
        )
    ]


def test_links_out_of_the_prefix_are_named_and_links_inside_are_not(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    (prefix / "lib" / "sub").mkdir(parents=True)
    (prefix / "lib" / "x").write_text("")
    (prefix / "lib" / "sub" / "ok").symlink_to("../x")
    (prefix / "lib" / "sub" / "edge").symlink_to("../../lib")  # the prefix's own lib: inside
    (prefix / "lib" / "sub" / "out").symlink_to("../../../outside")  # one level out
    (prefix / "lib" / "abs").symlink_to("/etc/passwd")
    (prefix / "lib" / "abs-in").symlink_to(prefix.resolve() / "lib" / "x")
    (prefix / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    assert lint_env(prefix) == [
        LintFinding(
            "error",
            "symlink-escape",
            f"symlinks point outside the prefix: dirlink -> {tmp_path}, lib/abs -> /etc/passwd, "
            "lib/sub/out -> ../../../outside",
            "make the links relative to files inside the environment",
        )
    ]


def test_errors_stop_the_build_naming_each_and_warnings_do_not() -> None:
    warning = LintFinding("warning", "w", "just so you know", "nothing")
    raise_on_errors("demo", [warning], "invoke build-baseline demo")
    errors = [LintFinding("error", f"c{i}", f"problem {i}", f"fix {i}") for i in range(9)]
    with pytest.raises(LintError) as caught:
        raise_on_errors("demo", [warning, *errors], "invoke build-baseline demo")
    assert caught.value.message == "environment of 'demo' has 9 problem(s) that must be fixed before packing"
    assert caught.value.details == [f"[c{i}] problem {i} — fix: fix {i}" for i in range(9)]
    assert caught.value.detail_limit == 8
    assert caught.value.hint == "fix the spec, then run `invoke build-baseline demo` again"


def test_findings_are_sorted_errors_first_then_by_check(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    (prefix / SITE).mkdir(parents=True)
    (prefix / SITE / "b.egg-link").write_text("")
    (prefix / SITE / "a.egg-link").write_text("")
    (prefix / "out").symlink_to("/")
    assert [(f.check, f.message.split(" ")[0]) for f in lint_env(prefix)] == [
        ("editable", "a.egg-link"),
        ("editable", "b.egg-link"),
        ("symlink-escape", "symlinks"),
    ]
