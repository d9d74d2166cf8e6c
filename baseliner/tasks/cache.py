"""The shared package cache task."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from invoke import Context, task

from ._shell import _emit_json, _report, _store, _user_errors, console, project

if TYPE_CHECKING:
    pass


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

    from .. import cache as shared

    proj = project(c)
    target = Path(directory) if directory else proj.shared_cache
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
            _emit_json(result.as_dict())
        if not result.sound:
            flag = "" if target == proj.shared_cache else f" --directory {shlex.quote(str(target))}"
            raise result.error(target, f"invoke cache --verify --repair{flag}")
        console.print(f"[green]ok[/green] {target} is sound")
        return
    if export_tar:
        console.print(f"[green]wrote[/green] {shared.export_tarball(target, Path(export_tar))}")
        return
    if export_volume:
        from ..images import connect
        from ..images import export_volume as fill_volume

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
