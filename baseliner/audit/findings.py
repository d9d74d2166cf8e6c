"""Findings over an inventory: what a platform engineer should fix, each naming the environments.

* pip distributions shadowing conda packages of the same (normalised) name, with both versions;
* the same package from different channels within a cluster, and build-string splits (same
  version, different build — can mean a different BLAS or CUDA);
* environment names that break the naming convention (a regex);
* stale environments (unused for N days) and users above an environment-count quota;
* environments that declare a baseline and have drifted from its lock.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .inventory import EnvProfile

DEFAULT_NAMING = r"^(proj|exp|tool)-[a-z0-9][a-z0-9-]*$"
# conda names whose python distribution is called differently
CONDA_TO_PIP = {
    "pytorch": "torch",
    "py-opencv": "opencv-python",
    "pyqt": "pyqt5",
    "tensorflow-base": "tensorflow",
}


@dataclass(frozen=True)
class Finding:
    kind: str
    envs: tuple[str, ...]
    message: str


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_shadowing(envs: Sequence[EnvProfile]) -> list[Finding]:
    """Environments where pip installed a distribution that a conda package already provides."""
    out = []
    for env in envs:
        conda = {_norm(CONDA_TO_PIP.get(p.name, p.name)): p for p in env.conda}
        for pkg in env.pip:
            hit = conda.get(_norm(pkg.name))
            if hit is not None:
                out.append(
                    Finding(
                        "pip-shadows-conda",
                        (env.name,),
                        f"{env.name}: pip {pkg.name} {pkg.version} shadows conda {hit.name} {hit.version}",
                    )
                )
    return out


def cluster_splits(envs: Sequence[EnvProfile], clusters: Sequence[Sequence[int]]) -> list[Finding]:
    """Clusters whose members mix channels or builds of one package version."""
    out = []
    for number, members in enumerate(clusters):
        channels: dict[str, set[str]] = defaultdict(set)
        builds: dict[tuple[str, str], set[str]] = defaultdict(set)
        for index in members:
            for pkg in envs[index].conda:
                if pkg.channel:
                    channels[pkg.name].add(pkg.channel)
                if pkg.build:
                    builds[(pkg.name, pkg.version)].add(pkg.build)
        names = tuple(envs[i].name for i in members)
        for name, chans in sorted(channels.items()):
            if len(chans) > 1:
                out.append(
                    Finding(
                        "channel-mix",
                        names,
                        f"cluster {number}: {name} comes from {', '.join(sorted(chans))}",
                    )
                )
        for (name, version), blds in sorted(builds.items()):
            if len(blds) > 1:
                out.append(
                    Finding(
                        "build-split",
                        names,
                        f"cluster {number}: {name} {version} has builds {', '.join(sorted(blds))}",
                    )
                )
    return out


def naming(envs: Sequence[EnvProfile], pattern: str = DEFAULT_NAMING) -> list[Finding]:
    """Prefix environments whose name does not match the naming `pattern`."""
    regex = re.compile(pattern)
    return [
        Finding("naming", (e.name,), f"{e.name!r} does not match {pattern}")
        for e in envs
        if e.kind == "prefix" and not regex.match(e.name)
    ]


def stale(envs: Sequence[EnvProfile], days: int, now: datetime | None = None) -> list[Finding]:
    """Prefix environments unused (by last use, else last change) for more than `days` days."""
    now = now or datetime.now(timezone.utc)
    out = []
    for env in envs:
        last = env.last_used or env.modified
        if env.kind == "prefix" and last is not None and now - last > timedelta(days=days):
            out.append(Finding("stale", (env.name,), f"{env.name}: unused for {(now - last).days} days"))
    return out


def quota(envs: Sequence[EnvProfile], limit: int) -> list[Finding]:
    """Users who own more than `limit` prefix environments."""
    counts = Counter(e.owner for e in envs if e.kind == "prefix" and e.owner)
    return [
        Finding(
            "quota",
            tuple(e.name for e in envs if e.owner == user),
            f"user {user} has {n} environments (quota {limit})",
        )
        for user, n in sorted(counts.items())
        if n > limit
    ]


def baseline_drift(
    envs: Sequence[EnvProfile], expected: Callable[[dict[str, object]], dict[str, str] | None]
) -> list[Finding]:
    """Envs declaring a baseline whose packages differ from that baseline's lock.

    `expected(declared)` returns {name: version} of the declared baseline's lock (None: unknown)."""
    out = []
    for env in envs:
        if not env.declared_baseline:
            continue
        want = expected(env.declared_baseline)
        if want is None:
            continue
        have = {p.name: p.version for p in env.packages}
        added = sorted(set(have) - set(want))
        removed = sorted(set(want) - set(have))
        changed = sorted(n for n in set(have) & set(want) if have[n] != want[n])
        if added or removed or changed:
            out.append(
                Finding(
                    "drift",
                    (env.name,),
                    f"{env.name} drifted from {env.declared_baseline.get('name')}: "
                    f"+{len(added)} -{len(removed)} ~{len(changed)} ({', '.join((added + removed + changed)[:3])})",
                )
            )
    return out
