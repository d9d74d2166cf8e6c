"""The JSON files baseliner writes and reads back, as strict, versioned models.

* `Manifest` — `dist/NAME/VERSION/manifest.json`, what a build made (and, in the store, the same
  plus `files`: the sha256 of every published file);
* `StoreIndex` — the store's `index.json`, every published NAME -> VERSION;
* `EnvMarker` — `etc/baseliner/baseline.json` inside every environment and tarball;
* `DeltaManifest` — `dist/overlays/NAME/manifest.json`, what an overlay build made.

Every read goes through `load`: the file's `schema_version` is checked first (a missing or
unknown one is an ArtifactError naming the file: it was written by another baseliner), then every
key and type (extra keys are refused). `baseliner schema NAME` prints each model's JSON Schema,
so other tools can read our files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ArtifactError


class ArtifactModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CondaPackage(ArtifactModel):
    name: str
    version: str
    build: str
    channel: str
    url: str
    sha256: str
    subdir: str = ""
    type: Literal["conda", "tar.bz2"] = "conda"
    depends: list[str] = []


class PipPackage(ArtifactModel):
    name: str
    version: str
    sha256: list[str] = []
    requires: list[str] = []


class Packages(ArtifactModel):
    conda: list[CondaPackage]
    pip: list[PipPackage]


class Tarball(ArtifactModel):
    name: str
    format: Literal["tar.gz", "tar.zst"]
    sha256: str
    size: int


class EnvironmentSize(ArtifactModel):
    prefix_at_build: str
    bytes: int
    files: int


class ImageInfo(ArtifactModel):
    tags: list[str]
    id: str
    base: str
    spec: dict[str, Any]
    activation: dict[str, str] = {}
    digest: str | None = None
    pushed: list[str] | None = None


class Manifest(ArtifactModel):
    schema_version: Literal[1]
    name: str
    version: str
    platform: str
    spec_hash: str
    lock_hash: str
    build_key: str
    extends: list[str]
    tarball: Tarball
    environment: EnvironmentSize
    packages: Packages
    image: ImageInfo | None
    tools: dict[str, str]
    files: dict[str, str] | None = None  # in the store: file name -> sha256


class IndexEntry(ArtifactModel):
    manifest: str
    lock_hash: str
    tarball: str
    sha256: str
    image: ImageInfo | None


class StoreIndex(ArtifactModel):
    schema_version: Literal[1]
    baselines: dict[str, dict[str, IndexEntry]]


class EnvMarker(ArtifactModel):
    """What environment a prefix holds (written by install, read by unpack, apply and drift)."""

    schema_version: Literal[1] = 1
    name: str
    version: str
    platform: str
    lock_hash: str


class DeltaInfo(ArtifactModel):
    name: str
    sha256: str
    size: int
    files: int
    unpacked_bytes: int


class FullInfo(ArtifactModel):
    name: str
    sha256: str
    size: int


class BaseRef(ArtifactModel):
    name: str
    version: str
    lock_hash: str


class DeltaManifest(ArtifactModel):
    schema_version: Literal[1]
    name: str
    platform: str
    layered: bool
    base: BaseRef
    delta: DeltaInfo
    full: FullInfo
    packages: list[str]  # the delta's conda packages, NAME=VERSION=BUILD
    build_key: str = ""  # what the build depended on: the same key again is a no-op


class OverlayMarker(ArtifactModel):
    """What overlay a prefix holds, on which base (`etc/baseliner/overlay.json`, in every delta)."""

    schema_version: Literal[1] = 1
    name: str
    base: str  # NAME@VERSION
    base_lock_hash: str
    layered: bool
    platform: str


class ConsolidationJournal(ArtifactModel):
    """One environment `consolidate` swapped or installed (`PARENT/.baseliner-undo/NAME.json`).
    It is done when `path` holds the directory whose inode is `staged_inode`."""

    schema_version: Literal[1]
    kind: Literal["member", "baseline"]
    path: str
    staged_inode: int


class AuditEnv(ArtifactModel):
    name: str
    location: str
    kind: str
    owner: str | None
    conda: int
    pip: int
    apparent_bytes: int
    unique_bytes: int
    shared_bytes: int
    cluster: int | None
    last_used: str | None
    unreadable: list[str]  # files that could not be read


class AuditCluster(ArtifactModel):
    id: int
    members: list[str]
    min_similarity: float | None


class AuditFinding(ArtifactModel):
    kind: str
    envs: list[str]
    message: str


class AuditProposal(ArtifactModel):
    cluster: int
    members: list[str]
    baseline: dict[str, Any]  # a baseline spec, as `baselines/NAME.yaml` would hold it
    overlays: dict[str, dict[str, Any]]  # overlay specs by name
    conflicts: list[str]
    current_bytes: int
    projected_bytes: int
    freed_bytes: int


class DiskTotal(ArtifactModel):
    total_bytes: int


class AuditReport(ArtifactModel):
    """`invoke audit --json`: the environments found, their clusters, findings and proposals."""

    schema_version: Literal[1]
    threshold: float
    environments: list[AuditEnv]
    disk: DiskTotal
    clusters: list[AuditCluster]
    findings: list[AuditFinding]
    proposals: list[AuditProposal]


MODELS: dict[str, type[ArtifactModel]] = {
    "manifest": Manifest,
    "store-index": StoreIndex,
    "env-marker": EnvMarker,
    "delta-manifest": DeltaManifest,
    "overlay-marker": OverlayMarker,
    "audit-report": AuditReport,
}
SUPPORTED_VERSIONS = {name: (1,) for name in MODELS}

M = TypeVar("M", bound=ArtifactModel)


def load(model: type[M], data: bytes | str, where: str | Path) -> M:
    """Parse and check one artifact; `where` names it in errors (a path or a store entry)."""
    try:
        value = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ArtifactError(
            f"{where} is not JSON ({exc.msg} at byte {exc.pos})",
            hint="the file may be truncated; build it again",
        ) from None
    if not isinstance(value, dict):
        raise ArtifactError(f"{where} is not a JSON object")
    version = value.get("schema_version", 1 if model in (EnvMarker, OverlayMarker) else None)
    if version not in (1,):
        raise ArtifactError(
            f"{where} has schema_version {version!r}, which this baseliner does not read (it reads 1)",
            hint="it was written by another baseliner version: use that version, or build it again",
        )
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors()]
        raise ArtifactError(f"{where} is not a valid {model.__name__}", details=problems) from None


def read(model: type[M], path: Path) -> M:
    """Read and check the artifact file at `path` (an ArtifactError when missing or invalid)."""
    try:
        return load(model, path.read_bytes(), path)
    except FileNotFoundError:
        raise ArtifactError(f"{path} does not exist") from None


def json_schema(name: str) -> dict[str, Any]:
    """The JSON schema of the artifact model called `name` (`baseliner schema NAME`)."""
    if name not in MODELS:
        raise ArtifactError(f"no artifact {name!r}", details=[f"known: {', '.join(sorted(MODELS))}"])
    return MODELS[name].model_json_schema()
