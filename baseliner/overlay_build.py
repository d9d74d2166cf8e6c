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

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .artifacts import DeltaManifest, EnvMarker, OverlayMarker, load, read
from .atomic import Report, silent, write_json_atomic
from .build import templates_digest
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
    conda_unpack,
    open_tarball,
    pack_env,
    sha256_file,
    unpack,
    verify_checksum,
)
from .pipeline import BUILD_KEY_LABEL, BuildOptions, BuildResult, connect_or_note, step, vcs_labels
from .pypi import normalise
from .render import render_overlay_context
from .safetar import MemberGuard
from .spec import ImageSpec

if TYPE_CHECKING:
    from .engine import RepoDataRecord


def overlay_build_key(overlay: Overlay, base: Base, platform: str) -> str:
    """sha256 of what an overlay build's outputs depend on: its locks, its base, how it is packed."""
    pip = overlay.pip_path(platform)
    data = {
        "v": 1,
        "baseliner": __version__,
        "lock": hashlib.sha256(overlay.lock_path.read_bytes()).hexdigest(),
        "pip": hashlib.sha256(pip.read_bytes()).hexdigest() if pip.is_file() else None,
        "base": base.lock_hash,
        "platform": platform,
        "pack": overlay.spec.pack.output_fields(),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _fresh_build(result: BuildResult, base_names: set[str], base_pins: set[str]) -> bool:
    """Fill `result` from the previous build when it was made with `result.build_key` and its
    outputs are intact; whether it was."""
    if not result.manifest.is_file() or not result.env.is_dir():
        return False
    manifest = read(DeltaManifest, result.manifest)
    out_dir = result.manifest.parent
    delta, full = out_dir / manifest.delta.name, out_dir / manifest.full.name
    if manifest.build_key != result.build_key or not delta.is_file() or not full.is_file():
        return False
    if sha256_file(delta) != manifest.delta.sha256 or sha256_file(full) != manifest.full.sha256:
        return False
    result.layered = manifest.layered
    result.delta, result.tarball = (delta if manifest.layered else None), full
    result.delta_files = tuple(_delta_files(result.env, base_names, base_pins) if manifest.layered else [])
    result.delta_bytes = manifest.delta.unpacked_bytes
    return True


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
    options: BuildOptions = BuildOptions(),
    report: Report = silent,
    connect: Callable[[], Any] | None = None,
) -> BuildResult:
    """Build the overlay through the pipeline (see `pipeline`), holding its build lock: env (base +
    delta), lint, delta and full tarballs, manifest, then the image FROM the base and its smoke
    test. An unchanged overlay on an unchanged base is a no-op (unless `options.force`)."""
    name = f"{overlay.spec.name}-{options.platform}"
    what = f"the build of overlay {name}"
    with (
        hold(project.locks_dir / f"overlay-{name}.lock", what, options.lock_timeout, report),
        credentials(list(project.mirrors().values())),
    ):
        result = _build_overlay(project, overlay, base, options, report)
        if options.image:
            _image_steps(project, overlay, base, result, options, report, connect)
        else:
            result.image_note = "skipped (--no-image)"
        return result


def _build_overlay(
    project: Project, overlay: Overlay, base: Base, options: BuildOptions, report: Report
) -> BuildResult:
    platform = options.platform
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
    name = f"{overlay.spec.name}-{platform}"
    out_dir = project.overlays_dist / overlay.spec.name
    result = BuildResult(
        "overlay",
        overlay.spec.name,
        base.version,
        platform,
        overlay_build_key(overlay, base, platform),
        (project.envs_dir / name).resolve(),
        out_dir / f"{name}.full.{overlay.spec.pack.format}",
        out_dir / "manifest.json",
        base=base.ref,
    )
    base_names, base_pins = {_n(r) for r in base_records}, set(base.pip_pins(platform))
    if not options.force and _fresh_build(result, base_names, base_pins):
        report(f"{overlay.spec.name} is fresh: nothing changed since its last build")
        return result
    result.rebuilt, result.layered = True, layered
    with step(result, "env", report) as detail:
        refs = _refs_for(base_channels, overlay.spec.channels, project.mirrors(), overlay.path.parent)
        records = [*base_records, *delta_records] if layered else delta_records
        pip_delta = overlay.pip_path(platform)
        locked = LockedEnv(platform, records, base.pip_locks.get(platform) if layered else None)
        markers: dict[str, object] = {
            OVERLAY_MARKER: OverlayMarker(
                name=overlay.spec.name,
                base=base.ref,
                base_lock_hash=base.lock_hash,
                layered=layered,
                platform=platform,
            ).model_dump(mode="json"),
            BASELINE_MARKER: {
                "name": base.name,
                "version": base.version,
                "platform": platform,
                "lock_hash": base.lock_hash,
            },
        }
        installed = install_env(
            locked,
            refs,
            result.env,
            project.package_cache,
            project.pip_index,
            uv_cache=project.uv_cache,
            report=report,
            extra_pip_locks=[pip_delta] if pip_delta.is_file() else [],
            markers=markers,
        )
        detail.append(
            f"{len(base_records) if layered else 0} base + {len(delta_records)} delta conda packages, "
            f"{installed.pip_packages} pip, cache hits {installed.cache_hits}/{installed.conda_packages}"
        )
    with step(result, "lint", report) as detail:
        # The image prefix the base was built for (an overlay env lands in the base image's prefix).
        findings = lint_env(result.env, [_base_image_spec(base).prefix])
        raise_on_errors(overlay.spec.name, findings, f"baseliner build-overlay {overlay.path}")
        result.warnings = [f for f in findings if f.severity == "warning"]
        detail.append(f"{len(result.warnings)} warning(s)")
    with step(result, "pack", report) as detail:
        normalise_mtimes(result.env, FIXED_MTIME)
        delta_files = _delta_files(result.env, base_names, base_pins) if layered else []
        pack = overlay.spec.pack
        fmt = pack.format
        delta = pack_env(
            result.env,
            out_dir / f"{name}.delta.{fmt}",
            fmt,
            pack.level,
            pack.threads,
            report,
            only=delta_files if layered else None,
        )
        full = pack_env(result.env, result.tarball, fmt, pack.level, pack.threads, report)
        result.delta = delta.path if layered else None
        result.delta_files = tuple(delta_files)
        result.delta_bytes = sum((result.env / f).lstat().st_size for f in delta_files)
        detail.append(
            f"delta {delta.size / 1e6:.2f} MB ({len(delta_files)} files), full {full.size / 1e6:.1f} MB {fmt}"
        )
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
            "unpacked_bytes": result.delta_bytes,
        },
        "full": {"name": full.path.name, "sha256": full.sha256, "size": full.size},
        "packages": sorted(f"{_n(r)}={r.version}={r.build}" for r in delta_records),
        "build_key": result.build_key,
    }
    write_json_atomic(result.manifest, DeltaManifest.model_validate(manifest).model_dump(mode="json"))
    return result


def _base_image_spec(base: Base) -> ImageSpec:
    """The image spec the base was built with (its manifest), or the default."""
    spec = (((base.manifest or {}).get("image") or {}).get("spec")) or {}
    return ImageSpec(**spec)


def _n(record: RepoDataRecord) -> str:
    return str(record.name.normalized)


def _overlay_marker(tarball: Path) -> OverlayMarker:
    with open_tarball(tarball) as tar:
        for member in tar:
            if member.name == OVERLAY_MARKER:
                fh = tar.extractfile(member)
                if fh is not None:
                    return load(OverlayMarker, fh.read(), f"{tarball.name}:{OVERLAY_MARKER}")
    raise PackError(f"{tarball.name} is not an overlay delta (no {OVERLAY_MARKER})")


def _base_tarball(marker: OverlayMarker) -> str:
    """The file name the store gives the base tarball a delta applies onto."""
    name, _, version = marker.base.partition("@")
    return f"{name}-{version}-{marker.platform}.tar.gz"


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
    info = _overlay_marker(tarball)
    marker = base_prefix / BASELINE_MARKER
    if not marker.is_file():
        raise PackError(
            f"{base_prefix} is not an unpacked baseline (no {BASELINE_MARKER})",
            hint=f"unpack the base there first: `baseliner unpack {_base_tarball(info)} {base_prefix}`",
        )
    have = read(EnvMarker, marker)
    if have.lock_hash != info.base_lock_hash:
        raise PackError(
            f"refusing to apply {tarball.name}: it was built on another base",
            details=[
                f"delta needs {info.base} (lock {info.base_lock_hash[:12]})",
                f"{base_prefix} holds {have.name}@{have.version} (lock {have.lock_hash[:12]})",
            ],
            hint="unpack the base the overlay was built on, or rebuild the overlay on this base",
        )
    problems: list[str] = []
    guard = MemberGuard()
    with open_tarball(tarball) as tar:
        for member in tar:
            problems += guard.problems(member)
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
    """The overlay image tag: `NAME:BASEVERSION-<12 hex of the overlay lock>`."""
    return f"{overlay.spec.name}:{base.version}-{overlay_stale_hash(overlay)}"


def overlay_stale_hash(overlay: Overlay) -> str:
    """12 hex of the sha256 of the overlay's lock file."""
    return hashlib.sha256(overlay.lock_path.read_bytes()).hexdigest()[:12]


def _local_base_ref(client: Any, base: Base, base_ref: str) -> str:
    """The reference to build FROM. A base published without a registry names its image by an id
    that only the engine which built it has; on another engine (or after a prune) the base's own
    tag stands in when it carries the published build key, i.e. it was built from the same lock
    and spec. Otherwise the id is refused with the command that makes it here."""
    from . import images

    if "@" in base_ref or images.image_exists(client, base_ref):
        return base_ref
    manifest = base.manifest or {}
    for tag in (manifest.get("image") or {}).get("tags") or []:
        if images.image_exists(client, tag):
            key = images.inspect_labels(client, tag).get(BUILD_KEY_LABEL)
            if key and key == manifest.get("build_key"):
                return str(images.ensure_image(client, tag))
    raise StoreError(
        f"the image of base {base.ref} is not on this Docker Engine",
        details=[
            f"published as the local image {base_ref}, without a registry digest",
            f"no local {', '.join((manifest.get('image') or {}).get('tags') or ['tag'])} has its build key",
        ],
        hint=f"build the base here (`invoke build-baseline {base.name}`: the same lock gives the same "
        f"build key), or publish it with --registry so that any engine can pull it",
    )


def _image_steps(
    project: Project,
    overlay: Overlay,
    base: Base,
    result: BuildResult,
    options: BuildOptions,
    report: Report,
    connect: Callable[[], Any] | None,
) -> None:
    """`FROM <base image>@<digest>` (or its content-addressed id) plus one layer, the delta; then
    the smoke test. Fresh when the image carries this build's key."""
    from . import images, smoke

    if not result.layered or result.delta is None:
        result.image_note = (
            "not built: a non-layered overlay (--allow-base-changes) has no base image to extend"
        )
        return
    image_info = (base.manifest or {}).get("image") or {}
    base_ref = image_info.get("digest") or image_info.get("id")
    if not base_ref:
        raise StoreError(
            f"base {base.ref} was published without an image",
            hint="build and publish the base with its image (and --registry for a digest), or use --no-image",
        )
    client = connect_or_note(result, connect, report)
    if client is None:
        return
    base_ref = _local_base_ref(client, base, base_ref)
    tag = overlay_image_tag(overlay, base)
    # The image depends on the templates too (the delta does not): a changed template rebuilds it.
    image_key = hashlib.sha256(f"{result.build_key}\0{templates_digest(project)}".encode()).hexdigest()
    fresh = images.image_exists(client, tag) and images.inspect_labels(client, tag).get(BUILD_KEY_LABEL)
    if not options.force and not result.rebuilt and fresh == image_key:
        result.image_tags, result.image_note = (tag,), "fresh"
        return
    result.rebuilt = True
    spec_image = _base_image_spec(base)
    with step(result, "image", report) as detail:
        images.ensure_image(client, base_ref, report)
        files = [f for f in result.delta_files if not f.startswith(("bin/conda-unpack", "bin/conda_unpack"))]
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
            result.delta.name,
            overlay.spec.pack.format,
            files,
            labels,
            spec_image,
            project.templates_dir,
        )
        with scratch(result.env.parent, "context") as tmp:
            for name, data in context.items():
                (tmp / name).write_bytes(data)
            shutil.copy2(result.delta, tmp / result.delta.name)
            build_labels = {BUILD_KEY_LABEL: image_key, **vcs_labels(overlay.path.parent)}
            built = images.build_image(client, tmp, [tag], base_ref, labels=build_labels, report=report)
        detail.append(f"{tag} ({built.id[7:19]}) FROM {base_ref}")
    with step(result, "smoke", report) as detail:
        plan = smoke.plan(result.env, overlay.spec.conda, overlay.spec.pip, project.package_cache)
        checked = images.smoke_test(client, tag, plan, spec_image.shared_cache, report)
        detail.append(
            f"uid {checked.uid}, {len(checked.imported)} import(s), {len(checked.entry_points)} entry point(s)"
        )
    result.image_tags = (tag,)
