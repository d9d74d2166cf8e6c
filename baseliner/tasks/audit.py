"""Tasks on an existing fleet: audit, propose, clean, export an environment."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke import Context, task

from ..errors import BaselinerError, EnvError
from ._shell import _emit_json, _store, _user_errors, console, project

if TYPE_CHECKING:
    pass


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
    from ..audit.findings import DEFAULT_NAMING
    from ..audit.report import AuditOptions, run_audit, scan

    with console.status("scanning environments"):
        envs, usage = scan(
            [Path(r) for r in roots or []],
            [Path(p) for p in prefixes or []],
            [Path(f) for f in files or []],
            [Path(c) for c in caches or []],
        )
    if not envs:
        raise BaselinerError(
            "no environments found", hint="pass --root DIR (e.g. /opt/conda/envs), --prefix P or --file F"
        )
    options = AuditOptions(threshold, naming or DEFAULT_NAMING, stale_days, quota)
    with console.status(f"comparing {len(envs)} environments"):
        return run_audit(envs, options, [Path(c) for c in caches or []], expected=expected, usage=usage)


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


def _proposal(result: Any, cluster: int) -> Any:
    """The audit's proposal for `cluster`, or an error naming the clusters there are."""
    if not 0 <= cluster < len(result.proposals):
        raise BaselinerError(
            f"no cluster {cluster}",
            details=[f"clusters: 0..{len(result.proposals) - 1}" if result.proposals else "none found"],
            hint="run `invoke audit` to see the clusters, or lower --threshold",
        )
    return result.proposals[cluster]


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

    from ..audit.report import as_json, expected_from_store
    from ..audit.report import html as render_html

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
    from ..audit.propose import write

    # The default only gives invoke the type: a flag without one arrives as a string.
    if cluster < 0:
        raise BaselinerError("which cluster? pass --cluster N", hint="run `invoke audit` to see the clusters")
    result = _audit(root, prefix, file, cache, threshold, naming, stale_days, quota)
    proposal = _proposal(result, cluster)
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
    from ..audit import clean as cleaning
    from ..cache import wanted_packages

    days = cleaning.parse_age(older_than)
    proj = project(c)
    the_store = _store(proj, store)
    published = {name: set(versions) for name, versions in the_store.index()["baselines"].items()}
    wanted = wanted_packages(the_store, overlay_locks=proj.cache_overlay_locks) if cache else {}
    from ..audit.inventory import inventory

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
    from ..audit.export import export_env

    for path in export_env(Path(prefix), Path(out or f"{Path(prefix).name}-export")):
        console.print(f"[green]wrote[/green] {path}")


@task(
    help={
        "root": "directory holding environments (repeatable), e.g. /opt/conda/envs",
        "prefix": "one environment prefix (repeatable)",
        "cache": "a package cache whose copies are kept and linked to (repeatable)",
        "yes": "make the links (default: a dry run that prints what it would free)",
        "json": "print the plan (and with --yes, what was done) as JSON",
    },
    iterable=["root", "prefix", "cache"],
)
@_user_errors
def dedupe(
    c: Context,
    root: list[str] | None = None,
    prefix: list[str] | None = None,
    cache: list[str] | None = None,
    yes: bool = False,
    json: bool = False,
) -> None:
    """Hardlink identical files of environments and package caches, by their conda and pip records
    (never a file rewritten per prefix or changed since install); a dry run unless --yes."""
    from ..audit import dedupe as dd
    from ..audit.disk import measure

    roots, prefixes, caches = ([Path(p) for p in xs or []] for xs in (root, prefix, cache))
    if not roots and not prefixes:
        raise EnvError("dedupe needs environments", hint="give --root DIR (repeatable) or --prefix ENV")
    with console.status("reading records and hashing candidates") as status:
        plan = dd.plan(roots, prefixes, caches, report=lambda m: status.update(m))
    trees = [*roots, *prefixes, *caches]
    data: dict[str, Any] = {"plan": plan.as_dict(), "predicted_freed_bytes": plan.freed.bytes}
    if yes:
        before = measure(trees).total
        with console.status("linking") as status:
            done = dd.execute(plan, report=lambda m: status.update(m))
        after = measure(trees).total
        data |= {"result": done.as_dict(), "measured_freed_bytes": before - after}
    if json:
        _emit_json(data)
        return
    mb = 1e6
    console.print(
        f"{len(plan.environments)} environment(s), {len(plan.caches)} cache(s): "
        f"{plan.candidates} recorded files, {plan.hashed_bytes / mb:.1f} MB hashed"
    )
    console.print(
        f"{'linked' if yes else 'would link'} {len(plan.links)} file(s): "
        f"frees {plan.freed.bytes / mb:.1f} MB (apparent size, as du -sb counts)"
    )
    if plan.held_elsewhere.files:
        console.print(
            f"  {plan.held_elsewhere.bytes / mb:.1f} MB more relinked but still linked from outside these trees"
        )
    left = [
        ("rewritten for their prefix (never linked)", plan.placeholder),
        ("changed since install", plan.modified),
        ("identical but on another filesystem", plan.cross_device),
        ("identical but another owner or mode", plan.cross_owner),
    ]
    for why, tally in left:
        if tally.files:
            console.print(f"  left: {tally.files} file(s), {tally.bytes / mb:.1f} MB {why}")
    if not yes:
        console.print("dry run; --yes links")
        return
    console.print(
        f"[green]freed[/green] {data['measured_freed_bytes'] / mb:.1f} MB measured "
        f"(predicted {plan.freed.bytes / mb:.1f} MB); {done.linked} link(s) made"
    )
    for line in done.skipped[:20]:
        console.print(f"[yellow]skipped[/yellow] {line}")
