"""What every task shares: the console, the project, and turning a BaselinerError into its
one-screen message and exit code (no traceback; anything else is a bug and keeps its traceback)."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from invoke import Context, Exit
from rich.console import Console

from ..config import Project
from ..errors import BaselinerError, redact

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


def _store(proj: Project, store: str) -> Any:
    from ..store import Store

    return Store(store or proj.store_location)
