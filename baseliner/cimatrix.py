"""The CI build matrix: every baseline x platform, in `extends:` levels, for fanning builds out
across runners.

Level 0 holds the baselines that extend nothing, level N those whose `extends:` chain is N deep.
Each level's jobs run in parallel, and a level starts only when the one before it has published.
Each job builds one baseline for one platform and publishes it (`invoke build-baseline NAME
--platform P`, then `invoke publish NAME --platform P`) to the org's store. A child therefore
always finds its parents published.

Two renderings:

* `github`: a JSON object, `{"levels": N, "level-0": {"include": [...]}, ...}`, for a plan job's
  output that later jobs read with `fromJSON(...)['level-K']` as their `strategy.matrix`;
* `gitlab`: a child pipeline (`stages: [level-0, ...]`, one job per baseline x platform), for
  GitLab's dynamic child pipelines (`trigger: include: artifact:`).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass
from typing import Literal

import yaml

from .spec import BaselineRepo

Format = Literal["github", "gitlab"]
VENV_BIN = ".venv/bin/"  # where `make setup` puts invoke in a checkout


@dataclass(frozen=True)
class Job:
    name: str
    platform: str
    level: int
    build: str
    publish: str

    @property
    def id(self) -> str:
        return f"{self.name}-{self.platform}"


def levels(repo: BaselineRepo, store: str = "", registry: str = "") -> list[list[Job]]:
    """The jobs of every baseline in `repo`, grouped by the depth of its `extends:` chain."""
    grouped: dict[int, list[Job]] = {}
    for baseline in repo.resolve_all():
        level = len(baseline.chain) - 1
        for platform in baseline.platforms:
            publish = ["invoke", "publish", baseline.name, "--platform", platform]
            if store:
                publish += ["--store", store]
            if registry:
                publish += ["--registry", registry]
            job = Job(
                baseline.name,
                platform,
                level,
                shlex.join(["invoke", "build-baseline", baseline.name, "--platform", platform]),
                shlex.join(publish),
            )
            grouped.setdefault(level, []).append(job)
    return [sorted(grouped[k], key=lambda j: (j.name, j.platform)) for k in sorted(grouped)]


def render(jobs: list[list[Job]], fmt: Format) -> str:
    """The matrix as GitHub Actions reads it (JSON) or as a GitLab child pipeline (YAML)."""
    if fmt == "github":
        data: dict[str, object] = {"levels": len(jobs)}
        for index, level in enumerate(jobs):
            data[f"level-{index}"] = {"include": [asdict(j) for j in level]}
        return json.dumps(data, sort_keys=False)
    pipeline: dict[str, object] = {
        "stages": [f"level-{i}" for i in range(len(jobs))],
        "default": {"before_script": ["make setup"]},  # each job sets up its checkout: .venv/bin/invoke
    }
    for index, level in enumerate(jobs):
        for job in level:
            script = [f"{VENV_BIN}{job.build}", f"{VENV_BIN}{job.publish}"]
            pipeline[f"build {job.id}"] = {"stage": f"level-{index}", "script": script}
    return yaml.safe_dump(pipeline, sort_keys=False)
