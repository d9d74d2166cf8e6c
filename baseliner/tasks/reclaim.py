"""Tasks that reclaim a full disk where the environments are: consolidate a cluster of the audit
into a baseline plus overlays, with an undo copy until `--finish`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from invoke import Context, task

from ..errors import BaselinerError
from ._shell import _emit_json, _user_errors, console


def _consolidate_command(
    cluster: int, roots: list[str], caches: list[str], threshold: float, out: str, *flags: str
) -> str:
    import shlex

    words = ["invoke", "consolidate", "--cluster", str(cluster)]
    for flag, values in (("--root", roots), ("--cache", caches)):
        for value in values:
            words += [flag, value]
    if threshold != 0.9:
        words += ["--threshold", str(threshold)]
    if out != "proposal":
        words += ["--out", out]
    return shlex.join([*words, *flags])


def _finish_command(roots: list[str], flag: str) -> str:
    import shlex

    return shlex.join(["invoke", "consolidate", *(w for r in roots for w in ("--root", r)), flag])


@task(
    help={
        "cluster": "cluster number from `invoke audit`",
        "root": "directory holding the environments (repeatable), e.g. /opt/conda/envs",
        "cache": "a package cache holding their packages (repeatable; the first is linked from)",
        "out": "directory for the proposed specs and their locks (default: proposal)",
        "threshold": "similarity at which environments cluster (default 0.9, as the audit)",
        "yes": "rebuild, check and swap (default: a dry run)",
        "force": "swap environments even while processes use them",
        "undo": "put the old environments back (and remove the new ones)",
        "finish": "delete the undo copies: the bytes are freed then",
        "json": "print the plan (and what was done) as JSON",
    },
    iterable=["root", "cache"],
)
@_user_errors
def consolidate(
    c: Context,
    cluster: int = -1,
    root: list[str] | None = None,
    cache: list[str] | None = None,
    out: str = "proposal",
    threshold: float = 0.9,
    yes: bool = False,
    force: bool = False,
    undo: bool = False,
    finish: bool = False,
    json: bool = False,
) -> None:
    """Rebuild one cluster as a baseline plus overlays from the server's own package caches,
    check each new environment against its old one, then swap it in (a dry run unless --yes)."""
    from ..audit import consolidate as cons
    from ..audit.propose import write
    from .audit import _audit, _proposal

    roots, caches = root or [], cache or []
    if not roots:
        raise BaselinerError("consolidate needs the environments' directory", hint="pass --root DIR")
    if undo or finish:
        if undo and finish:
            raise BaselinerError("--undo and --finish exclude each other", hint="pick one")
        with console.status("restoring" if undo else "removing undo copies") as status:
            if undo:
                data: dict[str, Any] = {
                    "restored": cons.undo([Path(r) for r in roots], lambda m: status.update(m))
                }
            else:
                done, freed = cons.finish([Path(r) for r in roots], lambda m: status.update(m))
                data = {"finished": done, "freed_bytes": freed}
        if json:
            _emit_json(data)
        elif undo:
            for path in data["restored"]:
                console.print(f"[green]restored[/green] {path}")
            console.print(f"{len(data['restored'])} path(s) as they were before `consolidate --yes`")
        else:
            console.print(
                f"finished {len(data['finished'])} environment(s); freed {data['freed_bytes'] / 1e6:.1f} MB"
            )
        return
    if cluster < 0:
        raise BaselinerError(
            "which cluster? pass --cluster N", hint="run `invoke audit --root DIR` to see them"
        )
    from ..audit.inventory import unique_prefixes

    found = unique_prefixes([Path(r) for r in roots])
    fleet = [str(p) for p in found if p not in cons.installed_baselines(found)]
    result = _audit(None, fleet, None, caches, threshold, "", 90, 10)
    proposal = _proposal(result, cluster)
    with console.status("reading the members' records and the caches"):
        the_plan = cons.plan(
            [Path(p) for p in proposal.locations], [Path(c) for c in caches], proposal.baseline["name"]
        )
    command = _consolidate_command(cluster, roots, caches, threshold, out)
    written = write(cons.specs(proposal, the_plan), Path(out), command)
    if not the_plan.missing:
        written += cons.lock_files(the_plan, Path(out), command)
    data = {
        "plan": the_plan.as_dict(),
        "predicted_freed_bytes": proposal.freed_bytes,
        "written": list(map(str, written)),
    }
    if yes:
        with console.status("consolidating") as status:
            outcome = cons.execute(the_plan, force, lambda m: status.update(m))
        data["result"] = outcome.as_dict()
    elif the_plan.missing:
        cons.execute(the_plan)  # names them, as --yes would
    if json:
        _emit_json(data)
        return
    for path in written:
        console.print(f"[green]wrote[/green] {path}")
    console.print(
        f"cluster {cluster}: {len(the_plan.members)} environments -> {the_plan.baseline_name} "
        f"({len(the_plan.baseline)} packages) + a delta each; linked from {the_plan.cache}"
    )
    for env, delta in the_plan.deltas.items():
        console.print(f"  {env}: +{len(delta)} package(s)")
    for env, procs in the_plan.in_use.items():
        console.print(f"[yellow]in use[/yellow] {env}: {'; '.join(procs)}")
    console.print(f"the audit predicts {proposal.freed_bytes / 1e6:.1f} MB freed")
    if not yes:
        console.print(
            f"dry run; `{_consolidate_command(cluster, roots, caches, threshold, out, '--yes')}` swaps"
        )
        return
    outcome_data = data["result"]
    for member in outcome_data["members"]:
        console.print(f"[green]{member['state']}[/green] {member['path']}")
    console.print(
        f"measured (du -sb, undo copies excluded): {outcome_data['measured_freed_bytes'] / 1e6:.1f} MB to be freed; "
        f"check the environments, then `{_finish_command(roots, '--finish')}` frees it "
        f"(`{_finish_command(roots, '--undo')}` puts the old ones back)"
    )
