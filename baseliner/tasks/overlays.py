"""Tasks on a project's overlay: lock, build, and drift from a baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from invoke import Context, Exit, task

from ..config import Project
from ..errors import LockError
from ._shell import _emit_json, _print_build, _report, _store, _user_errors, console, project


def _overlay_and_base(path: str, store: str) -> tuple[Any, Any, Any]:
    from ..overlay import load_overlay, resolve_base

    overlay = load_overlay(Path(path))
    proj = Project.load(overlay.path.parent)
    base = resolve_base(overlay, _store(proj, store), proj.bases_dir)
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
    from ..overlay import lock_overlay, overlay_stale_reason

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
        overlay, base, proj.mirrors(), proj.build_dir, proj.pip_index, allow_base_changes, _report
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
        "json": "print the build result as JSON",
        "platform": "the platform to build (default linux-64)",
    },
)
@_user_errors
def build_overlay_task(
    c: Context,
    path: str,
    store: str = "",
    no_image: bool = False,
    force: bool = False,
    json: bool = False,
    platform: str = "linux-64",
) -> None:
    """Build an overlay: env (base + delta), delta and full tarballs, image FROM the base, smoke test."""
    from ..overlay import lock_overlay, overlay_stale_reason
    from ..overlay_build import build_overlay
    from ..pipeline import BuildOptions

    proj, overlay, base = _overlay_and_base(path, store)
    if overlay_stale_reason(overlay, base):
        lock_overlay(overlay, base, proj.mirrors(), proj.build_dir, proj.pip_index, report=_report)
    options = BuildOptions(image=not no_image, force=force, platform=platform)
    result = build_overlay(proj, overlay, base, options, report=_report)
    if json:
        _emit_json(result.as_dict())
    else:
        _print_build(result)


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

    from ..overlay import drift as compute
    from ..overlay import resolve_base_ref

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
