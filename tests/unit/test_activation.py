"""The exports of an environment's activate.d scripts, as the image bakes them into ENV."""

from __future__ import annotations

import subprocess

from baseliner.activation import EnvValue, activation_env
from baseliner.render import render_activation

from ..conftest import MakeProject, install_baseline, spec


def test_activation_exports_are_moved_to_the_image_prefix(make_project: MakeProject) -> None:
    project = make_project({"geo": spec("geo", conda=["python 3.*", "activatedemo"])})
    prefix = install_baseline(project, "geo")
    found = activation_env(prefix, "/opt/env")
    assert found == {
        "ACTIVATEDEMO_DATA": EnvValue("/opt/env/share/activatedemo"),
        "ACTIVATEDEMO_FLAG": EnvValue("on"),
        "PATH": EnvValue("/opt/env/libexec/activatedemo:", inherits=True),
    }
    dockerfile = render_activation("geo", "sha256:" + "ab" * 32, found).decode()
    assert 'ENV ACTIVATEDEMO_DATA="/opt/env/share/activatedemo"\n' in dockerfile
    assert 'ENV PATH="/opt/env/libexec/activatedemo:${PATH}"\n' in dockerfile
    assert f"FROM sha256:{'ab' * 32}\n" in dockerfile


def test_an_env_without_activation_scripts_bakes_nothing(make_project: MakeProject) -> None:
    project = make_project({"plain": spec("plain", conda=["python 3.*", "hello-noarch"])})
    assert activation_env(install_baseline(project, "plain"), "/opt/env") == {}


def test_the_rendered_entrypoint_activates_then_runs_the_command(make_project: MakeProject, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from baseliner.render import render_outputs

    project = make_project({"geo": spec("geo", conda=["python 3.*", "activatedemo"])})
    prefix = install_baseline(project, "geo")
    baseline = project.repo().resolve("geo")
    script = render_outputs(baseline, project.templates_dir)["entrypoint.sh"].decode()
    entrypoint = tmp_path / "entrypoint"
    entrypoint.write_text(script.replace("export CONDA_PREFIX=/opt/env", f"export CONDA_PREFIX={prefix}"))
    out = subprocess.run(
        ["bash", str(entrypoint), "sh", "-c", 'echo "$ACTIVATEDEMO_DATA"; activatedemo-tool'],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.splitlines() == [f"{prefix}/share/activatedemo", "activatedemo tool"]
