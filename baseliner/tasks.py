"""The invoke tasks: thin, typed wrappers over the library. The root `tasks.py` and the
`baseliner` console script both use `namespace` from here.

This is the one layer that prints and exits: a `BaselinerError` becomes its one-screen message
and exit code 1 (no traceback); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from invoke import Collection, Context, Exit, task
from rich.console import Console

from .config import Project
from .errors import BaselinerError, LockError, RenderError, redact

if TYPE_CHECKING:
    from .build import BuildResult

F = TypeVar("F", bound=Callable[..., Any])
console = Console(stderr=True, highlight=False)


def _user_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BaselinerError as exc:
            raise Exit(exc.render(), code=exc.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None

    return wrapper  # type: ignore[return-value]


def project(c: Context) -> Project:
    root = c.config.get("baseliner", {}).get("root") or os.environ.get("BASELINER_ROOT") or "."
    return Project.load(Path(root))


def _report(message: str) -> None:
    console.print(f"… {redact(message)}", markup=False, style="dim")


def _names(proj: Project, name: str) -> list[str]:
    return [name] if name else proj.repo().names()


def _emit_json(data: object) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


@task(help={"name": "baseline to check (default: all)", "json": "print the result as JSON"})
@_user_errors
def validate(c: Context, name: str = "", json: bool = False) -> None:
    """Check baseline specs: keys, types, match specs, `extends:` (file, line and hint on error)."""
    proj = project(c)
    repo = proj.repo()
    results: list[dict[str, Any]] = []
    failures: list[BaselinerError] = []
    for each in _names(proj, name):
        try:
            baseline = repo.resolve(each)
            results.append(
                {
                    "name": each,
                    "ok": True,
                    "spec_hash": baseline.spec_hash,
                    "chain": list(baseline.chain),
                }
            )
        except BaselinerError as exc:
            results.append({"name": each, "ok": False, "error": exc.render()})
            failures.append(exc)
    if json:
        _emit_json(results)
    else:
        for r in results:
            if r["ok"]:
                console.print(f"[green]ok[/green] {r['name']} ({' -> '.join(r['chain'])})")
    if failures:
        raise Exit("\n".join(f.render() for f in failures), code=failures[0].exit_code)


@task(
    name="seed-channel",
    help={
        "directory": "channel directory (default: build/local-channel)",
        "package": "extra .conda/.tar.bz2 file to add (repeatable)",
    },
    iterable=["package"],
)
@_user_errors
def seed_channel(c: Context, directory: str | None = None, package: list[str] | None = None) -> None:
    """Write a python-only local channel: a relocatable python from this interpreter (+ packages)."""
    from .channels import seed_channel as seed

    proj = project(c)
    target = Path(directory) if directory else proj.build_dir / "local-channel"
    with console.status(f"seeding {target} (packing the running python)"):
        written = seed(target, [Path(p) for p in package or []])
    for path in written:
        console.print(f"[green]wrote[/green] {path}")
    console.print(f"local channel ready at {target}")


@task(
    help={
        "name": "org channel spec in channels/ (default: org)",
        "lock": "re-resolve the requirements with uv and rewrite channels/NAME.lock",
        "check": "only check that the lock is fresh (exit 1 when not)",
        "directory": "where to build the channel (default: the mirror of its URL in baseliner.yaml)",
        "jobs": "parallel conversions (default: one per core)",
        "json": "print what was built as JSON",
    }
)
@_user_errors
def channel(
    c: Context,
    name: str = "org",
    lock: bool = False,
    check: bool = False,
    directory: str | None = None,
    jobs: int = 0,
    json: bool = False,
) -> None:
    """Build the org channel: locked PyPI wheels converted into conda packages (whl2conda),
    the relocatable python of this interpreter and python_abi, indexed with py-rattler."""
    from .errors import ChannelError
    from .orgchannel import build_org_channel, load_org_channel, lock_org_channel

    proj = project(c)
    org = load_org_channel(proj.root / "channels" / f"{name}.yaml")
    if check:
        reason = org.stale_reason()
        if reason:
            raise ChannelError(
                f"the lock of org channel {name!r} is out of date: {reason}",
                hint="run `invoke channel --lock` and commit channels/",
            )
        console.print(f"[green]ok[/green] channels/{name}.lock is fresh")
        return
    if lock or org.stale_reason() == "no lock":
        written = lock_org_channel(org, proj.config.pip_index_url, _report)
        console.print(f"[green]wrote[/green] {written.relative_to(proj.root)}")
    target = Path(directory) if directory else proj.channel_dir(org.spec.url)
    result = build_org_channel(
        org, target, proj.build_dir / "org-channel", proj.config.pip_index_url, jobs or None, _report
    )
    if json:
        _emit_json(
            {
                "channel": str(result.channel_dir),
                "packages": result.packages,
                "converted": result.converted,
                "noop": result.noop,
            }
        )
    elif result.noop:
        console.print(f"[green]fresh[/green] {org.spec.url} at {target} ({result.packages} packages)")
    else:
        console.print(
            f"[green]built[/green] {org.spec.url} at {target}: {result.packages} packages "
            f"({result.converted} converted now)"
        )


@task(
    help={
        "name": "baseline to lock (default: all)",
        "check": "only check: exit 1 naming each stale baseline",
        "update": "let this locked package move to its newest allowed version (repeatable; with -n)",
        "force": "re-solve from scratch, ignoring the current lock, even when it is fresh",
        "json": "with --check: print the result as JSON",
    },
    iterable=["update"],
)
@_user_errors
def lock(
    c: Context,
    name: str = "",
    check: bool = False,
    update: list[str] | None = None,
    force: bool = False,
    json: bool = False,
) -> None:
    """Solve with py-rattler and write NAME.lock, @EXPLICIT files and the pip lock next to the spec.

    A re-lock keeps every locked package the changed spec does not need to move."""
    from .lock import lock_baseline, stale_reason

    proj = project(c)
    repo = proj.repo()
    baselines = [repo.resolve(n) for n in _names(proj, name)]
    if check:
        stale = {b.name: r for b in baselines if (r := stale_reason(b))}
        if json:
            _emit_json({b.name: stale.get(b.name, "fresh") for b in baselines})
        if stale:
            raise LockError(
                f"{len(stale)} baseline lock(s) out of date",
                details=[f"{n}: {r}" for n, r in sorted(stale.items())],
                detail_limit=50,
                hint="run `invoke lock` and commit the result",
            )
        if not json:
            console.print(f"[green]ok[/green] {len(baselines)} lock(s) fresh")
        return
    if update and not name:
        raise LockError("--update needs the baseline: `invoke lock -n NAME --update PKG`")
    for baseline in baselines:
        if not force and not update and stale_reason(baseline) is None:
            console.print(
                f"[green]fresh[/green] {baseline.name} (spec unchanged; --update PKG moves one, --force re-solves)"
            )
            continue
        with console.status(f"locking {baseline.name}"):
            written = lock_baseline(
                baseline,
                proj.mirrors(),
                proj.build_dir,
                proj.config.pip_index_url,
                _report,
                update=update or [],
                fresh=force,
            )
        for path in written:
            console.print(f"[green]wrote[/green] {path.relative_to(proj.root)}")


@task(
    help={
        "name": "baseline to render (default: all locked)",
        "check": "fail when images/ is out of date",
    },
)
@_user_errors
def render(c: Context, name: str = "", check: bool = False) -> None:
    """Render images/NAME/ (Dockerfile, environment.yml, explicit lock, condarc, README) from templates."""
    from .lock import LockPaths
    from .render import out_of_date, render_outputs, write_outputs

    proj = project(c)
    repo = proj.repo()
    stale: list[str] = []
    for each in _names(proj, name):
        baseline = repo.resolve(each)
        if not name and not LockPaths(baseline.path).lock.is_file():
            console.print(f"[yellow]skip[/yellow] {each}: not locked (`invoke lock -n {each}`)")
            continue
        outputs = render_outputs(baseline, proj.templates_dir)
        directory = proj.images_dir / each
        if check:
            stale += [f"images/{each}/{n}" for n in out_of_date(outputs, directory)]
        else:
            write_outputs(outputs, directory)
            console.print(f"[green]rendered[/green] images/{each}/ ({len(outputs)} files)")
    if check:
        if stale:
            raise RenderError(
                "rendered files are out of date",
                details=stale,
                detail_limit=20,
                hint="run `invoke render` and commit the result",
            )
        console.print("[green]ok[/green] images/ is up to date")


@task(
    name="base-image",
    help={"tag": "tag of the imported image", "suite": "Debian suite for debootstrap"},
)
@_user_errors
def base_image(c: Context, tag: str = "", suite: str = "bookworm") -> None:
    """Build the local minimal Debian base image (debootstrap + docker import), once."""
    from .images import BASE_IMAGE, build_base_image, connect

    built = build_base_image(connect(), tag or BASE_IMAGE, suite, report=_report)
    console.print(f"[green]ok[/green] base image {built}")


def _summary(result: BuildResult) -> None:
    from rich.table import Table

    table = Table(title=f"{result.name} {result.version}", title_justify="left")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    table.add_column("result")
    for step in result.steps:
        table.add_row(step.name, f"{step.seconds:.1f}", step.detail)
    if not result.rebuilt:
        table.add_row("(all)", "0.0", "nothing changed: no-op")
    console.print(table)
    size = result.tarball.stat().st_size if result.tarball.is_file() else 0
    console.print(f"tarball  {result.tarball} ({size / 1e6:.1f} MB)")
    console.print(f"image    {', '.join(result.image_tags) or '-'} {result.image_note}")
    for finding in result.warnings:
        console.print(f"[yellow]warning[/yellow] [{finding.check}] {finding.message} — fix: {finding.fix}")


def _build(c: Context, names: list[str], no_image: bool, force: bool, json: bool) -> None:
    from .build import BuildOptions, build_baseline

    proj = project(c)
    options = BuildOptions(image=not no_image, force=force)
    results = []
    for name in names:
        with console.status(f"building {name}") as status:

            def report(message: str, status: Any = status, name: str = name) -> None:
                status.update(f"building {name}: {message[:100]}")

            result = build_baseline(proj, name, options, report)
        results.append(result)
        if json:
            continue
        _summary(result)
    if json:
        _emit_json([r.as_dict() for r in results])


@task(
    name="build-baseline",
    positional=["name"],
    help={
        "name": "baseline to build",
        "no_image": "skip the image on purpose (env, tarball and render only)",
        "force": "rebuild even when nothing changed",
        "json": "print the build result as JSON",
    },
)
@_user_errors
def build_baseline_task(
    c: Context, name: str, no_image: bool = False, force: bool = False, json: bool = False
) -> None:
    """Lock (if stale), install, lint, pack, render, build the image and smoke-test it."""
    _build(c, [name], no_image, force, json)


@task(
    name="build-all", help={"no_image": "skip images", "force": "rebuild everything", "json": "JSON output"}
)
@_user_errors
def build_all(c: Context, no_image: bool = False, force: bool = False, json: bool = False) -> None:
    """Build every baseline, parents before children (`extends:` order)."""
    proj = project(c)
    _build(c, [b.name for b in proj.repo().resolve_all()], no_image, force, json)


@task(
    positional=["tarball", "dest"],
    help={
        "tarball": "a tarball made by build-baseline (its .sha256 next to it)",
        "dest": "new directory to unpack into",
        "no_verify": "skip the checksum (only if you verified it another way)",
    },
)
@_user_errors
def unpack(c: Context, tarball: str, dest: str, no_verify: bool = False) -> None:
    """Verify, extract safely and conda-unpack a tarball (a delta: apply onto the base at DEST).

    A baseline tarball is unpacked into the new directory DEST; an overlay's delta tarball is
    applied on top of the unpacked base at DEST, which must hold the base it was built on."""
    from .overlay_build import apply_delta
    from .pack import unpack as do_unpack

    if ".delta." in Path(tarball).name:
        prefix = apply_delta(Path(tarball), Path(dest), verify=not no_verify, report=_report)
    else:
        prefix = do_unpack(Path(tarball), Path(dest), verify=not no_verify, report=_report)
    console.print(f"[green]ok[/green] environment ready at {prefix} (python: {prefix / 'bin' / 'python'})")


def _store(proj: Project, store: str) -> Any:
    from .store import Store

    return Store(store or proj.store_location)


@task(
    positional=["name"],
    help={
        "name": "baseline to publish (built first with build-baseline)",
        "store": "artifact store directory (default: `store` in baseliner.yaml)",
        "registry": "push the image tags to HOST[:PORT]/ORG and record the digest",
    },
)
@_user_errors
def publish(c: Context, name: str, store: str = "", registry: str = "") -> None:
    """Publish a built baseline (manifest, tarball, locks, SBOM, image digest) to the store."""
    from .publish import publish_baseline

    proj = project(c)
    entry = publish_baseline(proj, name, _store(proj, store), registry or None, _report)
    console.print(f"[green]published[/green] {name} -> {store or proj.store_location}")
    if entry.get("image") and entry["image"].get("digest"):
        console.print(f"image    {entry['image']['digest']}")


def _overlay_and_base(path: str, store: str) -> tuple[Any, Any, Any]:
    from .overlay import load_overlay, resolve_base

    overlay = load_overlay(Path(path))
    proj = Project.load(overlay.path.parent)
    base = resolve_base(overlay, _store(proj, store), proj.build_dir / "bases")
    return proj, overlay, base


@task(
    name="lock-overlay",
    positional=["path"],
    help={
        "path": "the overlay spec (overlay.yaml)",
        "store": "artifact store holding the base",
        "allow_base_changes": "build a full, non-layered environment when the base would change",
        "check": "only check: exit 1 when the overlay lock is stale",
    },
)
@_user_errors
def lock_overlay_task(
    c: Context, path: str, store: str = "", allow_base_changes: bool = False, check: bool = False
) -> None:
    """Solve only the overlay's delta, with every package of the base pinned."""
    from .overlay import lock_overlay, overlay_stale_reason

    proj, overlay, base = _overlay_and_base(path, store)
    reason = overlay_stale_reason(overlay, base)
    if check:
        if reason:
            raise LockError(
                f"overlay lock of {overlay.spec.name!r} is out of date: {reason}",
                hint=f"run `baseliner lock-overlay {path}`",
            )
        console.print(f"[green]ok[/green] {overlay.spec.name} lock fresh")
        return
    result = lock_overlay(
        overlay, base, proj.mirrors(), proj.build_dir, proj.config.pip_index_url, allow_base_changes, _report
    )
    kind = "delta" if result.layered else "FULL (non-layered: the base changes)"
    for plat, records in result.records.items():
        console.print(
            f"[green]locked[/green] {overlay.spec.name} on {base.ref} ({plat}): {len(records)} {kind} package(s)"
        )


@task(
    name="build-overlay",
    positional=["path"],
    help={
        "path": "the overlay spec",
        "store": "artifact store holding the base",
        "no_image": "skip the overlay image",
        "force": "rebuild even when nothing changed",
    },
)
@_user_errors
def build_overlay_task(
    c: Context, path: str, store: str = "", no_image: bool = False, force: bool = False
) -> None:
    """Build an overlay: env (base + delta), delta and full tarballs, image FROM the base."""
    from .overlay import lock_overlay, overlay_stale_reason
    from .overlay_build import build_overlay, build_overlay_image

    proj, overlay, base = _overlay_and_base(path, store)
    if overlay_stale_reason(overlay, base):
        lock_overlay(overlay, base, proj.mirrors(), proj.build_dir, proj.config.pip_index_url, report=_report)
    built = build_overlay(proj, overlay, base, report=_report, force=force)
    if not built.rebuilt:
        console.print(f"[green]fresh[/green] {overlay.spec.name}: nothing changed (--force rebuilds)")
    console.print(f"env      {built.env}")
    console.print(
        f"delta    {built.delta.path} ({built.delta.size / 1e6:.2f} MB, {len(built.delta_files)} files)"
    )
    console.print(f"full     {built.full.path} ({built.full.size / 1e6:.1f} MB)")
    if no_image:
        return
    from .images import connect

    try:
        client = connect()
    except BaselinerError as exc:
        console.print(f"[yellow]image not built[/yellow]: {exc.message}")
        return
    tag, base_ref = build_overlay_image(client, proj, overlay, base, built, _report)
    console.print(f"image    {tag} (FROM {base_ref})")


@task(
    positional=["prefix"],
    help={
        "prefix": "an environment",
        "baseline": "NAME@VERSION in the store, or a path to a baseline lock",
        "store": "artifact store",
        "json": "JSON output",
    },
)
@_user_errors
def drift(c: Context, prefix: str, baseline: str, store: str = "", json: bool = False) -> None:
    """List what an environment added, removed or changed relative to a baseline lock."""
    import tempfile

    from .overlay import drift as compute
    from .overlay import resolve_base_ref

    proj = project(c)
    with tempfile.TemporaryDirectory() as tmp:
        base = resolve_base_ref(baseline, _store(proj, store), Path(tmp), Path.cwd(), "--baseline")
        result = compute(Path(prefix), base)
    if json:
        _emit_json(result.as_dict())
    else:
        for kind in ("added", "removed", "changed"):
            for line in getattr(result, kind):
                console.print(f"{kind:8} {line}")
        console.print("[green]no drift[/green]" if result.clean else f"drift from {base.ref}")
    if not result.clean:
        raise Exit(code=1)


@task(
    name="cache",
    help={
        "directory": "the shared cache (default: build/shared-pkgs)",
        "store": "artifact store whose published baselines the cache serves",
        "verify": "rehash every cached file; exit 1 when anything is corrupt, missing, foreign or left over",
        "repair": "with --verify: remove leftovers of interrupted runs, re-extract damaged packages",
        "prune": "list packages no published lock references (dry run; add --yes to remove)",
        "yes": "with --prune: remove them",
        "stats": "packages, bytes, sharing, bytes saved",
        "json": "JSON output",
        "export_volume": "copy the cache into this Docker volume (for pods on this engine)",
        "export_tar": "write a tarball of the cache (for seeding an NFS share or a PVC)",
    },
)
@_user_errors
def cache_task(
    c: Context,
    directory: str = "",
    store: str = "",
    verify: bool = False,
    repair: bool = False,
    prune: bool = False,
    yes: bool = False,
    stats: bool = False,
    json: bool = False,
    export_volume: str = "",
    export_tar: str = "",
) -> None:
    """Fill the shared conda package cache with every package of every published baseline."""
    import shlex

    from . import cache as shared

    proj = project(c)
    target = Path(directory) if directory else proj.build_dir / "shared-pkgs"
    if verify:
        result = shared.verify(target)
        if repair and not result.sound:
            for name in shared.repair(target, result):
                console.print(f"[yellow]removed[/yellow] {name}")
            wanted = shared.wanted_packages(_store(proj, store), overlay_locks=proj.cache_overlay_locks)
            filled = shared.fill(target, wanted, proj.mirrors(), _report)
            console.print(f"refilled {len(filled.added)} package(s)")
            result = shared.verify(target)
        if json:
            _emit_json(
                {
                    "corrupt": result.corrupt,
                    "missing": result.missing,
                    "foreign": result.foreign,
                    "leftovers": result.leftovers,
                    "damaged": result.damaged,
                }
            )
        if not result.sound:
            flag = (
                "" if target == proj.build_dir / "shared-pkgs" else f" --directory {shlex.quote(str(target))}"
            )
            raise shared.CacheError(
                f"shared cache {target} is not sound",
                details=[
                    *(f"leftover of an interrupted run: {p}" for p in result.leftovers),
                    *(f"corrupt: {p}" for p in result.corrupt),
                    *(f"missing: {p}" for p in result.missing),
                    *(f"foreign: {p}" for p in result.foreign),
                ],
                detail_limit=10,
                hint=f"run `invoke cache --verify --repair{flag}` (leftovers and damaged packages are ours to "
                "restore; a foreign entry is not: remove it by hand if nothing needs it)",
            )
        console.print(f"[green]ok[/green] {target} is sound")
        return
    if export_tar:
        console.print(f"[green]wrote[/green] {shared.export_tarball(target, Path(export_tar))}")
        return
    if export_volume:
        from .images import connect
        from .images import export_volume as fill_volume

        console.print(f"[green]filled[/green] volume {fill_volume(connect(), target, export_volume)}")
        return
    wanted = shared.wanted_packages(_store(proj, store), overlay_locks=proj.cache_overlay_locks)
    if prune:
        plan = shared.prune(target, wanted) if yes else shared.prune_plan(target, wanted)
        for name, size in plan:
            console.print(f"{'removed' if yes else 'would remove'} {name} ({size / 1e6:.1f} MB)")
        console.print(
            f"{sum(s for _, s in plan) / 1e6:.1f} MB in {len(plan)} package(s)"
            + ("" if yes else " — dry run; --yes removes")
        )
        return
    if stats:
        data = shared.stats(target, wanted)
        if json:
            _emit_json(data)
        else:
            for key, value in data.items():
                console.print(f"{key:28} {value}")
        return
    filled = shared.fill(target, wanted, proj.mirrors(), _report)
    console.print(
        f"[green]ok[/green] {target}: {len(filled.added)} added, {len(filled.present)} already there"
    )


def _audit(
    roots: list[str] | None,
    prefixes: list[str] | None,
    files: list[str] | None,
    caches: list[str] | None,
    threshold: float,
    naming: str,
    stale_days: int,
    quota: int,
    expected: Any = None,
) -> Any:
    from .audit.findings import DEFAULT_NAMING
    from .audit.inventory import inventory
    from .audit.report import AuditOptions, run_audit

    with console.status("scanning environments"):
        envs = inventory(
            [Path(r) for r in roots or []], [Path(p) for p in prefixes or []], [Path(f) for f in files or []]
        )
    if not envs:
        raise BaselinerError(
            "no environments found", hint="pass --root DIR (e.g. /opt/conda/envs), --prefix P or --file F"
        )
    options = AuditOptions(threshold, naming or DEFAULT_NAMING, stale_days, quota)
    with console.status(f"comparing {len(envs)} environments"):
        return run_audit(envs, options, caches=[Path(c) for c in caches or []], expected=expected)


def _propose_command(
    cluster: int,
    roots: list[str] | None,
    prefixes: list[str] | None,
    files: list[str] | None,
    caches: list[str] | None,
    threshold: float,
    out: str = "proposal",
) -> str:
    """The invoke propose command that writes `cluster` of the audit run with these inputs."""
    import shlex

    words = ["invoke", "propose", "--cluster", str(cluster)]
    for flag, values in (("--root", roots), ("--prefix", prefixes), ("--file", files), ("--cache", caches)):
        for value in values or []:
            words += [flag, value]
    if threshold != 0.9:
        words += ["--threshold", str(threshold)]
    if out != "proposal":
        words += ["--out", out]
    return shlex.join(words)


_AUDIT_HELP = {
    "root": "directory holding environments (repeatable), e.g. /opt/conda/envs",
    "prefix": "one environment prefix (repeatable)",
    "file": "an exported environment: explicit list, env export YAML, conda-lock (repeatable)",
    "cache": "a package cache to count in the disk totals (repeatable)",
    "threshold": "similarity at which environments cluster (default 0.9)",
    "naming": "naming convention regex (default: proj-*, exp-*, tool-*)",
    "stale_days": "unused for this many days is stale (default 90)",
    "quota": "environments per user before a finding (default 10)",
}


@task(
    help={**_AUDIT_HELP, "json": "print the JSON report", "html": "write the HTML report to this file"},
    iterable=["root", "prefix", "file", "cache"],
)
@_user_errors
def audit(
    c: Context,
    root: list[str] | None = None,
    prefix: list[str] | None = None,
    file: list[str] | None = None,
    cache: list[str] | None = None,
    threshold: float = 0.9,
    naming: str = "",
    stale_days: int = 90,
    quota: int = 10,
    json: bool = False,
    html: str = "",
) -> None:
    """Find duplicate environments, count their disk honestly, list findings and proposals."""
    from rich.table import Table

    from .audit.report import as_json, expected_from_store
    from .audit.report import html as render_html

    result = _audit(
        root,
        prefix,
        file,
        cache,
        threshold,
        naming,
        stale_days,
        quota,
        expected_from_store(_store(project(c), "")),
    )
    data = as_json(result)
    if html:
        Path(html).write_text(render_html(result, project(c).templates_dir))
        console.print(f"[green]wrote[/green] {html}")
    if json:
        _emit_json(data)
        return
    table = Table(
        title=f"{len(data['environments'])} environments, {data['disk']['total_bytes'] / 1e9:.2f} GB on disk"
    )
    for column in ("environment", "kind", "conda", "pip", "unique MB", "shared MB", "cluster"):
        table.add_column(column)
    for env in data["environments"]:
        table.add_row(
            env["name"],
            env["kind"],
            str(env["conda"]),
            str(env["pip"]),
            f"{env['unique_bytes'] / 1e6:.1f}",
            f"{env['shared_bytes'] / 1e6:.1f}",
            "" if env["cluster"] is None else str(env["cluster"]),
        )
    console.print(table)
    for finding in data["findings"]:
        console.print(f"[yellow]{finding['kind']}[/yellow] {finding['message']}")
    for proposal in data["proposals"]:
        console.print(
            f"cluster {proposal['cluster']}: {len(proposal['members'])} envs -> {proposal['baseline']['name']} + "
            f"{len(proposal['overlays'])} overlays, frees {proposal['freed_bytes'] / 1e6:.1f} MB "
            f"(`{_propose_command(proposal['cluster'], root, prefix, file, cache, threshold)}`)"
        )


@task(
    help={
        **_AUDIT_HELP,
        "cluster": "cluster number from `invoke audit`",
        "out": "directory for the proposed specs",
    },
    iterable=["root", "prefix", "file", "cache"],
)
@_user_errors
def propose(
    c: Context,
    cluster: int = -1,
    out: str = "proposal",
    root: list[str] | None = None,
    prefix: list[str] | None = None,
    file: list[str] | None = None,
    cache: list[str] | None = None,
    threshold: float = 0.9,
    naming: str = "",
    stale_days: int = 90,
    quota: int = 10,
) -> None:
    """Write the proposed baseline and one overlay per member for one cluster."""
    from .audit.propose import write

    # The default only gives invoke the type: a flag without one arrives as a string.
    if cluster < 0:
        raise BaselinerError("which cluster? pass --cluster N", hint="run `invoke audit` to see the clusters")
    result = _audit(root, prefix, file, cache, threshold, naming, stale_days, quota)
    if not 0 <= cluster < len(result.proposals):
        raise BaselinerError(
            f"no cluster {cluster}",
            details=[f"clusters: 0..{len(result.proposals) - 1}" if result.proposals else "none found"],
            hint="run `invoke audit` to see the clusters, or lower --threshold",
        )
    proposal = result.proposals[cluster]
    command = _propose_command(cluster, root, prefix, file, cache, threshold, out)
    for path in write(proposal, Path(out), command):
        console.print(f"[green]wrote[/green] {path}")
    console.print(f"frees {proposal.freed_bytes / 1e6:.1f} MB; conflicts: {len(proposal.conflicts)}")
    for conflict in proposal.conflicts[:10]:
        console.print(f"  {conflict}")


@task(
    help={
        "root": "directory holding environments (repeatable)",
        "prefix": "one environment (repeatable)",
        "cache": "a package cache to prune of packages no published lock needs (repeatable)",
        "older_than": "stale after this long unused: 90d, 12w (default 90d)",
        "store": "artifact store: environments and packages its baselines need are never removed",
        "yes": "remove (default: dry run)",
    },
    iterable=["root", "prefix", "cache"],
)
@_user_errors
def clean(
    c: Context,
    root: list[str] | None = None,
    prefix: list[str] | None = None,
    cache: list[str] | None = None,
    older_than: str = "90d",
    store: str = "",
    yes: bool = False,
) -> None:
    """Remove stale environments and unreferenced cache packages (a dry run unless --yes)."""
    import re as _re

    from .audit import clean as cleaning
    from .audit.inventory import inventory
    from .cache import wanted_packages

    match = _re.fullmatch(r"(\d+)([dw])", older_than)
    if not match:
        raise BaselinerError(
            f"--older-than {older_than!r} is not a duration", hint="use days or weeks: 90d, 12w"
        )
    days = int(match.group(1)) * (7 if match.group(2) == "w" else 1)
    proj = project(c)
    the_store = _store(proj, store)
    published = {name: set(versions) for name, versions in the_store.index()["baselines"].items()}
    wanted = wanted_packages(the_store, overlay_locks=proj.cache_overlay_locks) if cache else {}
    envs = inventory([Path(r) for r in root or []], [Path(p) for p in prefix or []])
    result = cleaning.plan(envs, days, published, [Path(x) for x in cache or []], wanted)
    verb = "removed" if yes else "would remove"
    for path, size in [*result.envs, *result.packages]:
        console.print(f"{verb} {path} ({size / 1e6:.1f} MB)")
    for kept in result.kept:
        console.print(f"[green]kept[/green] {kept}")
    if yes:
        cleaning.execute(result)
    console.print(f"{result.bytes / 1e6:.1f} MB {'freed' if yes else 'reclaimable — dry run; --yes removes'}")


@task(name="export-env", positional=["prefix"], help={"prefix": "an environment", "out": "output directory"})
@_user_errors
def export_env_task(c: Context, prefix: str, out: str = "") -> None:
    """Write environment.yml, the @EXPLICIT file and a pip lock of an existing environment."""
    from .audit.export import export_env

    for path in export_env(Path(prefix), Path(out or f"{Path(prefix).name}-export")):
        console.print(f"[green]wrote[/green] {path}")


@task(positional=["name"], help={"name": "manifest, store-index, env-marker or delta-manifest"})
@_user_errors
def schema(c: Context, name: str) -> None:
    """Print the JSON Schema of one of the files baseliner writes (for tools that read them)."""
    from .artifacts import json_schema

    _emit_json(json_schema(name))


namespace = Collection(
    validate,
    seed_channel,
    channel,
    lock,
    render,
    base_image,
    build_baseline_task,
    build_all,
    unpack,
    publish,
    lock_overlay_task,
    build_overlay_task,
    drift,
    cache_task,
    audit,
    propose,
    clean,
    export_env_task,
    schema,
)
namespace.configure({"baseliner": {"root": None}})
