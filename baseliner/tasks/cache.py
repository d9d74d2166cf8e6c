"""The shared package cache: `cache` (fill, the default), `cache.verify`, `cache.prune`,
`cache.stats` and `cache.export`."""

from __future__ import annotations

import shlex
from pathlib import Path

from invoke import Collection, Context, task

from ..config import Project
from ..errors import CacheError
from ._shell import _emit_json, _report, _store, _user_errors, console, project

_DIRECTORY = "the shared cache (default: build/shared-pkgs)"
_STORE = "artifact store whose published baselines the cache serves"


def _target(c: Context, directory: str) -> tuple[Project, Path]:
    proj = project(c)
    return proj, Path(directory) if directory else proj.shared_cache


@task(name="fill", help={"directory": _DIRECTORY, "store": _STORE})
@_user_errors
def fill(c: Context, directory: str = "", store: str = "") -> None:
    """Fill the shared conda package cache with every package of every published baseline."""
    from .. import cache as shared

    proj, target = _target(c, directory)
    wanted = shared.wanted_packages(_store(proj, store), overlay_locks=proj.cache_overlay_locks)
    filled = shared.fill(target, wanted, proj.mirrors(), _report)
    console.print(
        f"[green]ok[/green] {target}: {len(filled.added)} added, {len(filled.present)} already there"
    )


@task(
    name="verify",
    help={
        "directory": _DIRECTORY,
        "store": _STORE + " (for --repair's refill)",
        "repair": "remove leftovers of interrupted runs, re-extract damaged packages, refill",
        "json": "JSON output",
    },
)
@_user_errors
def verify(
    c: Context, directory: str = "", store: str = "", repair: bool = False, json: bool = False
) -> None:
    """Rehash every cached file; exit 1 when anything is corrupt, missing, foreign or left over."""
    from .. import cache as shared

    proj, target = _target(c, directory)
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
        raise result.error(target, f"invoke cache.verify --repair{flag}")
    console.print(f"[green]ok[/green] {target} is sound")


@task(name="prune", help={"directory": _DIRECTORY, "store": _STORE, "yes": "remove them (else a dry run)"})
@_user_errors
def prune(c: Context, directory: str = "", store: str = "", yes: bool = False) -> None:
    """List the packages no published lock references; remove them with --yes."""
    from .. import cache as shared

    proj, target = _target(c, directory)
    wanted = shared.wanted_packages(_store(proj, store), overlay_locks=proj.cache_overlay_locks)
    plan = shared.prune(target, wanted) if yes else shared.prune_plan(target, wanted)
    for name, size in plan:
        console.print(f"{'removed' if yes else 'would remove'} {name} ({size / 1e6:.1f} MB)")
    console.print(
        f"{sum(s for _, s in plan) / 1e6:.1f} MB in {len(plan)} package(s)"
        + ("" if yes else " — dry run; --yes removes")
    )


@task(name="stats", help={"directory": _DIRECTORY, "store": _STORE, "json": "JSON output"})
@_user_errors
def stats(c: Context, directory: str = "", store: str = "", json: bool = False) -> None:
    """Packages, bytes, how many published baselines share them, and the bytes that saves."""
    from .. import cache as shared

    proj, target = _target(c, directory)
    wanted = shared.wanted_packages(_store(proj, store), overlay_locks=proj.cache_overlay_locks)
    data = shared.stats(target, wanted)
    if json:
        _emit_json(data)
        return
    for key, value in data.items():
        console.print(f"{key:28} {value}")


@task(
    name="export",
    help={
        "directory": _DIRECTORY,
        "volume": "copy the cache into this Docker volume (for pods on this engine)",
        "tar": "write a tarball of the cache (for seeding an NFS share or a PVC)",
    },
)
@_user_errors
def export(c: Context, directory: str = "", volume: str = "", tar: str = "") -> None:
    """Copy the cache into a Docker volume (--volume) or a tarball (--tar)."""
    from .. import cache as shared

    _, target = _target(c, directory)
    if bool(volume) == bool(tar):
        raise CacheError("cache.export needs one destination", hint="give one of --volume NAME or --tar FILE")
    if tar:
        console.print(f"[green]wrote[/green] {shared.export_tarball(target, Path(tar))}")
        return
    from ..images import connect
    from ..images import export_volume as fill_volume

    console.print(f"[green]filled[/green] volume {fill_volume(connect(), target, volume)}")


cache = Collection("cache")
cache.add_task(fill, default=True)
for _task in (verify, prune, stats, export):
    cache.add_task(_task)
