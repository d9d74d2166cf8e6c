"""Building an overlay: the environment, the delta and full tarballs, and applying a delta.

* Environment: the base records and the delta records are linked from the shared package cache
  (the base's files are the same inodes as in the base environment, hardlinked from the cache),
  then the base's pip lock and the pip delta (uv, hardlinks from its cache). Its disk cost is close
  to the delta's size.
* Delta tarball: conda-pack of only the delta's files (the delta's conda records, its pip
  distributions, its conda-meta entries and `etc/baseliner/overlay.json`), with a manifest naming
  the base. `apply_delta` unpacks it on top of an unpacked base — refusing a base whose lock hash
  differs — and runs the delta's own `conda-unpack`, which rewrites the delta's prefixes only.
* Full tarball: the whole overlay environment, for machines without the base.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .artifacts import DeltaManifest, EnvMarker, read
from .atomic import Report, silent, write_json_atomic
from .channels import credentials
from .concurrency import hold, scratch
from .condapkg import FIXED_MTIME
from .config import Project
from .envs import BASELINE_MARKER, OVERLAY_MARKER, conda_records, install_env, normalise_mtimes
from .errors import LockError, PackError, StoreError
from .lint import lint_env, pip_distributions, raise_on_errors
from .lock import LockedEnv, read_lock_records
from .overlay import Base, Overlay, _refs_for, overlay_stale_reason, read_header
from .pack import (
    PackResult,
    conda_unpack,
    member_problems,
    open_tarball,
    pack_env,
    sha256_file,
    unpack,
    verify_checksum,
)
from .pypi import normalise

if TYPE_CHECKING:
    from .engine import RepoDataRecord


@dataclass(frozen=True)
class OverlayBuild:
    env: Path
    delta: PackResult
    full: PackResult
    manifest: Path
    layered: bool
    delta_files: tuple[str, ...]
    delta_bytes: int
    rebuilt: bool = True


def overlay_build_key(overlay: Overlay, base: Base, platform: str) -> str:
    """sha256 of what an overlay build's outputs depend on: its locks, its base, how it is packed."""
    import hashlib

    pip = overlay.pip_path(platform)
    data = {
        "v": 1,
        "baseliner": __version__,
        "lock": hashlib.sha256(overlay.lock_path.read_bytes()).hexdigest(),
        "pip": hashlib.sha256(pip.read_bytes()).hexdigest() if pip.is_file() else None,
        "base": base.lock_hash,
        "platform": platform,
        "pack": overlay.spec.pack.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _fresh_build(
    out_dir: Path, env: Path, key: str, base_names: set[str], base_pins: set[str]
) -> OverlayBuild | None:
    """The previous build in `out_dir` when it was made with `key` and its outputs are intact."""
    path = out_dir / "manifest.json"
    if not path.is_file() or not env.is_dir():
        return None
    manifest = read(DeltaManifest, path)
    delta, full = out_dir / manifest.delta.name, out_dir / manifest.full.name
    if manifest.build_key != key or not delta.is_file() or not full.is_file():
        return None
    if sha256_file(delta) != manifest.delta.sha256 or sha256_file(full) != manifest.full.sha256:
        return None
    files = _delta_files(env, base_names, base_pins) if manifest.layered else []
    return OverlayBuild(
        env,
        PackResult(delta, manifest.delta.sha256, manifest.delta.size),
        PackResult(full, manifest.full.sha256, manifest.full.size),
        path,
        manifest.layered,
        tuple(files),
        manifest.delta.unpacked_bytes,
        rebuilt=False,
    )


def _delta_files(prefix: Path, base_names: set[str], base_pins: set[str]) -> list[str]:
    records = conda_records(prefix)
    files: set[str] = {OVERLAY_MARKER}
    for rec in records:
        if str(rec["name"]) in base_names:
            continue
        files.update(str(f) for f in rec.get("files", []))
        files.add(f"conda-meta/{rec['name']}-{rec['version']}-{rec['build']}.json")
    conda_files = {str(f) for r in records for f in r.get("files", [])}
    for dist in pip_distributions(prefix, conda_files):
        if normalise(dist.name) not in base_pins:
            files.update(os.path.normpath(f) for f in dist.files)
    return sorted(f for f in files if (prefix / f).exists() or (prefix / f).is_symlink())


def build_overlay(
    project: Project,
    overlay: Overlay,
    base: Base,
    platform: str = "linux-64",
    report: Report = silent,
    force: bool = False,
) -> OverlayBuild:
    """Build the overlay's env (base + delta), its delta and full tarballs and manifest, holding
    its build lock; an unchanged overlay on an unchanged base is a no-op (unless `force`)."""
    name = f"{overlay.spec.name}-{platform}"
    with hold(project.locks_dir / f"overlay-{name}.lock", f"the build of overlay {name}", report=report):
        return _build_overlay(project, overlay, base, platform, report, force)


def _build_overlay(
    project: Project, overlay: Overlay, base: Base, platform: str, report: Report, force: bool
) -> OverlayBuild:
    reason = overlay_stale_reason(overlay, base)
    if reason is not None:
        raise LockError(
            f"the lock of overlay {overlay.spec.name!r} is out of date: {reason}",
            hint=f"run `baseliner lock-overlay {overlay.path.name}`",
        )
    header = read_header(overlay.lock_path)
    layered = header.get("layered") == "true"
    base_channels, base_records = read_lock_records(base.lock, platform)
    _, delta_records = read_lock_records(overlay.lock_path, platform)
    refs = _refs_for(base_channels, overlay.spec.channels, project.mirrors(), overlay.path.parent)
    records = [*base_records, *delta_records] if layered else delta_records
    pip_delta = overlay.pip_path(platform)
    base_pip = base.pip_locks.get(platform)
    locked = LockedEnv(platform, records, base_pip if layered else None)
    name = f"{overlay.spec.name}-{platform}"
    env = project.envs_dir / name
    out_dir = project.overlays_dist / overlay.spec.name
    key = overlay_build_key(overlay, base, platform)
    base_names, base_pins = {_n(r) for r in base_records}, set(base.pip_pins(platform))
    if not force and (fresh := _fresh_build(out_dir, env.resolve(), key, base_names, base_pins)) is not None:
        report(f"{overlay.spec.name} is fresh: nothing changed since its last build")
        return fresh
    markers: dict[str, object] = {
        OVERLAY_MARKER: {
            "name": overlay.spec.name,
            "base": base.ref,
            "base_lock_hash": base.lock_hash,
            "layered": layered,
        },
        BASELINE_MARKER: {
            "name": base.name,
            "version": base.version,
            "platform": platform,
            "lock_hash": base.lock_hash,
        },
    }
    report(
        f"installing {overlay.spec.name}: {len(base_records)} base + {len(delta_records)} delta conda packages"
    )
    with credentials(list(project.mirrors().values())):
        install_env(
            locked,
            refs,
            env,
            project.package_cache,
            project.config.pip_index_url,
            uv_cache=project.uv_cache,
            report=report,
            extra_pip_locks=[pip_delta] if pip_delta.is_file() else [],
            markers=markers,
        )
    from .spec import ImageSpec

    # The image prefix the base was built for (an overlay env lands in the base image's prefix).
    image_prefix = (((base.manifest or {}).get("image") or {}).get("spec") or {}).get(
        "prefix", ImageSpec().prefix
    )
    raise_on_errors(
        overlay.spec.name, lint_env(env, [image_prefix]), f"baseliner build-overlay {overlay.path}"
    )
    normalise_mtimes(env, FIXED_MTIME)
    delta_files = _delta_files(env, base_names, base_pins) if layered else []
    fmt = overlay.spec.pack.format
    report(f"packing the delta ({len(delta_files)} files) and the full environment")
    delta = pack_env(
        env,
        out_dir / f"{name}.delta.{fmt}",
        fmt,
        overlay.spec.pack.compress_level,
        overlay.spec.pack.threads,
        report,
        only=delta_files if layered else None,
    )
    full = pack_env(
        env,
        out_dir / f"{name}.full.{fmt}",
        fmt,
        overlay.spec.pack.compress_level,
        overlay.spec.pack.threads,
        report,
    )
    delta_bytes = sum((env / f).lstat().st_size for f in delta_files)
    manifest = {
        "schema_version": 1,
        "name": overlay.spec.name,
        "platform": platform,
        "layered": layered,
        "base": {"name": base.name, "version": base.version, "lock_hash": base.lock_hash},
        "delta": {
            "name": delta.path.name,
            "sha256": delta.sha256,
            "size": delta.size,
            "files": len(delta_files),
            "unpacked_bytes": delta_bytes,
        },
        "full": {"name": full.path.name, "sha256": full.sha256, "size": full.size},
        "packages": sorted(f"{_n(r)}={r.version}={r.build}" for r in delta_records),
        "build_key": key,
    }
    manifest_path = write_json_atomic(
        out_dir / "manifest.json", DeltaManifest.model_validate(manifest).model_dump(mode="json")
    )
    return OverlayBuild(env, delta, full, manifest_path, layered, tuple(delta_files), delta_bytes)


def _n(record: RepoDataRecord) -> str:
    return str(record.name.normalized)


def _delta_manifest(tarball: Path) -> dict[str, Any]:
    with open_tarball(tarball) as tar:
        for member in tar:
            if member.name == OVERLAY_MARKER:
                fh = tar.extractfile(member)
                if fh is not None:
                    return dict(json.loads(fh.read()))
    raise PackError(f"{tarball.name} is not an overlay delta (no {OVERLAY_MARKER})")


def _base_tarball(info: dict[str, Any]) -> str:
    """The file name the store gives the base tarball a delta applies onto."""
    name, _, version = str(info["base"]).partition("@")
    return f"{name}-{version}-{info.get('platform', 'linux-64')}.tar.gz"


def unpack_any(tarball: Path, dest: Path, verify: bool = True, report: Report = silent) -> Path:
    """Unpack a baseline tarball into the new directory `dest`, or apply an overlay's delta tarball
    (named `*.delta.*` by `build-overlay`) onto the unpacked base at `dest`."""
    if ".delta." in tarball.name:
        return apply_delta(tarball, dest, verify=verify, report=report)
    return unpack(tarball, dest, verify=verify, report=report)


def apply_delta(tarball: Path, base_prefix: Path, verify: bool = True, report: Report = silent) -> Path:
    """Apply a delta tarball on top of an unpacked base; refuses a base with another lock hash."""
    if verify:
        verify_checksum(tarball)
    info = _delta_manifest(tarball)
    marker = base_prefix / BASELINE_MARKER
    if not marker.is_file():
        raise PackError(
            f"{base_prefix} is not an unpacked baseline (no {BASELINE_MARKER})",
            hint=f"unpack the base there first: `baseliner unpack {_base_tarball(info)} {base_prefix}`",
        )
    have = read(EnvMarker, marker).model_dump()
    if have.get("lock_hash") != info["base_lock_hash"]:
        raise PackError(
            f"refusing to apply {tarball.name}: it was built on another base",
            details=[
                f"delta needs {info['base']} (lock {info['base_lock_hash'][:12]})",
                f"{base_prefix} holds {have.get('name')}@{have.get('version')} (lock {str(have.get('lock_hash'))[:12]})",
            ],
            hint="unpack the base the overlay was built on, or rebuild the overlay on this base",
        )
    problems: list[str] = []
    with open_tarball(tarball) as tar:
        for member in tar:
            problems += member_problems(member)
    if problems:
        raise PackError(f"refusing to apply {tarball.name}: unsafe member(s)", details=problems)
    with scratch(base_prefix.parent, f"delta-{base_prefix.name}") as tmp:
        staging = tmp / "delta"
        report(f"applying {tarball.name} on {base_prefix}")
        with open_tarball(tarball) as tar:
            tar.extractall(staging, filter="data")
        for dirpath, _, filenames in os.walk(staging):
            for name in filenames:
                src = Path(dirpath, name)
                dst = base_prefix / src.relative_to(staging)
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
            for name in os.listdir(dirpath):
                src = Path(dirpath, name)
                if src.is_symlink():
                    dst = base_prefix / src.relative_to(staging)
                    if dst.is_symlink() or dst.exists():
                        dst.unlink()
                    os.replace(src, dst)
    conda_unpack(base_prefix, report)
    return base_prefix


def overlay_image_tag(overlay: Overlay, base: Base) -> str:
    return f"{overlay.spec.name}:{base.version}-{overlay_stale_hash(overlay)}"


def overlay_stale_hash(overlay: Overlay) -> str:
    import hashlib

    return hashlib.sha256(overlay.lock_path.read_bytes()).hexdigest()[:12]


def build_overlay_image(
    client: Any, project: Project, overlay: Overlay, base: Base, built: OverlayBuild, report: Report = silent
) -> tuple[str, str]:
    """`FROM <base image>@<digest>` (or its content-addressed id) plus one layer: the delta.

    Returns (tag, base reference used)."""
    from . import images, smoke
    from .build import vcs_labels
    from .render import render_overlay_context
    from .spec import ImageSpec

    if not built.layered:
        raise LockError(
            f"overlay {overlay.spec.name!r} is not layered (--allow-base-changes); build a full image instead"
        )
    image_info = (base.manifest or {}).get("image") or {}
    base_ref = image_info.get("digest") or image_info.get("id")
    if not base_ref:
        raise StoreError(
            f"base {base.ref} was published without an image",
            hint="build and publish the base with its image (and --registry for a digest)",
        )
    images.ensure_image(client, base_ref, report)
    spec_image = ImageSpec(**{k: v for k, v in (image_info.get("spec") or {}).items()})
    tag = overlay_image_tag(overlay, base)
    files = [f for f in built.delta_files if not f.startswith(("bin/conda-unpack", "bin/conda_unpack"))]
    pushed = image_info.get("pushed") or image_info.get("tags") or [base_ref]
    labels = {
        "org.opencontainers.image.title": overlay.spec.name,
        "org.opencontainers.image.base.name": pushed[0],  # a reference: REPO:TAG
        "io.baseliner.base": base.ref,
        "io.baseliner.base-lock-hash": base.lock_hash,
    }
    if "@" in base_ref:
        labels["org.opencontainers.image.base.digest"] = base_ref.split("@", 1)[1]
    context = render_overlay_context(
        overlay.spec.name,
        overlay.path.name,
        base_ref,
        built.delta.path.name,
        overlay.spec.pack.format,
        files,
        labels,
        spec_image,
        project.templates_dir,
    )
    with scratch(built.env.parent, "context") as tmp:
        for name, data in context.items():
            (tmp / name).write_bytes(data)
        shutil.copy2(built.delta.path, tmp / built.delta.path.name)
        images.build_image(
            client, tmp, [tag], base_ref, labels=vcs_labels(overlay.path.parent), report=report
        )
    plan = smoke.plan(built.env, overlay.spec.conda, overlay.spec.pip, project.package_cache)
    images.smoke_test(client, tag, plan, spec_image.shared_cache, report)
    return tag, base_ref
