"""Cleaning a shared server: stale environments and unreferenced cache packages.

Dry run by default (what would go, with bytes counted by inode). Stale means unused (last use,
else last change) for longer than the given days; only environments found as prefixes count.
Never removed: an environment that declares a published baseline (its
`etc/baseliner/baseline.json` names a version in the store), and any cache package a published
lock or a listed overlay needs (see `cache.prune_plan`).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ..cache import Wanted, prune_plan
from . import disk
from .inventory import EnvProfile


@dataclass
class CleanPlan:
    envs: list[tuple[str, int]] = field(default_factory=list)  # (prefix, bytes freed)
    packages: list[tuple[str, int]] = field(default_factory=list)  # (cache/dist, bytes)
    kept: list[str] = field(default_factory=list)  # stale but protected, with the reason

    @property
    def bytes(self) -> int:
        return sum(b for _, b in self.envs) + sum(b for _, b in self.packages)


def plan(
    envs: Iterable[EnvProfile],
    older_than_days: int,
    published: Mapping[str, set[str]],
    caches: Iterable[Path] = (),
    wanted: Mapping[str, Wanted] | None = None,
    now: datetime | None = None,
) -> CleanPlan:
    """What `clean` would remove. `published`: baseline name -> published versions."""
    now = now or datetime.now(timezone.utc)
    result = CleanPlan()
    stale = []
    for env in envs:
        last = env.last_used or env.modified
        if env.kind != "prefix" or last is None or now - last <= timedelta(days=older_than_days):
            continue
        declared = env.declared_baseline or {}
        if str(declared.get("version")) in published.get(str(declared.get("name")), set()):
            result.kept.append(
                f"{env.location} (holds published baseline {declared['name']}@{declared['version']})"
            )
            continue
        stale.append(env)
    if stale:
        usage = disk.measure([Path(e.location) for e in stale])
        result.envs = [(u.root, u.unique) for u in usage.roots]
    for cache in caches:
        result.packages += [(str(cache / name), size) for name, size in prune_plan(cache, wanted or {})]
    return result


def execute(result: CleanPlan) -> None:
    """Remove what `plan` listed: the environments, and each package's directory and archives."""
    for prefix, _ in result.envs:
        shutil.rmtree(prefix)
    for package, _ in result.packages:
        path = Path(package)
        shutil.rmtree(path)
        for archive in (path.with_name(path.name + ".conda"), path.with_name(path.name + ".tar.bz2")):
            archive.unlink(missing_ok=True)


def parse_age(text: str) -> int:
    """Days in an age like `90d` or `12w` (what `--older-than` takes)."""
    import re

    from ..errors import BaselinerError

    match = re.fullmatch(r"(\d+)([dw])", text)
    if not match:
        raise BaselinerError(f"--older-than {text!r} is not a duration", hint="use days or weeks: 90d, 12w")
    return int(match.group(1)) * (7 if match.group(2) == "w" else 1)
