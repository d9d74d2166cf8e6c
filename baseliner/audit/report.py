"""Running an audit end to end, and its reports: JSON (a stable, documented schema) and one
self-contained HTML file (inline SVG: similarity heatmap, disk per environment; no network).

JSON schema (`schema_version` 1):

    {"schema_version": 1, "threshold": float,
     "environments": [{"name", "location", "kind", "owner", "conda": int, "pip": int,
                       "apparent_bytes", "unique_bytes", "shared_bytes", "cluster": int|null,
                       "last_used": iso8601|null, "unreadable": [str]}],
     "disk": {"total_bytes": int},                      # every inode once == du -sb
     "clusters": [{"id", "members": [name], "min_similarity": float}],
     "findings": [{"kind", "envs": [name], "message"}],
     "proposals": [{"cluster", "baseline": spec, "overlays": {env: spec}, "conflicts": [str],
                    "current_bytes", "projected_bytes", "freed_bytes"}]}
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import AuditReport
from . import disk, findings, similarity
from .inventory import EnvProfile, inventory, unique_prefixes
from .propose import Proposal, propose

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class AuditOptions:
    threshold: float = 0.9
    naming: str = findings.DEFAULT_NAMING
    stale_days: int = 90
    quota: int = 10


@dataclass
class Audit:
    envs: list[EnvProfile]
    options: AuditOptions
    disk: disk.DiskReport
    clusters: similarity.Clusters
    findings: list[findings.Finding]
    proposals: list[Proposal]

    def cluster_members(self) -> list[list[int]]:
        return self.clusters.members()


def weakest_link(audit: Audit, members: list[int]) -> float | None:
    """The lowest similarity among a cluster's pairs at or above the threshold (its edges)."""
    matrix = similarity.similarity_matrix([tokens(audit.envs[i]) for i in members])
    upper = matrix[np.triu_indices(len(members), 1)]
    edges = upper[upper >= audit.options.threshold - 1e-9]
    return round(float(edges.min()), 4) if len(edges) else None


def tokens(env: EnvProfile) -> list[str]:
    """The env's packages as the tokens similarity compares (source, name, version).

    Interned: a fleet repeats the same few thousand tokens, and 100,000 envs of fresh copies would
    hold gigabytes of identical strings."""
    return [sys.intern(p.key) for p in env.packages]


def scan(
    roots: Sequence[Path] = (),
    prefixes: Sequence[Path] = (),
    files: Sequence[Path] = (),
    caches: Sequence[Path] = (),
) -> tuple[list[EnvProfile], disk.DiskReport]:
    """The inventory of every environment and the disk count of them and the caches, side by side.

    Both are bound by one core each (JSON records here, one `lstat` per file there), so the disk
    count runs in a forked process while this one reads the records."""
    found = unique_prefixes(roots, prefixes)
    trees = [*found, *caches]
    if (os.cpu_count() or 1) < 2:
        return inventory(prefixes=found, files=files), disk.measure(trees)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        usage = pool.submit(disk.measure, trees)
        envs = inventory(prefixes=found, files=files)
        return envs, usage.result()


def run_audit(
    envs: list[EnvProfile],
    options: AuditOptions = AuditOptions(),
    caches: Sequence[Path] = (),
    expected: Callable[[dict[str, object]], dict[str, str] | None] | None = None,
    now: datetime | None = None,
    usage: disk.DiskReport | None = None,
) -> Audit:
    """Measure (unless `scan` already did), cluster, check and propose over `envs`: the whole audit."""
    if usage is None:
        prefixes = [Path(e.location) for e in envs if e.kind == "prefix"]
        usage = disk.measure([*prefixes, *caches])
    clusters = similarity.cluster([tokens(e) for e in envs], options.threshold)
    groups = clusters.members()
    found = [
        *findings.pip_shadowing(envs),
        *findings.cluster_splits(envs, groups),
        *findings.naming(envs, options.naming),
        *findings.stale(envs, options.stale_days, now),
        *findings.quota(envs, options.quota),
        *(findings.baseline_drift(envs, expected) if expected else []),
    ]
    proposals = []
    # Packages already in a cache cost nothing more once shared; the members' bytes are what they
    # add on top of the caches (an inode they share with a cache stays when they go).
    cached = {p.name for c in caches for p in c.glob("*") if (p / "info" / "index.json").is_file()}
    cache_bytes = disk.measure(caches).total if caches else 0
    for number, members in enumerate(groups):
        member_prefixes = [Path(envs[i].location) for i in members if envs[i].kind == "prefix"]
        current = disk.measure([*member_prefixes, *caches]).total - cache_bytes if member_prefixes else 0
        proposals.append(propose(number, [envs[i] for i in members], current_bytes=current, cached=cached))
    return Audit(envs, options, usage, clusters, found, proposals)


def expected_from_store(store: Any) -> Callable[[dict[str, object]], dict[str, str] | None]:
    """For environments that declare a baseline: its packages {name: version}, from the store's
    manifest (None when that version is not published there)."""
    from ..pypi import normalise
    from ..store import StoreError

    seen: dict[tuple[str, str], dict[str, str] | None] = {}

    def expected(declared: dict[str, object]) -> dict[str, str] | None:
        key = (str(declared.get("name")), str(declared.get("version")))
        if key not in seen:
            try:
                manifest = store.manifest(*key)
            except StoreError:
                seen[key] = None
            else:
                packages = {p["name"]: p["version"] for p in manifest["packages"]["conda"]}
                packages.update({normalise(p["name"]): p["version"] for p in manifest["packages"]["pip"]})
                seen[key] = packages
        return seen[key]

    return expected


def as_json(audit: Audit) -> dict[str, Any]:
    """The audit as its versioned JSON report (`AuditReport`), checked before it is returned."""
    cluster_of = {i: n for n, members in enumerate(audit.cluster_members()) for i in members}
    usage = {u.root: u for u in audit.disk.roots}
    envs = []
    for index, env in enumerate(audit.envs):
        u = usage.get(env.location)
        envs.append(
            {
                "name": env.name,
                "location": env.location,
                "kind": env.kind,
                "owner": env.owner,
                "conda": len(env.conda),
                "pip": len(env.pip),
                "apparent_bytes": u.apparent if u else 0,
                "unique_bytes": u.unique if u else 0,
                "shared_bytes": u.shared if u else 0,
                "cluster": cluster_of.get(index),
                "last_used": env.last_used.isoformat() if env.last_used else None,
                "unreadable": env.unreadable,
            }
        )
    clusters = []
    for number, members in enumerate(audit.cluster_members()):
        clusters.append(
            {
                "id": number,
                "members": [audit.envs[i].name for i in members],
                "min_similarity": weakest_link(audit, members),
            }
        )
    data = {
        "schema_version": SCHEMA_VERSION,
        "threshold": audit.options.threshold,
        "environments": envs,
        "disk": {"total_bytes": audit.disk.total},
        "clusters": clusters,
        "findings": [asdict(f) | {"envs": list(f.envs)} for f in audit.findings],
        "proposals": [
            {
                "cluster": p.cluster,
                "members": p.members,
                "baseline": p.baseline,
                "overlays": p.overlays,
                "conflicts": p.conflicts,
                "current_bytes": p.current_bytes,
                "projected_bytes": p.projected_bytes,
                "freed_bytes": p.freed_bytes,
            }
            for p in audit.proposals
        ],
    }
    return AuditReport.model_validate(data).model_dump(mode="json")  # what readers will check


def html(audit: Audit, templates_dir: Path | None = None, max_heatmap: int = 150) -> str:
    """The audit as one self-contained HTML page (tables and a similarity heatmap)."""
    from ..render import environment

    data = as_json(audit)
    order = [i for members in audit.cluster_members() for i in members]
    order += [i for i in range(len(audit.envs)) if i not in set(order)]
    order = order[:max_heatmap]
    matrix = (
        similarity.similarity_matrix([tokens(audit.envs[i]) for i in order]) if order else np.zeros((0, 0))
    )
    cell = max(4, min(16, 600 // max(len(order), 1)))
    cells = [
        {
            "x": c * cell,
            "y": r * cell,
            "v": round(float(matrix[r, c]), 3),
            "color": _color(float(matrix[r, c])),
            "title": f"{audit.envs[order[r]].name} ~ {audit.envs[order[c]].name}: {matrix[r, c]:.2f}",
        }
        for r in range(len(order))
        for c in range(len(order))
    ]
    largest = max((e["apparent_bytes"] for e in data["environments"]), default=1) or 1
    return (
        environment(templates_dir)
        .get_template("audit-report.html.j2")
        .render(
            data=data,
            cells=cells,
            cell=cell,
            size=cell * len(order),
            labels=[audit.envs[i].name for i in order],
            largest=largest,
        )
    )


def _color(value: float) -> str:
    # white (0) to dark blue (1)
    shade = int(255 - 200 * value)
    return f"rgb({shade},{shade},{255 - int(80 * value)})"
