"""Writing small files atomically, and the progress callback type shared by the library.

`write_atomic` writes to a temporary name in the same directory (unique per process, so two
writers never share one) and renames it over the target: a reader sees the old file or the new
one, never a half-written one, and a killed writer leaves only a temporary file named as ours
(`concurrency.scratch_file`), which the next run's sweep of that directory removes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Library code reports progress through this callback; only the task layer prints.
Report = Callable[[str], None]


def silent(_: str) -> None:
    """The default Report: say nothing."""


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write `data` to a scratch name beside `path`, then rename it over `path`: never half-written."""
    from .concurrency import scratch_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = scratch_file(path)
    try:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json_atomic(path: Path, data: Any) -> Path:
    """Sorted keys, two-space indent, final newline: the same data gives the same bytes."""
    return write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def exchange(a: Path, b: Path) -> None:
    """Swap two paths on one filesystem in one step (Linux `renameat2(RENAME_EXCHANGE)`): a reader
    or a kill sees both before or both after, never one of them missing."""
    import ctypes
    import os

    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd, rename_exchange = -100, 2
    if libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"cannot exchange {a} and {b}: {os.strerror(code)}", str(a))
