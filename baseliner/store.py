"""The artifact store: published baselines, each version with its manifest, lock, tarball and SBOM.

A store is a directory (e.g. shared storage; also as a `file:///` URL) or an `http(s)://` URL
serving one (read-only). Any other scheme is refused, naming the supported ones: a store given
as a URL is never taken as a relative directory path.

    STORE/index.json                        every published NAME -> VERSION -> summary
    STORE/NAME/VERSION/manifest.json        what `build-baseline` wrote (+ publication details)
    STORE/NAME/VERSION/NAME.lock            the locks it was built from (and explicit / pip locks)
    STORE/NAME/VERSION/NAME-VERSION-P.tar.gz (+ .sha256)
    STORE/NAME/VERSION/sbom.cdx.json        CycloneDX SBOM of every package (baseliner/sbom.py)

A published `NAME@VERSION` is immutable: publishing the same content again (same lock hash, tarball
and image digest) is a no-op, and other content under the same version is refused, naming both
lock hashes (the fix is a new `version`). An entry published without an image may gain its pushed
digest later.

Writes are atomic: a version directory is assembled under a temporary name and renamed into place,
then the index is rewritten through a temporary file while an exclusive lock on
`STORE/.index.lock` is held (so concurrent publishers never lose each other's entries).
Reading a store verifies what it reads: a missing or corrupt entry is a clear StoreError.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .artifacts import Manifest, StoreIndex, load, read
from .atomic import write_atomic, write_json_atomic
from .concurrency import scratch
from .errors import StoreError
from .pack import sha256_file
from .sbom import sbom_json

if TYPE_CHECKING:
    from .registry import OciStore

INDEX_VERSION = 1


# A store named with a scheme is used by that scheme, never taken as a directory called `oci:`.
SCHEMES = {
    "file": "a directory (file:///abs/path)",
    "http": "read-only",
    "https": "read-only",
    "oci": "a registry: oci://HOST[:PORT]/ORG",
}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class Store:
    """A store at a directory path (or `file://` URL), or an `http(s)://` URL serving one."""

    location: str

    def __post_init__(self) -> None:
        match = _SCHEME.match(self.location)
        if match is None:
            return
        scheme = match.group(1).lower()
        supported = [f"{name}:// ({what})" for name, what in SCHEMES.items()] + ["a plain directory path"]
        if scheme == "oci":
            raise StoreError(f"store {self.location!r} is a registry", hint="open it with store.open_store()")
        if scheme not in SCHEMES:
            raise StoreError(
                f"store {self.location!r}: {scheme}:// stores are not supported",
                details=[f"supported: {', '.join(supported)}"],
                hint="give a directory or an http(s) URL with --store, or as `store:` in baseliner.yaml",
            )
        if scheme == "file":
            parsed = urllib.parse.urlsplit(self.location)
            if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
                raise StoreError(
                    f"store {self.location!r}: a file:// URL names an absolute path",
                    hint="write file:///abs/path (three slashes), or give the directory itself",
                )

    @property
    def is_remote(self) -> bool:
        return self.location.lower().startswith(("http://", "https://"))

    @property
    def path(self) -> Path:
        if self.is_remote:
            raise StoreError(f"store {self.location!r} is read-only over HTTP", hint="publish to a directory")
        if self.location.lower().startswith("file://"):
            return Path(urllib.request.url2pathname(urllib.parse.urlsplit(self.location).path))
        return Path(self.location)

    def read_bytes(self, rel: str) -> bytes:
        if self.is_remote:
            url = f"{self.location.rstrip('/')}/{rel}"
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    return bytes(response.read())
            except urllib.error.HTTPError as exc:
                raise StoreError(
                    f"store entry {rel!r} not found at {self.location}", details=[f"HTTP {exc.code}"]
                ) from None
            except urllib.error.URLError as exc:
                raise StoreError(f"store {self.location!r} is unreachable: {exc.reason}") from None
        path = self.path / rel
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise StoreError(
                f"store entry {rel!r} is missing in {self.location}",
                hint="the entry may have been deleted by hand; publish the baseline again",
            ) from None

    def read_json(self, rel: str) -> dict[str, Any]:
        data = self.read_bytes(rel)
        try:
            value = json.loads(data)
        except json.JSONDecodeError as exc:
            raise StoreError(
                f"store entry {rel!r} is corrupt (not JSON: {exc.msg} at byte {exc.pos})",
                hint="the file may be truncated; publish the baseline again",
            ) from None
        if not isinstance(value, dict):
            raise StoreError(f"store entry {rel!r} is corrupt (not a JSON object)")
        return value

    def index(self) -> dict[str, Any]:
        if not self.is_remote and not (self.path / "index.json").is_file():
            return {"schema_version": INDEX_VERSION, "baselines": {}}
        self.read_json("index.json")  # corrupt or missing: a StoreError first
        where = f"{self.location.rstrip('/')}/index.json"
        return load(StoreIndex, self.read_bytes("index.json"), where).model_dump(mode="json")

    def entry(self, name: str, version: str) -> dict[str, Any] | None:
        """The index entry of NAME@VERSION (lock hash, tarball sha256, image), None if unpublished."""
        found: dict[str, Any] | None = self.index()["baselines"].get(name, {}).get(version)
        return found

    def manifest(self, name: str, version: str) -> dict[str, Any]:
        entries = self.index()["baselines"].get(name, {})
        if version not in entries:
            known = sorted(entries)
            raise StoreError(
                f"{name}@{version} is not published in {self.location}",
                details=[f"published versions of {name}: {', '.join(known) if known else 'none'}"],
                hint=f"run `invoke publish {name}` in the baselines repo",
            )
        rel = f"{name}/{version}/manifest.json"
        self.read_json(rel)
        return load(Manifest, self.read_bytes(rel), f"{self.location.rstrip('/')}/{rel}").model_dump(
            mode="json"
        )

    def fetch(self, name: str, version: str, filename: str, dest: Path) -> Path:
        """Copy one file of a published version to `dest`, checking its sha256 when the manifest has it."""
        manifest = self.manifest(name, version)
        data = self.read_bytes(f"{name}/{version}/{filename}")
        expected = manifest.get("files", {}).get(filename)
        import hashlib

        if expected and hashlib.sha256(data).hexdigest() != expected:
            raise StoreError(
                f"store file {name}/{version}/{filename} does not match its manifest checksum",
                hint="the store entry is corrupt; publish again",
            )
        return write_atomic(dest, data)


class ArtifactStore(Protocol):
    """What builds, overlays and drift read from a store, whatever holds it."""

    @property
    def location(self) -> str: ...

    def entry(self, name: str, version: str) -> dict[str, Any] | None: ...

    def manifest(self, name: str, version: str) -> dict[str, Any]: ...

    def fetch(self, name: str, version: str, filename: str, dest: Path) -> Path: ...

    def index(self) -> dict[str, Any]: ...


def open_store(location: str) -> Store | OciStore:
    """The store at `location`: a registry for `oci://HOST[:PORT]/ORG`, else a directory or an
    http(s) URL (`Store`, which refuses any other scheme)."""
    if location.lower().startswith("oci://"):
        from .registry import OciStore

        return OciStore(location)
    return Store(location)


@contextlib.contextmanager
def _index_lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".index.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _digest(image: dict[str, Any] | None) -> str | None:
    return (image or {}).get("digest") or None


def published_entry(store: ArtifactStore, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The store's entry for the manifest's NAME@VERSION when it holds the same content (publishing
    again is a no-op); None when the version is not published or may take this manifest (it only
    adds an image digest). Other content under a published version is a StoreError."""
    name, version = manifest["name"], manifest["version"]
    entry = store.entry(name, version)
    if entry is None:
        return None
    old_digest, new_digest = _digest(entry.get("image")), _digest(manifest.get("image"))
    differences = []
    if entry["lock_hash"] != manifest["lock_hash"]:
        differences.append(f"lock hash: published {entry['lock_hash']}, this build {manifest['lock_hash']}")
    elif entry["sha256"] != manifest["tarball"]["sha256"]:
        differences.append(
            f"tarball sha256: published {entry['sha256']}, this build {manifest['tarball']['sha256']}"
        )
    if old_digest and new_digest and old_digest != new_digest:
        differences.append(f"image: published {old_digest}, this build {new_digest}")
    if differences:
        raise StoreError(
            f"{name}@{version} is already published in {store.location} with other content",
            details=differences,
            hint=f"published versions never change: bump `version` in baselines/{name}.yaml, "
            f"then run `invoke build-baseline {name}` and `invoke publish {name}`",
        )
    return entry if old_digest == new_digest or not new_digest else None


def assemble(manifest_path: Path, lock_files: list[Path], staging: Path) -> dict[str, Any]:
    """Write a version's files into `staging`: the tarball and its .sha256, `lock_files`, the SBOM
    and manifest.json (the build manifest with every file's sha256); returns that manifest."""
    out_dir = manifest_path.parent
    manifest = read(Manifest, manifest_path).model_dump(mode="json")
    name, version = manifest["name"], manifest["version"]
    tarball = out_dir / manifest["tarball"]["name"]
    if not tarball.is_file() or sha256_file(tarball) != manifest["tarball"]["sha256"]:
        raise StoreError(
            f"the built tarball of {name} {version} is missing or changed",
            hint=f"run `invoke build-baseline {name}` first",
        )
    files = [tarball, tarball.with_name(tarball.name + ".sha256"), *lock_files]
    for path in files:
        if path.stat().st_dev == staging.stat().st_dev:
            os.link(path, staging / path.name)
        else:
            shutil.copy2(path, staging / path.name)
    (staging / "sbom.cdx.json").write_text(sbom_json(manifest))
    published = dict(manifest)
    published["files"] = {p.name: sha256_file(staging / p.name) for p in sorted(staging.iterdir())}
    (staging / "manifest.json").write_text(json.dumps(published, indent=2, sort_keys=True) + "\n")
    return published


def publish(store: Store, manifest_path: Path, lock_files: list[Path]) -> dict[str, Any]:
    """Publish a built baseline (its manifest, tarball, locks, SBOM) into `store`; returns the entry.

    Identical content already published is a no-op; other content under its version is refused."""
    root = store.path
    manifest = read(Manifest, manifest_path).model_dump(mode="json")
    name, version = manifest["name"], manifest["version"]
    existing = published_entry(store, manifest)
    if existing is not None:
        return existing
    root.mkdir(parents=True, exist_ok=True)
    with scratch(root, f"publish-{name}-{version}") as tmp:
        staging = tmp / "version"
        staging.mkdir()
        assemble(manifest_path, lock_files, staging)
        target = root / name / version
        target.parent.mkdir(parents=True, exist_ok=True)
        with _index_lock(root):
            existing = published_entry(store, manifest)  # again: another publisher may have won
            if existing is not None:
                return existing
            if target.exists():  # only ever to add an image digest to the same content
                target.rename(tmp / "replaced")  # out of the way in one step; removed with tmp
            staging.rename(target)
            index = store.index()
            entry = {
                "manifest": f"{name}/{version}/manifest.json",
                "lock_hash": manifest["lock_hash"],
                "tarball": manifest["tarball"]["name"],
                "sha256": manifest["tarball"]["sha256"],
                "image": manifest.get("image"),
            }
            index["baselines"].setdefault(name, {})[version] = entry
            write_json_atomic(root / "index.json", index)
    return entry


def pull(store: ArtifactStore, ref: str, dest: Path) -> list[Path]:
    """Download NAME@VERSION's tarball and its .sha256 into `dest`, checked, ready for `unpack`.

    Only those two files are read. Each lands under a scratch name renamed into place: a killed
    pull leaves no half-written file, and the next one starts again (its scratch swept)."""
    from .pack import verify_checksum

    name, _, version = ref.partition("@")
    if not name or not version:
        raise StoreError(
            f"{ref!r} is not NAME@VERSION", hint="e.g. `baseliner pull demo@2026.12 --store oci://HOST/ORG`"
        )
    manifest = store.manifest(name, version)
    tarball = manifest["tarball"]["name"]
    dest.mkdir(parents=True, exist_ok=True)
    checksum = store.fetch(name, version, f"{tarball}.sha256", dest / f"{tarball}.sha256")
    path = store.fetch(name, version, tarball, dest / tarball)
    if verify_checksum(path) != manifest["tarball"]["sha256"]:
        raise StoreError(f"{tarball} does not match the sha256 its manifest names", hint="pull again")
    return [path, checksum]
