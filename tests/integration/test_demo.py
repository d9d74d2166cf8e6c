"""The real `demo` baseline (122 conda packages from the org channel), built once per session and
used as its clients use it: the Jupyter server in the image, pip, the unpacked tarball, conda's
files. Shares one build (`demo_build` in conftest.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from baseliner.envs import conda_records
from baseliner.images import run
from baseliner.pack import unpack

pytestmark = pytest.mark.docker

WANTED = {
    "python",
    "pip",
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "matplotlib-base",
    "jupyterlab",
    "jupyterhub",
}


def _env(project: Any) -> Path:
    (env,) = (project.build_dir / "envs").iterdir()
    return Path(env)


def _du(path: Path) -> int:
    return int(
        subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]
    )


def test_demo_is_a_real_notebook_stack_all_conda(demo_build: Any) -> None:
    project, result, _ = demo_build
    records = conda_records(_env(project))
    names = {r["name"] for r in records}
    assert len(records) >= 120 and names >= WANTED
    assert _du(_env(project)) >= 500 * 1024 * 1024
    assert result.steps[-1].name == "smoke"


def test_jupyter_server_answers_and_clients_run_in_the_image(demo_build: Any, docker_client: Any) -> None:
    _, result, _ = demo_build
    script = (
        "jupyter server --ServerApp.ip=127.0.0.1 --ServerApp.port=8888 --IdentityProvider.token= "
        "--ServerApp.open_browser=False >/tmp/server.log 2>&1 &\n"
        "python - <<'PY'\n"
        "import json, time, urllib.request\n"
        "for _ in range(120):\n"
        "    try:\n"
        "        r = urllib.request.urlopen('http://127.0.0.1:8888/api', timeout=2)\n"
        "        print('STATUS', r.status, json.dumps(json.loads(r.read())))\n"
        "        break\n"
        "    except OSError:\n"
        "        time.sleep(0.5)\n"
        "PY\n"
        "id -u; jupyterhub-singleuser --version; pip --version\n"
    )
    out = run(docker_client, result.image_tags[0], ["sh", "-c", script], timeout=180)
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    status = next(line for line in lines if line.startswith("STATUS"))
    assert status.split()[1] == "200" and "version" in json.loads(status.split(" ", 2)[2])
    assert "1000" in lines
    assert any(line.startswith("pip ") and "/opt/env/" in line for line in lines)
    assert any(line.strip()[:1].isdigit() and line.count(".") >= 2 for line in lines)  # jupyterhub version


def _no_mirror_or_build_path(records: list[dict[str, Any]], build_paths: list[str], url: str) -> list[str]:
    bad = []
    for r in records:
        if not r["url"].startswith(url + "/") or r["channel"].rstrip("/") != url:
            bad.append(f"{r['name']}: {r['url']} ({r['channel']})")
        text = json.dumps(r)
        bad += [f"{r['name']}: names {p}" for p in build_paths if p in text]
    return bad


def test_no_conda_meta_record_names_a_mirror_or_a_build_path(
    demo_build: Any, docker_client: Any, tmp_path: Path
) -> None:
    project, result, channel = demo_build
    url = "https://conda.example.org/org"
    # the env: canonical url and channel (it lives beside the build's package cache, which
    # extracted_package_dir names; conda-pack blanks that in the tarball)
    assert _no_mirror_or_build_path(conda_records(_env(project)), [str(channel), "file://"], url) == []
    # the unpacked tarball, elsewhere: no path of the build machine at all, and pip runs
    dest = unpack(result.tarball, tmp_path / "offline")
    assert _no_mirror_or_build_path(conda_records(dest), [str(project.root), "file://"], url) == []
    # conda-pack makes scripts `#!/usr/bin/env python3.11`: they run with the env activated
    activated = f". {dest}/bin/activate && pip --version"
    pip = subprocess.run(["bash", "-c", activated], capture_output=True, text=True)
    assert pip.returncode == 0 and str(dest) in pip.stdout, pip.stderr
    # the image
    dump = "import json, glob; print(json.dumps([json.load(open(p)) for p in glob.glob('/opt/env/conda-meta/*.json')]))"
    out = run(docker_client, result.image_tags[0], ["python", "-c", dump])
    records = json.loads(out.output.strip().splitlines()[-1])
    assert len(records) >= 120
    assert _no_mirror_or_build_path(records, [str(project.root), "file://"], url) == []


def test_environment_yml_and_condarc_name_everything_conda_needs(demo_build: Any, tmp_path: Path) -> None:
    """conda is not installable here: resolve environment.yml the way conda would, through the
    condarc's custom_channels, against the channel those URLs name (py-rattler, offline)."""
    from baseliner.channels import resolve_channel
    from baseliner.lock import solve_records, virtual_packages

    project, _, channel = demo_build
    env = yaml.safe_load((project.images_dir / "demo" / "environment.yml").read_text())
    condarc = yaml.safe_load((project.images_dir / "demo" / "condarc").read_text())
    names = [c for c in env["channels"] if c != "nodefaults"]
    urls = [f"{condarc['custom_channels'][n]}/{n}" for n in names]
    assert urls == ["https://conda.example.org/org"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert any(d.startswith("pip=") for d in conda)  # pip is a conda dependency of the pip section
    ref = resolve_channel(urls[0], {urls[0]: channel.as_uri()}, tmp_path)
    specs = ["{} =={} {}".format(*d.split("=")) for d in conda]  # conda's name=version=build
    solved = solve_records(specs, [ref], "linux-64", tmp_path, virtual_packages((), "linux-64"))
    assert {str(r.name.normalized) for r in solved} == {d.split("=")[0] for d in conda}
    assert env["dependencies"][-1]["pip"][0].startswith("tabulate==")
