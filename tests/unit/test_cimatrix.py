"""`invoke ci-matrix`: every baseline x platform in `extends:` levels, parents' level first, each
job's commands accepted by the real invoke program."""

from __future__ import annotations

import json

import yaml

from ..conftest import MakeProject, spec
from ..support.cli import baseliner
from .test_commands import parse_all


def _three_levels(make_project: MakeProject):  # type: ignore[no-untyped-def]
    return make_project(
        {
            "root": spec("root", platforms=["linux-64", "linux-aarch64"]),
            "mid": {
                "schema_version": 1,
                "name": "mid",
                "version": "1.0",
                "extends": "root",
                "conda": ["hello-noarch"],
            },
            "leaf": {
                "schema_version": 1,
                "name": "leaf",
                "version": "1.0",
                "extends": "mid",
                "pip": ["tinyapp"],
            },
            "solo": spec("solo"),
        }
    )


def test_the_matrix_groups_a_three_level_hierarchy_parents_first(make_project: MakeProject) -> None:
    project = _three_levels(make_project)
    ran = baseliner(project.root, "ci-matrix", "--format", "github", "--store", "/srv/store")
    assert ran.code == 0, ran.text
    matrix = json.loads(ran.out)
    assert matrix["levels"] == 3
    by_level = [[(j["name"], j["platform"]) for j in matrix[f"level-{k}"]["include"]] for k in range(3)]
    # platforms are inherited down the chain: every level builds both of root's
    assert by_level == [
        [("root", "linux-64"), ("root", "linux-aarch64"), ("solo", "linux-64")],
        [("mid", "linux-64"), ("mid", "linux-aarch64")],
        [("leaf", "linux-64"), ("leaf", "linux-aarch64")],
    ]
    job = matrix["level-2"]["include"][1]
    assert job["build"] == "invoke build-baseline leaf --platform linux-aarch64"
    assert job["publish"] == "invoke publish leaf --platform linux-aarch64 --store /srv/store"

    ran = baseliner(project.root, "ci-matrix", "--format", "gitlab")
    pipeline = yaml.safe_load(ran.out)
    assert pipeline["stages"] == ["level-0", "level-1", "level-2"]
    assert pipeline["default"] == {"before_script": ["make setup"]}
    jobs = {name.removeprefix("build "): job for name, job in pipeline.items() if name.startswith("build ")}
    assert jobs["leaf-linux-64"]["script"] == [
        ".venv/bin/invoke build-baseline leaf --platform linux-64",
        ".venv/bin/invoke publish leaf --platform linux-64",
    ]
    stage_of = {name: job["stage"] for name, job in jobs.items()}
    assert stage_of["leaf-linux-64"] == "level-2" and stage_of["mid-linux-aarch64"] == "level-1"
    assert stage_of["solo-linux-64"] == "level-0" and len(stage_of) == 7

    commands = [
        c
        for level in range(3)
        for j in matrix[f"level-{level}"]["include"]
        for c in (j["build"], j["publish"])
    ]
    for command, parsed in zip(commands, parse_all(commands), strict=True):
        assert "error" not in parsed, (command, parsed)


def test_an_unknown_format_is_refused(make_project: MakeProject) -> None:
    ran = baseliner(make_project({"one": spec("one")}).root, "ci-matrix", "--format", "jenkins")
    assert ran.code != 0 and "--format github or --format gitlab" in ran.text
