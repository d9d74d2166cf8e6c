"""Tasks on specs and their locks: validate, the channels, lock, render, schema."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke import Context, Exit, task

from ..errors import BaselinerError, LockError, RenderError
from ._shell import _emit_json, _names, _report, _user_errors, console, project

if TYPE_CHECKING:
    pass


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
    from ..channels import seed_channel as seed

    proj = project(c)
    target = Path(directory) if directory else proj.local_channel_dir
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
    the relocatable python of this interpreter and python_abi, indexed with py-rattler; and the
    org's PyPI mirror of the same wheels, where baseliner.yaml names one (`pip_mirror:`)."""
    from ..errors import ChannelError
    from ..orgchannel import build_org_channel, load_org_channel, lock_org_channel
    from ..pipmirror import mirror_org_channel

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
        org, target, proj.org_channel_work, proj.config.pip_index_url, jobs or None, _report
    )
    mirror = proj.pip_mirror_dir
    wheels = None
    if mirror is not None and not directory:
        wheels = mirror_org_channel(org, mirror, proj.org_channel_work, proj.config.pip_index_url, _report)
    if json:
        _emit_json(
            {
                "channel": str(result.channel_dir),
                "packages": result.packages,
                "converted": result.converted,
                "noop": result.noop,
                "pip_mirror": None
                if wheels is None
                else {"directory": str(wheels.directory), "wheels": wheels.wheels},
            }
        )
    elif result.noop:
        console.print(f"[green]fresh[/green] {org.spec.url} at {target} ({result.packages} packages)")
    else:
        console.print(
            f"[green]built[/green] {org.spec.url} at {target}: {result.packages} packages "
            f"({result.converted} converted now)"
        )
    if wheels is not None:
        state = "fresh" if wheels.noop else "wrote"
        console.print(f"[green]{state}[/green] pip mirror at {wheels.directory} ({wheels.wheels} wheels)")


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
    from ..lock import lock_baseline, stale_reason

    proj = project(c)
    repo = proj.repo()
    baselines = [repo.resolve(n) for n in _names(proj, name)]
    if check:
        stale = {b.name: r for b in baselines if (r := stale_reason(b))}
        if json:
            _emit_json({b.name: stale.get(b.name, "fresh") for b in baselines})
        if stale:
            only = f" -n {next(iter(stale))}" if len(stale) == 1 else ""
            raise LockError(
                f"{len(stale)} baseline lock(s) out of date",
                details=[f"{n}: {r}" for n, r in sorted(stale.items())],
                detail_limit=50,
                hint=f"run `invoke lock{only}` and commit the result",
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
                proj.pip_index,
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
    from ..lock import LockPaths
    from ..render import out_of_date, render_outputs, write_outputs

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


@task(positional=["name"], help={"name": "manifest, store-index, env-marker or delta-manifest"})
@_user_errors
def schema(c: Context, name: str) -> None:
    """Print the JSON Schema of one of the files baseliner writes (for tools that read them)."""
    from ..artifacts import json_schema

    _emit_json(json_schema(name))
