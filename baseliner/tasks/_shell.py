"""What every task shares: the console, the project, and turning a BaselinerError into its
one-screen message and exit code (no traceback; anything else is a bug and keeps its traceback)."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from invoke import Context, Exit
from rich.console import Console

from ..config import Project
from ..errors import BaselinerError, redact

if TYPE_CHECKING:
    from ..pipeline import BuildResult

F = TypeVar("F", bound=Callable[..., Any])
# soft_wrap: a long path or command is never broken over lines (it stays copyable); tables still fit.
console = Console(stderr=True, highlight=False, soft_wrap=True)


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


def _store(proj: Project, store: str) -> Any:
    from ..store import open_store

    return open_store(store or proj.store_location)


def _print_build(result: BuildResult) -> None:
    """The step table of a baseline or overlay build, then where its outputs are."""
    from rich.table import Table

    title = (
        f"{result.name} {result.version}" if result.kind == "baseline" else f"{result.name} on {result.base}"
    )
    table = Table(title=f"{title} ({result.platform})", title_justify="left")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    table.add_column("result")
    for step in result.steps:
        table.add_row(step.name, f"{step.seconds:.1f}", step.detail)
    if not result.rebuilt:
        table.add_row("(all)", "0.0", "nothing changed: no-op (--force rebuilds)")
    console.print(table)
    if result.delta is not None:
        console.print(
            f"delta    {result.delta} ({result.delta_bytes / 1e6:.2f} MB unpacked, {len(result.delta_files)} files)"
        )
    size = result.tarball.stat().st_size if result.tarball.is_file() else 0
    console.print(f"tarball  {result.tarball} ({size / 1e6:.1f} MB)")
    console.print(f"image    {', '.join(result.image_tags) or '-'} {result.image_note}")
    for finding in result.warnings:
        console.print(f"[yellow]warning[/yellow] [{finding.check}] {finding.message} — fix: {finding.fix}")
