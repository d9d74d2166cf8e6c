"""Drift from a declared baseline, clean (dry run, protection, removal), export-env, the HTML page."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from baseliner.audit import clean
from baseliner.audit.export import export_env
from baseliner.audit.inventory import inventory
from baseliner.audit.report import AuditOptions, expected_from_store, html, run_audit
from baseliner.build import BuildOptions, build_baseline
from baseliner.lock import lock_files
from baseliner.store import Store, publish

from ..conftest import MakeProject, install_baseline, spec, unavailable
from ..support.fleet import build_fleet


@pytest.fixture
def published_env(make_project: MakeProject):  # type: ignore[no-untyped-def]
    project = make_project(
        {"org": spec("org", conda=["python 3.*", "hello-noarch", "libfoo 1.*"], pip=["tinyutil"])}
    )
    result = build_baseline(project, "org", BuildOptions(image=False))
    store = Store(project.store_location)
    publish(store, result.manifest, lock_files(project.repo().resolve("org").path))
    return project, store, project.build_dir / "envs" / "org-1.0-linux-64"


def test_drift_from_the_declared_baseline_is_found(published_env) -> None:  # type: ignore[no-untyped-def]
    _, store, prefix = published_env
    audit = run_audit(inventory(prefixes=[prefix]), expected=expected_from_store(store))
    assert [f for f in audit.findings if f.kind == "drift"] == []
    record = next((prefix / "conda-meta").glob("libfoo-*.json"))
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "version": "1.1"}))
    audit = run_audit(inventory(prefixes=[prefix]), expected=expected_from_store(store))
    (drift,) = [f.message for f in audit.findings if f.kind == "drift"]
    assert drift.startswith("org-1.0-linux-64 drifted from org: +0 -0 ~1 (libfoo)")


def test_clean_is_a_dry_run_that_spares_published_baselines(published_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, store, prefix = published_env
    envs_root, _ = build_fleet(tmp_path / "server")
    old = time.time() - 400 * 86400
    for path in (
        prefix / "bin" / "python",
        prefix / "conda-meta" / "history",
        prefix,
    ):  # the interpreter, not the link
        if path.exists():
            os.utime(path, (old, old))
    envs = inventory([envs_root], [prefix])
    published = {n: set(v) for n, v in store.index()["baselines"].items()}
    result = clean.plan(envs, 90, published)
    assert [Path(p).name for p, _ in result.envs] == ["exp-old"]
    assert result.envs[0][1] > 0 and result.bytes == result.envs[0][1]
    assert any("holds published baseline org@1.0" in k for k in result.kept)
    assert (envs_root / "exp-old").is_dir()  # a dry run removes nothing
    clean.execute(result)
    assert not (envs_root / "exp-old").exists() and prefix.is_dir() and (envs_root / "proj-alpha").is_dir()


def test_export_env_round_trips(make_project: MakeProject, tmp_path: Path) -> None:
    from rattler.explicit_environment import ExplicitEnvironmentSpec

    project = make_project(
        {"exp": spec("exp", conda=["python 3.*", "hello-noarch", "needs-old-foo"], pip=["tinyapp"])}
    )
    prefix = install_baseline(project, "exp")
    written = export_env(prefix, tmp_path / "export")
    env = yaml.safe_load((tmp_path / "export" / "environment.yml").read_text())
    conda = sorted(d for d in env["dependencies"] if isinstance(d, str))
    assert [d.split("=")[0] for d in conda] == ["hello-noarch", "libfoo", "needs-old-foo", "python"]
    assert env["dependencies"][-1] == {"pip": ["tinyapp==0.5.0", "tinyutil==1.2.0"]}
    assert env["channels"] == ["fixture", "nodefaults"]
    explicit = ExplicitEnvironmentSpec.from_path(tmp_path / "export" / "explicit.txt")
    urls = [e.url for e in explicit.packages]
    assert len(urls) == 4 and urls.index(next(u for u in urls if "/libfoo-" in u)) < urls.index(
        next(u for u in urls if "needs-old-foo" in u)
    )
    assert len(written) == 3


def test_html_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        unavailable("chromium is not installed (apt-get install chromium)", "BASELINER_REQUIRE_BROWSER")
    envs_root, cache = build_fleet(tmp_path / "server")
    audit = run_audit(inventory([envs_root]), AuditOptions(threshold=0.75), caches=[cache])
    page = tmp_path / "report.html"
    page.write_text(html(audit))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-500:]
    assert 'id="heatmap"' in dom.stdout and dom.stdout.count("<rect ") == len(audit.envs) ** 2
    assert "pip numpy 2.0.1 shadows conda numpy 1.26.4" in dom.stdout
    shot = tmp_path / "report.png"
    subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 10_000  # a real picture, not a blank page
