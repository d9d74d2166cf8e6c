"""`build-baseline`: lock (if stale) -> env -> lint -> pack -> render -> image -> smoke test.

Outputs for baseline NAME at VERSION, platform P:

* `build/envs/NAME-VERSION-P/` — the environment (staged, renamed into place on success);
* `dist/NAME/VERSION/NAME-VERSION-P.tar.gz` (or `.tar.zst`) + `.sha256`, and `manifest.json`;
* `images/NAME/` — the rendered build context;
* images `NAME:VERSION` and `NAME:VERSION-<12 hex of the lock hash>`.

A *build key* (sha256 of the lock hash, the templates, the build options and baseliner's version)
decides what is fresh: a tarball whose manifest has the same key (and whose checksum matches) is
not rebuilt; an image labelled with the same key is not rebuilt. Rebuilding with nothing changed
therefore does nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .activation import activation_env
from .artifacts import Manifest, read
from .atomic import Report, silent, write_json_atomic
from .channels import credentials, resolve_channels
from .concurrency import hold, scratch, sweep
from .condapkg import FIXED_MTIME
from .config import Project
from .envs import BASELINE_MARKER, install_env, normalise_mtimes
from .errors import BaselinerError, DiskFullError, LockError, is_disk_full
from .lint import lint_env, raise_on_errors
from .lock import lock_baseline, lock_hash, read_lock, stale_reason
from .pack import pack_env, sha256_file
from .pipeline import BUILD_KEY_LABEL, BuildOptions, BuildResult, connect_or_note, step, vcs_labels
from .pypi import parse_pip_lock, pip_requires
from .render import PACKAGE_TEMPLATES, render_activation, render_outputs, tarball_name, write_outputs
from .spec import Baseline

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class BuildPaths:
    project: Project
    baseline: Baseline
    platform: str

    @property
    def stem(self) -> str:
        return f"{self.baseline.name}-{self.baseline.version}-{self.platform}"

    @property
    def env(self) -> Path:
        return self.project.envs_dir / self.stem

    @property
    def out_dir(self) -> Path:
        return self.project.dist_dir / self.baseline.name / self.baseline.version

    @property
    def tarball(self) -> Path:
        return self.out_dir / f"{self.stem}.{self.baseline.pack.format}"

    @property
    def manifest(self) -> Path:
        return self.out_dir / "manifest.json"


def templates_digest(project: Project) -> str:
    """sha256 of every template a build renders (the project's and baseliner's own)."""
    digest = hashlib.sha256()
    for directory in (project.templates_dir, PACKAGE_TEMPLATES):
        if directory.is_dir():
            for path in sorted(directory.glob("*.j2")):
                digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_key(project: Project, baseline: Baseline, options: BuildOptions) -> str:
    """sha256 of a canonical, versioned serialisation of everything a build's output depends on."""
    data = {
        "v": 1,
        "baseliner": __version__,
        "lock": lock_hash(baseline.path),
        "templates": templates_digest(project),
        "platform": options.platform,
        "pack": baseline.pack.output_fields(),
        "image": baseline.image.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def image_tags(baseline: Baseline) -> tuple[str, str]:
    """The baseline's image tags: `NAME:VERSION` and `NAME:VERSION-<12 hex of its lock hash>`."""
    lhash = lock_hash(baseline.path)
    return f"{baseline.name}:{baseline.version}", f"{baseline.name}:{baseline.version}-{lhash[:12]}"


def _read_manifest(path: Path) -> dict[str, Any] | None:
    """The build manifest at `path`, checked (an ArtifactError when malformed); None when absent."""
    if not path.is_file():
        return None
    return read(Manifest, path).model_dump(mode="json")


def tarball_fresh(paths: BuildPaths, key: str) -> bool:
    """Whether the tarball was built with `key` and still matches its manifest's checksum."""
    manifest = _read_manifest(paths.manifest)
    if not manifest or manifest.get("build_key") != key or not paths.tarball.is_file():
        return False
    return bool(manifest.get("tarball", {}).get("sha256") == tarball_sha256(paths))


def tarball_sha256(paths: BuildPaths) -> str:
    """The tarball's sha256, remembered with its inode, size, mtime and ctime, as git's index
    remembers a file: any write to the file changes its ctime, so while those four match, the
    digest is the file's, and a no-op rebuild does not read the whole tarball again."""
    st = paths.tarball.stat()
    stamp = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    path = paths.project.build_dir / "stamps" / f"{paths.tarball.name}.json"
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        known = json.loads(path.read_text())
        if known["stat"] == stamp and isinstance(known["sha256"], str):
            return str(known["sha256"])
    digest = sha256_file(paths.tarball)
    with contextlib.suppress(OSError):  # only a cache: a build dir that cannot hold it just hashes again
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"stat": stamp, "sha256": digest})
    return digest


def _tool_versions() -> dict[str, str]:
    import platform as _platform
    from importlib.metadata import version

    out = {"baseliner": __version__, "python": _platform.python_version()}
    for dist in ("py-rattler", "conda-pack", "uv", "docker"):
        try:
            out[dist] = version(dist)
        except Exception:
            out[dist] = "unknown"
    return out


def _env_size(prefix: Path) -> tuple[int, int]:
    size = files = 0
    for dirpath, _, filenames in os.walk(prefix):
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            size += st.st_size
            files += 1
    return size, files


def manifest_data(
    paths: BuildPaths, key: str, sha: str, size: int, env_prefix: Path, image: dict[str, Any] | None
) -> dict[str, Any]:
    """The build manifest (`Manifest`) of a packed env: tarball, packages, sizes, image, tools."""
    baseline = paths.baseline
    locked = read_lock(baseline, paths.platform)
    conda = sorted(
        (
            {
                "name": str(r.name.normalized),
                "version": str(r.version),
                "build": str(r.build),
                "channel": str(r.channel).rstrip("/"),
                "subdir": str(r.subdir),
                "type": "tar.bz2" if r.url.endswith(".tar.bz2") else "conda",
                "url": r.url,
                "sha256": (r.sha256 or b"").hex(),
                "depends": sorted({str(d).split(" ")[0] for d in r.depends}),
            }
            for r in locked.records
        ),
        key=lambda p: p["name"],
    )
    pins = parse_pip_lock(locked.pip_lock.read_text()) if locked.pip_lock is not None else []
    requires = pip_requires(env_prefix) if env_prefix.is_dir() else {}
    pip = [
        {"name": p.name, "version": p.version, "sha256": list(p.hashes), "requires": requires.get(p.name, [])}
        for p in pins
    ]
    env_bytes, env_files = _env_size(env_prefix) if env_prefix.is_dir() else (0, 0)
    data = {
        "schema_version": MANIFEST_VERSION,
        "name": baseline.name,
        "version": baseline.version,
        "platform": paths.platform,
        "spec_hash": baseline.spec_hash,
        "lock_hash": lock_hash(baseline.path),
        "build_key": key,
        "extends": list(baseline.chain[:-1]),
        "tarball": {"name": paths.tarball.name, "format": baseline.pack.format, "sha256": sha, "size": size},
        "environment": {"prefix_at_build": str(env_prefix), "bytes": env_bytes, "files": env_files},
        "packages": {"conda": conda, "pip": pip},
        "image": image,
        "tools": _tool_versions(),
    }
    return Manifest.model_validate(data).model_dump(mode="json")  # what readers will check


def build_baseline(
    project: Project,
    name: str,
    options: BuildOptions = BuildOptions(),
    report: Report = silent,
    connect: Callable[[], Any] | None = None,
) -> BuildResult:
    """Build one baseline end to end (see the module docstring), holding its build lock."""
    baseline = project.repo().resolve(name)
    paths = BuildPaths(project, baseline, options.platform)
    if options.platform not in baseline.platforms:
        raise LockError(
            f"baseline {name!r} is not locked for {options.platform}",
            hint=f"platforms: {', '.join(baseline.platforms)}",
        )
    lock_file = project.locks_dir / f"{paths.stem}.lock"
    what = f"the build of {name} {baseline.version} ({options.platform})"
    with hold(lock_file, what, options.lock_timeout, report), credentials(list(project.mirrors().values())):
        _clean_leftovers(paths)
        try:
            return _build_locked(project, name, baseline, paths, options, report, connect)
        except (OSError, BaselinerError) as exc:
            if not is_disk_full(exc):
                raise
            raise _out_of_space(name, exc.message if isinstance(exc, BaselinerError) else str(exc)) from None


def _out_of_space(name: str, detail: str) -> DiskFullError:
    return DiskFullError(
        f"out of disk space while building {name}",
        details=[detail],
        hint="free space (or point `dist` / `package_cache` elsewhere) and build again; nothing partial was kept",
    )


def _clean_leftovers(paths: BuildPaths) -> None:
    """Remove what a killed build left: staging prefixes and temporary files next to outputs.
    Called with the build lock held, so no live build is using them."""
    sweep(paths.env.parent)
    if paths.out_dir.is_dir():
        for item in paths.out_dir.iterdir():
            if item.name.startswith("."):
                if item.is_dir():
                    shutil.rmtree(item, ignore_errors=True)
                else:
                    item.unlink(missing_ok=True)


def _build_locked(
    project: Project,
    name: str,
    baseline: Baseline,
    paths: BuildPaths,
    options: BuildOptions,
    report: Report,
    connect: Callable[[], Any] | None,
) -> BuildResult:
    result = BuildResult(
        "baseline", name, baseline.version, options.platform, "", paths.env, paths.tarball, paths.manifest
    )

    if stale_reason(baseline) is not None:
        with step(result, "lock", report) as detail:
            lock_baseline(baseline, project.mirrors(), project.build_dir, project.pip_index, report)
            detail.append(f"re-solved ({stale_reason(baseline) or 'fresh now'})")
    key = build_key(project, baseline, options)
    result.build_key = key
    image_info: dict[str, Any] | None = (_read_manifest(paths.manifest) or {}).get("image")

    if options.force or not tarball_fresh(paths, key):
        result.rebuilt = True
        with step(result, "env", report) as detail:
            locked = read_lock(baseline, options.platform)
            refs = resolve_channels(baseline.channels, project.mirrors(), baseline.path.parent)
            marker = {
                "name": baseline.name,
                "version": baseline.version,
                "platform": options.platform,
                "lock_hash": lock_hash(baseline.path),
            }
            installed = install_env(
                locked,
                refs,
                paths.env,
                project.package_cache,
                project.pip_index,
                uv_cache=project.uv_cache,
                report=report,
                markers={BASELINE_MARKER: marker},
            )
            detail.append(
                f"{installed.conda_packages} conda + {installed.pip_packages} pip packages, "
                f"cache hits {installed.cache_hits}/{installed.conda_packages}"
            )
        with step(result, "lint", report) as detail:
            findings = lint_env(paths.env, [baseline.image.prefix])
            raise_on_errors(name, findings, f"invoke build-baseline {name}")
            result.warnings = [f for f in findings if f.severity == "warning"]
            detail.append(f"{len(result.warnings)} warning(s)")
        with step(result, "pack", report) as detail:
            normalise_mtimes(paths.env, FIXED_MTIME)
            packed = pack_env(
                paths.env,
                paths.tarball,
                baseline.pack.format,
                baseline.pack.level,
                baseline.pack.threads,
                report,
            )
            detail.append(f"{packed.size / 1e6:.1f} MB {baseline.pack.format}")
        image_info = None
        write_json_atomic(
            paths.manifest, manifest_data(paths, key, packed.sha256, packed.size, paths.env, None)
        )

    with step(result, "render", report) as detail:
        outputs = render_outputs(baseline, project.templates_dir)
        write_outputs(outputs, project.images_dir / name)
        detail.append(f"images/{name}/ ({len(outputs)} files)")

    if options.image:
        _image_steps(project, paths, key, options, result, report, connect, image_info)
    else:
        result.image_note = "skipped (--no-image)"
    return result


def _image_steps(
    project: Project,
    paths: BuildPaths,
    key: str,
    options: BuildOptions,
    result: BuildResult,
    report: Report,
    connect: Callable[[], Any] | None,
    image_info: dict[str, Any] | None,
) -> None:
    from . import images, smoke

    baseline = paths.baseline
    client = connect_or_note(result, connect, report)
    if client is None:
        return
    tags = image_tags(baseline)
    labels = {}
    if images.image_exists(client, tags[1]):
        labels = images.inspect_labels(client, tags[1])
    if not options.force and labels.get(BUILD_KEY_LABEL) == key and image_info:
        result.image_tags = tags
        result.image_note = "fresh"
        return
    result.rebuilt = True
    with step(result, "image", report) as detail:
        # Scratch next to the env (same filesystem as dist, so the tarball is linked, not copied),
        # where the next build sweeps it if this one is killed.
        with scratch(paths.env.parent, "context") as context:
            for item in (project.images_dir / baseline.name).iterdir():
                shutil.copy2(item, context / item.name)
            _link_or_copy(paths.tarball, context / tarball_name(baseline))
            labels = {BUILD_KEY_LABEL: key, **vcs_labels(project.root)}
            built = images.build_image(
                client, context, tags, baseline.image.base, labels=labels, report=report
            )
        activation = activation_env(paths.env, baseline.image.prefix)
        if activation:
            dockerfile = render_activation(baseline.name, built.id, activation, project.templates_dir)
            built = images.extend_image(client, dockerfile, tags, labels, report)
        detail.append(
            f"{', '.join(tags)} ({built.id[7:19]}), {len(activation)} activation variable(s) in ENV"
        )
    with step(result, "smoke", report) as detail:
        plan = smoke.plan(
            paths.env, [r.spec for r in baseline.conda], [r.spec for r in baseline.pip], project.package_cache
        )
        checked = images.smoke_test(client, tags[1], plan, baseline.image.shared_cache, report)
        detail.append(
            f"uid {checked.uid}, {len(checked.imported)} import(s), {len(checked.entry_points)} entry point(s), cache read-only"
        )
    result.image_tags = tags
    manifest = _read_manifest(paths.manifest) or {}
    manifest["image"] = {
        "tags": list(tags),
        "id": built.id,
        "base": baseline.image.base,
        "spec": baseline.image.model_dump(mode="json"),
        "activation": {k: v.shown(k) for k, v in activation.items()},
    }
    write_json_atomic(paths.manifest, manifest)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
