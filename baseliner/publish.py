"""Publishing a built baseline: push its image (optional) and write it to the artifact store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .atomic import Report, silent, write_json_atomic
from .build import BuildPaths
from .concurrency import scratch
from .config import Project
from .errors import ImageError, StoreError
from .lock import lock_files
from .store import ArtifactStore, Store, assemble, publish, published_entry


def publish_baseline(
    project: Project,
    name: str,
    store: ArtifactStore,
    registry: str | None = None,
    report: Report = silent,
    platform: str = "linux-64",
) -> dict[str, Any]:
    """Push the image tags to `registry` (HOST[:PORT]/ORG) when given, then publish to `store`.

    A registry store (`oci://HOST/ORG`) takes the image beside the bundle (HOST/ORG/NAME), and the
    SBOM is attached to the pushed image digest. A version already published with other content
    is refused before anything is pushed, and so is a registry tag that already points to another
    image."""
    from .registry import OciStore

    baseline = project.repo().resolve(name)
    paths = BuildPaths(project, baseline, platform)
    manifest_path = paths.manifest
    if not manifest_path.is_file():
        raise StoreError(
            f"{name} {baseline.version} ({platform}) is not built: no {manifest_path}",
            hint=f"run `invoke build-baseline {name} --platform {platform}` first",
        )
    if isinstance(store, OciStore) and not registry and json.loads(manifest_path.read_text()).get("image"):
        registry = store.registry  # the image goes beside its bundle
    published_entry(store, json.loads(manifest_path.read_text()))  # refuse a changed version early
    if registry:
        from . import images

        manifest = json.loads(manifest_path.read_text())
        image = manifest.get("image")
        if not image:
            raise ImageError(
                f"{name} has no built image to push", hint=f"run `invoke build-baseline {name}` with Docker"
            )
        client = images.connect()
        repository = f"{registry.rstrip('/')}/{baseline.name}"
        for ref in image["tags"]:  # every tag first: nothing is pushed when one would move
            images.refuse_moved_tag(client, ref, repository, ref.rsplit(":", 1)[1], manifest["lock_hash"])
        digest = ""
        for ref in image["tags"]:
            digest = images.push(client, ref, repository, ref.rsplit(":", 1)[1], report)
        image["digest"] = digest
        image["pushed"] = [f"{repository}:{t.rsplit(':', 1)[1]}" for t in image["tags"]]
        write_json_atomic(manifest_path, manifest)
    extra: list[Path] = []
    image = json.loads(manifest_path.read_text()).get("image")
    if image:
        from .render import render_kubernetes

        ref = image.get("digest") or image["tags"][1]
        k8s_dir = manifest_path.parent / "k8s"
        k8s_dir.mkdir(exist_ok=True)
        for name, data in render_kubernetes(
            baseline, ref, project.config.kubernetes, project.templates_dir
        ).items():
            (k8s_dir / name).write_bytes(data)
            extra.append(k8s_dir / name)
    locks = [*lock_files(Path(baseline.path)), *extra]
    if isinstance(store, Store):
        return publish(store, manifest_path, locks)
    assert isinstance(store, OciStore)
    existing = published_entry(store, json.loads(manifest_path.read_text()))
    if existing is not None:  # the same content is already there: a no-op
        return existing
    with scratch(project.build_dir, f"bundle-{baseline.name}-{baseline.version}") as tmp:
        staging = tmp / "version"
        staging.mkdir()
        published = assemble(manifest_path, locks, staging)
        store.push_bundle(baseline.name, baseline.version, staging, report)
        digest = (published.get("image") or {}).get("digest") or ""
        if "@sha256:" in digest:
            store.attach_sbom(baseline.name, digest.split("@", 1)[1], staging / "sbom.cdx.json", report)
    entry = store.entry(baseline.name, baseline.version)
    assert entry is not None
    return entry
