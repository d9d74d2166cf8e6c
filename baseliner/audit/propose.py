"""Proposals: a baseline for each cluster and an overlay per member, with the bytes they would free.

The baseline holds the conda and pip packages every member has, each at the version (and build) most
members use, channels in the order the members list them. Each member's overlay is what it has on
top; a member whose version of a baseline package differs is listed as a conflict (its overlay
would need that package changed). Bytes: today's on-disk bytes of the members (inodes once, less
what they share with the package caches the audit was given) against every distinct package stored
once in a shared cache that the environments hardlink from (nothing for a package a cache holds
already) — computed from the inventory's per-package sizes, not guessed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .inventory import EnvProfile, Package


@dataclass
class Proposal:
    cluster: int
    members: list[str]
    baseline: dict[str, Any]
    locations: list[str] = field(default_factory=list)  # each member's prefix or exported file
    overlays: dict[str, dict[str, Any]] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    current_bytes: int = 0
    projected_bytes: int = 0

    @property
    def freed_bytes(self) -> int:
        return max(self.current_bytes - self.projected_bytes, 0)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:50] or "env"


def _conda_spec(pkg: Package) -> str:
    return f"{pkg.name} =={pkg.version} {pkg.build}".strip() if pkg.build else f"{pkg.name} =={pkg.version}"


def _majority(packages: Sequence[Package]) -> Package:
    counts = Counter((p.version, p.build, p.channel) for p in packages)
    (version, build, channel), _ = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    return next(p for p in packages if (p.version, p.build, p.channel) == (version, build, channel))


def propose(
    cluster: int,
    members: Sequence[EnvProfile],
    version: str = "proposed",
    current_bytes: int = 0,
    cached: Collection[str] = (),
) -> Proposal:
    """The baseline (packages every member shares) and per-member overlays replacing a cluster;
    conda packages named NAME-VERSION-BUILD in `cached` are in a package cache already."""
    name = f"cluster-{cluster}-base"
    per_key: dict[tuple[str, str], list[Package]] = {}
    for env in members:
        for pkg in env.packages:
            per_key.setdefault((pkg.source, pkg.name), []).append(pkg)
    common = {
        key: _majority(pkgs)
        for key, pkgs in per_key.items()
        if len({id(m) for m in members if any((p.source, p.name) == key for p in m.packages)}) == len(members)
    }
    channels: list[str] = []
    for env in members:
        for channel in env.channels:
            if channel not in channels:
                channels.append(channel)
    conda = sorted(_conda_spec(p) for (source, _), p in common.items() if source == "conda")
    pip = sorted(
        f"{p.name}=={p.version}"
        for (source, _), p in common.items()
        if source == "pip" and re.match(r"^[0-9]", p.version)
    )
    proposal = Proposal(
        cluster,
        [m.name for m in members],
        locations=[m.location for m in members],
        baseline={
            "schema_version": 1,
            "name": name,
            "version": version,
            "description": f"Proposed from {len(members)} similar environments: {', '.join(m.name for m in members[:3])}",
            "channels": channels or ["conda-forge"],
            "conda": conda,
            "pip": pip,
        },
    )
    for env in members:
        extra_conda, extra_pip = [], []
        for pkg in env.packages:
            base = common.get((pkg.source, pkg.name))
            if base is None:
                if pkg.source == "conda":
                    extra_conda.append(_conda_spec(pkg))
                elif re.match(r"^[0-9]", pkg.version):
                    extra_pip.append(f"{pkg.name}=={pkg.version}")
            elif (pkg.version, pkg.build) != (base.version, base.build):
                proposal.conflicts.append(
                    f"{env.name}: {pkg.name} {pkg.version} {pkg.build} vs baseline {base.version} {base.build}".rstrip()
                )
        overlay: dict[str, Any] = {
            "schema_version": 1,
            "name": _slug(env.name),
            "extends": f"{name}@{version}",
        }
        if extra_conda:
            overlay["conda"] = sorted(extra_conda)
        if extra_pip:
            overlay["pip"] = sorted(extra_pip)
        proposal.overlays[env.name] = overlay
    # Every distinct package once (the shared cache), environments hardlinked from it; a package
    # already in a cache adds nothing.
    distinct: dict[tuple[str, str, str, str], int] = {}
    for env in members:
        for pkg in env.packages:
            key = (pkg.source, pkg.name, pkg.version, pkg.build)
            if pkg.source == "conda" and f"{pkg.name}-{pkg.version}-{pkg.build}" in cached:
                continue
            distinct[key] = max(distinct.get(key, 0), pkg.size)
    proposal.current_bytes = current_bytes
    proposal.projected_bytes = sum(distinct.values())
    return proposal


def write(proposal: Proposal, out_dir: Path, command: str) -> list[Path]:
    """baselines/<name>.yaml and overlays/<member>/overlay.yaml under `out_dir`; the baseline's
    header names `command`, the one that wrote it."""
    written = []
    base = out_dir / "baselines" / f"{proposal.baseline['name']}.yaml"
    base.parent.mkdir(parents=True, exist_ok=True)
    base.write_text(f"# proposed by `{command}`\n" + yaml.safe_dump(proposal.baseline, sort_keys=False))
    written.append(base)
    for overlay in proposal.overlays.values():
        path = out_dir / "overlays" / overlay["name"] / "overlay.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(overlay, sort_keys=False))
        written.append(path)
    return written
