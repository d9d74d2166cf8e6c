"""The registry as a store: published baselines as OCI artifacts, through oras-py (the one module
that imports it).

`oci://HOST[:PORT]/ORG` holds, for baseline NAME at VERSION:

    HOST/ORG/NAME:VERSION           the image (pushed by the docker engine, as `publish --registry`)
    HOST/ORG/NAME:VERSION-bundle    an OCI artifact: one layer per file of the version, titled with
                                    its file name (`org.opencontainers.image.title`): the tarball
                                    and its .sha256, the locks, manifest.json, the SBOM
    HOST/ORG/NAME:sha256-<hex>      the referrers of the image digest (OCI 1.1's tag fallback for
                                    registries without the referrers API): an index listing the
                                    SBOM artifact, itself tagged `sha256-<hex>.sbom` as cosign tags it

A bundle is immutable: pushing other files under an existing bundle tag is refused, the same files
again are a no-op. Reads check every blob against its digest in the bundle's manifest, and files
land under a scratch name renamed into place, so an interrupted pull leaves nothing half-written.

Credentials come from the Docker config (`$DOCKER_CONFIG/config.json`, else
`~/.docker/config.json`: `auths`, `credHelpers`, `credsStore`), as the docker SDK reads them;
registries on 127.0.0.1 / localhost are spoken to over plain HTTP.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .artifacts import Manifest, load
from .atomic import Report, silent
from .concurrency import scratch
from .errors import StoreError, redact
from .pack import sha256_file

TITLE = "org.opencontainers.image.title"
BUNDLE_CONFIG = "application/vnd.baseliner.bundle.config.v1+json"
SBOM_TYPE = "application/vnd.cyclonedx+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
_LOCATION = re.compile(
    r"^oci://(?P<host>[A-Za-z0-9.\-]+(?::[0-9]+)?)/(?P<org>[a-z0-9]+(?:[._/-][a-z0-9]+)*)/?$"
)


def media_type(filename: str) -> str:
    """The media type of a bundle layer, by its file name."""
    if filename.endswith(".tar.gz"):
        return "application/vnd.baseliner.env.v1.tar+gzip"
    if filename.endswith(".tar.zst"):
        return "application/vnd.baseliner.env.v1.tar+zstd"
    if filename.endswith(".sha256"):
        return "application/vnd.baseliner.checksum.v1+text"
    if filename.endswith(".lock"):
        return "application/vnd.baseliner.lock.v1+yaml"
    if ".explicit-" in filename:
        return "application/vnd.conda.explicit.v1+text"
    if ".pip-" in filename:
        return "application/vnd.baseliner.pip-lock.v1+text"
    if filename == "sbom.cdx.json":
        return SBOM_TYPE
    if filename == "manifest.json":
        return "application/vnd.baseliner.manifest.v1+json"
    return "application/octet-stream"


def docker_config() -> Path:
    """The Docker config the engine's clients read: $DOCKER_CONFIG/config.json or ~/.docker/config.json."""
    directory = os.environ.get("DOCKER_CONFIG")
    return Path(directory) / "config.json" if directory else Path.home() / ".docker" / "config.json"


@dataclass(frozen=True)
class OciStore:
    """A store in an OCI registry, `oci://HOST[:PORT]/ORG` (see the module docstring)."""

    location: str

    def __post_init__(self) -> None:
        if _LOCATION.match(self.location) is None:
            raise StoreError(
                f"store {self.location!r} is not a registry location",
                hint="write oci://HOST[:PORT]/ORG, e.g. oci://registry.example.org/baselines",
            )

    @property
    def host(self) -> str:
        match = _LOCATION.match(self.location)
        assert match is not None
        return match.group("host")

    @property
    def org(self) -> str:
        match = _LOCATION.match(self.location)
        assert match is not None
        return match.group("org")

    @property
    def registry(self) -> str:
        """HOST[:PORT]/ORG, as `publish --registry` takes it (where the image is pushed)."""
        return f"{self.host}/{self.org}"

    def repository(self, name: str) -> str:
        return f"{self.registry}/{name}"

    def bundle(self, name: str, version: str) -> str:
        return f"{self.repository(name)}:{version}-bundle"

    # --- reading ------------------------------------------------------------------------------

    def bundle_manifest(self, name: str, version: str) -> Fetched | None:
        """The OCI manifest of NAME@VERSION's bundle, or None when it is not published."""
        with self._client() as client:
            return _get_manifest(client, self.bundle(name, version), self.location, absent_ok=True)

    def _layers(self, name: str, version: str) -> dict[str, dict[str, Any]]:
        found = self.bundle_manifest(name, version)
        if found is None:
            raise StoreError(
                f"{name}@{version} is not published in {self.location}",
                details=[f"no artifact {self.bundle(name, version)}"],
                hint=f"run `invoke publish {name} --store {self.location}` in the baselines repo",
            )
        return {layer.get("annotations", {}).get(TITLE, ""): layer for layer in found.data.get("layers", [])}

    def entry(self, name: str, version: str) -> dict[str, Any] | None:
        """What identifies NAME@VERSION's published content (as a directory store's index entry
        holds it), from the bundle's manifest.json; None when no bundle is published."""
        if self.bundle_manifest(name, version) is None:
            return None
        manifest = self.manifest(name, version)
        return {
            "manifest": self.bundle(name, version),
            "lock_hash": manifest["lock_hash"],
            "tarball": manifest["tarball"]["name"],
            "sha256": manifest["tarball"]["sha256"],
            "image": manifest.get("image"),
        }

    def manifest(self, name: str, version: str) -> dict[str, Any]:
        """The published build manifest of NAME@VERSION, its blob checked against its digest."""
        layer = self._layers(name, version).get("manifest.json")
        if layer is None:
            raise StoreError(f"{self.bundle(name, version)} has no manifest.json", hint="publish it again")
        with self._client() as client:
            data = _blob(client, self.repository(name), layer, "manifest.json")
        return load(Manifest, data, f"{self.bundle(name, version)} manifest.json").model_dump(mode="json")

    def fetch(self, name: str, version: str, filename: str, dest: Path) -> Path:
        """One file of NAME@VERSION's bundle to `dest` (written under a scratch name, digest-checked)."""
        return self._download(name, version, filename, dest)

    def index(self) -> dict[str, Any]:
        raise StoreError(
            f"a registry store ({self.location}) cannot be listed",
            hint="name the baseline and version (NAME@VERSION), or list a directory store",
        )

    def _download(self, name: str, version: str, filename: str, dest: Path, report: Report = silent) -> Path:
        layers = self._layers(name, version)
        layer = layers.get(filename)
        if layer is None:
            raise StoreError(
                f"{name}@{version} in {self.location} has no file {filename!r}",
                details=[f"files: {', '.join(sorted(layers))}"],
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        with scratch(dest.parent, f"pull-{dest.name}") as tmp, self._client() as client:
            part = tmp / filename
            report(f"pulling {filename} ({layer['size'] / 1e6:.1f} MB)")
            try:
                client.download_blob(self.repository(name), layer["digest"], str(part))
            except Exception as exc:  # requests' and oras' errors: the registry's answer, worded
                raise StoreError(
                    f"pulling {filename} of {name}@{version} from {self.location} failed",
                    details=[redact(str(exc))],
                    hint="check that the registry is reachable; run the command again to restart the pull",
                ) from None
            actual = "sha256:" + sha256_file(part)
            if actual != layer["digest"] or part.stat().st_size != layer["size"]:
                raise StoreError(
                    f"{filename} of {name}@{version} does not match its digest in the registry",
                    details=[f"expected {layer['digest']}", f"actual   {actual}"],
                    hint="the download was damaged, or the registry is corrupt; pull again",
                )
            part.replace(dest)
        return dest

    # --- writing ------------------------------------------------------------------------------

    def push_bundle(self, name: str, version: str, directory: Path, report: Report = silent) -> str:
        """Push every file of `directory` as NAME@VERSION's bundle; returns the bundle's digest.

        The same files already under the tag: a no-op. Other files: a StoreError."""
        files = sorted(p for p in directory.iterdir() if p.is_file())
        wanted = {p.name: "sha256:" + sha256_file(p) for p in files}
        existing = self.bundle_manifest(name, version)
        if existing is not None:
            have = {a.get("annotations", {}).get(TITLE, ""): a["digest"] for a in existing.data["layers"]}
            if have == wanted:
                return existing.digest
            changed = sorted(n for n in {*have, *wanted} if have.get(n) != wanted.get(n))
            raise StoreError(
                f"{name}@{version} is already published in {self.location} with other content",
                details=[f"differs: {', '.join(changed)}"],
                hint=f"published versions never change: bump `version` in baselines/{name}.yaml and build again",
            )
        config = directory.parent / "bundle-config.json"
        config.write_text("{}")
        with self._client() as client:
            report(f"pushing {self.bundle(name, version)} ({len(files)} files)")
            _checked(
                lambda: client.push(
                    target=self.bundle(name, version),
                    files=[f"{p}:{media_type(p.name)}" for p in files],
                    manifest_config=f"{config}:{BUNDLE_CONFIG}",
                    manifest_annotations={
                        "org.opencontainers.image.title": f"{name} {version}",
                        "org.opencontainers.image.version": version,
                    },
                    disable_path_validation=True,
                    config_path=str(docker_config()) if docker_config().is_file() else None,
                    quiet=True,
                ),
                f"pushing {self.bundle(name, version)}",
            )
        pushed = self.bundle_manifest(name, version)
        assert pushed is not None
        return pushed.digest

    def attach_sbom(self, name: str, image_digest: str, sbom: Path, report: Report = silent) -> str:
        """Attach `sbom` to the image `image_digest` (sha256:…) as a referrer: the SBOM artifact
        (subject: the image) tagged `sha256-<hex>.sbom`, and the referrers index at
        `sha256-<hex>` listing it. Returns the index tag."""
        import oras.oci

        hex_digest = image_digest.removeprefix("sha256:")
        repository = self.repository(name)
        with self._client() as client:
            image = _get_manifest(client, f"{repository}@{image_digest}", self.location, absent_ok=False)
            assert image is not None
            media = image.data.get("mediaType", "application/vnd.docker.distribution.manifest.v2+json")
            subject = oras.oci.Subject(mediaType=media, digest=image.digest, size=image.size)
            config = sbom.parent / "sbom-config.json"
            config.write_text("{}")
            report(f"attaching the SBOM to {repository}@{image_digest}")
            _checked(
                lambda: client.push(
                    target=f"{repository}:sha256-{hex_digest}.sbom",
                    files=[f"{sbom}:{SBOM_TYPE}"],
                    manifest_config=f"{config}:{SBOM_TYPE}",
                    subject=subject,
                    disable_path_validation=True,
                    config_path=str(docker_config()) if docker_config().is_file() else None,
                    quiet=True,
                ),
                "attaching the SBOM",
            )
            sbom_ref = f"{repository}:sha256-{hex_digest}.sbom"
            sbom_manifest = _get_manifest(client, sbom_ref, self.location, absent_ok=False)
            assert sbom_manifest is not None
            entry = {
                "mediaType": MANIFEST_TYPE,
                "digest": sbom_manifest.digest,
                "size": sbom_manifest.size,
                "artifactType": SBOM_TYPE,
            }
            index_ref = f"{repository}:sha256-{hex_digest}"
            current = _get_manifest(client, index_ref, self.location, absent_ok=True, accept=[INDEX_TYPE])
            empty: dict[str, Any] = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": []}
            index = current.data if current else empty
            others = [m for m in index.get("manifests", []) if m.get("digest") != entry["digest"]]
            index["manifests"] = [*others, entry]
            container = client.get_container(index_ref)
            response = client.do_request(
                f"{client.prefix}://{container.manifest_url()}",
                "PUT",
                headers={"Content-Type": INDEX_TYPE},
                data=json.dumps(index, sort_keys=True).encode(),
            )
            if response.status_code not in (200, 201):
                raise StoreError(
                    f"writing the referrers index {index_ref} failed: HTTP {response.status_code}",
                    details=[redact(response.text[:300])],
                )
        return index_ref

    def referrers(self, name: str, image_digest: str) -> list[dict[str, Any]]:
        """What is attached to the image `image_digest`, from the `sha256-<hex>` tag fallback."""
        with self._client() as client:
            ref = f"{self.repository(name)}:sha256-{image_digest.removeprefix('sha256:')}"
            index = _get_manifest(client, ref, self.location, absent_ok=True, accept=[INDEX_TYPE])
        return list(index.data.get("manifests", [])) if index else []

    def read_blob(self, name: str, ref: str, title: str) -> bytes:
        """The layer titled `title` of the artifact `ref` (a tag or digest) in NAME's repository."""
        with self._client() as client:
            sep = "@" if ref.startswith("sha256:") else ":"
            found = _get_manifest(
                client, f"{self.repository(name)}{sep}{ref}", self.location, absent_ok=False
            )
            assert found is not None
            for layer in found.data.get("layers", []):
                if layer.get("annotations", {}).get(TITLE) == title:
                    return _blob(client, self.repository(name), layer, title)
        raise StoreError(f"{ref} in {self.repository(name)} has no layer {title!r}")

    @contextmanager
    def _client(self) -> Iterator[Any]:
        import oras.provider

        local = self.host.split(":")[0] in ("127.0.0.1", "localhost")
        backend = _auth_backend(self.host, local)
        client = oras.provider.Registry(hostname=self.host, insecure=local, auth_backend=backend)
        config = docker_config()
        if config.is_file():
            client.auth.load_configs(client.get_container(f"{self.registry}/x"), configs=[str(config)])
        if backend == "basic" and not getattr(client.auth, "_basic_auth", None):
            raise StoreError(
                f"registry {self.host} asks for credentials, and the Docker config has none for it",
                details=[f"read {config}"],
                hint=f"log in with `docker login {self.host}` (credentials come from the Docker config, never from specs)",
            )
        yield client


def _auth_backend(host: str, local: bool) -> str:
    """oras' backend for the registry's challenge: `basic` for Basic (htpasswd), else `token`."""
    import requests

    try:
        answer = requests.get(f"{'http' if local else 'https'}://{host}/v2/", timeout=10)
    except requests.RequestException as exc:
        raise StoreError(
            f"registry {host} is unreachable: {type(exc).__name__}", hint="check the host and port"
        ) from None
    challenge = answer.headers.get("Www-Authenticate", "")
    return "basic" if challenge.lower().startswith("basic") else "token"


@dataclass(frozen=True)
class Fetched:
    """A manifest as the registry served it: its JSON, and the digest and size of its bytes."""

    data: dict[str, Any]
    digest: str
    size: int


def _get_manifest(
    client: Any, ref: str, location: str, absent_ok: bool, accept: list[str] | None = None
) -> Fetched | None:
    container = client.get_container(ref)
    client.auth.load_configs(container, configs=[str(docker_config())] if docker_config().is_file() else None)
    headers = {
        "Accept": ", ".join(
            accept or [MANIFEST_TYPE, "application/vnd.docker.distribution.manifest.v2+json", INDEX_TYPE]
        )
    }
    response = client.do_request(f"{client.prefix}://{container.manifest_url()}", "GET", headers=headers)
    if response.status_code == 404 and absent_ok:
        return None
    if response.status_code in (401, 403):
        raise StoreError(
            f"the registry refused access to {ref} (HTTP {response.status_code})",
            hint=f"log in with `docker login {location.removeprefix('oci://').split('/')[0]}` (credentials come from the Docker config)",
        )
    if response.status_code != 200:
        raise StoreError(
            f"reading {ref} failed: HTTP {response.status_code}", details=[redact(response.text[:300])]
        )
    body = response.content
    return Fetched(json.loads(body), "sha256:" + hashlib.sha256(body).hexdigest(), len(body))


def _blob(client: Any, repository: str, layer: dict[str, Any], title: str) -> bytes:
    """A small layer's bytes, read into memory (no temporary file to leave behind if killed) and
    checked against its digest."""
    response = client.get_blob(repository, layer["digest"])
    if response.status_code != 200:
        raise StoreError(f"reading {title} from {repository} failed: HTTP {response.status_code}")
    data: bytes = response.content
    if "sha256:" + hashlib.sha256(data).hexdigest() != layer["digest"]:
        raise StoreError(
            f"{title} in {repository} does not match its digest",
            details=[f"expected {layer['digest']}"],
            hint="the registry is corrupt, or the download was damaged; try again",
        )
    return data


def _checked(call: Any, what: str) -> Any:
    try:
        response = call()
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(
            f"{what} failed", details=[redact(str(exc))], hint="check the registry and your `docker login`"
        ) from None
    if getattr(response, "status_code", 201) not in (200, 201, 202):
        raise StoreError(f"{what} failed: HTTP {response.status_code}", details=[redact(response.text[:300])])
    return response
