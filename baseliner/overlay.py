"""Overlays: a project's small delta on top of a frozen, published baseline.

`overlay.yaml` (in the project's own repo) names its base with `extends:` — `NAME@VERSION`,
resolved through the artifact store, or a path to a baseline lock (`NAME.lock`) or a published
`manifest.json` — and lists only what it adds. The base is never re-solved: every base record is
*pinned* in the solve, so the result is the base plus a delta. If the overlay needs any base
package changed, locking fails naming the package, the base's version and what the overlay asks;
`--allow-base-changes` produces a full, non-layered environment instead (and every artifact says so).

Files next to `overlay.yaml`: `overlay.lock` (py-rattler lock of the delta records; its header
names the base and its lock hash) and `overlay.pip-PLATFORM.txt` (the pip delta, hashed).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from . import engine
from .artifacts import Manifest, read
from .atomic import Report, silent, write_atomic
from .channels import DEFAULT_CHANNEL_ALIAS, ChannelRef, credentials, resolve_channels
from .engine import EngineError
from .errors import LockError, SpecError
from .lock import (
    LOCK_ENV,
    canonicalise,
    conda_provided,
    lock_hash,
    read_lock_records,
    solve_records,
    unreachable_channel,
    virtual_packages,
)
from .pypi import ResolveFailed, compile_requirements, normalise, parse_pip_lock
from .spec import (
    NAME_RE,
    ChannelStr,
    MatchSpecStr,
    PackSpec,
    PipRequirementStr,
    Platform,
    StrictModel,
    read_source,
    validate_model,
)
from .store import ArtifactStore

if TYPE_CHECKING:
    from .engine import RepoDataRecord

EXTENDS_RE = (
    r"^(?:[a-z0-9][a-z0-9._-]{0,62}@[A-Za-z0-9][A-Za-z0-9._-]{0,63}|[A-Za-z0-9_./-]+\.(?:lock|json))$"
)
HEADER_RE = re.compile(r"^# baseliner-(\w[\w-]*): (.*)$", re.M)


class OverlaySpec(StrictModel):
    """One `overlay.yaml`, as written."""

    schema_version: Literal[1]
    name: str = Field(pattern=NAME_RE)
    extends: str = Field(pattern=EXTENDS_RE)
    description: str = ""
    platforms: list[Platform] = Field(default_factory=lambda: list[Platform](["linux-64"]))
    channels: list[ChannelStr] = Field(default_factory=list)
    conda: list[MatchSpecStr] = Field(default_factory=list)
    pip: list[PipRequirementStr] = Field(default_factory=list)
    pack: PackSpec = Field(default_factory=PackSpec)


@dataclass(frozen=True)
class Overlay:
    spec: OverlaySpec
    path: Path

    @property
    def lock_path(self) -> Path:
        return self.path.with_suffix(".lock")

    def pip_path(self, platform: str) -> Path:
        return self.path.with_name(f"{self.path.stem}.pip-{platform}.txt")

    def spec_hash(self, base: Base) -> str:
        spec = {**self.spec.model_dump(mode="json"), "pack": self.spec.pack.canonical()}
        data = {"v": 1, "spec": spec, "base_lock_hash": base.lock_hash}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def load_overlay(path: Path) -> Overlay:
    """Load and validate one overlay spec; errors name the overlay by its `name:` (or its file)."""
    source = read_source(path)
    data = source.data if isinstance(source.data, dict) else {}
    name = data["name"] if isinstance(data.get("name"), str) and data["name"] else path.name
    hint = f"fix the file, then run `baseliner lock-overlay {path} --check`"
    spec: OverlaySpec = validate_model(OverlaySpec, source, "overlay", name, hint)
    return Overlay(spec, path.resolve())


@dataclass(frozen=True)
class Base:
    """A resolved base: the lock files of a published (or local) baseline, copied locally."""

    name: str
    version: str
    lock_hash: str
    lock: Path
    pip_locks: dict[str, Path]
    manifest: dict[str, Any] | None
    store: ArtifactStore | None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def pip_pins(self, platform: str) -> dict[str, str]:
        path = self.pip_locks.get(platform)
        return {p.name: p.version for p in parse_pip_lock(path.read_text())} if path else {}


def resolve_base(overlay: Overlay, store: ArtifactStore | None, work: Path) -> Base:
    """Find the base named by the overlay's `extends:` and copy its lock files under `work`."""
    return resolve_base_ref(
        overlay.spec.extends, store, work, overlay.path.parent, f"overlay {overlay.spec.name!r}"
    )


def resolve_base_ref(
    extends: str, store: ArtifactStore | None, work: Path, relative_to: Path, who: str
) -> Base:
    """The base `extends` names — NAME@VERSION in `store`, or a path (relative to `relative_to`) to a
    lock or a build manifest — with its lock files copied under `work`; `who` names the asker."""
    if "@" in extends and not extends.endswith((".lock", ".json")):
        name, version = extends.split("@", 1)
        if store is None:
            raise SpecError(
                f"{who} extends {extends} but no artifact store is configured",
                hint="set `store:` in baseliner.yaml, pass --store, or extend a path to a lock",
            )
        manifest = store.manifest(name, version)
        target = work / f"{name}-{version}"
        for filename in manifest.get("files", {}):
            if filename.endswith(".lock") or ".pip-" in filename:
                store.fetch(name, version, filename, target / filename)
        lock = target / f"{name}.lock"
        return Base(name, version, manifest["lock_hash"], lock, _pip_locks(lock), manifest, store)
    path = (relative_to / extends).resolve()
    if not path.is_file():
        raise SpecError(f"{who}: base {extends!r} does not exist", hint="fix `extends:`")
    if path.name == "manifest.json":
        manifest = read(Manifest, path).model_dump(mode="json")
        lock = path.with_name(f"{manifest['name']}.lock")
        return Base(
            manifest["name"],
            manifest["version"],
            manifest["lock_hash"],
            lock,
            _pip_locks(lock),
            manifest,
            None,
        )
    name = path.name.removesuffix(".lock")
    return Base(name, "local", lock_hash(path.with_name(f"{name}.yaml")), path, _pip_locks(path), None, None)


def _pip_locks(lock: Path) -> dict[str, Path]:
    stem = lock.name.removesuffix(".lock")
    return {
        p.name.removeprefix(f"{stem}.pip-").removesuffix(".txt"): p
        for p in lock.parent.glob(f"{stem}.pip-*.txt")
    }


def _refs_for(
    base_channels: Sequence[str], extra: Sequence[str], mirrors: dict[str, str], base_dir: Path
) -> list[ChannelRef]:
    names = [
        c.removeprefix(DEFAULT_CHANNEL_ALIAS + "/") if c.startswith(DEFAULT_CHANNEL_ALIAS + "/") else c
        for c in base_channels
    ]
    names += [c for c in extra if c not in names]
    return resolve_channels(names, mirrors, base_dir)


def _name(record: RepoDataRecord) -> str:
    return str(record.name.normalized)


def base_conflicts(specs: Sequence[str], base_records: Sequence[RepoDataRecord], base: Base) -> list[str]:
    """Overlay specs that the base's own record of the same package does not satisfy."""
    by_name = {_name(r): r for r in base_records}
    found = []
    for text in specs:
        record = by_name.get(engine.spec_name(text))
        if record is not None and not engine.spec_matches(text, record):
            found.append(
                f"{_name(record)}: base {base.ref} has {record.version} ({record.build}), "
                f"the overlay needs '{text}'"
            )
    return found


@dataclass(frozen=True)
class OverlayLock:
    layered: bool
    records: dict[str, list[RepoDataRecord]]  # per platform: the delta (layered) or everything
    written: list[Path]


def lock_overlay(
    overlay: Overlay,
    base: Base,
    mirrors: dict[str, str],
    cache: Path,
    pip_index_url: str | None = None,
    allow_base_changes: bool = False,
    report: Report = silent,
) -> OverlayLock:
    """Solve only the overlay's delta with every base package pinned, and write its locks."""
    with credentials(list(mirrors.values())):
        return _lock_overlay(overlay, base, mirrors, cache, pip_index_url, allow_base_changes, report)


def _lock_overlay(
    overlay: Overlay,
    base: Base,
    mirrors: dict[str, str],
    cache: Path,
    pip_index_url: str | None,
    allow_base_changes: bool,
    report: Report,
) -> OverlayLock:
    spec = overlay.spec
    outputs: dict[Path, bytes] = {}
    per_platform: dict[str, list[RepoDataRecord]] = {}
    lock = engine.LockWriter(LOCK_ENV, {p: () for p in spec.platforms})
    channels_set = False
    layered = True
    for platform in spec.platforms:
        base_channels, base_records = read_lock_records(base.lock, platform)
        refs = _refs_for(base_channels, spec.channels, mirrors, overlay.path.parent)
        if not channels_set:
            lock.set_channels([r.canonical for r in refs])
            channels_set = True
        base_names = [_name(r) for r in base_records]
        conflicts = base_conflicts(spec.conda, base_records, base)
        report(f"solving the delta of {spec.name} on {base.ref} for {platform}")
        if conflicts and not allow_base_changes:
            raise LockError(
                f"overlay {spec.name!r} would change its base {base.ref}",
                details=conflicts,
                hint="relax the overlay's pin, ask for a new baseline version, or pass --allow-base-changes "
                "to build a full (non-layered) environment",
            )
        virtual = virtual_packages((), platform)
        try:
            if allow_base_changes:
                layered = layered and not conflicts
                solved = solve_records(
                    [*spec.conda, *base_names], refs, platform, cache, virtual, locked=base_records
                )
            else:
                solved = solve_records(
                    [*spec.conda, *base_names], refs, platform, cache, virtual, pinned=base_records
                )
        except EngineError as exc:
            unreachable = unreachable_channel(exc.text, refs)
            if unreachable is not None:
                raise unreachable from exc
            raise LockError(
                f"could not solve overlay {spec.name!r} on {base.ref} for {platform}",
                details=[*exc.text.splitlines()[:20]],
                detail_limit=20,
                hint="a dependency of the overlay may need a different version of a base package; "
                "relax the overlay or pass --allow-base-changes",
            ) from exc
        solved = canonicalise(solved, refs)
        base_keys = {(_name(r), str(r.version), str(r.build)) for r in base_records}
        changed = [
            r
            for r in solved
            if _name(r) in base_names and (_name(r), str(r.version), str(r.build)) not in base_keys
        ]
        if changed:
            layered = False
        records = solved if not layered else [r for r in solved if _name(r) not in base_names]
        per_platform[platform] = records
        for record in sorted(records, key=_name):
            lock.add(platform, record)
        if spec.pip:
            pyver = next(
                (".".join(str(r.version).split(".")[:2]) for r in solved if _name(r) == "python"), None
            )
            if pyver is None:
                raise LockError(f"overlay {spec.name!r} has a pip section but its base has no python")
            outputs[overlay.pip_path(platform)] = _resolve_pip_delta(
                overlay, base, platform, pyver, pip_index_url, solved
            )
    head = _header(overlay, base, layered)
    outputs[overlay.lock_path] = head.encode() + lock.to_bytes(overlay.lock_path)
    for path, data in outputs.items():
        write_atomic(path, data)
    return OverlayLock(layered, per_platform, sorted(outputs))


def _header(overlay: Overlay, base: Base, layered: bool) -> str:
    return (
        f"# generated by baseliner from {overlay.path.name} — do not edit; regenerate with "
        f"`baseliner lock-overlay {overlay.path.name}`\n"
        f"# baseliner-spec-hash: {overlay.spec_hash(base)}\n"
        f"# baseliner-base: {base.ref}\n"
        f"# baseliner-base-lock-hash: {base.lock_hash}\n"
        f"# baseliner-layered: {'true' if layered else 'false'}\n"
    )


def read_header(path: Path) -> dict[str, str]:
    """The `# baseliner-KEY: VALUE` lines at the top of a generated lock."""
    return dict(HEADER_RE.findall(path.read_text(encoding="utf-8")[:4096]))


def overlay_stale_reason(overlay: Overlay, base: Base) -> str | None:
    """Why the overlay lock is out of date (no lock, the base or the spec changed), or None."""
    if not overlay.lock_path.is_file():
        return "no lock"
    head = read_header(overlay.lock_path)
    if head.get("base-lock-hash") != base.lock_hash:
        return f"the base changed (lock hash {base.lock_hash[:12]})"
    if head.get("spec-hash") != overlay.spec_hash(base):
        return "the overlay spec changed since it was locked"
    return None


def _resolve_pip_delta(
    overlay: Overlay,
    base: Base,
    platform: str,
    pyver: str,
    index_url: str | None,
    records: Sequence[RepoDataRecord],
) -> bytes:
    """The overlay's pip requirements resolved on top of what the base's pip lock and the conda
    packages (base and delta) already install: those stay at their versions and out of the delta."""
    provided = conda_provided(records)
    constraints = {**{n: v for n, (v, _) in provided.items()}, **base.pip_pins(platform)}
    try:
        text = compile_requirements(overlay.spec.pip, pyver, platform, index_url, constraints=constraints)
    except ResolveFailed as exc:
        clashes = [
            f"{n}=={v} is installed by the base or by conda"
            for n, v in sorted(constraints.items())
            if exc.mentions(n)
        ]
        raise LockError(
            f"could not resolve the pip delta of overlay {overlay.spec.name!r} on {base.ref}",
            details=[*clashes, *exc.lines],
            detail_limit=15,
            hint="a pip requirement may need a different version of a package the base or conda provides",
        ) from None
    return (
        f"# generated by baseliner from {overlay.path.name} — pip delta over {base.ref}\n" + text
    ).encode()


# --- drift -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drift:
    added: list[str]
    removed: list[str]
    changed: list[str]

    @property
    def clean(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def as_dict(self) -> dict[str, list[str]]:
        return {"added": self.added, "removed": self.removed, "changed": self.changed}


def drift(prefix: Path, base: Base, platform: str = "linux-64") -> Drift:
    """What an existing environment added, removed or changed relative to a baseline lock."""
    from .envs import conda_records
    from .lint import pip_distributions

    _, base_records = read_lock_records(base.lock, platform)
    expected = {_name(r): f"{r.version}={r.build}" for r in base_records}
    records = conda_records(prefix)
    actual = {str(r["name"]): f"{r['version']}={r['build']}" for r in records}
    expected_pip = {f"pip:{n}": v for n, v in base.pip_pins(platform).items()}
    conda_files = {str(f) for r in records for f in r.get("files", [])}
    actual_pip = {f"pip:{normalise(d.name)}": d.version for d in pip_distributions(prefix, conda_files)}
    expected.update(expected_pip)
    actual.update(actual_pip)
    added = sorted(f"{n} {actual[n]}" for n in set(actual) - set(expected))
    removed = sorted(f"{n} {expected[n]}" for n in set(expected) - set(actual))
    changed = sorted(
        f"{n} {expected[n]} -> {actual[n]}" for n in set(actual) & set(expected) if actual[n] != expected[n]
    )
    return Drift(added, removed, changed)
