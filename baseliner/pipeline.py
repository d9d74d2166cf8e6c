"""The build pipeline baselines and overlays share: options, timed steps, one result type.

Both builds hold a build lock, run env -> lint -> pack -> manifest -> image -> smoke, and skip
each output whose *build key* (sha256 of what it depends on) matches the one it was made with: a
tarball through its manifest, an image through its `io.baseliner.build-key` label. Each step is
timed into the `BuildResult`, which the tasks print as one table (or `--json`).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import Report
from .lint import LintFinding

BUILD_KEY_LABEL = "io.baseliner.build-key"


@dataclass(frozen=True)
class BuildOptions:
    image: bool = True
    platform: str = "linux-64"
    force: bool = False
    lock_timeout: float = 1800.0


@dataclass
class Step:
    name: str
    seconds: float
    detail: str


@dataclass
class BuildResult:
    """What a build of a baseline (`kind` "baseline") or an overlay ("overlay") made.

    `tarball` is the self-contained environment; an overlay also has its `delta` (only what it adds
    to its base, `delta_files` of `delta_bytes` unpacked), unless it is not `layered`."""

    kind: str
    name: str
    version: str
    platform: str
    build_key: str
    env: Path
    tarball: Path
    manifest: Path
    steps: list[Step] = field(default_factory=list)
    warnings: list[LintFinding] = field(default_factory=list)
    image_tags: tuple[str, ...] = ()
    image_note: str = ""
    rebuilt: bool = False
    delta: Path | None = None
    delta_files: tuple[str, ...] = ()
    delta_bytes: int = 0
    layered: bool = False
    base: str = ""

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "platform": self.platform,
            "build_key": self.build_key,
            "env": str(self.env),
            "tarball": str(self.tarball),
            "manifest": str(self.manifest),
            "rebuilt": self.rebuilt,
            "image_tags": list(self.image_tags),
            "image_note": self.image_note,
            "steps": [
                {"name": s.name, "seconds": round(s.seconds, 3), "detail": s.detail} for s in self.steps
            ],
            "warnings": [f.message for f in self.warnings],
        }
        if self.kind == "overlay":
            data |= {
                "base": self.base,
                "layered": self.layered,
                "delta": str(self.delta) if self.delta else None,
                "delta_files": len(self.delta_files),
                "delta_bytes": self.delta_bytes,
            }
        return data


@contextmanager
def step(result: BuildResult, name: str, report: Report) -> Iterator[list[str]]:
    """Time the block as step `name` of `result`; what the block appends becomes its detail."""
    detail: list[str] = []
    start = time.perf_counter()
    report(f"[{name}]")
    yield detail
    result.steps.append(Step(name, time.perf_counter() - start, "; ".join(detail)))


def connect_or_note(result: BuildResult, connect: Callable[[], Any] | None, report: Report) -> Any | None:
    """A Docker client for the image steps, or None with the reason in `result.image_note` (the
    rest of the build stands without an engine)."""
    from . import images
    from .errors import DockerUnavailable

    try:
        return (connect or images.connect)()
    except DockerUnavailable as exc:
        result.image_note = f"not built: {exc.message} ({exc.details[0] if exc.details else ''})"
        report(result.image_note)
        return None


def vcs_labels(root: Path) -> dict[str, str]:
    """OCI `source` (the git remote as a URL, credentials dropped) and `revision` (the commit) of
    the repo at `root`; empty where it is not a git checkout or has no remote."""

    def git(*args: str) -> str:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""

    labels = {}
    revision = git("rev-parse", "HEAD")
    if re.fullmatch(r"[0-9a-f]{40,64}", revision):
        labels["org.opencontainers.image.revision"] = revision
    remote = git("remote", "get-url", "origin")
    if not remote and (names := git("remote").split()):
        remote = git("remote", "get-url", names[0])
    scp = re.fullmatch(r"(?:[^@/:]+@)?([^:/]+):([^/].*)", remote)
    if scp and "://" not in remote:  # git@host:org/repo.git is ssh://host/org/repo.git
        remote = f"ssh://{scp.group(1)}/{scp.group(2)}"
    if re.match(r"(https?|ssh|git)://", remote):  # a local path or file:// is no use to a reader
        labels["org.opencontainers.image.source"] = re.sub(r"(?<=://)[^/@]+@", "", remote)
    return labels
