"""File locks between concurrent builds (fcntl.flock: released by the kernel when a holder dies).

What is locked, and for how long:

* `build/locks/NAME-VERSION-PLATFORM.lock` — one `build-baseline` of that baseline, for the whole
  build (lock, env, pack, render, image). A second build of the same baseline waits, then finds the
  first one's artifacts fresh and does nothing; past the timeout it stops with "another build
  holds …".
* `STORE/.index.lock` — publishing one version into the store, while its directory is renamed
  into place and the index rewritten (see `store.py`).
* The package cache and uv's cache lock themselves (py-rattler per package, uv per entry), so
  builds of different baselines share them safely.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import BaselinerError


class Locked(BaselinerError):
    """Another process holds a lock for longer than we may wait."""


@contextlib.contextmanager
def hold(
    path: Path, what: str, timeout: float = 1800.0, report: Callable[[str], None] | None = None
) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Locked(
                        f"another build holds {what}",
                        details=[f"lock file {path}", f"waited {timeout:.0f} s"],
                        hint="wait for it to finish, or stop it; a killed holder releases the lock at once",
                    ) from None
                if report and not told:
                    report(f"waiting: another build holds {what}")
                    told = True
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing releases the flock
