"""The console script as a user types it: the real invoke Program, exit codes, `--json`, dry runs,
and errors as one screen (never a traceback)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from baseliner import __version__
from baseliner.errors import CacheError, LockError, RenderError, SpecError

from ..conftest import MakeProject, install_baseline, spec
from ..support.cli import baseliner


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text, text


def test_version_and_an_unknown_task() -> None:
    ran = baseliner(Path.cwd(), "--version")
    assert (ran.code, ran.out.strip()) == (0, f"baseliner {__version__}")
    ran = baseliner(Path.cwd(), "biuld-baseline", "demo")
    assert ran.code == 1 and "No idea what 'biuld-baseline' is!" in ran.text
    _no_traceback(ran.text)


def test_a_missing_positional_is_a_parse_error(make_project: MakeProject) -> None:
    project = make_project({"one": spec("one")})
    ran = baseliner(project.root, "build-baseline")
    assert (
        ran.code == 1 and "'build-baseline' did not receive required positional arguments: 'name'" in ran.text
    )
    _no_traceback(ran.text)


def test_validate_json_names_file_line_and_key(make_project: MakeProject) -> None:
    project = make_project({"good": spec("good"), "bad": spec("bad", condaa=["x"])})
    ran = baseliner(project.root, "validate", "--json")
    assert ran.code == SpecError.exit_code
    results = {r["name"]: r for r in json.loads(ran.out)}
    assert results["good"]["ok"] and results["good"]["chain"] == ["good"]
    assert not results["bad"]["ok"]
    lines = (project.root / "baselines" / "bad.yaml").read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if text.startswith("condaa:"))
    assert f"bad.yaml, line {line})" in results["bad"]["error"]
    assert f"condaa: unknown key (line {line})" in results["bad"]["error"]
    assert "invoke validate -n bad" in results["bad"]["error"]
    _no_traceback(ran.err)


def test_lock_check_names_the_stale_lock_and_the_command(make_project: MakeProject) -> None:
    project = make_project({"st": spec("st")})
    assert baseliner(project.root, "lock", "-n", "st").code == 0
    ran = baseliner(project.root, "lock", "--check", "-n", "st")
    assert ran.code == 0 and "fresh" in ran.text
    path = project.root / "baselines" / "st.yaml"
    path.write_text(yaml.safe_dump(spec("st", conda=["python 3.*", "hello-noarch"])))
    ran = baseliner(project.root, "lock", "--check")
    assert ran.code == LockError.exit_code
    assert "st" in ran.err and "`invoke lock -n st`" in ran.err
    _no_traceback(ran.err)


def test_render_check_fails_until_rendered(make_project: MakeProject) -> None:
    project = make_project({"rd": spec("rd")})
    baseliner(project.root, "lock", "-n", "rd")
    ran = baseliner(project.root, "render", "--check")
    assert ran.code == RenderError.exit_code and "images/rd" in ran.err
    assert baseliner(project.root, "render").code == 0
    assert baseliner(project.root, "render", "--check").code == 0
    (project.root / "images" / "rd" / "Dockerfile").write_text("FROM scratch\n")
    ran = baseliner(project.root, "render", "--check", "-n", "rd")
    assert ran.code == RenderError.exit_code and "Dockerfile" in ran.err


def test_clean_is_a_dry_run_without_yes(make_project: MakeProject, tmp_path: Path) -> None:
    project = make_project({"cl": spec("cl", conda=["python 3.*", "hello-noarch"])})
    env = install_baseline(project, "cl")
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    env.rename(fleet / "old-env")
    ran = baseliner(project.root, "clean", "--root", str(fleet), "--older-than", "0d")
    assert ran.code == 0 and f"would remove {fleet / 'old-env'}" in ran.err and "dry run" in ran.err
    assert (fleet / "old-env" / "conda-meta").is_dir()
    ran = baseliner(project.root, "clean", "--root", str(fleet), "--older-than", "0d", "--yes")
    assert ran.code == 0 and "freed" in ran.err and not (fleet / "old-env").exists()


def test_cache_prune_is_a_dry_run_without_yes(make_project: MakeProject, tmp_path: Path) -> None:
    from baseliner.build import BuildOptions, build_baseline
    from baseliner.lock import lock_files
    from baseliner.store import Store, publish

    project = make_project({"cp": spec("cp", conda=["python 3.*", "hello-noarch"])})
    result = build_baseline(project, "cp", BuildOptions(image=False))
    publish(Store(project.store_location), result.manifest, lock_files(project.repo().resolve("cp").path))
    shared = tmp_path / "shared-pkgs"
    assert baseliner(project.root, "cache", "--directory", str(shared)).code == 0
    before = sorted(p.name for p in shared.iterdir())
    assert any(name.startswith("hello-noarch-") for name in before)
    ran = baseliner(project.root, "cache.prune", "--directory", str(shared))
    assert ran.code == 0 and "0 package(s)" in ran.err  # the published lock needs them all
    empty = tmp_path / "empty-store"
    empty.mkdir()
    ran = baseliner(project.root, "cache.prune", "--directory", str(shared), "--store", str(empty))
    assert ran.code == 0 and "would remove hello-noarch-" in ran.err and "dry run" in ran.err
    assert sorted(p.name for p in shared.iterdir()) == before
    ran = baseliner(project.root, "cache.prune", "--directory", str(shared), "--store", str(empty), "--yes")
    assert ran.code == 0 and "removed hello-noarch-" in ran.err
    assert not [p for p in shared.iterdir() if p.name.startswith("hello-noarch-")]
    assert "hello-noarch" not in (shared / "urls.txt").read_text()  # conda's record of it goes too
    assert baseliner(project.root, "cache.verify", "--directory", str(shared)).code == 0


def test_cache_export_needs_one_destination(make_project: MakeProject) -> None:
    project = make_project({"ex": spec("ex")})
    ran = baseliner(project.root, "cache.export")
    assert ran.code == CacheError.exit_code and "--volume NAME or --tar FILE" in ran.err
    _no_traceback(ran.err)


def test_an_overlay_spec_error_names_the_overlay_and_a_command_that_checks_it(
    make_project: MakeProject, tmp_path: Path
) -> None:
    project = make_project({"ob": spec("ob")})
    path = tmp_path / "proj" / "overlay.yaml"
    path.parent.mkdir()
    path.write_text("schema_version: 1\nname: proj-x\nextends: ob@1.0\nconda: 5\n")
    ran = baseliner(project.root, "lock-overlay", str(path), cwd=path.parent)
    assert ran.code == SpecError.exit_code
    assert f"overlay 'proj-x' is invalid ({path}, line 4)" in ran.err
    hint = ran.err.split("hint: ", 1)[1]
    command = hint.split("`")[1]
    assert command == f"baseliner lock-overlay {path} --check"
    # The hinted command runs and reports the same problem.
    again = subprocess.run(
        [str(Path(sys.executable).with_name("baseliner")), *shlex.split(command)[1:]],
        capture_output=True,
        text=True,
        cwd=path.parent,
    )
    assert again.returncode == SpecError.exit_code and "overlay 'proj-x' is invalid" in again.stderr
    _no_traceback(ran.err + again.stderr)


def test_a_store_url_is_used_by_its_scheme_or_refused_never_taken_as_a_path(
    make_project: MakeProject,
) -> None:
    from baseliner.errors import StoreError
    from baseliner.store import Store

    project = make_project({"one": spec("one")})
    ran = baseliner(project.root, "publish", "one", "--store", "oci://127.0.0.1:9/org")
    assert ran.code == StoreError.exit_code, ran.text  # taken as a registry: the baseline is not built yet
    assert "one 1.0 (linux-64) is not built" in ran.text and "invoke build-baseline one" in ran.text
    _no_traceback(ran.text)
    assert not (project.root / "oci:").exists()
    ran = baseliner(project.root, "publish", "one", "--store", "ftp://host/store")
    assert ran.code == StoreError.exit_code and "ftp:// stores are not supported" in ran.text, ran.text
    assert "file://" in ran.text and "https://" in ran.text and "oci://" in ran.text
    _no_traceback(ran.text)
    config = project.root / "baseliner.yaml"
    config.write_text(config.read_text() + "store: s3://bucket/baselines\n")
    ran = baseliner(project.root, "publish", "one")
    assert ran.code == StoreError.exit_code and "s3:// stores are not supported" in ran.text, ran.text
    assert not (project.root / "s3:").exists()

    assert Store("file:///srv/store").path == Path("/srv/store")
    assert Store("file://localhost/srv/store").path == Path("/srv/store")
    assert Store("FILE:///srv/my%20store").path == Path("/srv/my store")
    assert Store("HTTPS://example.org/store").is_remote
    assert Store("dist/store").path == Path("dist/store")
    with pytest.raises(StoreError, match="names an absolute path"):
        Store("file://dist/store")
